"""Tests of the window source against xarray indexing, hand counts and split properties."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import mock, sources, stacking, tasks

HOURLY = pd.date_range("2020-01-01", periods=48, freq="1h")


def _write(ds: xr.Dataset, path, time_chunk: int = 1) -> str:
    ds.chunk({"time": time_chunk}).to_zarr(path, consolidated=False, zarr_format=3)
    return str(path)


@pytest.fixture(scope="module")
def era5() -> xr.Dataset:
    return mock.mock_era5(
        times=HOURLY,
        levels=(50, 500, 850),
        n_lat=4,
        n_lon=8,
        surface=("2m_temperature", "mean_sea_level_pressure"),
    )


@pytest.fixture(scope="module")
def store(era5, tmp_path_factory) -> str:
    return _write(era5, tmp_path_factory.mktemp("s") / "era5.zarr", time_chunk=5)


def _task(**kw) -> tasks.TaskConfig:
    base = dict(
        input_variables=("temperature", "2m_temperature", "geopotential"),
        target_variables=("2m_temperature", "temperature"),
        forcing_variables=(tasks.DAY_PROGRESS_SIN, "mean_sea_level_pressure"),
        static_variables=("land_sea_mask",),
        levels=(850, 50),
        time_step="1h",
        history_steps=2,
        history_spacing=3,
        lead_steps=(1, 4),
    )
    return tasks.TaskConfig(**(base | kw))


def _expected(era5: xr.Dataset, src: sources.WindowSource, index: int) -> dict[str, np.ndarray]:
    """The sample computed a second way: xarray selection by timestamp, then stacking."""
    init = src.init_times[index]
    in_times = [init + pd.Timedelta(hours=o) for o in src.task.history_offsets]
    out_times = [init + pd.Timedelta(hours=o) for o in src.task.lead_steps]
    all_times = in_times + out_times
    mslp = stacking.ChannelLayout((src.forcing_layout["mean_sea_level_pressure"],))
    return {
        "inputs": stacking.dataset_to_stacked(era5.sel(time=in_times), src.input_layout),
        "targets": stacking.dataset_to_stacked(era5.sel(time=out_times), src.target_layout),
        "mslp": stacking.dataset_to_stacked(era5.sel(time=all_times), mslp)[..., 0],
        "statics": stacking.dataset_to_stacked(era5, src.static_layout),
        "init_time": np.int64(init.value),
    }


def test_samples_match_xarray_selection(era5, store):
    src = sources.WindowSource(store, _task())
    # Window offsets (-3, 0, 1, 4) need hours t-3..t+4 of 0..47: inits 3..43.
    assert len(src) == 41
    assert src.init_times[0] == HOURLY[3] and src.init_times[-1] == HOURLY[43]
    for index in (0, 17, 40):
        sample = src[index]
        want = _expected(era5, src, index)
        assert sample["inputs"].shape == (2, 4, 8, 2 + 1 + 2)
        assert sample["targets"].shape == (2, 4, 8, 1 + 2)
        assert sample["forcings"].shape == (4, 4, 8, 2)
        np.testing.assert_array_equal(sample["inputs"], want["inputs"])
        np.testing.assert_array_equal(sample["targets"], want["targets"])
        np.testing.assert_array_equal(sample["forcings"][..., 1], want["mslp"])
        np.testing.assert_array_equal(sample["statics"], want["statics"])
        assert sample["init_time"] == want["init_time"]
        assert sample["init_time"].dtype == np.int64


def test_zarr_backend_cached_and_pickled_sources_agree(store):
    src = sources.WindowSource(store, _task(), backend="tensorstore")
    other = sources.WindowSource(store, _task(), backend="zarr")
    cached = sources.WindowSource(store, _task(), cache_bytes=1 << 24)
    src[5]  # Opens readers, which must not travel through pickle.
    cached[4]  # Fills the cache with chunks window 5 reads too.
    clone = pickle.loads(pickle.dumps(src))
    for s in (other[5], clone[5], cached[5], pickle.loads(pickle.dumps(cached))[5]):
        for key in sources.SAMPLE_KEYS:
            np.testing.assert_array_equal(s[key], src[5][key])


def test_all_levels_in_store_order_take_the_unindexed_path(era5, store):
    src = sources.WindowSource(store, _task(levels=(50, 500, 850)))
    np.testing.assert_array_equal(src[2]["inputs"], _expected(era5, src, 2)["inputs"])


def test_computed_forcings_by_hand():
    # 1970-01-01T06:00 UTC: a quarter of the way through the day at longitude 0, half way at
    # 90E; 36.524219 days after the epoch: a tenth of the way through the (tropical) year.
    times = np.array([6 * 3600 * 10**9, int(36.524219 * 86400) * 10**9], np.int64)
    out = sources.computed_forcings(tasks.COMPUTED_FORCINGS, times, np.array([0.0, 90.0]), 3)
    assert out.shape == (2, 3, 2, 4)
    year_sin, year_cos, day_sin, day_cos = np.moveaxis(out, -1, 0)
    np.testing.assert_allclose(day_sin[0, :, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(day_cos[0, :, 1], -1.0, atol=1e-6)
    np.testing.assert_allclose(year_sin[0], np.sin(2 * np.pi * 0.25 / 365.24219), atol=1e-6)
    np.testing.assert_allclose(year_sin[1], np.sin(2 * np.pi * 0.1), atol=1e-6)
    np.testing.assert_allclose(year_cos[1], np.cos(2 * np.pi * 0.1), atol=1e-6)


def test_forcings_cover_input_and_target_times(store):
    src = sources.WindowSource(store, _task())
    sample = src[0]
    hours = src.window_times(0).hour.to_numpy()  # Longitude 0 is the first column.
    np.testing.assert_allclose(
        sample["forcings"][:, 0, 0, 0], np.sin(2 * np.pi * hours / 24), atol=1e-6
    )


def test_windows_never_cross_a_gap(era5, tmp_path):
    gappy = era5.drop_sel(time=HOURLY[20:22])
    src = sources.WindowSource(
        _write(gappy, tmp_path / "gap.zarr"), _task(history_spacing=1, lead_steps=(1, 2))
    )
    # Offsets (-1, 0, 1, 2): inits 1..45 (45 windows) except those whose hours t-1..t+2
    # touch 20 or 21, i.e. t in 18..22.
    assert len(src) == 45 - 5
    offsets = pd.to_timedelta([-1, 0, 1, 2], unit="h")
    for i in range(len(src)):
        times = src.window_times(i)
        assert (times - src.init_times[i] == offsets).all()


def test_monthly_windows_step_by_calendar_month(tmp_path):
    # Labels mid-month: month lengths differ, and February's label is 30 days after January's.
    times = pd.DatetimeIndex([f"2001-{m:02d}-15" for m in range(1, 13)]).delete(6)  # No July.
    ocean = mock.mock_ocean(times=times, depths=(5.0, 50.0))
    task = tasks.TaskConfig.ocean(
        depths=(50.0,), lead_months=(1, 2), time_step="MS", static=("ocean_mask",)
    )
    src = sources.WindowSource(_write(ocean, tmp_path / "o.zarr"), task)
    # Windows are months (m, m+1, m+2) within Jan..Dec without July: Jan-Apr, Aug-Oct.
    assert [t.month for t in src.init_times] == [1, 2, 3, 4, 8, 9, 10]
    sample = src[4]
    want = ocean.sea_water_potential_temperature.sel(time="2001-10-15", depth=50.0).values
    np.testing.assert_array_equal(sample["targets"][1, ..., 0], want)  # NaN (land) included.
    assert np.isnan(sample["inputs"][0, 0, 0, 0])


def test_step_ordinals():
    np.testing.assert_array_equal(
        sources.step_ordinals(pd.DatetimeIndex(["2000-01-31", "2000-02-01", "2000-04-30"]), "MS"),
        [0, 1, 3],
    )
    np.testing.assert_array_equal(
        sources.step_ordinals(pd.date_range("2000", periods=3, freq="6h"), "3h"), [0, 2, 4]
    )
    with pytest.raises(ValueError, match="not on the '6h' grid"):
        sources.step_ordinals(pd.DatetimeIndex(["2000-01-01T00", "2000-01-01T03"]), "6h")
    with pytest.raises(ValueError, match="one time per 'MS' step"):
        sources.step_ordinals(pd.DatetimeIndex(["2000-01-01", "2000-01-15"]), "MS")


def test_splits_do_not_leak(store):
    ranges = {
        "train": sources.DateRange("2020-01-01", "2020-01-01T20"),
        "validation": sources.DateRange("2020-01-01T20", "2020-01-02T08"),
        "test": sources.DateRange("2020-01-02T08", "2020-01-03"),
    }
    splits = sources.WindowSource.splits(store, _task(), ranges)
    used = {}
    for name, src in splits.items():
        r = ranges[name]
        # Every input and target time of every window.
        times = pd.DatetimeIndex(np.concatenate([src.window_times(i) for i in range(len(src))]))
        assert (times >= r.start).all() and (times < r.stop).all()
        used[name] = set(times)
    assert not used["train"] & used["validation"]
    assert not used["validation"] & used["test"]
    assert not used["train"] & used["test"]
    # Window span is hours t-3..t+4, so a split of hours [a, b) holds inits a+3..b-5.
    assert [len(s) for s in splits.values()] == [20 - 3 - 4, 12 - 3 - 4, 16 - 3 - 4]
    with pytest.raises(ValueError, match="overlap"):
        sources.check_disjoint(
            {"a": sources.DateRange("2020", "2021"), "b": sources.DateRange("2020-06", "2022")}
        )


def test_errors(store):
    with pytest.raises(KeyError, match="specific_humidity"):
        sources.WindowSource(store, _task(input_variables=("specific_humidity",)))
    with pytest.raises(KeyError, match=r"levels \[300\]"):
        sources.WindowSource(store, _task(levels=(300, 850)))
    with pytest.raises(ValueError, match="not on the '6h' grid"):
        sources.WindowSource(store, _task(time_step="6h"))
    with pytest.raises(ValueError, match="no complete window"):
        sources.WindowSource(store, _task(lead_steps=(100,)))
    src = sources.WindowSource(store, _task())
    with pytest.raises(IndexError):
        src[len(src)]


def test_unstack_returns_a_dataset(era5, store):
    src = sources.WindowSource(store, _task())
    targets = src.unstack(src[0]["targets"], "targets", leading_dims=("lead",))
    assert set(targets.data_vars) == {"2m_temperature", "temperature"}
    assert targets.temperature.dims == ("lead", "level", "latitude", "longitude")
    np.testing.assert_array_equal(targets.level.values, [850, 50])
    np.testing.assert_array_equal(targets.latitude.values, era5.latitude.values)


# --- Monthly stores with segments and a derived (box-mean) target ---------------------------

MONTHS = pd.date_range("1900-01-01", periods=40, freq="MS")
LAT = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])
LON = np.array([180.0, 190.0, 200.0, 240.0, 250.0, 300.0])
SSTA, HCA = "sea_surface_temperature_anomaly", "ocean_heat_content_anomaly"


def _climate(n_segments: int | None, seed: int = 0) -> xr.Dataset:
    """SST and heat-content anomalies, (time, [realization,] lat, lon), random."""
    rng = np.random.default_rng(seed)
    seg = () if n_segments is None else (n_segments,)
    dims = ("time", *(("realization",) if seg else ()), "latitude", "longitude")
    shape = (len(MONTHS), *seg, len(LAT), len(LON))
    data = {
        name: (dims, rng.standard_normal(shape).astype(np.float32), {"units": "K"})
        for name in (SSTA, HCA)
    }
    coords = {"time": MONTHS, "latitude": LAT, "longitude": LON}
    if seg:
        coords["realization"] = np.arange(n_segments)
    return xr.Dataset(data, coords=coords)


def _nino_task(**kw) -> tasks.TaskConfig:
    base = dict(
        input_variables=(SSTA, HCA),
        target_variables=(),
        time_step="MS",
        history_steps=2,
        lead_steps=(1, 2, 3),
        derived_targets=(tasks.DerivedTarget.nino34_3month(("1900-01", "1901-12")),),
    )
    return tasks.TaskConfig(**(base | kw))


def _nino_by_hand(sst: np.ndarray) -> np.ndarray:
    """[time] Nino3.4 3-month mean of one segment's [time, lat, lon] field, by hand."""
    inside = (np.abs(LAT) <= 5)[:, None] & ((LON >= 190) & (LON <= 240))[None, :]
    w = np.where(inside, np.cos(np.deg2rad(LAT))[:, None], 0.0)
    raw = (sst.astype(np.float64) * (w / w.sum())).sum((1, 2))
    base = raw[:24].reshape(2, 12).mean(0)  # the 1900-1901 climatology
    anom = raw - np.tile(base, 4)[: len(raw)]
    out = np.full_like(anom, np.nan)
    out[1:-1] = (anom[:-2] + anom[1:-1] + anom[2:]) / 3
    return out


