"""The data layer on a 2-worker dask.distributed cluster gives what it gives on threads."""

from pathlib import Path

import pandas as pd
import pytest
import xarray as xr

from tellus.data import cluster, mock, statistics, validation, writing
from tellus.data.ingest import ingest

SAMPLES = Path(__file__).resolve().parents[5] / ".." / "shared" / "data" / "era5-samples"


@pytest.fixture(scope="module")
def two_workers():
    """A LocalCluster of two worker processes (the data crosses process boundaries)."""
    with cluster.connect("local", n_workers=2, quiet=True) as client:
        yield client


def test_schedulers_are_checked_and_threads_open_no_cluster(tmp_path):
    assert cluster.check("local") == "local" and cluster.check("tcp://h:8786") == "tcp://h:8786"
    with pytest.raises(ValueError, match="'nowhere' is not 'local', 'threads', a scheduler"):
        cluster.check("nowhere")
    f = tmp_path / "scheduler.json"
    f.write_text("{}")
    assert cluster.check(str(f)) == str(f)
    with cluster.connect("threads") as client:
        assert client is None and cluster.active_client() is None


def test_an_unreachable_scheduler_is_one_clear_error():
    with (
        pytest.raises(cluster.ClusterError, match="cannot open the dask scheduler at tcp://"),
        cluster.connect("tcp://127.0.0.1:9", timeout="1s"),
    ):
        pass


def test_statistics_on_the_cluster_equal_the_threaded_ones(tmp_path, two_workers):
    times = pd.date_range("2000-01-01", periods=120, freq="6h")  # 30 days
    path = mock.write_store(
        mock.mock_era5(times=times, n_lat=6, n_lon=8), str(tmp_path / "m.zarr"), step="6h"
    )
    ds = validation.open_dataset(path)
    with pytest.MonkeyPatch.context() as mp:  # the threaded path: no client in reach
        mp.setattr(cluster, "active_client", lambda: None)
        import dask

        with dask.config.set(scheduler="threads"):
            threaded = statistics.write_statistics(
                ds, path, step="6h", path=str(tmp_path / "threads.stats.zarr")
            )
    assert cluster.active_client() is two_workers
    distributed = statistics.write_statistics(
        ds, path, step="6h", path=str(tmp_path / "cluster.stats.zarr")
    )
    for group in (*statistics.GROUPS, statistics.CLIMATOLOGY):
        a = xr.open_zarr(threaded, group=group, consolidated=False).load()
        b = xr.open_zarr(distributed, group=group, consolidated=False).load()
        xr.testing.assert_identical(a, b)  # fixed chunks, fixed reduction tree: bit for bit


@pytest.mark.skipif(not (SAMPLES / "era5-levels-members.grib").exists(), reason="no ERA5 samples")
def test_a_grib_ingested_by_the_workers_equals_the_threaded_ingest(tmp_path, two_workers):
    """Each worker reads its time chunks from the GRIB file and writes them itself."""
    source = SAMPLES / "era5-levels-members.grib"  # 4 times, 10 members, 2 levels
    on_cluster = ingest([source], tmp_path / "cluster.zarr", time_chunk=1, progress=False)
    assert writing.is_complete(tmp_path / "cluster.zarr")
    # Consolidated once, at the end, by the process that ran the ingest.
    xr.open_zarr(tmp_path / "cluster.zarr", consolidated=True).close()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cluster, "active_client", lambda: None)
        import dask

        with dask.config.set(scheduler="threads"):
            threaded = ingest([source], tmp_path / "threads.zarr", time_chunk=1, progress=False)
    assert on_cluster.attrs.pop("history") != ""  # the one difference: when each was made
    threaded.attrs.pop("history")
    xr.testing.assert_identical(on_cluster.load(), threaded.load())
    assert on_cluster.sizes["time"] == 4  # four chunks: four tasks
    assert writing.completed_chunks(tmp_path / "cluster.zarr") == writing.completed_chunks(
        tmp_path / "threads.zarr"
    )
