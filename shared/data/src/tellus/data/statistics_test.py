"""Normalization statistics against hand-computed values, gaps, reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import mock, statistics
from tellus.data.errors import SchemaError


def _ramp(times: pd.DatetimeIndex) -> xr.Dataset:
    """temperature = 250 + hours since start + 10*level_index; 2m_temperature constant 280."""
    hours = np.asarray((times - times[0]) / pd.Timedelta("1h"))
    t = 250.0 + hours[:, None, None, None] + 10.0 * np.arange(2)[None, :, None, None]
    t = np.broadcast_to(t, (len(times), 2, 3, 4)).astype(np.float32)
    return xr.Dataset(
        {
            "temperature": (("time", "level", "latitude", "longitude"), t, {"units": "K"}),
            "2m_temperature": (
                ("time", "latitude", "longitude"),
                np.full((len(times), 3, 4), 280.0, np.float32),
                {"units": "K"},
            ),
        },
        coords={
            "time": times,
            "level": [500, 850],
            "latitude": [-45.0, 0.0, 45.0],
            "longitude": [0.0, 90.0, 180.0, 270.0],
        },
    ).chunk({"time": 3})


def test_ramp_statistics_by_hand():
    times = pd.date_range("2020-01-01", periods=5, freq="6h")  # hours 0, 6, ..., 24
    stats = statistics.compute_statistics(_ramp(times), step="6h")
    mean = stats["mean"]["temperature"].values
    np.testing.assert_allclose(mean, [262.0, 272.0])  # 250 + mean(0..24) (+10)
    # std of {0, 6, 12, 18, 24} (population) = 6 * sqrt(2).
    np.testing.assert_allclose(stats["std"]["temperature"].values, [6 * np.sqrt(2)] * 2)
    np.testing.assert_allclose(stats["diff_std"]["temperature"].values, [0.0, 0.0], atol=1e-12)
    assert float(stats["std"]["2m_temperature"]) == 0.0
    assert stats["mean"]["temperature"].dims == ("level",)


def test_differences_never_cross_a_gap():
    times = pd.date_range("2020-01-01", periods=8, freq="6h").delete([3, 4])
    ds = _ramp(times)
    stats = statistics.compute_statistics(ds, step="6h")
    # Every 6-hour difference of the ramp is exactly 6; a 12 h or 18 h jump would add spread.
    np.testing.assert_allclose(stats["diff_std"]["temperature"].values, 0.0, atol=1e-12)
    i, j = statistics.step_pairs(ds.time.values, pd.Timedelta("6h"))
    assert list(zip(i, j, strict=True)) == [(0, 1), (1, 2), (3, 4), (4, 5)]
    # Differences at a 12 h step: 0->2, 3->5 and 2->3 (12h apart across the gap? no: 18h).
    i12, j12 = statistics.step_pairs(ds.time.values, pd.Timedelta("12h"))
    assert list(zip(i12, j12, strict=True)) == [(0, 2), (3, 5)]


def test_diff_std_matches_numpy_on_noise():
    ds = mock.mock_era5(n_lat=4, n_lon=6, noise=0.05, seed=2).chunk({"time": 5})
    stats = statistics.compute_statistics(ds, step="12h")
    x = ds["geopotential"].values.astype(np.float64)
    d = x[2:] - x[:-2]
    np.testing.assert_allclose(
        stats["diff_std"]["geopotential"].values, d.std(axis=(0, 2, 3)), rtol=1e-10
    )
    np.testing.assert_allclose(
        stats["mean"]["geopotential"].values, x.mean(axis=(0, 2, 3)), rtol=1e-12
    )


def test_time_range_selects_training_years():
    times = pd.date_range("2020-01-01", periods=8, freq="6h")
    stats = statistics.compute_statistics(
        _ramp(times), step="6h", time_range=("2020-01-01T00", "2020-01-01T12")
    )
    np.testing.assert_allclose(stats["mean"]["temperature"].values, [256.0, 266.0])
    with pytest.raises(SchemaError, match=r"selects 0 time step\(s\)"):
        statistics.compute_statistics(_ramp(times), step="6h", time_range=("2030", "2031"))
    with pytest.raises(SchemaError, match="no pairs of times 0 days 05:00:00 apart"):
        statistics.compute_statistics(_ramp(times), step="5h")


def test_ocean_statistics_skip_land():
    ocean = mock.mock_ocean()
    stats = statistics.compute_statistics(ocean, step="31D")
    assert np.isfinite(stats["mean"]["sea_water_salinity"].values).all()
    np.testing.assert_allclose(stats["mean"]["sea_water_salinity"].values, 35.0, atol=0.05)


def test_climatology_recovers_a_seasonal_cycle():
    times = pd.date_range("2019-01-01", "2020-12-31T18", freq="6h")
    doy, hour = times.day_of_year.values, times.hour.values
    signal = 280.0 + 10 * np.cos(2 * np.pi * doy / 366) + 0.5 * hour
    data = np.broadcast_to(signal[:, None, None], (len(times), 2, 3)).astype(np.float32)
    ds = xr.Dataset(
        {"2m_temperature": (("time", "latitude", "longitude"), data)},
        coords={"time": times, "latitude": [0.0, 10.0], "longitude": [0, 1, 2.0]},
    )
    raw = statistics.compute_climatology(ds, smooth_days=1)
    assert raw["2m_temperature"].dims == ("dayofyear", "hour", "latitude", "longitude")
    expect = 280 + 10 * np.cos(2 * np.pi * 45 / 366) + 0.5 * 18
    np.testing.assert_allclose(
        raw["2m_temperature"].sel(dayofyear=45, hour=18).values, expect, rtol=1e-6
    )
    # Day 366 exists only in 2020; smoothing fills nothing missing here but averages neighbours:
    smooth = statistics.compute_climatology(ds, smooth_days=31)
    window = 280 + 10 * np.cos(2 * np.pi * np.arange(30, 61) / 366) + 0.5 * 18
    np.testing.assert_allclose(
        smooth["2m_temperature"].sel(dayofyear=45, hour=18).values, window.mean(), rtol=1e-6
    )


def test_written_statistics_are_reproducible(tmp_path):
    ds = mock.mock_era5(n_lat=4, n_lon=6, seed=1)
    store = tmp_path / "era5.zarr"
    ds.to_zarr(store)
    opened = xr.open_zarr(store)
    a = statistics.write_statistics(opened, store, step="6h", path=tmp_path / "a.stats.zarr")
    b = statistics.write_statistics(opened, store, step="6h")
    assert b == str(tmp_path / "era5.stats.zarr")
    sa, sb = statistics.read_statistics(a), statistics.read_statistics(b)
    for group in statistics.GROUPS:
        for name in sa[group].data_vars:
            assert sa[group][name].values.tobytes() == sb[group][name].values.tobytes()
    from tellus.data.normalization import NormalizationStats

    loaded = NormalizationStats.from_store(b)
    np.testing.assert_array_equal(loaded.std["temperature"].values, sb["std"]["temperature"].values)
    clim = statistics.read_climatology(b)
    assert clim.sizes["dayofyear"] == 366 and set(clim["hour"].values) == {0, 6, 12, 18}
    with pytest.raises(FileNotFoundError, match="run `tellus data stats STORE` first"):
        statistics.read_statistics(tmp_path / "none.stats.zarr")


def test_monthly_statistics_by_hand():
    # Two years of months t = 0..23; two ocean cells hold t - 1 and t + 1 (times 1 + k at
    # depth k), the third cell is land (NaN). Month m holds t = m - 1 and m + 11, so its
    # values are {m - 2, m, m + 10, m + 12}: mean m + 5, population std sqrt(37).
    times = pd.date_range("2000-01-01", periods=24, freq="MS")
    t = np.arange(24.0)[:, None, None, None]
    cells = np.array([-1.0, 1.0, np.nan])[None, None, None, :]
    depth = np.array([5.0, 50.0])
    theta = (t + cells) * (1.0 + np.arange(2))[None, :, None, None]
    ds = xr.Dataset(
        {
            "sea_water_potential_temperature": (("time", "depth", "latitude", "longitude"), theta),
            "sea_surface_height": (("time", "latitude", "longitude"), theta[:, 0]),
            "ocean_mask": (("latitude", "longitude"), np.array([[1.0, 1.0, 0.0]])),
        },
        coords={"time": times, "depth": depth, "latitude": [0.0], "longitude": [0.0, 4.0, 8.0]},
    )
    stats = statistics.compute_monthly_statistics(ds)
    assert set(stats["mean"].data_vars) == {"sea_water_potential_temperature", "sea_surface_height"}
    mean = stats["mean"]["sea_water_potential_temperature"]
    assert mean.dims == ("month", "depth") and list(mean.month.values) == list(range(1, 13))
    m = np.arange(1, 13.0)[:, None]
    np.testing.assert_allclose(mean.values, (m + 5) * [1.0, 2.0])
    np.testing.assert_allclose(
        stats["std"]["sea_water_potential_temperature"].values,
        np.sqrt(37.0) * np.array([[1.0, 2.0]] * 12),
    )
    np.testing.assert_allclose(stats["mean"]["sea_surface_height"].values, m[:, 0] + 5)
    with pytest.raises(SchemaError, match=r"months \[12\]"):
        statistics.compute_monthly_statistics(ds, time_range=("2000-01", "2000-11"))
