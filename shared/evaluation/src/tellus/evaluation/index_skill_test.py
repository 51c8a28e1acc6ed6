"""Index skill and baselines against hand-computed values."""

import numpy as np
import pytest
import xarray as xr

from tellus.evaluation import index_skill


def _da(a):
    a = np.asarray(a, float)
    return xr.DataArray(a, dims=("init", "lead")[: a.ndim])


def test_correlation_and_rmse_by_hand():
    f = _da([1.0, 2.0, 3.0, 4.0])
    t = _da([2.0, 1.0, 4.0, 3.0])
    # deviations f: -1.5 -.5 .5 1.5 and t: -.5 -1.5 1.5 .5, so
    # sum f t = .75 + .75 + .75 + .75 = 3 and sum f^2 = sum t^2 = 5.
    assert float(index_skill.correlation(f, t)) == pytest.approx(3.0 / 5.0)
    assert float(index_skill.rmse(f, t)) == pytest.approx(1.0)


def test_scores_by_lead_keep_the_other_dims():
    # Lead 1: the forecast above; lead 2: truth + 2 everywhere (correlation 1, RMSE 2).
    t = _da([[2.0, 2.0], [1.0, 1.0], [4.0, 4.0], [3.0, 3.0]])
    f = _da([[1.0, 4.0], [2.0, 3.0], [3.0, 6.0], [4.0, 5.0]])
    f = xr.concat([f, -f], dim="system")  # a second system, anti-correlated at every lead
    corr, err = index_skill.correlation(f, t), index_skill.rmse(f, t)
    assert corr.dims == err.dims == ("system", "lead")
    np.testing.assert_allclose(corr.values, [[0.6, 1.0], [-0.6, -1.0]])
    # -f against t: lead 1 errors 3 3 7 7 -> sqrt(29); lead 2 errors 6 4 10 8 -> sqrt(54).
    np.testing.assert_allclose(err.values, [[1.0, 2.0], [np.sqrt(29), np.sqrt(54)]])


def test_persistence_holds_the_current_index():
    np.testing.assert_array_equal(
        index_skill.persistence(np.array([0.5, -1.0]), 3), [[0.5] * 3, [-1.0] * 3]
    )


def test_damped_persistence_by_hand():
    x = np.array([1.0, 2.0, 1.0, -1.0])
    y = np.array([[2.0, 1.0], [4.0, 3.0], [3.0, 0.0], [-3.0, 1.0]])
    months = np.array([1, 1, 2, 2])
    dp = index_skill.DampedPersistence.fit(x, y, months)
    # January: (1*2 + 2*4, 1*1 + 2*3) / (1 + 4) = (2, 1.4);
    # February: (1*3 - 1*-3, 1*0 - 1*1) / (1 + 1) = (3, -0.5); no starts elsewhere: 0.
    expected = np.zeros((12, 2))
    expected[0], expected[1] = [2.0, 1.4], [3.0, -0.5]
    np.testing.assert_allclose(dp.coef, expected)
    np.testing.assert_allclose(
        dp.predict(np.array([2.0, 1.0, 7.0]), np.array([1, 2, 5])),
        [[4.0, 2.8], [3.0, -0.5], [0.0, 0.0]],
    )


def test_damped_persistence_recovers_ar1():
    rng = np.random.default_rng(1)
    n, phi = 24_000, 0.8
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.standard_normal()
    x0, y = x[1:-2], np.stack([x[2:-1], x[3:]], axis=1)  # leads 1 and 2
    months = (np.arange(len(x0)) % 12) + 1
    dp = index_skill.DampedPersistence.fit(x0, y, months)
    assert np.allclose(dp.coef[:, 0], phi, atol=0.05)
    assert np.allclose(dp.coef[:, 1], phi**2, atol=0.05)
    assert np.allclose(dp.predict(np.array([1.0]), np.array([5])), dp.coef[4])


def test_damped_persistence_of_a_field_point_by_point():
    # Two points, one start month (1) and one lead: y = 0.5 x at the first point, y = -2 x at
    # the second (exact), a NaN point stays NaN.
    x = np.array([[1.0, 1.0, np.nan], [2.0, -1.0, np.nan], [-3.0, 2.0, np.nan]])
    y = np.stack([0.5 * x[:, 0], -2.0 * x[:, 1], x[:, 2]], axis=1)[:, None]
    dp = index_skill.DampedPersistence.fit(x, y, np.ones(3, int))
    assert dp.coef.shape == (12, 1, 3)
    np.testing.assert_allclose(dp.coef[0, 0, :2], [0.5, -2.0])
    assert np.isnan(dp.coef[0, 0, 2])
    np.testing.assert_allclose(
        dp.predict(np.array([[4.0, 1.0, 0.0]]), np.array([1]))[0, 0, :2], [2.0, -2.0]
    )
