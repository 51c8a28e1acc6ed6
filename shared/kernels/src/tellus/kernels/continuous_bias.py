"""A continuous positional bias for the Earth trunk: computed from the tokens' coordinates.

:class:`tellus.kernels.earth_trunk.TrunkBias` holds one learned table per block and window
type, and the number of window types is set by the grid: each domain's adapter owns tables
of its own grid, and a grid the model never saw has no bias at all. This module computes the
bias instead, as Swin Transformer v2's continuous position bias does: a small MLP per block
maps the *relative* coordinates of a query and a key to one bias per head,

    bias[h, i, j] = MLP(f(lat_i - lat_j), f(wrap(lon_i - lon_j)), f(z_i - z_j))[h],
    f(d) = sign(d) log(1 + |d|)     (degrees; latent levels for z)

so one set of weights serves any grid and resolution (a 5 deg window spans more degrees than
a 1 deg one, and the MLP sees it). The bias depends on nothing but the differences; where
the Earth is not invariant (latitude, level) the tokens carry their absolute position
themselves (:class:`tellus.kernels.earth_encoder.HorizontalEncoding` and the latent
levels' queries).

Shapes and order follow :mod:`tellus.kernels.earth_bias`, so the trunk takes either bias:
the relative coordinates are those of the ``wz^2 wh^2 (2 ww - 1)`` (query, key) offsets of
each window type (the rows of a Pangu table; relative longitude is shared by the longitude
windows of a type, as Pangu's tables are), gathered into ``[n_types, heads, N, N]`` with
:func:`earth_bias.position_index`. Coordinates follow the trunk's tokens through its
layout: padding at the end of each axis (extrapolated by the last spacing), the roll of
shifted blocks, and the 2 x 2 merge of the middle stages (the mean of each merged pair).
They are plain numbers computed once per grid on the host, and only their distinct rows go
through the MLPs (:func:`bias_rows`: on a regular grid most rows repeat across types and
level pairs); the MLPs run in the compiled program, once per block and forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.kernels import earth_bias, partitioning, window_attention
from tellus.kernels.earth_trunk import TrunkConfig

_init = nnx.initializers.truncated_normal(stddev=0.02)


def log_spaced(d: np.ndarray) -> np.ndarray:
    """``sign(d) log(1 + |d|)``: resolves small offsets finely and large ones coarsely."""
    return np.sign(d) * np.log1p(np.abs(d))


def _extend(c: np.ndarray, n: int) -> np.ndarray:
    """``c`` continued to length ``n`` by its last spacing."""
    if n <= c.size:
        return c[:n]
    step = c[-1] - c[-2] if c.size > 1 else 1.0
    return np.concatenate([c, c[-1] + step * np.arange(1, n - c.size + 1)])


def merged(c: np.ndarray) -> np.ndarray:
    """The coordinates of :class:`earth_trunk.DownSample`'s grid: pad to even at the end,
    then the mean of each pair."""
    c = _extend(np.asarray(c, np.float64), c.size + c.size % 2)
    return c.reshape(-1, 2).mean(axis=1)


def relative_coordinates(
    latitude: np.ndarray,
    longitude: np.ndarray,
    levels: np.ndarray,
    window: Sequence[int],
    *,
    shift: bool,
) -> np.ndarray:
    """The log-spaced relative coordinates of every row of a Pangu table, per window type.

    Args:
      latitude: ``[H]`` token latitudes (degrees).
      longitude: ``[W]`` token longitudes (degrees).
      levels: ``[Z]`` token level coordinates.
      window: ``(wz, wh, ww)``.
      shift: the shifted-window configuration (coordinates rolled as the tokens are).

    Returns:
      float32 ``[n_types, wz^2 wh^2 (2 ww - 1), 3]``: ``(dlat, dlon, dlevel)`` of query
      minus key, in the row order of :func:`earth_bias.position_index`.
    """
    wz, wh, ww = (int(w) for w in window)
    zp, hp = -(-levels.size // wz) * wz, -(-latitude.size // wh) * wh
    z = _extend(np.asarray(levels, np.float64), zp)
    h = _extend(np.asarray(latitude, np.float64), hp)
    if shift:
        sz, sh, _ = window_attention.shift_sizes(window)
        z, h = np.roll(z, -sz), np.roll(h, -sh)
    z, h = z.reshape(-1, wz), h.reshape(-1, wh)  # [level windows, wz], [lat windows, wh]
    dz = z[:, :, None] - z[:, None, :]  # [nz, wz, wz]
    dh = h[:, :, None] - h[:, None, :]  # [nh, wh, wh]
    lon = np.asarray(longitude, np.float64)
    offsets = np.arange(-(ww - 1), ww)
    dlon = np.mod(lon[np.mod(offsets, lon.size)] - lon[0] + 180.0, 360.0) - 180.0  # [2ww-1]
    nz, nh, nd = dz.shape[0], dh.shape[0], dlon.size
    shape = (nz, nh, wz, wz, wh, wh, nd)
    out = np.stack(
        [
            np.broadcast_to(dh[None, :, None, None, :, :, None], shape),
            np.broadcast_to(dlon[None, None, None, None, None, None, :], shape),
            np.broadcast_to(dz[:, None, :, :, None, None, None], shape),
        ],
        axis=-1,
    )
    return log_spaced(out.reshape(nz * nh, -1, 3)).astype(np.float32)


def bias_rows(rel: np.ndarray, window: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``rel [n_types, R, 3]`` (:func:`relative_coordinates`, rounded to
    1e-6) and, for each window type and (query, key) pair, the row it reads: ``(rows [U, 3],
    index [n_types, N, N])``. On a regular grid most window types share their rows, so the
    MLPs run on a fraction of ``n_types * R``."""
    n_types, r, _ = rel.shape
    rows, inverse = np.unique(np.round(rel.reshape(-1, 3), 6), axis=0, return_inverse=True)
    n = int(np.prod(window))
    pairs = earth_bias.position_index(window).reshape(1, n, n)
    index = inverse.reshape(n_types, r)[np.arange(n_types)[:, None, None], pairs]
    return rows.astype(np.float32), index.astype(np.int32)


