"""Tests of the extended recharge oscillator against analytic cases."""

import dataclasses

import numpy as np
import pytest
import scipy.linalg

from tellus.enso import optimal_skill
from tellus.enso import recharge_oscillator as ro


def test_discretize_scalar_ou_matches_closed_form():
    a, q_c, dt = -0.1, 2.0, 1.0
    m, q = ro.discretize(np.array([[a]]), np.array([[q_c]]), dt)
    np.testing.assert_allclose(m[0, 0], np.exp(a * dt), rtol=1e-12)
    # Var of int_0^dt e^{a s} dW: q_c (e^{2 a dt} - 1) / (2 a).
    np.testing.assert_allclose(q[0, 0], q_c * (np.exp(2 * a * dt) - 1) / (2 * a), rtol=1e-12)


def test_discretize_matches_fine_quadrature():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 3)) * 0.2 - 0.3 * np.eye(3)
    b = rng.standard_normal((3, 2))
    m, q = ro.discretize(a, b @ b.T)
    np.testing.assert_allclose(m, scipy.linalg.expm(a), rtol=1e-10)
    # Q = int_0^1 e^{As} B B^T e^{A^T s} ds by the midpoint rule on 2000 steps.
    n = 2000
    step, e = scipy.linalg.expm(a / n), scipy.linalg.expm(a / (2 * n))
    quad = np.zeros((3, 3))
    for _ in range(n):
        quad += e @ b @ b.T @ e.T / n
        e = step @ e
    np.testing.assert_allclose(q, quad, rtol=1e-6, atol=1e-9)


def test_growth_rate_seasonal_cycle():
    p = ro.RecParams.observed()
    r = ro.growth_rate(p)
    assert r.shape == (12,)
    np.testing.assert_allclose(r.mean(), p.r0, atol=1e-12)
    assert abs(int(np.argmax(r)) + 1 - p.r_peak_month) <= 0.5
    flat = ro.growth_rate(dataclasses.replace(p, r_amp=0.0))
    np.testing.assert_allclose(flat, p.r0)


def test_constant_coefficients_give_the_matrix_exponential():
    p = dataclasses.replace(ro.RecParams.observed(), r_amp=0.0, iod_damping_amp=0.0)
    m, _ = ro.monthly_operators(p)
    a, _ = ro.drift_matrices(p)
    for k in range(12):
        np.testing.assert_allclose(m[k], scipy.linalg.expm(a[0]), rtol=1e-10)
    # The Floquet period of a constant 2x2 RO: 2 pi / sqrt(F1 F2 - ((R + eps) / 2)^2) months,
    # when the IOD is decoupled.
    p2 = dataclasses.replace(p, iod_from_t=0.0, h_from_iod=0.0)
    omega = np.sqrt(p2.f1 * p2.f2 - ((p2.r0 + p2.eps) / 2) ** 2)
    period, decay = ro.floquet_period_and_decay(p2)
    np.testing.assert_allclose(period, 2 * np.pi / omega / 12, rtol=1e-8)
    np.testing.assert_allclose(decay, -1 / ((p2.r0 - p2.eps) / 2 * 12), rtol=1e-8)


@pytest.mark.parametrize("kind", ["observed", "model"])
def test_calibrated_oscillation_and_phase_locking(kind):
    p = getattr(ro.RecParams, kind)()
    period, decay = ro.floquet_period_and_decay(p)
    assert 3.0 < period < 5.0
    assert 1.0 < decay < 3.0
    std = optimal_skill.mode_std_by_month(p)[:, 0]
    # Variance of T at the start of each month: peak in boreal autumn-winter, low in spring.
    assert int(np.argmax(std)) + 1 in (10, 11, 12, 1)
    assert int(np.argmin(std)) + 1 in (3, 4, 5, 6)
    assert 0.5 < std.mean() < 1.2


def test_model_differs_from_observed():
    assert ro.RecParams.model() != ro.RecParams.observed()
    assert ro.RecParams.model().n_state == 6 and ro.RecParams.observed().n_state == 3


def test_simulate_is_seeded_and_shaped():
    p = ro.RecParams.observed()
    a = ro.simulate(p, 3, seed=5, burn_in_years=2)
    b = ro.simulate(p, 3, seed=5, burn_in_years=2)
    c = ro.simulate(p, 3, seed=6, burn_in_years=2)
    assert a.shape == (36, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert ro.simulate(ro.RecParams.model(), 2, 0, full_state=True).shape == (24, 6)
    np.testing.assert_array_equal(ro.calendar_months(14, start_month=11)[:4], [11, 12, 1, 2])


def test_short_memory_red_noise_tends_to_white():
    white = ro.RecParams.observed()
    red = dataclasses.replace(white, noise_memory=0.02)
    s_white = optimal_skill.mode_std_by_month(white)
    s_red = optimal_skill.mode_std_by_month(red)
    np.testing.assert_allclose(s_red, s_white, rtol=0.03)


def test_simulated_variance_matches_cyclostationary_covariance():
    p = ro.RecParams.observed()
    x = ro.simulate(p, 800, seed=3)
    months = ro.calendar_months(len(x))
    want = optimal_skill.mode_std_by_month(p)
    got = np.array([x[months == k + 1].std(0) for k in range(12)])
    # 800 samples per month, autocorrelated across years only weakly: ~5% sampling error.
    np.testing.assert_allclose(got, want, rtol=0.1)
