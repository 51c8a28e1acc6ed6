"""Metrics against hand-computed values on tiny arrays."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.evaluation import metrics

LAT = np.array([-30.0, 60.0])  # Cell bounds -90, 15, 90.
LON = np.array([0.0, 120.0, 240.0])
# Cell areas sin(15) + 1 and 1 - sin(15), normalized to mean 1.
W = np.array([1 + np.sin(np.deg2rad(15)), 1 - np.sin(np.deg2rad(15))])
INITS = pd.date_range("2020-01-01", periods=2, freq="12h")
LEADS = pd.to_timedelta(["0h", "6h", "12h"])


def _truth(values=None, n_times=6) -> xr.Dataset:
    times = pd.date_range("2020-01-01", periods=n_times, freq="6h")
    if values is None:
        rng = np.random.default_rng(0)
        values = rng.standard_normal((n_times, len(LAT), len(LON)))
    return xr.Dataset(
        {"t": (("time", "latitude", "longitude"), values)},
        coords={"time": times, "latitude": LAT, "longitude": LON},
    )


def _forecast_from(truth: xr.Dataset, offset) -> xr.Dataset:
    """Forecast = aligned truth + offset (offset broadcast against (time, lead, lat, lon))."""
    aligned = metrics.align(_empty_forecast(), truth)
    return (aligned + offset).drop_vars("valid_time")


def _empty_forecast() -> xr.Dataset:
    return xr.Dataset(
        coords={"time": INITS, "prediction_timedelta": LEADS, "latitude": LAT, "longitude": LON}
    ).assign(
        t=(
            ("time", "prediction_timedelta", "latitude", "longitude"),
            np.zeros((len(INITS), len(LEADS), len(LAT), len(LON))),
        )
    )


def test_align_selects_valid_time():
    truth = _truth(np.arange(6.0)[:, None, None] * np.ones((1, 2, 3)))
    aligned = metrics.align(_empty_forecast(), truth)
    assert aligned["t"].dims == ("time", "prediction_timedelta", "latitude", "longitude")
    # Truth value = index of the 6-hourly valid time; init i is 12 h * i.
    expected = np.array([[0, 1, 2], [2, 3, 4]], float)
    np.testing.assert_array_equal(aligned["t"].values[:, :, 0, 0], expected)
    np.testing.assert_array_equal(
        aligned["valid_time"].values[1, 2], np.datetime64("2020-01-02T00:00")
    )


def test_align_missing_valid_time_raises():
    with pytest.raises(KeyError, match="missing"):
        metrics.align(_empty_forecast(), _truth(n_times=4))


def test_complete_init_times():
    times = pd.date_range("2020-01-01", periods=6, freq="6h")
    ok = metrics.complete_init_times(times, LEADS)
    np.testing.assert_array_equal(ok, times[:4].values)


def test_constant_error():
    truth = _truth()
    fc = _forecast_from(truth, 2.0)
    assert metrics.rmse(fc, truth)["t"].values == pytest.approx([2.0] * 3)
    assert metrics.mse(fc, truth)["t"].values == pytest.approx([4.0] * 3)
    assert metrics.mae(fc, truth)["t"].values == pytest.approx([2.0] * 3)
    assert metrics.bias(fc, truth)["t"].values == pytest.approx([2.0] * 3)
    low = _forecast_from(truth, -3.0)
    assert metrics.bias(low, truth)["t"].values == pytest.approx([-3.0] * 3)
    assert metrics.rmse(low, truth)["t"].dims == ("prediction_timedelta",)


def test_mse_weighted_by_hand():
    truth = _truth()
    err = xr.DataArray([0.0, 1.0], dims=["latitude"], coords={"latitude": LAT})
    fc = _forecast_from(truth, err)  # Error 1 only on the northern row.
    # sum(w e^2) / sum(w) = 3 * W[1] / (3 * (W[0] + W[1])).
    assert metrics.mse(fc, truth)["t"].values == pytest.approx([W[1] / 2] * 3)


def test_rmse_sqrt_after_time_mean():
    truth = _truth()
    err = xr.DataArray([1.0, 3.0], dims=["time"], coords={"time": INITS})
    fc = _forecast_from(truth, err)
    assert metrics.rmse(fc, truth)["t"].values == pytest.approx([np.sqrt(5.0)] * 3)
    old = metrics.rmse(fc, truth, sqrt_before_time_mean=True)
    assert old["t"].values == pytest.approx([2.0] * 3)


def test_region_restricts():
    truth = _truth()
    err = xr.DataArray([0.0, 1.0], dims=["latitude"], coords={"latitude": LAT})
    fc = _forecast_from(truth, err)
    assert metrics.mse(fc, truth, region="southern_extratropics")["t"].values == pytest.approx(
        [0.0] * 3
    )
    assert metrics.mse(fc, truth, region="northern_extratropics")["t"].values == pytest.approx(
        [1.0] * 3
    )


def _climatology(seed=1) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((366, 4, len(LAT), len(LON)))
    return xr.Dataset(
        {"t": (("dayofyear", "hour", "latitude", "longitude"), values)},
        coords={
            "dayofyear": np.arange(1, 367),
            "hour": [0, 6, 12, 18],
            "latitude": LAT,
            "longitude": LON,
        },
    )


def test_climatology_at_selects_doy_and_hour():
    clim = _climatology()
    valid = metrics.valid_times(pd.to_datetime(["2020-12-31T18:00", "2021-02-01T00:00"]), LEADS)
    out = metrics.climatology_at(clim, valid)
    assert out["t"].dims == ("time", "prediction_timedelta", "latitude", "longitude")
    # 2020-12-31 is day 366 of the leap year; +6 h is 2021-01-01 00 UTC, day 1.
    np.testing.assert_array_equal(out["t"].values[0, 0], clim["t"].values[365, 3])
    np.testing.assert_array_equal(out["t"].values[0, 1], clim["t"].values[0, 0])
    np.testing.assert_array_equal(out["t"].values[1, 2], clim["t"].values[31, 2])


def test_acc_plus_and_minus_one():
    truth, clim = _truth(), _climatology()
    aligned = metrics.align(_empty_forecast(), truth).drop_vars("valid_time")
    c = metrics.climatology_at(clim, metrics.valid_times(INITS, LEADS))
    anomaly = aligned - c
    assert metrics.acc(c + 2.5 * anomaly, truth, clim)["t"].values == pytest.approx([1.0] * 3)
    assert metrics.acc(c - anomaly, truth, clim)["t"].values == pytest.approx([-1.0] * 3)
    # The climatology itself has no anomaly: NaN, without a warning.
    assert np.isnan(metrics.acc(c, truth, clim)["t"].values).all()


def _ensemble(members: np.ndarray) -> xr.Dataset:
    """members: (realization, time, lead, lat, lon)."""
    return xr.Dataset(
        {"t": (("realization", "time", "prediction_timedelta", "latitude", "longitude"), members)},
        coords={"time": INITS, "prediction_timedelta": LEADS, "latitude": LAT, "longitude": LON},
    )


def test_crps_two_members_by_hand():
    truth = _truth(np.zeros((6, 2, 3)))
    members = np.zeros((2, 2, 3, 2, 3))
    members[0], members[1] = 1.0, 3.0
    # E|X - 0| = 2; pairwise term 1/(2*2*1) * (2 + 2) = 1; CRPS = 1.
    assert metrics.crps(_ensemble(members), truth)["t"].values == pytest.approx([1.0] * 3)
    truth2 = _truth(np.full((6, 2, 3), 2.0))
    # E|X - 2| = 1, minus 1 = 0.
    assert metrics.crps(_ensemble(members), truth2)["t"].values == pytest.approx([0.0] * 3)


def test_crps_matches_brute_force():
    rng = np.random.default_rng(3)
    members = rng.standard_normal((5, 2, 3, 2, 3))
    truth = _truth()
    y = metrics.align(_empty_forecast(), truth)["t"].values
    m = members.shape[0]
    skill = np.abs(members - y).mean(0)
    pair = sum(np.abs(members[i] - members[j]) for i, j in itertools.product(range(m), range(m)))
    pointwise = skill - pair / (2 * m * (m - 1))
    expected = (pointwise * W[:, None]).sum((-1, -2)) / (W.sum() * 3)
    np.testing.assert_allclose(
        metrics.crps(_ensemble(members), truth)["t"].values, expected.mean(0)
    )


def test_crps_of_deterministic_is_mae():
    truth = _truth()
    rng = np.random.default_rng(4)
    fc = _forecast_from(truth, rng.standard_normal((2, 3, 2, 3)))
    mae = metrics.mae(fc, truth)["t"].values
    np.testing.assert_allclose(metrics.crps(fc, truth)["t"].values, mae)
    one = fc.expand_dims(realization=1)
    np.testing.assert_allclose(metrics.crps(one, truth)["t"].values, mae)


def test_spread_by_hand_and_ensemble_mean():
    truth = _truth(np.zeros((6, 2, 3)))
    members = np.zeros((2, 2, 3, 2, 3))
    members[0], members[1] = 1.0, 3.0
    ens = _ensemble(members)
    assert metrics.spread(ens)["t"].values == pytest.approx([np.sqrt(2.0)] * 3)
    assert metrics.ensemble_mean_rmse(ens, truth)["t"].values == pytest.approx([2.0] * 3)
    # Deterministic metrics score the ensemble mean.
    assert metrics.rmse(ens, truth)["t"].values == pytest.approx([2.0] * 3)
    expected = np.sqrt(3 / 2) * np.sqrt(2.0) / 2.0
    assert metrics.spread_skill(ens, truth)["t"].values == pytest.approx([expected] * 3)


def _synthetic_ensemble(m, member_std, seed=0, n=40):
    """Truth and members drawn around a common mean; returns (forecast, aligned truth)."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(-80, 80, n)
    lon = np.arange(2 * n) * (360.0 / (2 * n))
    shape = (8, 2, n, 2 * n)
    mu = rng.standard_normal(shape) * 5
    truth = mu + rng.standard_normal(shape)
    members = mu + member_std * rng.standard_normal((m, *shape))
    coords = {
        "time": pd.date_range("2020-01-01", periods=8, freq="D"),
        "prediction_timedelta": pd.to_timedelta([6, 12], unit="h"),
        "latitude": lat,
        "longitude": lon,
    }
    dims = ("time", "prediction_timedelta", "latitude", "longitude")
    fc = xr.Dataset({"t": (("realization", *dims), members)}, coords=coords)
    return fc, xr.Dataset({"t": (dims, truth)}, coords=coords)


