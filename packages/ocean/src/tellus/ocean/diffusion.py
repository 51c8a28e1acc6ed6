"""Denoising diffusion of the 3D ocean temperature: the schedule, its posteriors and a guided
sampler (ReconMOST, Song et al. 2025, on the DDPM of Ho et al. 2020 and the DDIM of Song et
al. 2021).

A field is ``[B, H, W, D]`` (latitude, longitude, the D depth levels as channels) scaled to
``[-1, 1]`` (:func:`to_unit`: -5 C -> -1, 40 C -> 1) and 0 over land. The model predicts the
noise (epsilon). Everything here is a pure function of arrays and a :class:`Schedule`
(numpy constants, static under ``jax.jit``)::

    q_sample        x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    predict_x0      x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)
    posterior       q(x_s | x_t, x0) of any earlier s (s = t - 1: DDPM), mean and variance
    ddim_step       x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z,
                    sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)
    sample          the reverse chain over a subsequence of timesteps in one lax.scan,
                    several samples from different noise at once, guided by observations

Guidance (:class:`Guidance`): observed values ``y`` at the True points of ``mask`` (the same
grid, per (cell, depth)). At each step the gradient of ``-scale * ||y - x0_hat||^2`` over the
observed points is

* ``"x0"`` (ReconMOST's default): ``g = scale * 2 * (y - x0_hat)`` taken on the denoiser's
  clean estimate and applied as if it were a gradient in ``x_t`` (no network derivative),
  optionally spread to the neighbouring ocean cells by a Gaussian (:func:`spread`);
* ``"posterior"`` (posterior-sampling guidance, Chung et al. 2023): ``g = scale * 2 J^T (y -
  x0_hat)``, ``J = d x0_hat / d x_t`` through the denoiser (one vector-Jacobian product).

DDPM adds it to the step's mean scaled by the step's variance (the classifier-guidance form
of Dhariwal & Nichol 2021): ``mean + var_t g``. DDIM has no variance at ``eta = 0``; it shifts
the noise estimate instead (the score form of the same paper): ``eps_hat - sqrt(1 - abar_t)
g``, hence ``x0_hat + (1 - abar_t) / sqrt(abar_t) g``. Land is 0 in the initial noise, after
every step and in every output; observations on land are ignored (the mask is and-ed with
the ocean).

Where this departs from ReconMOST, and why:

* fewer DDPM steps respace the schedule (the subsequence's own betas ``1 - abar_t /
  abar_s``, as improved DDPM does) instead of requiring all 1 000; DDIM takes the same
  subsequence (evenly spaced, first and last timestep kept);
* the guidance variance of the last DDPM step (where the posterior variance is 0) is that of
  the step before it (improved DDPM's clipped log-variance), so the last step still pulls
  towards the observations; the noise of the last step is 0;
* the Gaussian spread is normalised per source over the ocean cells its kernel reaches,
  periodic in longitude: it moves an observation's gradient to its ocean neighbours without
  losing any of it to land or beyond the grid's edge (a plain blur would);
* the posterior mode uses the same variance-scaled form as the x0 mode (not DPS's step
  normalised by the residual's norm), so that the two scales mean the same thing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

T_MIN, T_MAX = -5.0, 40.0  # deg C mapped to -1 and 1 (ReconMOST)
METHODS = ("ddim", "ddpm")
MODES = ("x0", "posterior")

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]


def to_unit(temperature: jax.Array, ocean: jax.Array | None = None) -> jax.Array:
    """Temperature in deg C -> ``[-1, 1]`` (``[-5, 40]`` C linearly), 0 over land.

    Land is where ``ocean`` is False (broadcast against the field) and wherever the value is
    not finite (NaN fill); the ``where`` comes before any arithmetic on it."""
    temperature = jnp.asarray(temperature)
    valid = jnp.isfinite(temperature)
    if ocean is not None:
        valid = valid & jnp.asarray(ocean, bool)
    x = 2.0 * (jnp.where(valid, temperature, T_MIN) - T_MIN) / (T_MAX - T_MIN) - 1.0
    return jnp.where(valid, x, 0.0)


def from_unit(x: jax.Array, ocean: jax.Array | None = None) -> jax.Array:
    """``[-1, 1]`` -> deg C; NaN over land when ``ocean`` is given."""
    t = (jnp.asarray(x) + 1.0) * 0.5 * (T_MAX - T_MIN) + T_MIN
    return t if ocean is None else jnp.where(jnp.asarray(ocean, bool), t, jnp.nan)


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """A discrete noise schedule of ``T`` steps (float64 numpy constants).

    Attributes:
      betas: ``beta_t``, t = 0 .. T - 1, each in (0, 1).
      alphas_cumprod: ``abar_t = prod_{s <= t} (1 - beta_s)``.
    """

    betas: np.ndarray
    alphas_cumprod: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        b = np.asarray(self.betas, np.float64)
        if b.ndim != 1 or b.size == 0 or np.any(b <= 0) or np.any(b >= 1):
            raise ValueError(f"betas must be a non-empty 1-D array in (0, 1), got {b}")
        object.__setattr__(self, "betas", b)
        object.__setattr__(self, "alphas_cumprod", np.cumprod(1.0 - b))

    @property
    def num_steps(self) -> int:
        return int(self.betas.size)


def linear_schedule(num_steps: int = 1000) -> Schedule:
    """DDPM's linear betas from 1e-4 to 0.02 at 1 000 steps, both scaled by ``1000 /
    num_steps`` for other lengths (improved DDPM's rule, the same total noise).

    Raises:
      ValueError: ``num_steps`` < 21 (the last beta would reach 1: pass betas to
        :class:`Schedule` instead).
    """
    if int(num_steps) != num_steps or num_steps < 21:
        raise ValueError(f"num_steps must be an int >= 21 for the linear schedule, got {num_steps}")
    scale = 1000.0 / num_steps
    return Schedule(np.linspace(scale * 1e-4, scale * 0.02, int(num_steps)))


def timesteps(num_steps: int, steps: int) -> np.ndarray:
    """The ``steps`` timesteps of a reverse chain over a ``num_steps`` schedule, descending:
    evenly spaced from ``num_steps - 1`` to 0 (all of them when ``steps == num_steps``).

    Raises:
      ValueError: ``steps`` not in ``[1, num_steps]``.
    """
    if int(steps) != steps or not 1 <= steps <= num_steps:
        raise ValueError(f"steps must be an int in [1, {num_steps}], got {steps}")
    if steps == 1:
        return np.array([num_steps - 1])
    ts = np.round(np.linspace(0, num_steps - 1, int(steps))).astype(np.int64)
    return ts[::-1].copy()


def _at(values: np.ndarray | jax.Array, t: jax.Array, ndim: int) -> jax.Array:
    """``values[t]`` as float32, shaped ``[B, 1, ...]`` to broadcast over an ``ndim`` field."""
    v = jnp.asarray(values, jnp.float32)[jnp.asarray(t)]
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def q_sample(sched: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """``x_t`` of ``x0`` at timesteps ``t [B]`` with the given standard normal ``noise``."""
    a = _at(sched.alphas_cumprod, t, x0.ndim)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1.0 - a) * noise


def predict_x0(sched: Schedule, x_t: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
    """The clean field implied by the noise estimate ``eps`` at timesteps ``t [B]``."""
    a = _at(sched.alphas_cumprod, t, x_t.ndim)
    return (x_t - jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(a)


def predict_eps(sched: Schedule, x_t: jax.Array, t: jax.Array, x0: jax.Array) -> jax.Array:
    """The noise implied by the clean estimate ``x0`` (inverse of :func:`predict_x0`)."""
    a = _at(sched.alphas_cumprod, t, x_t.ndim)
    return (x_t - jnp.sqrt(a) * x0) / jnp.sqrt(1.0 - a)


def _abar_prev(sched: Schedule, s: jax.Array) -> jax.Array:
    """``abar_s``, with ``s = -1`` (before the first step) meaning 1."""
    table = jnp.concatenate([jnp.ones(1), jnp.asarray(sched.alphas_cumprod)]).astype(jnp.float32)
    return table[jnp.asarray(s) + 1]


def posterior(
    sched: Schedule, x0: jax.Array, x_t: jax.Array, t: jax.Array, s: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of ``q(x_s | x_t, x0)`` for ``s < t`` (``s = t - 1`` by default:
    DDPM's posterior; ``s = -1`` is the clean field, ``abar = 1``)::

        beta' = 1 - abar_t / abar_s
        mean  = beta' sqrt(abar_s) / (1 - abar_t) x0 + (1 - abar_s) sqrt(1 - beta') / (1 - abar_t) x_t
        var   = beta' (1 - abar_s) / (1 - abar_t)

    Returns ``(mean [B, ...], var [B, 1, ...])``.
    """
    t = jnp.asarray(t)
    s = t - 1 if s is None else jnp.asarray(s)
    nd = x_t.ndim
    a_t = _at(sched.alphas_cumprod, t, nd)
    a_s = _abar_prev(sched, s).reshape(s.shape + (1,) * (nd - s.ndim))
    beta = 1.0 - a_t / a_s
    c0 = beta * jnp.sqrt(a_s) / (1.0 - a_t)
    ct = (1.0 - a_s) * jnp.sqrt(1.0 - beta) / (1.0 - a_t)
    return c0 * x0 + ct * x_t, beta * (1.0 - a_s) / (1.0 - a_t)


def ddim_step(
    sched: Schedule,
    x_t: jax.Array,
    t: jax.Array,
    s: jax.Array,
    eps: jax.Array,
    *,
    eta: float = 0.0,
    noise: jax.Array | None = None,
    x0: jax.Array | None = None,
) -> jax.Array:
    """One DDIM step from ``t`` to ``s < t`` (``s = -1``: the clean field) with the noise
    estimate ``eps`` (and its clean estimate ``x0``, :func:`predict_x0` of it by default).

    ``eta = 0``: deterministic; ``eta = 1``: the DDPM posterior's variance. ``noise`` is
    required when ``eta > 0``."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    nd = x_t.ndim
    s = jnp.asarray(s)
    a_t = _at(sched.alphas_cumprod, t, nd)
    a_s = _abar_prev(sched, s).reshape(s.shape + (1,) * (nd - s.ndim))
    x0 = predict_x0(sched, x_t, t, eps) if x0 is None else x0
    sigma2 = eta**2 * (1.0 - a_s) / (1.0 - a_t) * (1.0 - a_t / a_s)
    out = jnp.sqrt(a_s) * x0 + jnp.sqrt(jnp.maximum(1.0 - a_s - sigma2, 0.0)) * eps
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise (a standard normal array)")
        out = out + jnp.sqrt(sigma2) * noise
    return out


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """A ``size x size`` Gaussian of ``sigma`` cells, summing to 1 (``size`` odd)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the spread kernel's size must be odd and >= 1, got {size}")
    if sigma <= 0:
        raise ValueError(f"the spread kernel's sigma must be > 0 (cells), got {sigma}")
    r = np.arange(size) - size // 2
    k = np.exp(-0.5 * (r / sigma) ** 2)
    k2 = np.outer(k, k)
    return k2 / k2.sum()


def _convolve(x: jax.Array, kernel: np.ndarray) -> jax.Array:
    """``sum_(di, dj) k[di, dj] x[i + di, j + dj]`` over ``[B, H, W, D]`` per channel, zero
    beyond the latitude edges, periodic in longitude (the kernel is symmetric, so this is
    also its scatter)."""
    r = kernel.shape[0] // 2
    if 2 * r + 1 > x.shape[2]:
        raise ValueError(f"the spread kernel ({kernel.shape[0]}) is wider than the grid {x.shape}")
    xp = jnp.pad(x, ((0, 0), (r, r), (0, 0), (0, 0)))
    xp = jnp.concatenate([xp[:, :, -r:], xp, xp[:, :, :r]], axis=2) if r else xp
    h, w = x.shape[1:3]
    out = jnp.zeros_like(x)
    for di in range(2 * r + 1):
        for dj in range(2 * r + 1):
            out = out + float(kernel[di, dj]) * xp[:, di : di + h, dj : dj + w]
    return out


def spread(g: jax.Array, ocean: jax.Array, kernel: np.ndarray) -> jax.Array:
    """Spreads a gradient ``g [B, H, W, D]`` to neighbouring ocean cells: each cell's value
    goes to the ocean cells of its depth level that ``kernel`` reaches around it (periodic in
    longitude), weighted by the kernel renormalised over those cells, so no value reaches
    land and the sum over the ocean of every level is kept."""
    ocean = jnp.broadcast_to(jnp.asarray(ocean, g.dtype), g.shape)
    reach = _convolve(ocean, kernel)  # the kernel's mass on the ocean around each source
    src = jnp.where(ocean > 0, g / jnp.where(ocean > 0, reach, 1.0), 0.0)
    return ocean * _convolve(src, kernel)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Guidance:
    """Observations to pull the reverse chain towards.

    Attributes:
      y: observed values ``[B | 1, H, W, D]`` in the model's ``[-1, 1]`` units (anything,
        NaN included, where not observed).
      mask: bool, same shape: True at observed (cell, depth) points.
      scale: the guidance scale (ReconMOST's default 4).
      mode: ``"x0"`` or ``"posterior"`` (static).
      spread: ``(size, sigma)`` of the Gaussian spread of an x0-mode gradient, or None
        (static).
    """

    y: jax.Array
    mask: jax.Array
    scale: float | jax.Array = 4.0
    mode: str = dataclasses.field(default="x0", metadata={"static": True})
    spread: tuple[int, float] | None = dataclasses.field(default=None, metadata={"static": True})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"guidance mode must be one of {MODES}, got {self.mode!r}")
        if self.spread is not None and self.mode != "x0":
            raise ValueError("guidance spread is for the 'x0' mode only")
        ys, ms = getattr(self.y, "shape", None), getattr(self.mask, "shape", None)
        if ys is not None and ms is not None and tuple(ys) != tuple(ms):
            raise ValueError(f"guidance y {tuple(ys)} and mask {tuple(ms)} must have one shape")


