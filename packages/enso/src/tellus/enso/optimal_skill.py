"""The exact optimal forecast skill of the linear recharge-oscillator world.

The extended RO (:mod:`tellus.enso.recharge_oscillator`) is linear and Gaussian with
coefficients that repeat every year, so its statistics are *cyclostationary*: the covariance
of the state depends on the calendar month only. Given the exact monthly operators
``x_{t+1} = M_m x_t + e_t``, ``e_t ~ N(0, Q_m)``:

* the covariance ``P_m`` of the state at the start of calendar month m solves the periodic
  Lyapunov equation ``P_{m+1} = M_m P_m M_m^T + Q_m`` around the year (solved exactly through
  the annual monodromy matrix and a discrete Lyapunov solve);
* the optimal (minimum mean-square error) forecast from a known state is
  ``x_hat(t + tau | t) = Phi(t + tau, t) x_t`` with ``Phi`` the product of the monthly ``M``;
* an index ``y_t = c^T x_t`` (Nino3.4 as a linear functional of the modes), or its 3-month
  running mean, is a linear functional of the state augmented with its two previous months,
  so its forecast correlation at lead tau follows from the same formulas applied to the
  augmented system.

This is the skill of a forecaster who knows the *full state* (T, h, IOD and, with red noise,
the noise states) exactly at the initial time. A learned model sees noisy fields from which
the state is only estimated, so it can approach but not exceed these correlations (up to
sampling error of the verification).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg
import xarray as xr

from tellus.enso import recharge_oscillator as ro

MONTHS = ro.MONTHS_PER_YEAR


def cyclostationary_covariance(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Solves the periodic Lyapunov equation P_{k+1} = M_k P_k M_k^T + Q_k around the year.

    Args:
      m: monthly transitions [12, n, n] (index 0 = January).
      q: monthly noise covariances [12, n, n].

    Returns:
      P [12, n, n]: the covariance of the state at the start of each calendar month.

    Raises:
      ValueError: the system is not stable (the annual propagator has an eigenvalue >= 1).
    """
    n = m.shape[-1]
    phi, q_year = np.eye(n), np.zeros((n, n))
    for k in range(MONTHS):
        phi = m[k] @ phi
        q_year = m[k] @ q_year @ m[k].T + q[k]
    if np.max(np.abs(np.linalg.eigvals(phi))) >= 1.0:
        raise ValueError("the system is unstable: no cyclostationary covariance exists")
    p = np.empty_like(m)
    p[0] = scipy.linalg.solve_discrete_lyapunov(phi, q_year)
    for k in range(MONTHS - 1):
        p[k + 1] = m[k] @ p[k] @ m[k].T + q[k]
    return 0.5 * (p + np.swapaxes(p, -1, -2))


def propagator(m: np.ndarray, start_month: int, lead: int) -> np.ndarray:
    """Phi(t + lead, t) for a start at calendar month ``start_month`` (1..12)."""
    phi = np.eye(m.shape[-1])
    for k in range(lead):
        phi = m[(start_month - 1 + k) % MONTHS] @ phi
    return phi


def augment_with_lags(m: np.ndarray, q: np.ndarray, n_lags: int) -> tuple[np.ndarray, np.ndarray]:
    """The system of z_t = [x_t, x_{t-1}, ..., x_{t-n_lags}], still linear and periodic.

    Returns:
      (M_z, Q_z), each [12, n (n_lags + 1), n (n_lags + 1)].
    """
    n = m.shape[-1]
    size = n * (n_lags + 1)
    mz = np.zeros((MONTHS, size, size))
    qz = np.zeros((MONTHS, size, size))
    mz[:, :n, :n] = m
    qz[:, :n, :n] = q
    for j in range(n_lags):
        mz[:, (j + 1) * n : (j + 2) * n, j * n : (j + 1) * n] = np.eye(n)
    return mz, qz


def index_functional(weights: Sequence[float], n_state: int, running_mean: int) -> np.ndarray:
    """The vector c_z with y_t = c_z^T z_t, the trailing ``running_mean``-month mean of c^T x.

    Args:
      weights: c over the modes (T, h, IOD); padded with zeros to ``n_state``.
      n_state: size of the (unaugmented) state.
      running_mean: number of months averaged (1 = the index itself).
    """
    c = np.zeros(n_state)
    c[: len(weights)] = weights
    return np.tile(c, running_mean) / running_mean


