"""Tests of the resumable writer, including a build killed half way in a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import mock, validation, writing
from tellus.data.errors import SchemaError


def _dataset(n_times: int = 10) -> xr.Dataset:
    times = pd.date_range("2020-01-01", periods=n_times, freq="6h")
    return mock.mock_era5(times=times, n_lat=5, n_lon=8)


def test_write_dataset_round_trips_exactly(tmp_path):
    ds = _dataset().chunk({"time": 5})  # lazy everywhere, static fields included
    path = tmp_path / "a.zarr"
    writing.write_dataset(ds, path, time_chunk=3, progress=False)
    assert writing.is_complete(path)
    assert writing.completed_chunks(path) == {0, 1, 2, 3}
    back = xr.open_zarr(path).load()
    xr.testing.assert_identical(back.drop_attrs(), ds.compute().drop_attrs())
    # On disk: one shard per write chunk of 3 steps, one inner chunk per time step.
    encoding = xr.open_zarr(path)["temperature"].encoding
    assert encoding["shards"][0] == 3 and encoding["chunks"][0] == 1
    # Out-of-core passes read a shard a task: 10 steps in shards of 3 are 4 dask chunks.
    opened = validation.open_dataset(path, check_values="none")
    assert opened["temperature"].chunks[0] == (3, 3, 3, 1)


def test_partial_store_resumes_without_duplicates(tmp_path):
    ds = _dataset()
    path = tmp_path / "b.zarr"
    writing.create_store(path, ds, time_chunk=4)
    writing.write_chunk(path, 1, ds.isel(time=slice(4, 8)))
    assert writing.completed_chunks(path) == {1}
    assert not writing.is_complete(path)
    # Unwritten chunks read as missing (NaN) until written, so validation catches them.
    partial = xr.open_zarr(path, consolidated=False)["temperature"]
    assert bool(partial.isel(time=0).isnull().all())
    assert not bool(partial.isel(time=4).isnull().any())
    writing.write_dataset(ds, path, time_chunk=4, progress=False)
    xr.testing.assert_identical(xr.open_zarr(path).load().drop_attrs(), ds.drop_attrs())


def test_write_chunk_rejects_wrong_times(tmp_path):
    ds = _dataset()
    path = tmp_path / "c.zarr"
    writing.create_store(path, ds, time_chunk=4)
    with pytest.raises(SchemaError, match=r"chunk 0 of .* covers times 2020-01-01"):
        writing.write_chunk(path, 0, ds.isel(time=slice(1, 5)))
    with pytest.raises(SchemaError, match=r"out of range: store .* has 3 chunks"):
        writing.write_chunk(path, 3, ds.isel(time=slice(0, 4)))
    with pytest.raises(SchemaError, match=r"lacks variables \['temperature'\]"):
        writing.write_chunk(path, 0, ds.isel(time=slice(0, 4)).drop_vars("temperature"))
    assert writing.completed_chunks(path) == set()


def test_existing_store_from_other_template_is_refused(tmp_path):
    path = tmp_path / "d.zarr"
    writing.create_store(path, _dataset(10), time_chunk=4)
    with pytest.raises(SchemaError, match=r"different template .*time steps 10 vs 12"):
        writing.create_store(path, _dataset(12), time_chunk=4)
    wide = _dataset(10)
    wide["temperature"] = wide["temperature"].astype(np.float64)
    dtype = str(_dataset(10)["temperature"].dtype)
    with pytest.raises(SchemaError, match=rf"changed: temperature {dtype} .* vs float64"):
        writing.create_store(path, wide, time_chunk=4)
    foreign = tmp_path / "foreign.zarr"
    _dataset().to_zarr(foreign)
    with pytest.raises(SchemaError, match="not a Tellus store under construction"):
        writing.create_store(foreign, _dataset(), time_chunk=4)


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    from tellus.data import mock, writing
    times = pd.date_range("2020-01-01", periods=40, freq="6h")
    ds = mock.mock_era5(times=times, n_lat=5, n_lon=8)
    path = sys.argv[1]
    writing.create_store(path, ds, time_chunk=2)
    done = writing.completed_chunks(path)
    for i in range(20):
        if i in done:
            continue
        writing.write_chunk(path, i, ds.isel(time=slice(2 * i, 2 * i + 2)))
        print("chunk", i, flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_killed_build_resumes_to_identical_store(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(_SLOW_WRITER)
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    with subprocess.Popen(
        [sys.executable, str(script), str(killed), "0.2"], stdout=subprocess.PIPE, text=True
    ) as proc:
        # Wait until a few chunks are written, then kill without warning.
        for _ in range(4):
            assert proc.stdout.readline().startswith("chunk")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = writing.completed_chunks(killed)
    assert 4 <= len(partial) < 20
    subprocess.run([sys.executable, str(script), str(killed), "0"], check=True, capture_output=True)
    subprocess.run([sys.executable, str(script), str(clean), "0"], check=True, capture_output=True)
    assert writing.is_complete(killed) and writing.is_complete(clean)
    a, b = xr.open_zarr(killed).load(), xr.open_zarr(clean).load()
    xr.testing.assert_identical(a, b)
    # No duplicated or missing time steps.
    assert a.sizes["time"] == 40 and np.unique(a["time"].values).size == 40


# Writes a small store whose chunks wait for the file argv[2] to appear.
_WAITING_WRITER = textwrap.dedent(
    """
    import pathlib, sys, time
    import pandas as pd
    from tellus.data import mock, writing
    go = pathlib.Path(sys.argv[2])
    times = pd.date_range("2020-01-01", periods=8, freq="6h")
    ds = mock.mock_era5(times=times, n_lat=5, n_lon=8).chunk({"time": 4})

    def wait(block):
        if block.size:  # (dask first calls it on an empty block, for the output type)
            print("writing", flush=True)
            while not go.exists():
                time.sleep(0.05)
        return block

    t = ds["temperature"]
    ds["temperature"] = t.copy(data=t.data.map_blocks(wait, dtype=t.dtype))
    writing.write_dataset(ds, sys.argv[1], time_chunk=4, progress=False)
    """
)


def test_a_second_writer_of_a_store_refuses_with_one_line(tmp_path):
    from tellus.data.errors import LockedError

    script, path, go = tmp_path / "writer.py", tmp_path / "s.zarr", tmp_path / "go"
    script.write_text(_WAITING_WRITER)
    ds = _dataset(8)
    with subprocess.Popen(
        [sys.executable, str(script), str(path), str(go)], stdout=subprocess.PIPE, text=True
    ) as first:
        try:
            assert first.stdout.readline() == "writing\n"
            with pytest.raises(LockedError) as refused:
                writing.write_dataset(ds, path, time_chunk=4, progress=False)
            message = str(refused.value)
            assert message.startswith(f"{path} is in use by pid {first.pid} on host ")
            assert "(writing, since " in message and "\n" not in message
        finally:
            go.touch()
        first.stdout.read()
        assert first.wait(timeout=60) == 0
    assert writing.is_complete(path) and not (tmp_path / "s.zarr.lock").exists()
    writing.write_dataset(ds, path, time_chunk=4, progress=False)  # complete: only checked