def test_spread_skill_calibrated_is_one():
    fc, truth = _synthetic_ensemble(m=4, member_std=1.0)
    ratio = metrics.spread_skill(fc, truth)["t"].values
    np.testing.assert_allclose(ratio, 1.0, atol=0.03)
    under, truth = _synthetic_ensemble(m=4, member_std=0.5)
    assert (metrics.spread_skill(under, truth)["t"].values < 0.8).all()


def test_ensemble_metric_needs_realization():
    truth = _truth()
    fc = _forecast_from(truth, 1.0)
    with pytest.raises(ValueError, match="realization"):
        metrics.spread(fc)


def test_compute_dispatch():
    truth = _truth()
    fc = _forecast_from(truth, 2.0)
    xr.testing.assert_allclose(metrics.compute("rmse", fc, truth), metrics.rmse(fc, truth))
    with pytest.raises(KeyError):
        metrics.compute("nope", fc, truth)
    with pytest.raises(ValueError, match="climatology"):
        metrics.compute("acc", fc, truth)


def test_monthly_leads_count_calendar_months():
    inits = pd.DatetimeIndex(["2001-01-01", "2001-12-01"])
    valid = metrics.valid_times(inits, np.array([1, 2]))
    expected = pd.DatetimeIndex(["2001-02-01", "2001-03-01", "2002-01-01", "2002-02-01"])
    np.testing.assert_array_equal(valid.values.ravel(), expected.values)
    times = pd.date_range("2001-01-01", periods=4, freq="MS")
    # Leads 1 and 2 from Jan and Feb lie in Jan..Apr; from Mar and Apr they do not.
    np.testing.assert_array_equal(
        metrics.complete_init_times(times, np.array([1, 2])), times[:2].values
    )