def _check_shapes(shape: tuple[int, ...], ocean: jax.Array, guidance: Guidance | None) -> None:
    if len(shape) != 4:
        raise ValueError(f"shape must be (batch, lat, lon, depth), got {shape}")
    for name, a in (("ocean_mask", ocean),) + (
        () if guidance is None else (("guidance.y", guidance.y), ("guidance.mask", guidance.mask))
    ):
        s = tuple(jnp.shape(a))
        if len(s) != 4 or s[0] not in (1, shape[0]) or s[1:] != tuple(shape[1:]):
            raise ValueError(
                f"{name} must be [{shape[0]} | 1, {', '.join(map(str, shape[1:]))}]; got {s}"
            )


def sample(
    denoise_fn: DenoiseFn,
    shape: tuple[int, ...],
    key: jax.Array,
    ocean_mask: jax.Array,
    *,
    schedule: Schedule | None = None,
    steps: int = 50,
    method: str = "ddim",
    guidance: Guidance | None = None,
    samples: int = 1,
    eta: float = 0.0,
    clip_x0: bool | float = True,
) -> jax.Array:
    """Samples the reverse chain, guided by observations when ``guidance`` is given.

    Args:
      denoise_fn: ``denoise_fn(x_t [N, H, W, D], t [N] int32) -> eps_hat [N, H, W, D]``.
      shape: ``(B, H, W, D)`` of one sample batch.
      key: PRNG key (the initial noise and every step's noise).
      ocean_mask: ``[B | 1, H, W, D]``, True over the ocean.
      schedule: the training schedule (default: :func:`linear_schedule` of 1 000 steps).
      steps: reverse steps, a subsequence of :func:`timesteps` (all ``T`` for plain DDPM).
      method: ``"ddim"`` or ``"ddpm"``.
      guidance: observations (:class:`Guidance`, its arrays broadcast like ``ocean_mask``).
      samples: samples from different noise per batch element (a leading axis).
      eta: DDIM's stochasticity (0: deterministic).
      clip_x0: clip the clean estimate to ``[-1, 1]`` before each step uses it (a number:
        to ``[-clip_x0, clip_x0]``; False: never).

    Returns:
      ``[samples, B, H, W, D]`` in the model's units, 0 over land.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples}")
    shape = tuple(int(v) for v in shape)
    _check_shapes(shape, ocean_mask, guidance)
    sched = linear_schedule() if schedule is None else schedule
    ts = timesteps(sched.num_steps, steps)
    prev = np.concatenate([ts[1:], [-1]])
    n = samples * shape[0]

    def tile(a: jax.Array) -> jax.Array:
        a = jnp.broadcast_to(jnp.asarray(a), shape)
        return jnp.broadcast_to(a[None], (samples, *shape)).reshape(n, *shape[1:])

    ocean = tile(jnp.asarray(ocean_mask, bool))
    bound = 1.0 if clip_x0 is True else float(clip_x0)
    # Per step: the guidance variance (DDPM) -- the posterior's, the last one's that of the
    # step before it (its own is 0).
    abar = np.concatenate([[1.0], sched.alphas_cumprod])
    a_t, a_s = abar[ts + 1], abar[prev + 1]
    var = (1.0 - a_t / a_s) * (1.0 - a_s) / (1.0 - a_t)
    gvar = var.copy()
    gvar[-1] = var[-2] if len(var) > 1 else 1.0 - a_t[-1]
    if guidance is not None:
        y_obs = tile(guidance.y)
        m_obs = tile(jnp.asarray(guidance.mask, bool)) & ocean
        y_obs = jnp.where(m_obs, y_obs, 0.0)
        kernel = None if guidance.spread is None else gaussian_kernel(*guidance.spread)

    def estimate(x, t, clip=clip_x0):
        tt = jnp.full((n,), t, jnp.int32)
        eps = jnp.where(ocean, denoise_fn(x, tt), 0.0)
        x0 = predict_x0(sched, x, tt, eps)
        if clip:
            x0 = jnp.clip(x0, -bound, bound)
        return jnp.where(ocean, x0, 0.0), eps

    def gradient(x, t, x0):
        """The guidance gradient g (zero where nothing is observed)."""
        if guidance.mode == "x0":
            g = 2.0 * guidance.scale * jnp.where(m_obs, y_obs - x0, 0.0)
            return g if kernel is None else spread(g, ocean, kernel)
        # The residual of the (clipped) estimate, pulled back through the unclipped one: a
        # clipped point would have no gradient at all.
        _, vjp = jax.vjp(lambda z: estimate(z, t, clip=False)[0], x)
        r = 2.0 * guidance.scale * jnp.where(m_obs, y_obs - x0, 0.0)
        return jnp.where(ocean, vjp(r)[0], 0.0)

    def step(x, inputs):
        t, s, gv, k = inputs
        x0, eps = estimate(x, t)
        tt, ss = jnp.full((n,), t, jnp.int32), jnp.full((n,), s, jnp.int32)
        z = jax.random.normal(k, x.shape, x.dtype)
        g = None if guidance is None else gradient(x, t, x0)
        if method == "ddpm":
            mean, v = posterior(sched, x0, x, tt, ss)
            if g is not None:
                mean = mean + gv * g
            x = mean + jnp.sqrt(v) * z
        else:
            a = _at(sched.alphas_cumprod, tt, x.ndim)
            if clip_x0 or g is not None:
                eps = predict_eps(sched, x, tt, x0)  # consistent with the clipped x0
            if g is not None:
                eps = eps - jnp.sqrt(1.0 - a) * g
                x0 = x0 + (1.0 - a) / jnp.sqrt(a) * g
            x = ddim_step(sched, x, tt, ss, eps, eta=eta, noise=z, x0=x0)
        return jnp.where(ocean, x, 0.0), None

    k0, k1 = jax.random.split(key)
    x = jnp.where(ocean, jax.random.normal(k0, (n, *shape[1:]), jnp.float32), 0.0)
    xs = (
        jnp.asarray(ts, jnp.int32),
        jnp.asarray(prev, jnp.int32),
        jnp.asarray(gvar, jnp.float32),
        jax.random.split(k1, len(ts)),
    )
    x, _ = jax.lax.scan(step, x, xs)
    return x.reshape(samples, *shape)


def observation_mse(x: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean squared error of ``x [..., H, W, D]`` against ``y`` over the True points of
    ``mask`` (broadcast), NaN-safe outside them."""
    m = jnp.broadcast_to(jnp.asarray(mask, bool), jnp.shape(x))
    d = jnp.where(m, x - jnp.broadcast_to(y, jnp.shape(x)), 0.0)
    return jnp.sum(d**2) / jnp.maximum(jnp.sum(m), 1)


__all__: list[Any] = [
    "METHODS",
    "MODES",
    "T_MAX",
    "T_MIN",
    "Guidance",
    "Schedule",
    "ddim_step",
    "from_unit",
    "gaussian_kernel",
    "linear_schedule",
    "observation_mse",
    "posterior",
    "predict_eps",
    "predict_x0",
    "q_sample",
    "sample",
    "spread",
    "timesteps",
    "to_unit",
]
