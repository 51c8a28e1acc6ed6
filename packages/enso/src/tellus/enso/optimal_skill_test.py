"""Tests of the exact optimal skill: analytic cases and a long Monte-Carlo run."""

import dataclasses

import numpy as np

from tellus.enso import optimal_skill as osk
from tellus.enso import recharge_oscillator as ro


def test_periodic_lyapunov_closes_around_the_year():
    m, q = ro.monthly_operators(ro.RecParams.model())
    p = osk.cyclostationary_covariance(m, q)
    for k in range(12):
        np.testing.assert_allclose(
            p[(k + 1) % 12], m[k] @ p[k] @ m[k].T + q[k], rtol=1e-9, atol=1e-12
        )
    assert np.all(np.linalg.eigvalsh(p) > 0)


def test_decoupled_ou_skill_is_exponential():
    # T alone, constant damping: corr(tau) = exp(r0 tau) for the raw index, any season.
    p = dataclasses.replace(
        ro.RecParams.observed(), f1=0.0, f2=0.0, iod_from_t=0.0, h_from_iod=0.0, r_amp=0.0
    )
    skill = osk.optimal_skill(p, running_mean=1, max_lead=12)
    want = np.exp(p.r0 * skill["lead"].values)
    np.testing.assert_allclose(skill["correlation"], want, rtol=1e-8)
    np.testing.assert_allclose(
        skill["correlation_by_init_month"], np.tile(want, (12, 1)), rtol=1e-8
    )
    # White index noise of variance v lowers it by sqrt(var / (var + v)).
    var = p.sigma_t**2 / (-2 * p.r0)
    noisy = osk.optimal_skill(p, running_mean=1, max_lead=12, index_noise_var=var)
    np.testing.assert_allclose(noisy["correlation"], want / np.sqrt(2), rtol=1e-6)


def test_by_target_month_is_by_init_month_shifted():
    skill = osk.optimal_skill(ro.RecParams.observed(), max_lead=6)
    init, target = skill["correlation_by_init_month"], skill["correlation_by_target_month"]
    for lead in (1, 4, 6):
        for m in range(1, 13):
            t = (m - 1 + lead) % 12 + 1
            assert target.sel(target_month=t, lead=lead) == init.sel(init_month=m, lead=lead)


def test_skill_matches_monte_carlo():
    """3000 simulated years, forecast with the known propagators, no fitting."""
    params = ro.RecParams.model()  # red noise: the full state has 6 components
    weights = (0.8, 0.0, 0.1)
    x = ro.simulate(params, 3000, seed=11, full_state=True)
    months = ro.calendar_months(len(x))
    n = x.shape[1]
    c = np.zeros(n)
    c[:3] = weights
    y = x @ c
    oni = np.full_like(y, np.nan)
    oni[1:-1] = (y[:-2] + y[1:-1] + y[2:]) / 3  # centred, as indices.running_mean
    m, _ = ro.monthly_operators(params)
    leads = (1, 3, 6, 12, 18)
    analytic = osk.optimal_skill(params, weights, running_mean=3, centered=True, max_lead=18)
    for lead in leads:
        forecast = np.full_like(y, np.nan)
        for k in range(12):
            idx = np.flatnonzero(months == k + 1)
            idx = idx[(idx >= 2) & (idx + lead + 1 < len(y))]
            # Target: mean of c^T x at t+lead-1, t+lead, t+lead+1, each forecast from x_t.
            g = sum(osk.propagator(m, k + 1, lead + j).T @ c for j in (-1, 0, 1)) / 3
            forecast[idx] = x[idx] @ g
        ok = ~np.isnan(forecast)
        target = np.roll(oni, -lead)
        got = np.corrcoef(forecast[ok], target[ok])[0, 1]
        np.testing.assert_allclose(got, analytic["correlation"].sel(lead=lead), atol=0.02)


def test_lead_below():
    skill = osk.optimal_skill(ro.RecParams.observed())
    lead = osk.lead_below(skill["correlation"], 0.5)
    assert lead is not None and 6 < lead <= 24
    assert np.all(np.diff(skill["correlation"].values[:12]) < 0)
    assert osk.lead_below(skill["correlation"], -2.0) is None