@pytest.mark.parametrize("backend", ["tensorstore", "zarr"])
def test_segmented_store_windows_and_derived_target_by_hand(tmp_path, backend):
    ds = _climate(n_segments=2)
    src = sources.WindowSource(_write(ds, tmp_path / "c.zarr", 12), _nino_task(), backend=backend)
    # Months t-1..t+4 (the 3-month mean at lead 3 needs t+4) of 0..39: inits 1..35 per segment.
    assert src.n_segments == 2 and len(src) == 2 * 35
    np.testing.assert_array_equal(src.inits[[0, 34, 35, 69]], [[0, 1], [0, 35], [1, 1], [1, 35]])
    for index in (0, 34, 35, 69):  # first and last window of each segment
        seg, t = src.inits[index]
        sample = src[index]
        assert set(sample) == {*sources.SAMPLE_KEYS, sources.DERIVED}
        want = ds.isel(realization=seg, time=[t - 1, t])
        np.testing.assert_array_equal(sample["inputs"][..., 0], want[SSTA].values)
        np.testing.assert_array_equal(sample["inputs"][..., 1], want[HCA].values)
        assert sample["targets"].shape == (3, 5, 6, 0) and sample["derived"].shape == (3, 1)
        hand = _nino_by_hand(ds[SSTA].isel(realization=seg).values)
        np.testing.assert_allclose(sample["derived"][:, 0], hand[t + 1 : t + 4], atol=1e-6)
    # Every segment has its own climatology; NaN only where the 3-month mean leaves the record.
    d = src.derived[..., 0]
    assert np.isnan(d[:, [0, -1]]).all() and np.isfinite(d[:, 1:-1]).all()