def test_a_calendar_month_climatology_at_valid_times():
    clim = xr.DataArray(np.arange(1.0, 13.0) * 10, dims=["month"], coords={"month": range(1, 13)})
    valid = metrics.valid_times(pd.DatetimeIndex(["2001-11-01"]), np.array([1, 2, 3]))
    at = metrics.climatology_at(clim, valid)
    np.testing.assert_array_equal(at.values, [[120.0, 10.0, 20.0]])  # Dec, Jan, Feb
    assert at.dims == ("time", "prediction_timedelta")


def test_thickness_mean_by_hand():
    # Layers 10, 20, 40 m: faces 0, 10, 30, 70. Inside 0-50 m: 10, 20 and 20 m.
    np.testing.assert_array_equal(metrics.layer_weights([10.0, 20.0, 40.0], 0, 50), [10, 20, 20])
    np.testing.assert_array_equal(metrics.layer_weights([10.0, 20.0, 40.0], 15, 20), [0, 5, 0])
    x = xr.DataArray([[1.0, 2.0, 4.0], [1.0, np.nan, 4.0]], dims=["x", "depth"])
    out = metrics.thickness_mean(x, [10.0, 20.0, 40.0], bottom=50.0)
    # (10 + 40 + 80) / 50, and with the NaN left out (10 + 80) / 30.
    np.testing.assert_allclose(out.values, [130 / 50, 90 / 30])
    whole = metrics.thickness_mean(x.isel(x=[0]), [10.0, 20.0, 40.0])
    np.testing.assert_allclose(whole.values, [(10 + 40 + 160) / 70])
    with pytest.raises(ValueError, match="empty"):
        metrics.layer_weights([10.0], 5.0, 5.0)
