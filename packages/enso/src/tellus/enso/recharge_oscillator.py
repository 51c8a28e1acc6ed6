"""A seasonally modulated, stochastically forced, extended recharge oscillator (RO).

The recharge oscillator (Jin 1997, J. Atmos. Sci. 54, 811-829) in its linear stochastic form
(Burgers, Jin & van Oldenborgh 2005, Geophys. Res. Lett. 32, L13706) couples the eastern
Pacific SST anomaly ``T`` (K) with the western Pacific thermocline depth anomaly ``h`` (m)::

    dT/dt = R(t) T + F1 h                        + noise_T
    dh/dt = -F2 T - eps h           - G_Ih I     + noise_h
    dI/dt = -D(t) I + G_IT T                     + noise_I      (extension)

The growth rate ``R`` of ``T`` varies with the season as in Stein et al. (2014, J. Climate 27,
5285-5310) and in the extended RO (XRO) of Zhao et al. (2024, Nature 630, 891-898): it is
largest (least damped) in boreal late summer/autumn and most negative in boreal spring, which
locks the variance peak of ``T`` to boreal winter. ``I`` is an Indian Ocean Dipole (IOD)
index: damped, seasonally phase-locked (its damping is weakest in boreal summer/autumn, when
the Bjerknes feedback of the eastern Indian Ocean is active), forced by ``T`` (IOD events
accompany El Nino), and feeding back on ``h`` with the sign found by Izumo et al. (2010,
Nature Geosci. 3, 168-172): a negative IOD favours El Nino the following year.

Seasonal coefficients are piecewise constant over each calendar month (their monthly mean),
so the monthly transition matrices ``M_m`` and noise covariances ``Q_m`` of the continuous
system are *exact*: they come from the matrix exponential of Van Loan's augmented matrix
(Van Loan 1978, IEEE Trans. Autom. Control 23, 395-404). The noise is white or, optionally,
red (an Ornstein-Uhlenbeck process of memory ``noise_memory`` months, added to the state so
that the augmented system stays linear with white forcing).

Parameter values: no single paper is copied. The structure and orders of magnitude follow the
papers above (annual-mean growth rate of T a few hundredths per month, negative; period
3-5 years; seasonal modulation of R as large as its mean); the numbers themselves were
calibrated against the observed Nino 1+2 series of ``statsmodels.datasets.elnino`` with
:mod:`tellus.enso.observed_check` (peak period, variance phase locking, standard deviation).
Units: months for time, K for T and I, m for h.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

MODES = ("T", "h", "iod")
N_MODES = len(MODES)
MONTHS_PER_YEAR = 12


@dataclasses.dataclass(frozen=True)
class RecParams:
    """Parameters of the extended recharge oscillator. Time unit: month.

    Attributes:
      r0: annual-mean growth rate of T (month-1); negative means damped.
      r_amp: amplitude of the seasonal cycle of the growth rate (month-1):
        ``R(t) = r0 + r_amp cos(2 pi (t - r_peak_month) / 12)`` (Stein et al. 2014).
      r_peak_month: calendar month (1 = Jan, fractional allowed, the month's centre is m) at
        which R is largest.
      f1: effect of h on T (K m-1 month-1).
      f2: effect of T on h (m K-1 month-1): the discharge by wind stress.
      eps: damping of h (month-1).
      iod_damping: annual-mean damping of the IOD (month-1), positive.
      iod_damping_amp: amplitude of its seasonal cycle (month-1).
      iod_min_damping_month: calendar month at which the IOD damping is weakest.
      iod_from_t: forcing of the IOD by T (month-1).
      h_from_iod: effect of the IOD on h (m K-1 month-1); positive means a positive IOD
        discharges h (Izumo et al. 2010).
      sigma_t, sigma_h, sigma_iod: noise amplitudes (unit month^-1/2 times K, m, K).
      noise_memory: decorrelation time of the noise (months); 0 for white noise.
    """

    r0: float = -0.1
    r_amp: float = 0.11
    r_peak_month: float = 8.5
    f1: float = 0.022
    f2: float = 0.62
    eps: float = 0.025
    iod_damping: float = 0.35
    iod_damping_amp: float = 0.25
    iod_min_damping_month: float = 9.0
    iod_from_t: float = 0.06
    h_from_iod: float = 0.6
    sigma_t: float = 0.3
    sigma_h: float = 1.6
    sigma_iod: float = 0.17
    noise_memory: float = 0.0

    @classmethod
    def observed(cls) -> RecParams:
        """The "real world": calibrated against the observed Nino 1+2 series (see module doc)."""
        return cls()

    @classmethod
    def model(cls) -> RecParams:
        """A CMIP-like climate model: the domain shift from :meth:`observed`.

        It carries biases that coupled models are known to share: a too-weak seasonal phase
        locking (smaller ``r_amp``), a slightly shorter, more regular oscillation (stronger
        coupling ``f2``, weaker damping) and red atmospheric noise.
        """
        return dataclasses.replace(
            cls(),
            r0=-0.08,
            r_amp=0.06,
            r_peak_month=7.5,
            f2=0.8,
            eps=0.02,
            iod_from_t=0.08,
            sigma_t=0.2,
            sigma_h=1.4,
            noise_memory=1.0,
        )

    @property
    def n_state(self) -> int:
        """Size of the state: the modes, plus the red-noise states when the noise is red."""
        return N_MODES * (2 if self.noise_memory > 0 else 1)


def _monthly_mean_cos(peak_month: float) -> np.ndarray:
    """Mean of cos(2 pi (t - peak) / 12) over each calendar month m = 1..12, t in [m-.5, m+.5)."""
    centres = np.arange(1, MONTHS_PER_YEAR + 1, dtype=np.float64)
    half = np.pi / MONTHS_PER_YEAR  # half a month in radians of the annual cycle
    return np.cos(2 * np.pi * (centres - peak_month) / MONTHS_PER_YEAR) * np.sin(half) / half


def growth_rate(params: RecParams) -> np.ndarray:
    """The growth rate R of T in each calendar month (month-1), shape [12], Jan first."""
    return params.r0 + params.r_amp * _monthly_mean_cos(params.r_peak_month)


def iod_damping(params: RecParams) -> np.ndarray:
    """The IOD damping in each calendar month (month-1), shape [12], Jan first."""
    return params.iod_damping - params.iod_damping_amp * _monthly_mean_cos(
        params.iod_min_damping_month
    )


def drift_matrices(params: RecParams) -> tuple[np.ndarray, np.ndarray]:
    """The continuous-time system dx = A_m x dt + B dW, per calendar month.

    Returns:
      ``A`` of shape [12, n_state, n_state] (month-1) and ``B`` of shape [n_state, 3]
      (white-noise loadings, unit per month^1/2).
    """
    r, d = growth_rate(params), iod_damping(params)
    n = params.n_state
    a = np.zeros((MONTHS_PER_YEAR, n, n))
    a[:, 0, 0] = r
    a[:, 0, 1] = params.f1
    a[:, 1, 0] = -params.f2
    a[:, 1, 1] = -params.eps
    a[:, 1, 2] = -params.h_from_iod
    a[:, 2, 0] = params.iod_from_t
    a[:, 2, 2] = -d
    sigma = np.array([params.sigma_t, params.sigma_h, params.sigma_iod])
    b = np.zeros((n, N_MODES))
    if params.noise_memory > 0:
        # Red noise: xi' = -xi / tau + (sigma / tau) dW, memory tau, variance sigma^2 / (2 tau):
        # the integral of its autocovariance is sigma^2, as for the white noise sigma dW, so
        # the forcing tends to the white noise of the same sigma as tau -> 0.
        tau = params.noise_memory
        a[:, :N_MODES, N_MODES:] = np.eye(N_MODES)
        a[:, N_MODES:, N_MODES:] = -np.eye(N_MODES) / tau
        b[N_MODES:] = np.diag(sigma) / tau
    else:
        b[:] = np.diag(sigma)
    return a, b


def discretize(a: np.ndarray, q_c: np.ndarray, dt: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact discretization of dx = A x dt + dW, cov(dW) = Q_c dt, over a step ``dt``.

    Van Loan (1978): with C = [[-A, Q_c], [0, A^T]] h, expm(C) = [[., G12], [0, G22]] gives
    the transition M = G22^T and the accumulated noise covariance Q = M G12 over a step h;
    ``dt`` is split into sub-steps h with |A| h <= 1, composed exactly.

    Args:
      a: drift matrix [n, n].
      q_c: white-noise covariance rate [n, n].
      dt: the step.

    Returns:
      (M, Q), each [n, n]; Q symmetrized.
    """
    n = a.shape[0]
    # exp(-A h) grows like exp(|A| h): for stiff A (short noise memory) the two blocks of
    # expm(C) cancel catastrophically, so split the step until |A| h <= 1 and compose.
    n_sub = max(1, int(np.ceil(np.linalg.norm(a, 1) * dt)))
    h = dt / n_sub
    c = np.zeros((2 * n, 2 * n))
    c[:n, :n] = -a
    c[:n, n:] = q_c
    c[n:, n:] = a.T
    g = scipy.linalg.expm(c * h)
    m_h = g[n:, n:].T
    q_h = m_h @ g[:n, n:]
    m, q = np.eye(n), np.zeros((n, n))
    for _ in range(n_sub):
        m, q = m_h @ m, m_h @ q @ m_h.T + q_h
    return m, 0.5 * (q + q.T)


def monthly_operators(params: RecParams) -> tuple[np.ndarray, np.ndarray]:
    """Exact monthly transition matrices and noise covariances.

    Returns:
      ``M`` [12, n, n] and ``Q`` [12, n, n]: the state at the start of calendar month m+1 is
      ``M[m] x + e`` with ``e ~ N(0, Q[m])``, where x is the state at the start of month m
      (index 0 = January).
    """
    a, b = drift_matrices(params)
    pairs = [discretize(a[m], b @ b.T) for m in range(MONTHS_PER_YEAR)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def annual_propagator(params: RecParams, start_month: int = 1) -> np.ndarray:
    """The monodromy matrix: the product of the 12 monthly transitions from ``start_month``."""
    m, _ = monthly_operators(params)
    phi = np.eye(params.n_state)
    for k in range(MONTHS_PER_YEAR):
        phi = m[(start_month - 1 + k) % MONTHS_PER_YEAR] @ phi
    return phi


def floquet_period_and_decay(params: RecParams) -> tuple[float, float]:
    """Period (years) and e-folding decay time (years) of the least damped oscillatory mode.

    From the complex eigenvalues mu = |mu| exp(i theta) of the annual propagator: period
    2 pi / theta years (valid for periods over two years), decay time -1 / ln|mu| years.
    """
    mu = np.linalg.eigvals(annual_propagator(params))
    osc = mu[np.abs(mu.imag) > 1e-12]
    if osc.size == 0:
        return float("inf"), float(-1.0 / np.log(np.max(np.abs(mu))))
    lead = osc[np.argmax(np.abs(osc))]
    return float(2 * np.pi / abs(np.angle(lead))), float(-1.0 / np.log(abs(lead)))


def _sqrt_psd(q: np.ndarray) -> np.ndarray:
    """A matrix square root L with L L^T = q for a positive semi-definite q."""
    w, v = np.linalg.eigh(q)
    return v * np.sqrt(np.clip(w, 0.0, None))


def calendar_months(n_months: int, start_month: int = 1) -> np.ndarray:
    """Calendar month (1..12) of each step of a run starting in ``start_month``."""
    return (start_month - 1 + np.arange(n_months)) % MONTHS_PER_YEAR + 1


def simulate(
    params: RecParams,
    n_years: int,
    seed: int,
    *,
    burn_in_years: int = 50,
    full_state: bool = False,
) -> np.ndarray:
    """Simulates the extended RO month by month with the exact monthly operators.

    The run starts in January (see :func:`calendar_months` for the month of each step) after
    ``burn_in_years`` of spin-up from rest, so that it starts in the cyclostationary regime.
    Step i is the state at the start of month i (of its first day).

    Args:
      params: the parameters.
      n_years: length of the run in years.
      seed: random seed (numpy ``default_rng``).
      burn_in_years: spin-up discarded before the first returned step.
      full_state: also return the red-noise states (if any).

    Returns:
      states [n_years * 12, 3] (T in K, h in m, IOD in K), or [.., n_state] with
      ``full_state``.
    """
    m, q = monthly_operators(params)
    chol = np.stack([_sqrt_psd(qm) for qm in q])
    rng = np.random.default_rng(seed)
    n_total = (burn_in_years + n_years) * MONTHS_PER_YEAR
    shocks = rng.standard_normal((n_total, params.n_state))
    x = np.zeros(params.n_state)
    out = np.empty((n_years * MONTHS_PER_YEAR, params.n_state))
    skip = burn_in_years * MONTHS_PER_YEAR
    for i in range(n_total):
        if i >= skip:
            out[i - skip] = x
        k = i % MONTHS_PER_YEAR
        x = m[k] @ x + chol[k] @ shocks[i]
    return out if full_state else out[:, :N_MODES]