def test_derived_target_reach_limits_windows_and_date_ranges(tmp_path):
    store = _write(_climate(n_segments=None), tmp_path / "c.zarr", 12)
    task = _nino_task()
    assert task.reach_offsets == (-1, 0, 1, 2, 3, 4)
    src = sources.WindowSource(store, task)
    assert src.n_segments == 1 and len(src) == 35 and set(src.segment_indices) == {0}
    # Within [1900-01, 1902-01) (months 0..23) the 3-month mean at lead 3 must end by month
    # 23, so inits 1..19; without it (no running mean) inits would run to 20.
    in_range = sources.WindowSource(store, task, sources.DateRange("1900-01", "1902-01"))
    assert in_range.inits[[0, -1], 1].tolist() == [1, 19]
    plain = dataclasses.replace(
        task.derived_targets[0], running_mean=1, name="nino34", base_period=None
    )
    no_mean = sources.WindowSource(
        store, _nino_task(derived_targets=(plain,)), sources.DateRange("1900-01", "1902-01")
    )
    assert no_mean.inits[-1, 1] == 20


def test_nan_in_the_box_refuses_the_derived_target(tmp_path):
    ds = _climate(n_segments=None)
    ds[SSTA][20, 2, 2] = np.nan  # The equator at 200E: inside Nino3.4.
    with pytest.raises(ValueError, match="NaN at a lead"):
        sources.WindowSource(_write(ds, tmp_path / "c.zarr", 12), _nino_task())
