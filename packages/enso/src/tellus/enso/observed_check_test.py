"""Tests of the real-data check's statistics on synthetic series with known answers."""

import numpy as np
import pandas as pd

from tellus.enso import observed_check as oc


def test_peak_period_of_a_noisy_oscillation():
    rng = np.random.default_rng(0)
    t = np.arange(720)
    x = np.sin(2 * np.pi * t / 48.0) + 0.5 * rng.standard_normal(t.size)
    np.testing.assert_allclose(oc.peak_period_years(x), 4.0, atol=0.2)
    y = np.sin(2 * np.pi * t / 30.0) + 0.5 * rng.standard_normal(t.size)
    np.testing.assert_allclose(oc.peak_period_years(y), 2.5, atol=0.2)


def test_std_by_month_recovers_a_seasonal_variance_pattern():
    rng = np.random.default_rng(1)
    months = np.tile(np.arange(1, 13), 2000)
    scale = 1.0 + 0.5 * np.cos(2 * np.pi * (months - 12) / 12)  # max Dec, min Jun
    x = scale * rng.standard_normal(months.size)
    std = oc.std_by_month(x, months)
    np.testing.assert_allclose(std, scale[:12], rtol=0.06)
    stats = oc.index_statistics(x, months, name="synthetic")
    assert stats["max_std_month"] == "Dec" and stats["min_std_month"] == "Jun"


def test_damped_persistence_on_ar1():
    rng = np.random.default_rng(2)
    phi, n = 0.8, 12 * 400
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.standard_normal()
    series = pd.Series(x, index=pd.date_range("1600-01-01", periods=n, freq="MS"))
    skill = oc.damped_persistence_skill(
        series, train=("1600", "1899"), test=("1900", "1999"), max_lead=6
    )
    np.testing.assert_allclose(skill["correlation"], phi**skill.index.values, atol=0.05)


def test_observed_series_and_anomalies():
    s = oc.load_nino12()
    assert len(s) == 61 * 12 and s.index[0] == pd.Timestamp("1950-01-01")
    assert 18.0 < s.mean() < 26.0
    anom = oc.monthly_anomalies(s, ("1950", "1990"))
    base = anom["1950":"1990"]
    np.testing.assert_allclose(base.groupby(base.index.month).mean(), 0.0, atol=1e-10)


def test_compare_statistics_table():
    table = oc.compare_statistics(n_years=150)
    assert len(table) == 3
    assert {"peak_period_years", "max_std_month", "acf_12"} <= set(table.columns)
    assert 1.5 <= table["peak_period_years"].min() and table["peak_period_years"].max() <= 10
