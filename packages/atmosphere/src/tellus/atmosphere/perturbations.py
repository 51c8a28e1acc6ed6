"""Initial-condition perturbations for ensemble forecasts, on plain arrays.

Everything here works on stacked, *normalized* states ``[batch, lat, lon, channel]`` (the
caller normalizes with the store's statistics, see :mod:`tellus.atmosphere.ensemble`), so an
amplitude is in units of each channel's standard deviation. Three kinds:

* ``perlin``: Perlin gradient noise, smooth and large-scale, periodic in longitude. Pangu-Weather
  built its 100-member ensemble by adding Perlin noise with a few octaves to the initial fields
  (Bi et al. 2023, Nature 619, 533-538, Methods, "ensemble forecast": 100 members, Perlin noise
  with octaves and amplitude as in their pseudocode). :func:`perlin_noise` is written from the
  definition (Perlin 1985, 2002): random unit gradients on a lattice, the dot product with the
  offset to each corner, blended with the quintic fade ``6t^5 - 15t^4 + 10t^3``.
* ``gaussian``: white noise, optionally smoothed by a Gaussian kernel that keeps unit variance.
* ``bred``: bred vectors (Toth & Kalnay 1993, BAMS 74, 2317; 1997, MWR 125, 3297): grow random
  perturbations with the model itself, rescaling them to the amplitude after every step, so
  that they align with the fastest-growing directions of the flow.

:func:`perturb` returns members ``[M, B, H, W, C]`` with member 0 the unperturbed control
when ``include_control`` is set. All functions are pure and jit-compatible (the integer
settings are static).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp

Kind = Literal["perlin", "gaussian", "bred"]
KINDS: tuple[str, ...] = ("perlin", "gaussian", "bred")

# A model step on normalized states: [N, H, W, C] -> [N, H, W, C].
StepFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class PerturbationConfig:
    """How to perturb initial states.

    Attributes:
      kind: ``perlin``, ``gaussian`` or ``bred``.
      amplitude: RMS of the perturbation in units of each channel's std: one number, or one
        per channel.
      octaves: Perlin octaves (each halves the lattice spacing).
      base_scale: Perlin lattice cells around the globe in longitude at the coarsest octave
        (latitude gets as many per degree), or ``(cells_lat, cells_lon)``.
      persistence: Perlin amplitude ratio between successive octaves.
      smoothing: Gaussian (and bred seed) smoothing, the kernel's std in grid cells (0: white).
      cycles: breeding cycles (model steps) for ``bred``.
      include_control: member 0 is the unperturbed state.
      periodic_lon: noise is periodic in longitude (a global grid).
    """

    kind: Kind = "perlin"
    amplitude: float | tuple[float, ...] = 0.05
    octaves: int = 3
    base_scale: int | tuple[int, int] = 6
    persistence: float = 0.5
    smoothing: float = 0.0
    cycles: int = 3
    include_control: bool = True
    periodic_lon: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.amplitude, int | float):
            object.__setattr__(self, "amplitude", tuple(float(a) for a in self.amplitude))
        if self.octaves < 1 or self.cycles < 1:
            raise ValueError(f"octaves ({self.octaves}) and cycles ({self.cycles}) must be >= 1")
        if self.smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {self.smoothing}")


# --- Perlin noise ---------------------------------------------------------------------------


def _fade(t: jax.Array) -> jax.Array:
    # Perlin's (2002) quintic: zero first and second derivatives at the lattice points, so
    # the field has continuous curvature across cells.
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _axis(n: int, cells: int) -> tuple[jax.Array, jax.Array]:
    """Lattice cell index and exact fractional offset of ``n`` points over ``cells`` cells."""
    pos = jnp.arange(n) * cells  # integer arithmetic: lattice points get exactly 0 offset
    return pos // n, (pos % n).astype(jnp.float32) / n


def _perlin_octave(
    angle: jax.Array, h: int, w: int, cells_lat: int, cells_lon: int, periodic_lon: bool
) -> jax.Array:
    """One octave ``[H, W]`` from the gradient angles ``[cells_lat + 1, lon lattice]``."""
    grad = jnp.stack([jnp.sin(angle), jnp.cos(angle)])  # (north, east) unit gradients
    i0, fy = _axis(h, cells_lat)
    j0, fx = _axis(w, cells_lon)
    j1 = (j0 + 1) % cells_lon if periodic_lon else j0 + 1
    rows = jnp.take(grad, jnp.stack([i0, i0 + 1]), axis=1)  # [2 comp, 2 corner, H, lon]
    g = jnp.take(rows, jnp.stack([j0, j1]), axis=3)  # [2 comp, 2 lat corner, H, 2 lon corner, W]
    dy = jnp.stack([fy, fy - 1.0])[:, :, None, None]  # [2 lat corner, H, 1, 1]
    dx = jnp.stack([fx, fx - 1.0])[None, None, :, :]  # [1, 1, 2 lon corner, W]
    n = g[0] * dy + g[1] * dx  # corner dot products [2, H, 2, W]
    u, v = _fade(fx), _fade(fy)[:, None]
    south = n[0, :, 0] + u * (n[0, :, 1] - n[0, :, 0])
    north = n[1, :, 0] + u * (n[1, :, 1] - n[1, :, 0])
    return south + v * (north - south)


def _cells(base_scale: int | tuple[int, int], h: int, w: int) -> tuple[int, int]:
    if isinstance(base_scale, int):
        # Square cells in degrees on a global grid: latitude spans half the degrees.
        return max(1, round(base_scale * h / (2 * w))), base_scale
    return int(base_scale[0]), int(base_scale[1])


@functools.partial(
    jax.jit, static_argnames=("shape_hw", "octaves", "base_scale", "persistence", "periodic_lon")
)
def perlin_noise(
    key: jax.Array,
    shape_hw: tuple[int, int],
    octaves: int = 3,
    base_scale: int | tuple[int, int] = 6,
    persistence: float = 0.5,
    periodic_lon: bool = True,
) -> jax.Array:
    """Fractal Perlin gradient noise ``[H, W]`` on a latitude-longitude grid.

    Octave ``o`` uses a lattice ``2**o`` times finer than the first and weight
    ``persistence**o``; the sum is divided by the sum of the weights, so ``|noise| <=
    sqrt(2)/2`` (the bound of one octave with unit gradients). The field is exactly zero at the
    coarsest lattice's points when the grid size is a multiple of the cell count. As in
    Pangu-Weather's ensemble (Bi et al. 2023, Nature 619, 533-538, Methods), a few octaves of
    Perlin noise give smooth perturbations dominated by large scales.

    Args:
      key: PRNG key.
      shape_hw: ``(lat, lon)`` grid size.
      octaves: number of octaves (>= 1).
      base_scale: lattice cells along longitude at the first octave (latitude gets square
        cells in degrees), or ``(cells_lat, cells_lon)``.
      persistence: weight ratio between successive octaves.
      periodic_lon: the last column continues into the first (global grids).

    Returns:
      Noise ``[H, W]`` (float32).
    """
    h, w = shape_hw
    cells_lat, cells_lon = _cells(base_scale, h, w)
    lattices = [
        (cells_lat * 2**o + 1, cells_lon * 2**o + (0 if periodic_lon else 1))
        for o in range(octaves)
    ]
    # One draw for all octaves: each random call is a separate (slow to compile) kernel.
    angles = jax.random.uniform(key, (sum(a * b for a, b in lattices),), maxval=2.0 * math.pi)
    total = jnp.zeros((h, w), jnp.float32)
    weight, start = 0.0, 0
    for o, (n_lat, n_lon) in enumerate(lattices):
        angle = angles[start : start + n_lat * n_lon].reshape(n_lat, n_lon)
        start += n_lat * n_lon
        a = persistence**o
        total = total + a * _perlin_octave(
            angle, h, w, cells_lat * 2**o, cells_lon * 2**o, periodic_lon
        )
        weight += a
    return total / weight


# --- Gaussian noise -------------------------------------------------------------------------


def _smooth_axis(x: jax.Array, axis: int, sigma: float, periodic: bool) -> jax.Array:
    radius = max(1, math.ceil(3.0 * sigma))
    taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1) / sigma) ** 2)
    # Unit sum of squares: white noise keeps unit variance after the convolution.
    taps = taps / jnp.sqrt(jnp.sum(taps**2))
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    xp = jnp.pad(x, pad, mode="wrap" if periodic else "reflect")
    n = x.shape[axis]
    out = jnp.zeros_like(x)
    for k in range(2 * radius + 1):
        out = out + taps[k] * jax.lax.slice_in_dim(xp, k, k + n, axis=axis)
    return out


@functools.partial(jax.jit, static_argnames=("shape", "smoothing", "spatial_axes", "periodic_lon"))
def gaussian_noise(
    key: jax.Array,
    shape: tuple[int, ...],
    smoothing: float = 0.0,
    spatial_axes: tuple[int, int] = (-3, -2),
    periodic_lon: bool = True,
) -> jax.Array:
    """Standard normal noise, optionally smoothed in space with unit variance kept.

    Args:
      key: PRNG key.
      shape: output shape (a tuple, it is static), e.g. ``(B, H, W, C)``.
      smoothing: std of the Gaussian kernel in grid cells (0: white noise). The kernel is
        normalized to unit sum of squares, so the variance stays 1 (exactly away from the
        latitude edges, which are reflected).
      spatial_axes: the ``(lat, lon)`` axes of ``shape``.
      periodic_lon: wrap in longitude when smoothing.

    Returns:
      Noise of ``shape`` (float32).
    """
    x = jax.random.normal(key, shape, jnp.float32)
    if smoothing > 0:
        lat_axis, lon_axis = spatial_axes
        x = _smooth_axis(x, lat_axis, smoothing, periodic=False)
        x = _smooth_axis(x, lon_axis, smoothing, periodic=periodic_lon)
    return x


# --- Members --------------------------------------------------------------------------------


def _amplitude(amplitude: float | Sequence[float], channels: int) -> jax.Array:
    a = jnp.asarray(amplitude, jnp.float32)
    if a.ndim == 1 and a.shape[0] != channels:
        raise ValueError(f"amplitude has {a.shape[0]} channels; the state has {channels}")
    return a


def _rms(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    return jnp.sqrt(jnp.mean(x * x, axis=axes, keepdims=True))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _unit_fields(key: jax.Array, shape: tuple[int, ...], config: PerturbationConfig) -> jax.Array:
    """Noise ``shape = [..., H, W, C]`` with unit RMS per field (Perlin) or unit variance."""
    *lead, h, w, c = shape
    if config.kind == "perlin":
        n = math.prod(lead) * c
        fields = jax.vmap(
            lambda k: perlin_noise(
                k,
                (h, w),
                config.octaves,
                config.base_scale,
                config.persistence,
                config.periodic_lon,
            )
        )(jax.random.split(key, n))
        fields = fields.reshape(*lead, c, h, w)
        fields = jnp.moveaxis(fields, -3, -1)
        # Each field scaled to unit RMS, so ``amplitude`` means the same for every kind.
        return fields / jnp.maximum(_rms(fields, (-3, -2)), 1e-12)
    return gaussian_noise(key, shape, config.smoothing, periodic_lon=config.periodic_lon)


def breed(
    key: jax.Array,
    state: jax.Array,
    step_fn: StepFn,
    n_members: int,
    cycles: int,
    amplitude: float | Sequence[float],
    smoothing: float = 0.0,
    periodic_lon: bool = True,
) -> jax.Array:
    """Bred perturbations ``[M, B, H, W, C]`` of ``state [B, H, W, C]``.

    The breeding cycle (Toth & Kalnay 1993): start from random perturbations, then ``cycles``
    times integrate the perturbed and the control state one model step, take the difference
    and rescale it to the amplitude. We have one analysis, not a sequence of them, so every
    cycle restarts from ``state``: the cycle is then a (finite-amplitude) power iteration of
    the step's propagator around ``state``, and the perturbations align with its leading
    growing modes. Members are bred independently from independent seeds; with many cycles
    they collapse onto the leading mode (up to sign), the known weakness of bred vectors.

    Args:
      key: PRNG key for the seeds.
      state: normalized states ``[B, H, W, C]``.
      step_fn: one model step ``[N, H, W, C] -> [N, H, W, C]`` on normalized states.
      n_members: perturbations per state.
      cycles: breeding cycles (>= 1).
      amplitude: RMS size in std units, scalar or per channel. The rescaling divides by the
        RMS of ``perturbation / amplitude`` over ``(H, W, C)``, which keeps the direction.
      smoothing: smoothing of the random seeds (grid cells).
      periodic_lon: wrap in longitude when smoothing the seeds.

    Returns:
      Perturbations ``[M, B, H, W, C]``, each with weighted RMS ``amplitude``.
    """
    b, h, w, c = state.shape
    amp = _amplitude(amplitude, c)

    def rescale(d):
        return d / jnp.maximum(_rms(d / amp, (-3, -2, -1)), 1e-30)

    delta = rescale(
        gaussian_noise(key, (n_members, b, h, w, c), smoothing, periodic_lon=periodic_lon) * amp
    )
    control = step_fn(state)
    for _ in range(cycles):
        grown = step_fn((state[None] + delta).reshape(n_members * b, h, w, c))
        delta = rescale(grown.reshape(n_members, b, h, w, c) - control[None])
    return delta


def perturb(
    key: jax.Array,
    state: jax.Array,
    n_members: int,
    config: PerturbationConfig,
    step_fn: StepFn | None = None,
) -> jax.Array:
    """Ensemble members ``[M, B, H, W, C]`` from normalized states ``[B, H, W, C]``.

    Member ``m`` of state ``b`` is ``out[m, b]``. With ``config.include_control`` member 0 is
    ``state`` itself (bit for bit) and members ``1..M-1`` are perturbed; otherwise all ``M``
    are perturbed. Perlin perturbations are scaled per (member, state, channel) to RMS
    ``amplitude``; Gaussian ones have std ``amplitude``; bred ones (needing ``step_fn``)
    have RMS ``amplitude`` per member.

    Args:
      key: PRNG key.
      state: normalized states ``[B, H, W, C]``.
      n_members: ensemble size ``M`` (>= 1), the control included.
      config: the perturbation.
      step_fn: the model step for ``bred``.

    Returns:
      Members ``[M, B, H, W, C]``.
    """
    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    if config.kind == "bred":
        if step_fn is None:
            raise ValueError("bred perturbations need a model step_fn")
        # Not jitted here: step_fn may be a (separately jitted) NNX model call.
        return _members(key, jnp.asarray(state), n_members, config, step_fn)
    return _noise_members(key, jnp.asarray(state), n_members, config)


def _members(
    key: jax.Array,
    state: jax.Array,
    n_members: int,
    config: PerturbationConfig,
    step_fn: StepFn | None = None,
) -> jax.Array:
    n_pert = n_members - 1 if config.include_control else n_members
    if n_pert == 0:
        return state[None]
    b, h, w, c = state.shape
    if config.kind == "bred":
        delta = breed(
            key,
            state,
            step_fn,
            n_pert,
            config.cycles,
            config.amplitude,
            config.smoothing,
            config.periodic_lon,
        )
    else:
        delta = _amplitude(config.amplitude, c) * _unit_fields(key, (n_pert, b, h, w, c), config)
    members = state[None] + delta.astype(state.dtype)
    if config.include_control:
        members = jnp.concatenate([state[None], members], axis=0)
    return members


# One compiled program per (shape, n_members, config) for the noise kinds.
_noise_members = jax.jit(_members, static_argnums=(2, 3))