class ContinuousBias(nnx.Module):
    """One block's bias MLP: 3 relative coordinates -> ``hidden`` (ReLU) -> ``heads``.

    Attributes:
      fc1: ``[3, hidden]``, replicated (a few hundred numbers).
      fc2: ``[hidden, heads]``, ``(None, "heads")``.
    """

    def __init__(self, heads: int, hidden: int, *, rngs: nnx.Rngs):
        self.heads = heads
        self.fc1 = partitioning.dense(3, hidden, (None, None), rngs)
        self.fc2 = partitioning.dense(hidden, heads, (None, "heads"), rngs, kernel_init=_init)

    def __call__(self, rows: np.ndarray, index: np.ndarray) -> jax.Array:
        """``rows [U, 3]`` distinct relative coordinates and ``index [n_types, N, N]`` into
        them (:func:`bias_rows`) -> ``[n_types, heads, N, N]`` as
        :class:`earth_bias.EarthSpecificBias` returns."""
        table = self.fc2(jax.nn.relu(self.fc1(jnp.asarray(rows))))  # [U, heads]
        return jnp.take(table, jnp.asarray(index), axis=0).transpose(0, 3, 1, 2)


class ContinuousTrunkBias(nnx.Module):
    """The bias of every block of a trunk, from the coordinates of its first-stage tokens
    (a drop-in for :class:`earth_trunk.TrunkBias`, sized by no grid).

    Attributes:
      stages: per stage, per block, a :class:`ContinuousBias` (None for a block the
        config's ``pruned`` builds without attention).
    """

    def __init__(self, cfg: TrunkConfig, hidden: int = 64, *, rngs: nnx.Rngs):
        self.window = cfg.window
        self.resamples = cfg.resamples
        self.shift = cfg.shift_windows
        self.stages = nnx.List(
            [
                nnx.List(
                    [ContinuousBias(heads, hidden, rngs=rngs) if a else None for a in attention]
                )
                for attention, heads in zip(cfg.stage_attention(), cfg.heads, strict=True)
            ]
        )

    def stage_coordinates(
        self, latitude: np.ndarray, longitude: np.ndarray, levels: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(lat, lon, level)`` of the tokens of each of the four stages."""
        fine = (np.asarray(latitude), np.asarray(longitude), np.asarray(levels))
        if not self.resamples:
            return [fine] * 4
        lon = np.rad2deg(np.unwrap(np.deg2rad(fine[1])))
        coarse = (merged(fine[0]), np.mod(merged(lon), 360.0), fine[2])
        return [fine, coarse, coarse, fine]

    def __call__(
        self, latitude: np.ndarray, longitude: np.ndarray, levels: np.ndarray
    ) -> list[list[jax.Array | None]]:
        """``[stage][block] -> [n_types, heads, N, N]`` (None for a pruned block) for tokens
        at ``latitude [H]``,
        ``longitude [W]`` (degrees) and ``levels [Z]`` (e.g. :class:`Encoded`'s)."""
        out = []
        coordinates = self.stage_coordinates(latitude, longitude, levels)
        for stage, coords in zip(self.stages, coordinates, strict=True):
            rows = {
                s: bias_rows(relative_coordinates(*coords, self.window, shift=s), self.window)
                for s in (False, True)
            }
            out.append(
                [
                    None if block is None else block(*rows[self.shift and i % 2 == 1])
                    for i, block in enumerate(stage)
                ]
            )
        return out


__all__ = [
    "ContinuousBias",
    "ContinuousTrunkBias",
    "bias_rows",
    "log_spaced",
    "merged",
    "relative_coordinates",
]
