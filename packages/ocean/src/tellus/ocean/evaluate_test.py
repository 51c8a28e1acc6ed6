"""The ocean evaluation's pieces against hand-computed values on small arrays: the
calendar-month climatology of the fitting months, damped persistence point by point,
persistence, the 0-300 m thickness weighting and the scorecard's verdicts. (The evaluation
run on a trained tiny forecaster is in train_test, which trains it once.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.evaluation import baselines
from tellus.ocean import evaluate

TIMES = pd.date_range("2001-01-01", periods=36, freq="MS")


def _truth(values: np.ndarray) -> xr.Dataset:
    """[time, point] values of one variable on a 1 x 2 grid."""
    return xr.Dataset(
        {"x": (("time", "latitude", "longitude"), values[:, None, :])},
        coords={"time": TIMES[: len(values)], "latitude": [0.0], "longitude": [0.0, 10.0]},
    )


def test_climatology_of_the_fitting_months_only():
    # Year 1 is 0, year 2 is 10, year 3 (outside the fitting months) 1000.
    values = np.repeat([0.0, 10.0, 1000.0], 12)[:, None] * np.ones((1, 2))
    values[:12, 1] += np.arange(12)  # point 2 of year 1 rises by month
    clim = evaluate.climatology(_truth(values), TIMES[:24])
    assert clim["x"].dims == ("month", "latitude", "longitude")
    np.testing.assert_allclose(clim["x"].values[:, 0, 0], 5.0)
    np.testing.assert_allclose(clim["x"].values[:, 0, 1], 5.0 + np.arange(12) / 2)
    with pytest.raises(ValueError, match="every month"):
        evaluate.climatology(_truth(values), TIMES[:6])


def test_damped_persistence_and_persistence_by_hand():
    # Zero climatology (point 1: +a in even months, -a in odd ones; point 2: constant a):
    # the anomaly one month on is -1 x the anomaly (point 1) and +1 x (point 2).
    a = np.arange(1.0, 37.0)
    sign = np.where(np.arange(36) % 2 == 0, 1.0, -1.0)
    values = np.stack([sign * a, np.full(36, 3.0)], axis=1)
    truth = _truth(values)
    clim = xr.zeros_like(evaluate.climatology(truth, TIMES[:24]))
    clim["x"][:, 0, 1] = 3.0  # point 2's climatology is its constant: anomaly 0
    inits = TIMES[[24, 25]]
    dp = evaluate.damped_persistence(truth, clim, TIMES[:24], inits, leads=[1])
    # Point 1's slope from each start month fitted on year 1 and 2's pairs: y = -(a+1) for
    # x = a, so coef = -sum a (a + 1) / sum a^2 over the two starts of that month.
    for k, t in enumerate((24, 25)):
        m = t % 12
        xs = np.array([m + 1.0, m + 13.0]) * (1 if m % 2 == 0 else -1)
        ys = -np.sign(xs) * (np.abs(xs) + 1.0)
        coef = (xs @ ys) / (xs @ xs)
        expected = coef * values[t, 0]
        assert float(
            dp["x"].isel(time=k, prediction_timedelta=0, latitude=0, longitude=0)
        ) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(dp["x"].values[:, 0, 0, 1], 3.0)  # anomaly 0: the climatology
    pers = baselines.persistence(truth, inits, np.array([1, 2]))
    np.testing.assert_array_equal(pers["x"].values[:, :, 0, 0], [[25.0, 25.0], [-26.0, -26.0]])


def test_upper_ocean_temperature_is_weighted_by_the_metres_above_300_m():
    # Layers 100, 150, 400 m (faces 0, 100, 250, 650): 100, 150 and 50 m of them above 300.
    t = np.array([10.0, 8.0, 4.0]).reshape(1, 3, 1, 1)
    ds = xr.Dataset(
        {evaluate.TEMPERATURE: (("time", "depth", "latitude", "longitude"), t)},
        coords={"time": TIMES[:1], "depth": [50.0, 175.0, 450.0]},
    )
    out = evaluate.upper_ocean(ds, [100.0, 150.0, 400.0])
    expected = (100 * 10 + 150 * 8 + 50 * 4) / 300
    assert float(out[evaluate.UPPER].squeeze()) == pytest.approx(expected)


def test_the_scorecard_needs_both_baselines_beaten_at_every_lead():
    card = evaluate.scorecard(
        {
            "ssh": {
                "forecaster": [1.0, 2.0, 3.0],
                "persistence": [1.5, 2.5, 2.9],  # lost at lead 3
                "climatology": [4.0, 4.0, 4.0],
            },
            "upper": {
                "forecaster": [1.0, 1.0],
                "persistence": [2.0, 2.0],
                "climatology": [0.5, 3.0],  # lost at lead 1
            },
        }
    )
    assert card["ssh"] == {"beats": [True, True, False], "all_leads": False}
    assert card["upper"]["beats"] == [False, True] and card["all"] is False
    assert evaluate.scorecard({"ssh": {"forecaster": [1], "persistence": [2], "climatology": [2]}})[
        "all"
    ]


def test_cycled_repeats_whole_years_for_a_longer_run():
    values = np.arange(26.0)[:, None] * np.ones((1, 2))  # 2 years and 2 months
    ds = _truth(values).assign(mask=(("latitude", "longitude"), np.ones((1, 2))))
    out = evaluate.cycled(ds, 50)
    times = pd.DatetimeIndex(out.time.values)
    assert len(times) == 72  # the 2 whole years, then twice more (48 <= 50 < 72)
    assert (times[1:] > times[:-1]).all() and times[24] == pd.Timestamp("2003-01-01")
    np.testing.assert_array_equal(out.x.values[:, 0, 0], np.tile(np.arange(24.0), 3))
    assert (times.month == np.tile(np.arange(1, 13), 6)).all()
    assert out["mask"].dims == ("latitude", "longitude")  # kept once
    assert evaluate.cycled(ds, 10) is ds  # long enough already
