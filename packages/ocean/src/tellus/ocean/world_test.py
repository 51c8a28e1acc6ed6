"""The embedded ocean's stores, built once for this module from the tiny preset (veros in a
subprocess, a few seconds): layout and schema, land, T points, calendar, cache and resume."""

from __future__ import annotations

import dataclasses
import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import schema, validation, writing
from tellus.data.errors import LockedError
from tellus.ocean import planet, sanity, world

CONFIG = world.TINY


@pytest.fixture(scope="module")
def built(tmp_path_factory, worker_id):
    """The tiny ocean, built once for the session: pytest-xdist's workers share the folder
    above their own, and the one that comes second waits for the first's build, then finds
    it cached."""
    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent
    with open(root / "ocean-tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        world.build(root / "ocean-tiny", CONFIG, progress=False)
    return root / "ocean-tiny"


def open_store(directory, run="model"):
    return xr.open_zarr(world.store_path(directory, run), consolidated=False)


def test_stores_validate_with_nan_exactly_over_land(built):
    for run in world.RUNS:
        ds = validation.open_dataset(world.store_path(built, run), check_values="full")
        assert ds.sizes["time"] == CONFIG.months(run)
        assert ds.sizes["depth"] == CONFIG.grid.nz
        land = ds["ocean_mask"].values == 0
        assert 0 < land.mean() < 0.5
        np.testing.assert_array_equal(ds["ocean_mask"].values, planet.ocean_mask(CONFIG.grid))
        for name in (*world.FIELDS_3D, *world.FIELDS_2D):
            spec = schema.VARIABLES[name]
            assert ds[name].dims == spec.dims and ds[name].attrs["units"] == spec.units
            values = ds[name].values
            np.testing.assert_array_equal(np.isnan(values), np.broadcast_to(land, values.shape))
        sst = ds["sea_surface_temperature"].values
        top = ds["sea_water_potential_temperature"].isel(depth=0).values
        np.testing.assert_allclose(sst, top + 273.15, rtol=1e-6)
        ssh = np.nan_to_num(ds["sea_surface_height"].values)
        w = planet.area_weights(CONFIG.grid)
        np.testing.assert_allclose((ssh * w).sum(axis=(1, 2)) / w.sum(), 0.0, atol=1e-6)


def test_t_point_coordinates():
    """Cell centres, worked out by hand: the first T point half a cell west / south of
    veros's origin (the first U / V face)."""
    g = CONFIG.grid  # 8 deg, walls at 72S and 72N
    np.testing.assert_array_equal(g.longitude, 4.0 + 8.0 * np.arange(45))
    np.testing.assert_array_equal(g.latitude, -68.0 + 8.0 * np.arange(18))
    assert (g.x_origin, g.y_origin) == (8.0, -64.0)
    default = world.DEFAULT.grid
    assert (default.longitude[0], default.longitude[-1], default.latitude[0]) == (2.0, 358.0, -68.0)
    # Faces at 0, 100, 350, 750, 1300, 2000, 2850, 3850 m; the bottom T point at its
    # layer's centre (3350), each one above reflected through the face between them.
    np.testing.assert_array_equal(g.depth, [50, 150, 550, 950, 1650, 2350, 3350])


def test_store_coordinates_are_veros_t_points(built):
    """The runner refuses to run unless veros's xt, yt, zt and mask equal the planet's, so
    the store's coordinates (the planet's) are veros's T points."""
    ds = open_store(built)
    np.testing.assert_array_equal(ds["longitude"].values, CONFIG.grid.longitude)
    np.testing.assert_array_equal(ds["latitude"].values, CONFIG.grid.latitude)
    np.testing.assert_array_equal(ds["depth"].values, CONFIG.grid.depth)
    assert ds["depth"].attrs["positive"] == "down"
    np.testing.assert_array_equal(ds["layer_thickness"].values, CONFIG.grid.thickness)


def test_calendar_conversion():
    spun_up = 30 * planet.YEAR  # the default spin-up
    assert world.model_date(spun_up) == cftime.Datetime360Day(31, 1, 1)
    assert world.model_date(spun_up + 13 * planet.MONTH + 29.5 * planet.DAY) == (
        cftime.Datetime360Day(32, 2, 30, 12)
    )
    labels = pd.DatetimeIndex(world.month_labels(spun_up, 14))
    assert labels[0] == pd.Timestamp("2000-01-01") and labels[13] == pd.Timestamp("2001-02-01")
    # A run starting in model August keeps its months: August -> August.
    labels = pd.DatetimeIndex(world.month_labels(7 * planet.MONTH, 7, "1990-01-01"))
    assert list(labels.strftime("%Y-%m")) == [
        "1990-08",
        "1990-09",
        "1990-10",
        "1990-11",
        "1990-12",
        "1991-01",
        "1991-02",
    ]


def test_store_attributes(built):
    ds = open_store(built, "observed")
    assert ds.attrs["ocean_run"] == "observed"
    assert planet.OceanParams.from_json(ds.attrs["ocean_params"]) == CONFIG.observed
    assert "veros 1.7" in ds.attrs["source"]
    assert "360_day" in ds.attrs["calendar"] and "0001-02-01" in ds.attrs["calendar"]
    assert "flat" in ds.attrs["bottom"]
    # The tiny spin-up is one month: the runs start in model February.
    assert str(ds["time"].values[0])[:10] == "2000-02-01"


def test_a_built_ocean_is_not_rebuilt(built, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("veros started for a complete build")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    paths = world.build(built, CONFIG, progress=False)
    assert set(paths) == {"spinup", "model", "observed"}
    with pytest.raises(ValueError, match="another configuration"):
        world.build(built, dataclasses.replace(CONFIG, spinup_months=2), progress=False)


def test_a_stopped_build_resumes_to_the_same_store(built, tmp_path):
    """Stopped after its first chunk (as a kill between chunks), the model run resumes from
    the saved restart and writes bitwise the store of the uninterrupted build."""
    shutil.copy(world.spinup_path(built), world.spinup_path(tmp_path))
    shutil.copy(built / "spinup.json", tmp_path / "spinup.json")
    world.build_runs(tmp_path, CONFIG, runs=("model",), progress=False, stop_after=1)
    store = world.store_path(tmp_path, "model")
    assert writing.completed_chunks(store) == {0}
    world.build_runs(tmp_path, CONFIG, runs=("model",), progress=False)
    assert writing.is_complete(store)
    resumed, reference = open_store(tmp_path), open_store(built)
    for name in (*world.FIELDS_3D, *world.FIELDS_2D):
        np.testing.assert_array_equal(resumed[name].values, reference[name].values, err_msg=name)


def test_a_second_build_of_a_store_refuses(built, tmp_path):
    """While another process builds the model store, a build of it refuses at once with
    one line naming the holder, and writes nothing."""
    shutil.copy(world.spinup_path(built), world.spinup_path(tmp_path))
    shutil.copy(built / "spinup.json", tmp_path / "spinup.json")
    store = world.store_path(tmp_path, "model")
    hold = (
        "import sys, time\n"
        "from tellus.data import locking\n"
        "locking.store_lock(sys.argv[1], 'another build').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(store)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"pid {holder.pid} .*another build"):
            world.build_runs(tmp_path, CONFIG, runs=("model",), progress=False)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert not store.exists()


def test_sanity_on_the_tiny_run(built):
    """Three months from rest: the northern gyre has formed, the circumpolar current flows
    east, the initial stratification holds; the numbers are those `just check-ocean`
    prints."""
    ds = validation.open_dataset(world.store_path(built, "model"))
    gyres = sanity.gyre_strengths(ds)
    assert gyres["north"] > 1.0 and gyres["south"] < 0.0
    assert sanity.drake_passage_transport(ds) > 5.0
    assert np.all(np.diff(sanity.mean_temperature_profile(ds)) < 0)
    assert np.isfinite(sanity.temperature_drift(ds))
    names = [c.name for c in sanity.check(ds)]
    assert len(names) == 5


def test_temperature_is_potential_temperature_from_veros_conservative_temperature():
    """veros carries TEOS-10 Conservative Temperature and Absolute Salinity; the store's
    potential temperature turns back into the same Conservative Temperature through gsw's
    inverse, and differs from it where the salinity is far from the reference one."""
    import gsw

    g = CONFIG.grid
    shape3, shape2 = (2, g.nz, g.ny, g.nx), (2, g.ny, g.nx)
    rng = np.random.default_rng(0)
    ct = rng.uniform(-1.5, 28.0, shape3)
    sa = rng.uniform(30.0, 38.0, shape3)
    fields = {"temp": ct, "salt": sa, "u": np.zeros(shape3), "v": np.zeros(shape3)}
    fields |= {k: np.zeros(shape2) for k in ("ssh", "taux", "tauy")}
    times = pd.date_range("2000-01-01", periods=2, freq="MS").values
    ds = world.chunk_dataset(g, times, fields)
    ocean = planet.ocean_mask(g) > 0
    theta = ds["sea_water_potential_temperature"].values
    back = gsw.CT_from_pt(sa, theta.astype(np.float64))
    np.testing.assert_allclose(back[..., ocean], ct[..., ocean], atol=2e-5)  # float32 storage
    assert np.abs(theta - ct)[..., ocean].max() > 0.05  # a conversion, not a copy
    np.testing.assert_allclose(
        ds["sea_surface_temperature"].values, theta[:, 0] + 273.15, rtol=1e-6
    )


@pytest.mark.parametrize("name", ["spinup", "model"])
def test_a_relative_folder_gives_the_subprocess_absolute_paths(name, tmp_path, monkeypatch):
    """veros runs in the build folder: a path relative to the caller's folder would land in
    DIR/DIR (`tellus data build ocean` with the default data/ocean did that)."""
    monkeypatch.chdir(tmp_path)
    job = world._job(CONFIG, Path("data/ocean"), name, 0)
    paths = [job[k] for k in ("state_dir", "restart_in", "store", "final_restart") if job[k]]
    assert len(paths) >= 2
    for p in paths:
        assert Path(p).is_absolute() and Path(p).is_relative_to(tmp_path / "data" / "ocean"), p