def optimal_skill(
    params: ro.RecParams,
    weights: Sequence[float] = (1.0, 0.0, 0.0),
    *,
    running_mean: int = 3,
    centered: bool = True,
    index_noise_var: float = 0.0,
    max_lead: int = 24,
) -> xr.Dataset:
    """Correlation skill of the optimal forecast of an index, by lead and calendar month.

    The index is ``y_t = c^T x_t + n_t`` with ``c = weights`` over (T, h, IOD) and ``n_t``
    white noise of variance ``index_noise_var`` that no forecaster can predict (e.g. the
    small-scale noise of the fields averaged over the Nino3.4 box), smoothed by a
    ``running_mean``-month mean: centred on month t (as NOAA's ONI, and as
    :func:`tellus.enso.indices.running_mean`) or trailing (months t-2..t).

    The forecast from month t (state known exactly up to t) for month t + tau is
    ``E[y_{t+tau} | z_t]``; with zero means, its correlation with the truth is
    ``sqrt(c^T Phi P_t Phi^T c / var(y_{t+tau}))``. The all-season correlation pools the
    samples of all 12 start months (equally many of each): ``sum cov / sqrt(sum var_hat *
    sum var_y)``, as a correlation computed over a long record of anomalies.

    Returns:
      Dataset with ``correlation_by_init_month`` (init_month, lead),
      ``correlation_by_target_month`` (target_month, lead), ``correlation`` (lead) and
      ``index_std_by_month`` (month): init_month is the calendar month (1..12) of the last
      known state, target_month that of the (centre of the) target.
    """
    if running_mean < 1:
        raise ValueError(f"running_mean must be >= 1, got {running_mean}")
    m, q = ro.monthly_operators(params)
    n = m.shape[-1]
    n_lags = running_mean - 1
    mz, qz = augment_with_lags(m, q, n_lags)
    pz = cyclostationary_covariance(mz, qz)
    c = index_functional(weights, n, running_mean)
    # The white index noise averaged over `running_mean` months.
    noise = index_noise_var / running_mean
    # A centred mean at month s is the trailing mean at s + shift.
    shift = n_lags // 2 if centered else 0
    leads = np.arange(1, max_lead + 1)
    cov = np.zeros((MONTHS, max_lead))
    var_hat = np.zeros((MONTHS, max_lead))
    var_y = np.zeros((MONTHS, max_lead))
    for k in range(MONTHS):
        phi = np.eye(mz.shape[-1])
        for step in range(1, max_lead + shift + 1):
            phi = mz[(k + step - 1) % MONTHS] @ phi
            tau = step - shift
            if tau < 1:
                continue
            g = phi.T @ c
            var_hat[k, tau - 1] = g @ pz[k] @ g
            cov[k, tau - 1] = var_hat[k, tau - 1]
            var_y[k, tau - 1] = c @ pz[(k + step) % MONTHS] @ c + noise
    by_init = cov / np.sqrt(var_hat * var_y)
    # Re-index by the target month: init month k + lead.
    target = np.arange(MONTHS)[:, None] + leads[None, :]
    by_target = np.empty_like(by_init)
    by_target[target % MONTHS, np.arange(max_lead)[None, :]] = by_init
    pooled = cov.sum(0) / np.sqrt(var_hat.sum(0) * var_y.sum(0))
    std = np.sqrt(np.array([c @ pz[(k + shift) % MONTHS] @ c for k in range(MONTHS)]) + noise)
    month = np.arange(1, MONTHS + 1)
    return xr.Dataset(
        {
            "correlation_by_init_month": (("init_month", "lead"), by_init),
            "correlation_by_target_month": (("target_month", "lead"), by_target),
            "correlation": (("lead",), pooled),
            "index_std_by_month": (("month",), std),
        },
        coords={"lead": leads, "init_month": month, "target_month": month, "month": month},
        attrs={
            "running_mean": running_mean,
            "centered": int(centered),
            "index_noise_var": index_noise_var,
            "note": "optimal for a forecaster who knows the full state exactly",
        },
    )


def lead_below(skill: xr.DataArray, threshold: float = 0.5) -> int | None:
    """The first lead (months) at which a correlation-by-lead curve drops below ``threshold``."""
    below = np.flatnonzero(skill.values < threshold)
    return int(skill["lead"].values[below[0]]) if below.size else None


def mode_std_by_month(params: ro.RecParams) -> np.ndarray:
    """Standard deviation of (T, h, IOD) at the start of each calendar month, [12, 3]."""
    m, q = ro.monthly_operators(params)
    p = cyclostationary_covariance(m, q)
    return np.sqrt(np.einsum("kii->ki", p)[:, : ro.N_MODES])
