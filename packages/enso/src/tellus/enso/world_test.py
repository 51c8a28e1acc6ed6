"""Tests of the ENSO world: schema, resumable writing, patterns and modes."""

import numpy as np
import pytest
import xarray as xr

from tellus.data import validation, writing
from tellus.enso import indices, world
from tellus.enso import recharge_oscillator as ro


def test_observed_world_in_memory_is_valid_and_carries_the_modes():
    ds = world.build_world("observed", n_years=6, seed=3)
    assert ds[world.SST].dims == ("time", "latitude", "longitude")
    assert ds.sizes["time"] == 72 and ds.sizes["latitude"] == 24 and ds.sizes["longitude"] == 72
    assert str(ds.time.values[0])[:7] == "1850-01"
    validation.validate(ds, check_values="full")
    modes = ds[world.MODES_VARIABLE]
    np.testing.assert_allclose(modes.values, ro.simulate(ro.RecParams.observed(), 6, 3))


def test_patterns_are_normalized():
    cfg = world.WorldConfig.observed()
    p = world.patterns(cfg)
    w3 = indices.box_weights(indices.NINO3, world.LATITUDES, world.LONGITUDES)
    np.testing.assert_allclose((w3 * p["enso"]).sum(), 1.0)
    ww = indices.box_weights(indices.IOD_WEST, world.LATITUDES, world.LONGITUDES)
    we = indices.box_weights(indices.IOD_EAST, world.LATITUDES, world.LONGITUDES)
    np.testing.assert_allclose((ww * p["iod"]).sum() - (we * p["iod"]).sum(), 1.0)
    # The ENSO pattern peaks on the equator near its centre longitude.
    i, j = np.unravel_index(np.argmax(p["enso"]), p["enso"].shape)
    assert world.LATITUDES[i] == 0 and world.LONGITUDES[j] == cfg.enso_lon


def test_indices_from_fields_follow_the_modes():
    cfg = world.WorldConfig.observed()
    ds = world.build_world("observed", n_years=40, seed=4)
    modes = ds[world.MODES_VARIABLE].values
    c = np.array(world.index_weights(cfg, indices.NINO34))
    raw = indices.box_mean(ds[world.SST], indices.NINO34).values
    resid = raw - modes @ c
    # The residual is the box-averaged noise, of known variance.
    np.testing.assert_allclose(
        resid.var(), world.index_noise_variance(cfg, indices.NINO34), rtol=0.15
    )
    nino3 = indices.box_mean(ds[world.SST], indices.NINO3).values
    assert np.corrcoef(nino3, modes[:, 0])[0, 1] > 0.9
    dmi = indices.dmi(ds).values
    assert np.corrcoef(dmi, modes[:, 2])[0, 1] > 0.5


def test_long_model_run_is_split_into_continuous_segments(monkeypatch):
    monkeypatch.setattr(world, "MAX_SEGMENT_YEARS", 2)
    ds = world.build_world("model", n_years=4, seed=0)
    assert ds[world.SST].dims == ("time", "realization", "latitude", "longitude")
    assert ds.sizes["realization"] == 2 and ds.sizes["time"] == 24
    assert str(ds.time.values[0])[:7] == "1700-01"
    full = ro.simulate(ro.RecParams.model(), 4, 0)
    seg = ds[world.MODES_VARIABLE].transpose("realization", "time", "mode").values
    np.testing.assert_allclose(seg.reshape(48, 3), full)
    with pytest.raises(ValueError, match="equal"):
        world.build_world("model", n_years=5)
    with pytest.raises(ValueError, match="kind"):
        world.build_world("future", n_years=5)


def test_killed_build_resumes_to_the_same_store(tmp_path, monkeypatch):
    fresh = world.build_world(
        "observed", n_years=3, seed=2, path=tmp_path / "a.zarr", progress=False, time_chunk=12
    )
    real_write = writing.write_chunk
    calls = []

    def dying_write(path, index, ds):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(index)
        real_write(path, index, ds)

    monkeypatch.setattr(writing, "write_chunk", dying_write)
    with pytest.raises(KeyboardInterrupt):
        world.build_world(
            "observed", n_years=3, seed=2, path=tmp_path / "b.zarr", progress=False, time_chunk=12
        )
    monkeypatch.setattr(writing, "write_chunk", real_write)
    assert writing.completed_chunks(tmp_path / "b.zarr") == {0, 1}
    resumed = world.build_world(
        "observed", n_years=3, seed=2, path=tmp_path / "b.zarr", progress=False, time_chunk=12
    )
    assert writing.is_complete(tmp_path / "b.zarr")
    xr.testing.assert_identical(fresh.load(), resumed.load())
    assert resumed.attrs["enso_kind"] == "observed"
    # The fields are stored as the float32 they are computed in (the mode amplitudes in
    # float64).
    assert {v: str(resumed[v].dtype) for v in (world.SST, world.HEAT)} == {
        world.SST: "float32",
        world.HEAT: "float32",
    }


def test_a_second_build_of_a_world_refuses_with_one_line(tmp_path):
    import re
    import subprocess
    import sys

    from tellus.data.errors import LockedError

    hold = (
        "import sys\nfrom tellus.data import locking\n"
        "with locking.store_lock(sys.argv[1], 'first build'):\n"
        "    print('ready', flush=True)\n    sys.stdin.readline()\n"
    )
    path = tmp_path / "observed.zarr"
    with subprocess.Popen(
        [sys.executable, "-c", hold, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as first:
        assert first.stdout.readline() == "ready\n"
        with pytest.raises(
            LockedError, match=rf"^{re.escape(str(path))} is in use by pid {first.pid} on host "
        ):
            world.build_world("observed", n_years=2, path=path, progress=False, time_chunk=12)
        first.stdin.close()
    assert not path.exists()
    world.build_world("observed", n_years=2, path=path, progress=False, time_chunk=12)
    assert writing.is_complete(path) and not (tmp_path / "observed.zarr.lock").exists()


def test_a_world_stored_as_float64_before_is_read_as_it_is(tmp_path, monkeypatch):
    real_zeros = world.da.zeros

    def as_before(shape, *args, **kwargs):  # dask ignored the positional dtype
        return real_zeros(shape, dtype=np.float64, chunks=kwargs["chunks"])

    monkeypatch.setattr(world.da, "zeros", as_before)
    args = dict(kind="observed", n_years=2, seed=2, progress=False, time_chunk=12)
    world.build_world(**args, path=tmp_path / "old.zarr")
    monkeypatch.undo()
    old = world.build_world(**args, path=tmp_path / "old.zarr")  # no refusal
    new = world.build_world(**args, path=tmp_path / "new.zarr")
    assert old[world.SST].dtype == np.float64 and new[world.SST].dtype == np.float32
    np.testing.assert_array_equal(old[world.SST].values, new[world.SST].values)
