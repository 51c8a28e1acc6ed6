"""Persistence and climatology baselines, in the forecast layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import mock
from tellus.evaluation import baselines, metrics

LEADS = pd.to_timedelta(["0h", "6h", "24h"])


def _truth():
    return mock.mock_era5(
        times=pd.date_range("2020-01-01", periods=12, freq="6h"), n_lat=5, n_lon=8
    )


def test_persistence_layout_and_values():
    truth = _truth()
    inits = truth.time.values[:4]
    fc = baselines.persistence(truth, inits, LEADS)
    assert fc["temperature"].dims == (
        "time",
        "prediction_timedelta",
        "level",
        "latitude",
        "longitude",
    )
    assert "land_sea_mask" not in fc
    # Lead 0 equals the truth; later leads repeat the init state.
    xr.testing.assert_equal(
        fc.sel(prediction_timedelta=pd.Timedelta(0)).drop_vars("prediction_timedelta"),
        truth[list(fc.data_vars)].sel(time=inits),
    )
    xr.testing.assert_equal(
        fc.isel(prediction_timedelta=2).drop_vars("prediction_timedelta"),
        fc.isel(prediction_timedelta=0).drop_vars("prediction_timedelta"),
    )
    rmse = metrics.rmse(fc, truth)
    assert float(rmse["2m_temperature"].sel(prediction_timedelta=pd.Timedelta(0))) == 0.0
    assert float(rmse["2m_temperature"].sel(prediction_timedelta=pd.Timedelta("24h"))) > 0.0


def _climatology(truth):
    rng = np.random.default_rng(0)
    doy, hours = np.arange(1, 367), np.array([0, 6, 12, 18])
    out = {}
    for name in ("temperature", "2m_temperature"):
        base = truth[name].mean("time")
        noise = rng.standard_normal((366, 4, *base.shape))
        out[name] = (("dayofyear", "hour", *base.dims), base.values[None, None] + noise)
    coords = {
        "dayofyear": doy,
        "hour": hours,
        "level": [200, 500, 850],
        "latitude": truth.latitude,
        "longitude": truth.longitude,
    }
    return xr.Dataset(out, coords=coords).sel(level=[200, 500, 850])


def test_climatology_forecast_is_climatology_at_valid_time():
    truth = _truth()
    clim = _climatology(truth.sel(level=[500, 850]).reindex(level=[200, 500, 850]))
    inits = truth.time.values[:4]
    fc = baselines.climatology_forecast(clim, inits, LEADS, template=truth)
    assert set(fc.data_vars) == {"temperature", "2m_temperature"}
    np.testing.assert_array_equal(fc.level, truth.level)
    assert fc["temperature"].dtype == truth["temperature"].dtype
    assert fc["temperature"].attrs["units"] == "K"
    for i, init in enumerate(pd.DatetimeIndex(inits)):
        for j, lead in enumerate(LEADS):
            valid = init + lead
            expected = clim["temperature"].sel(
                dayofyear=valid.day_of_year, hour=valid.hour, level=[500, 850]
            )
            np.testing.assert_allclose(
                fc["temperature"].values[i, j], expected.values.astype(np.float32)
            )
    raw = baselines.climatology_forecast(clim, inits, LEADS)
    assert raw["temperature"].sizes["level"] == 3


def test_monthly_persistence_and_calendar_month_climatology_by_hand():
    times = pd.date_range("2001-01-01", periods=14, freq="MS")
    truth = xr.Dataset(
        {"x": (("time", "latitude"), np.arange(14.0)[:, None] * np.ones((1, 2)))},
        coords={"time": times, "latitude": [-10.0, 10.0]},
    )
    fc = baselines.persistence(truth, times[[0, 11]], np.array([1, 2]))
    np.testing.assert_array_equal(fc["x"].values[:, :, 0], [[0, 0], [11, 11]])
    clim = xr.Dataset(
        {"x": (("month", "latitude"), np.arange(1.0, 13.0)[:, None] * np.ones((1, 2)))},
        coords={"month": np.arange(1, 13), "latitude": [-10.0, 10.0]},
    )
    cf = baselines.climatology_forecast(clim, times[[0, 11]], np.array([1, 2]), template=truth)
    # From January: February (2), March (3); from December: January (1), February (2).
    np.testing.assert_array_equal(cf["x"].values[:, :, 0], [[2, 3], [1, 2]])
    assert cf["x"].dims == ("time", "prediction_timedelta", "latitude")
