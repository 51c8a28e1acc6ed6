"""The Earth encoder: any variables, on any grid, at any vertical coordinate -> trunk tokens.

One encoder serves every domain of the foundation model. Nothing in it is sized by a grid,
a number of levels or a set of variables, so the same weights read a 5 deg ENSO grid, a 4 deg
ocean with land and a 32 x 64 atmosphere::

    fields {name: [B, H, W] (surface) | [B, L, H, W] (levels)}, grid, levels, lead, domain
      per variable, per level: land zeroed, ph x pw patch -> C   (one embedding per name)
                               + level encoding (its hPa, m or "surface"; not its index)
      every (variable, level) token of a patch column -> Z latent levels
                               (cross-attention from Z learned queries: Perceiver-style)
      + horizontal position (Fourier features of the patch's latitude, longitude, log area)
      + lead-time encoding + domain embedding
    tokens [B, Z, H', W', C], key mask [B | 1, Z, H', W'] (True: the patch holds some ocean)

Conventions:

* A **variable** is keyed by its name: ``embeddings/<name>/kernel [ph, pw, 1, C]``.
  Adding a variable adds an entry and changes no other entry, not even its initial value:
  each entry's initial key is the encoder's key folded with the name's CRC-32.
* A **vertical coordinate** (:class:`Levels`) is a tuple of values with units: ``hPa`` or
  ``Pa`` (pressure, encoded as ``log p[hPa]``), ``m`` (depth, ``log(1 + d[m])``). A surface
  field has none. The encoding is Fourier features of that number plus a learned embedding of
  the kind (surface, pressure, depth), so 500 hPa is one point whatever the level's index.
* The **grid** (:class:`Grid`) is the actual latitudes and longitudes in degrees (any order
  of latitude, longitude in any range); patches are cut as :func:`patch_embed.patch_grid`
  does (padding split before and after); a patch's position is the mean of its cells' and
  its area the sum of its cells' areas on the unit sphere (:mod:`tellus.data.grid`).
* A **mask** (``[H, W]`` or ``[B | 1, H, W]``, True: a valid cell, ocean) is applied with
  ``where`` before anything is computed, so a land value (NaN, 1e30) reaches neither the
  output nor the gradient; a patch with no valid cell is a token the trunk must not attend
  to (``key_mask``, :mod:`tellus.kernels.window_attention`). Where the valid cells of a field
  on levels change with the level (the sea floor), ``cell_masks[name]`` (``[B | 1, L, H,
  W]``) masks that field's cells the same way, on top of ``mask``.
* Level aggregation is attention over a *set*: its output does not depend on the order in
  which variables or levels are given.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.data import grid as data_grid
from tellus.kernels import partitioning
from tellus.kernels.earth_trunk import Mlp
from tellus.kernels.partitioning import constrain
from tellus.kernels.patch_embed import PatchEmbed2D, patch_grid

SURFACE, PRESSURE, DEPTH = 0, 1, 2
KIND_NAMES = ("surface", "pressure", "depth")
# units -> (kind, factor to hPa or m)
LEVEL_UNITS: dict[str, tuple[int, float]] = {"hPa": (PRESSURE, 1.0), "Pa": (PRESSURE, 0.01)}
LEVEL_UNITS["m"] = (DEPTH, 1.0)
_EMBED_STD = 0.02


@dataclasses.dataclass(frozen=True)
class Levels:
    """The vertical coordinate of a 3D field: one value per level, with units.

    Attributes:
      values: the levels' pressures or depths, in the field's level order.
      units: ``"hPa"``, ``"Pa"`` (pressure) or ``"m"`` (depth below the surface).
    """

    values: tuple[float, ...]
    units: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(float(v) for v in np.ravel(self.values)))

    def encoded(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(kinds [L] int, coordinate [L] float)`` for :class:`LevelEncoding`.

        Raises:
          ValueError: units that are not a vertical coordinate, or a non-positive pressure
            or negative depth (named by variable ``name``).
        """
        if self.units not in LEVEL_UNITS:
            raise ValueError(
                f"{name}: level units {self.units!r} are not a vertical coordinate; expected "
                f"one of {sorted(LEVEL_UNITS)} (hPa or Pa for pressure, m for depth)"
            )
        kind, factor = LEVEL_UNITS[self.units]
        v = np.asarray(self.values, np.float64) * factor
        if (kind == PRESSURE and np.any(v <= 0)) or (kind == DEPTH and np.any(v < 0)):
            raise ValueError(f"{name}: levels {self.values} {self.units} are out of range")
        coord = np.log(v) if kind == PRESSURE else np.log1p(v)
        return np.full(v.shape, kind, np.int32), coord.astype(np.float32)


SURFACE_LEVEL = (np.array([SURFACE], np.int32), np.array([0.0], np.float32))


@dataclasses.dataclass(frozen=True)
class Grid:
    """A latitude x longitude grid by its coordinates (degrees; hashable, so it can be a
    static argument of a compiled function).

    Attributes:
      latitude: ``[H]`` strictly monotonic, within [-90, 90].
      longitude: ``[W]`` in any 360-degree range, monotonic once unwrapped.
    """

    latitude: tuple[float, ...]
    longitude: tuple[float, ...]

    def __post_init__(self) -> None:
        for field in ("latitude", "longitude"):
            object.__setattr__(self, field, tuple(float(v) for v in np.ravel(getattr(self, field))))

    @classmethod
    def regular(cls, n_lat: int, n_lon: int, *, lat_range: tuple[float, float] = (-90, 90)):
        """``n_lat`` cell centres evenly inside ``lat_range`` (south to north) and ``n_lon``
        longitudes from 0 (a global regular grid without pole rows by default)."""
        lo, hi = lat_range
        step = (hi - lo) / n_lat
        return cls(
            tuple(lo + step * (i + 0.5) for i in range(n_lat)),
            tuple(360.0 * j / n_lon for j in range(n_lon)),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.latitude), len(self.longitude)

    def cell_area(self) -> np.ndarray:
        """``[H, W]`` cell areas on the unit sphere (steradians): the latitude band of each
        row (:func:`tellus.data.grid.latitude_cell_bounds`) times its longitude width."""
        lower, upper = data_grid.latitude_cell_bounds(np.asarray(self.latitude))
        band = np.abs(np.sin(np.deg2rad(upper)) - np.sin(np.deg2rad(lower)))
        lon = np.unwrap(np.deg2rad(np.asarray(self.longitude)))
        width = np.abs(np.gradient(lon)) if lon.size > 1 else np.array([2 * np.pi])
        return band[:, None] * width[None, :]

    def patches(self, patch: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The patch grid's ``(latitude [H'], longitude [W'], area [H', W'])``: mean
        coordinates of each patch's cells (degrees; longitude in [0, 360)) and their summed
        area."""
        ph, pw = patch
        area = self.cell_area()
        _, (gh, gw), pads = patch_grid(area.shape, (ph, pw))
        lat = _patch_mean(np.asarray(self.latitude), ph)
        lon = np.mod(_patch_mean(np.rad2deg(np.unwrap(np.deg2rad(self.longitude))), pw), 360.0)
        a = np.pad(area, pads).reshape(gh, ph, gw, pw).sum(axis=(1, 3))
        return lat, lon, a


def _patch_mean(values: np.ndarray, p: int) -> np.ndarray:
    _, (g,), (pads,) = patch_grid(values.shape, (p,))
    v, w = np.pad(values, pads), np.pad(np.ones_like(values), pads)
    return (v * w).reshape(g, p).sum(1) / w.reshape(g, p).sum(1)


def fourier(x: jax.Array, wavelengths: np.ndarray) -> jax.Array:
    """``[...]`` -> ``[..., 2 n]``: ``sin`` and ``cos`` of ``2 pi x / wavelength``."""
    angle = 2 * jnp.pi * jnp.asarray(x, jnp.float32)[..., None] / jnp.asarray(wavelengths)
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


def wavelengths(bands: int, shortest: float, longest: float) -> np.ndarray:
    """``bands`` wavelengths spaced geometrically from ``shortest`` to ``longest``."""
    return np.geomspace(shortest, longest, bands).astype(np.float32)


def angular_frequencies(bands: int, highest: int = 128) -> np.ndarray:
    """``bands`` strictly increasing integers from 1 to about ``highest``: frequencies of a
    periodic angle (an integer keeps longitude periodic)."""
    out: list[int] = []
    for f in np.geomspace(1, highest, bands):
        out.append(max(round(f), out[-1] + 1 if out else 1))
    return np.array(out, np.float32)


def name_key(key: jax.Array, name: str) -> jax.Array:
    """The initial key of a named entry: ``key`` folded with the CRC-32 of ``name``."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def _embedding(shape: tuple[int, ...], names: tuple[str | None, ...], key: jax.Array):
    init = nnx.with_partitioning(jax.nn.initializers.truncated_normal(_EMBED_STD), names)
    return nnx.Param(init(key, shape, jnp.float32))


class LevelEncoding(nnx.Module):
    """A level's vector from its physical value: learned kind embedding + a linear map of
    Fourier features of ``log p`` / ``log(1 + d)`` (wavelengths 0.05 to 20 in log units).

    Attributes:
      kind: ``[3, C]`` (surface, pressure, depth), ``(None, "embed")``.
      proj: linear ``2 bands -> C``.
    """

    def __init__(self, dim: int, bands: int, *, rngs: nnx.Rngs):
        self.waves = wavelengths(bands, 0.05, 20.0)
        self.kind = _embedding((len(KIND_NAMES), dim), (None, "embed"), rngs.params())
        self.proj = partitioning.dense(2 * bands, dim, (None, "embed"), rngs)

    def __call__(self, kinds: np.ndarray, coord: np.ndarray) -> jax.Array:
        """``kinds [L]``, ``coord [L]`` (:meth:`Levels.encoded`) -> ``[L, C]``."""
        return self.kind[...][jnp.asarray(kinds)] + self.proj(fourier(coord, self.waves))


class CrossAttention(nnx.Module):
    """Multi-head attention of queries ``[..., Q, C]`` over a set ``[..., S, C_kv]`` (no
    position: the output is invariant to the order of the set)."""

    def __init__(self, dim: int, kv_dim: int, heads: int, *, rngs: nnx.Rngs):
        if dim % heads:
            raise ValueError(f"heads = {heads} does not divide dim = {dim}")
        self.heads = heads
        self.q = partitioning.dense(dim, dim, ("embed", "mlp"), rngs)
        self.k = partitioning.dense(kv_dim, dim, ("embed", "mlp"), rngs)
        self.v = partitioning.dense(kv_dim, dim, ("embed", "mlp"), rngs)
        self.o = partitioning.dense(dim, dim, ("mlp", "embed"), rngs)

    def __call__(
        self, queries: jax.Array, kv: jax.Array, key_mask: jax.Array | None = None
    ) -> jax.Array:
        """``queries [..., Q, C]`` (leading dims broadcast to ``kv``'s), ``kv [..., S,
        C_kv]``, ``key_mask [..., S]`` (True: may be attended to) -> ``[..., Q, C]``."""
        h = self.heads

        def split(x):
            return x.reshape(*x.shape[:-1], h, x.shape[-1] // h)

        q, k, v = split(self.q(queries)), split(self.k(kv)), split(self.v(kv))
        q = jnp.broadcast_to(q, (*k.shape[:-3], *q.shape[-3:]))
        logits = jnp.einsum("...qhd,...shd->...hqs", q, k) / math.sqrt(q.shape[-1])
        if key_mask is not None:
            logits = jnp.where(key_mask[..., None, None, :], logits, -1e30)
        out = jnp.einsum("...hqs,...shd->...qhd", jax.nn.softmax(logits, axis=-1), v)
        return self.o(out.reshape(*out.shape[:-2], -1))


class LevelAggregation(nnx.Module):
    """Perceiver-style: ``Z`` learned latent queries attend over a set of tokens per patch
    column, then an MLP: ``[B, S, H', W', C]`` -> ``[B, Z, H', W', C]``.

    Attributes:
      latents: ``[Z, C]``, ``("level", "embed")``.
    """

    def __init__(self, dim: int, heads: int, latent_levels: int, mlp_ratio: float, *, rngs):
        self.latents = _embedding((latent_levels, dim), ("level", "embed"), rngs.params())
        self.norm_q = partitioning.layer_norm(dim, rngs)
        self.norm_kv = partitioning.layer_norm(dim, rngs)
        self.attn = CrossAttention(dim, dim, heads, rngs=rngs)
        self.norm_mlp = partitioning.layer_norm(dim, rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        kv = self.norm_kv(jnp.moveaxis(tokens, 1, 3))  # [B, H', W', S, C]
        lat = self.latents[...]
        y = lat + self.attn(self.norm_q(lat), kv)  # [B, H', W', Z, C]
        y = y + self.mlp(self.norm_mlp(y))
        return jnp.moveaxis(y, 3, 1)


class HorizontalEncoding(nnx.Module):
    """A patch's vector from its latitude, longitude and area: ``sin``/``cos`` of integer
    multiples of latitude and longitude (radians) and Fourier features of ``log`` area
    (wavelengths 0.5 to 40), mapped linearly to ``C``."""

    def __init__(self, dim: int, bands: int, *, rngs: nnx.Rngs):
        self.freqs = angular_frequencies(bands)
        self.waves = wavelengths(bands, 0.5, 40.0)
        self.proj = partitioning.dense(6 * bands, dim, (None, "embed"), rngs)

    def features(self, lat: np.ndarray, lon: np.ndarray, area: np.ndarray) -> jax.Array:
        """``lat [H']``, ``lon [W']`` degrees, ``area [H', W']`` -> ``[H', W', 6 bands]``."""
        shape = area.shape

        def angle(x, axis):
            a = jnp.deg2rad(jnp.asarray(x, jnp.float32))[:, None] * self.freqs
            f = jnp.concatenate([jnp.sin(a), jnp.cos(a)], axis=-1)
            return jnp.broadcast_to(jnp.expand_dims(f, axis), (*shape, f.shape[-1]))

        return jnp.concatenate(
            [angle(lat, 1), angle(lon, 0), fourier(np.log(area), self.waves)], axis=-1
        )

    def __call__(self, lat: np.ndarray, lon: np.ndarray, area: np.ndarray) -> jax.Array:
        return self.proj(self.features(lat, lon, area))


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The encoder's shape (no grid, no level count in it).

    Attributes:
      dim: token width C (the trunk's ``dim``).
      patch: (lat, lon) patch of every variable.
      latent_levels: Z, the latent levels every column is aggregated into.
      heads: attention heads of the level aggregation.
      variables: the names with a patch embedding.
      domains: the names with a domain embedding.
      bands: Fourier bands of each encoded coordinate.
      mlp_ratio: hidden width / C of the aggregation's MLP.
    """

    dim: int
    patch: tuple[int, int]
    latent_levels: int
    heads: int
    variables: tuple[str, ...]
    domains: tuple[str, ...]
    bands: int = 16
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        object.__setattr__(self, "variables", tuple(self.variables))
        object.__setattr__(self, "domains", tuple(self.domains))
        if len(self.patch) != 2 or self.latent_levels < 1:
            raise ValueError(f"patch is (lat, lon) and latent_levels >= 1: {self}")
        if len(set(self.variables)) != len(self.variables):
            raise ValueError(f"variables are named twice: {self.variables}")


class Encoded(NamedTuple):
    """The encoder's output: tokens, their key mask (None: no mask given), and their
    coordinates (the continuous bias reads them)."""

    tokens: jax.Array  # [B, Z, H', W', C]
    key_mask: jax.Array | None  # [B | 1, Z, H', W'] bool
    latitude: np.ndarray  # [H'] degrees
    longitude: np.ndarray  # [W'] degrees in [0, 360)
    levels: np.ndarray  # [Z] latent level index


class EarthEncoder(nnx.Module):
    """Fields of any variables, grid and vertical coordinate -> trunk tokens.

    Attributes:
      embeddings: ``{name: PatchEmbed2D(1 -> C)}``, one per variable.
      level_encoding, aggregation, horizontal, lead: see the module docstring.
      domain: ``{name: Param [C]}``.
    """

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        base = rngs.params()
        self.embeddings = nnx.Dict(
            {v: self._variable_embedding(name_key(base, v)) for v in cfg.variables}
        )
        dom = rngs.params()
        self.domain = nnx.Dict(
            {d: _embedding((cfg.dim,), ("embed",), name_key(dom, d)) for d in cfg.domains}
        )
        self.level_encoding = LevelEncoding(cfg.dim, cfg.bands, rngs=rngs)
        self.aggregation = LevelAggregation(
            cfg.dim, cfg.heads, cfg.latent_levels, cfg.mlp_ratio, rngs=rngs
        )
        self.horizontal = HorizontalEncoding(cfg.dim, cfg.bands, rngs=rngs)
        self.lead_waves = wavelengths(cfg.bands, 0.05, 50.0)
        self.lead = partitioning.dense(2 * cfg.bands, cfg.dim, (None, "embed"), rngs)

    def _variable_embedding(self, key: jax.Array) -> PatchEmbed2D:
        return PatchEmbed2D(1, self.config.dim, self.config.patch, rngs=nnx.Rngs(params=key))

    def add_variable(self, name: str, *, rngs: nnx.Rngs) -> None:
        """Adds a fresh patch embedding for ``name`` (no other entry changes)."""
        if name in self.embeddings:
            raise ValueError(f"the encoder already embeds {name!r}")
        self.embeddings[name] = self._variable_embedding(name_key(rngs.params(), name))

    def __call__(
        self,
        fields: Mapping[str, jax.Array],
        grid: Grid,
        *,
        levels: Mapping[str, Levels] | None = None,
        lead_hours: jax.Array,
        domain: str,
        mask: jax.Array | None = None,
        cell_masks: Mapping[str, jax.Array] | None = None,
    ) -> Encoded:
        """Encodes one batch.

        Args:
          fields: ``{name: [B, H, W]}`` for a surface field, ``{name: [B, L, H, W]}`` for
            a field on levels.
          grid: the fields' latitudes and longitudes.
          levels: ``{name: Levels}`` for every field on levels.
          lead_hours: ``[B]`` the lead time of each sample, hours.
          domain: a name of ``config.domains``.
          mask: ``[H, W]`` or ``[B | 1, H, W]`` bool, True at valid (ocean) cells.
          cell_masks: ``{name: [B | 1, L, H, W]}`` (``[B | 1, H, W]`` for a surface field)
            bool, True at the field's valid cells (e.g. above the sea floor).

        Raises:
          ValueError: no fields, a field without a patch embedding, a field on levels
            without levels or their units (naming it and what was expected), a field of
            another grid or batch, an unknown domain.
        """
        cfg, levels = self.config, dict(levels or {})
        if not fields:
            raise ValueError("the encoder needs at least one field")
        if domain not in self.domain:
            raise ValueError(f"unknown domain {domain!r}; the encoder has {sorted(self.domain)}")
        hw = grid.shape
        batch = {int(x.shape[0]) for x in fields.values()}
        if len(batch) != 1:
            raise ValueError(f"fields have different batch sizes: {sorted(batch)}")
        (b,) = batch
        valid = None
        if mask is not None:
            valid = jnp.asarray(mask, bool)
            valid = valid[None] if valid.ndim == 2 else valid
            if valid.shape[1:] != hw or valid.shape[0] not in (1, b):
                raise ValueError(f"mask must be [H, W] or [1 | {b}, H, W] of grid {hw}")
        parts = []
        for name in sorted(fields):
            x = jnp.asarray(fields[name], jnp.float32)
            kinds, coord = self._vertical(name, x, levels.get(name), hw)
            x = x[:, None] if x.ndim == 3 else x  # [B, L, H, W]
            if valid is not None:
                x = jnp.where(valid[:, None], x, 0.0)
            if cell_masks and name in cell_masks:
                x = jnp.where(field_mask(name, cell_masks[name], x.shape), x, 0.0)
            n = x.shape[1]
            t = self.embeddings[name](x.reshape(b * n, *hw, 1))
            # The coordinate features are float32; the sums take the tokens' dtype (the
            # weights': bfloat16 under mixed precision), so the encoder computes in it.
            level = self.level_encoding(kinds, coord).astype(t.dtype)
            t = t.reshape(b, n, *t.shape[1:]) + level[:, None, None]
            parts.append(t)
        tokens = self.aggregation(jnp.concatenate(parts, axis=1))  # [B, Z, H', W', C]
        lat, lon, area = grid.patches(cfg.patch)
        tokens = tokens + self.horizontal(lat, lon, area).astype(tokens.dtype)
        lead = self.lead(fourier(jnp.log1p(jnp.asarray(lead_hours, jnp.float32)), self.lead_waves))
        lead = lead.astype(tokens.dtype)
        if lead.shape != (b, cfg.dim):
            raise ValueError(f"lead_hours must be [batch = {b}]; got {jnp.shape(lead_hours)}")
        tokens = tokens + lead[:, None, None, None] + self.domain[domain][...]
        tokens = constrain(tokens, ("batch", "act_level", "lat", "lon", "act_embed"))
        key_mask = None
        if valid is not None:
            key_mask = token_mask(valid, cfg.patch)[:, None]
            key_mask = jnp.broadcast_to(key_mask, (key_mask.shape[0], *tokens.shape[1:4]))
        z = np.arange(cfg.latent_levels, dtype=np.float32)
        return Encoded(tokens, key_mask, lat, lon, z)

    def _vertical(self, name: str, x: jax.Array, lv: Levels | None, hw: tuple[int, int]):
        if name not in self.embeddings:
            raise ValueError(
                f"{name}: the encoder has no patch embedding for this variable (it has "
                f"{sorted(self.embeddings)}); add one with add_variable"
            )
        if x.ndim not in (3, 4) or tuple(x.shape[-2:]) != hw:
            raise ValueError(
                f"{name}: expected [batch, lat, lon] or [batch, level, lat, lon] on the grid "
                f"{hw}; got shape {tuple(x.shape)}"
            )
        if x.ndim == 3:
            if lv is not None:
                raise ValueError(f"{name}: a surface field [batch, lat, lon] takes no levels")
            return SURFACE_LEVEL
        expected = "its levels with units (hPa or Pa for pressure, m for depth)"
        if lv is None or lv.units is None:
            what = "no levels" if lv is None else f"levels {lv.values} without units"
            raise ValueError(f"{name}: a 3D field needs {expected}; got {what}")
        if len(lv.values) != x.shape[1]:
            raise ValueError(
                f"{name}: the field has {x.shape[1]} levels but {len(lv.values)} level values"
            )
        return lv.encoded(name)


def field_mask(name: str, m: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A cell mask ``m`` (``[B | 1, L, H, W]``, or ``[B | 1, H, W]`` for one level) as
    ``[B | 1, L, H, W]`` for the field ``name`` of ``shape`` ``[B, L, H, W]``.

    Raises:
      ValueError: a mask of another shape (naming the field and the shape expected).
    """
    m = jnp.asarray(m, bool)
    m = m[:, None] if m.ndim == 3 and shape[1] == 1 else m
    if m.ndim != 4 or m.shape[1:] != shape[1:] or m.shape[0] not in (1, shape[0]):
        raise ValueError(
            f"{name}: its cell mask must be [1 or {shape[0]}, {', '.join(map(str, shape[1:]))}]"
            f"; got {tuple(m.shape)}"
        )
    return m


def token_mask(valid: jax.Array, patch: Sequence[int]) -> jax.Array:
    """``[B, H, W]`` valid cells -> ``[B, H', W']`` patches holding at least one (padding
    is never valid)."""
    _, (gh, gw), pads = patch_grid(valid.shape[1:], patch)
    m = jnp.pad(jnp.asarray(valid, bool), ((0, 0), *pads), constant_values=False)
    return m.reshape(m.shape[0], gh, patch[0], gw, patch[1]).any(axis=(2, 4))


__all__ = [
    "CrossAttention",
    "EarthEncoder",
    "Encoded",
    "EncoderConfig",
    "Grid",
    "HorizontalEncoding",
    "LevelAggregation",
    "LevelEncoding",
    "Levels",
    "field_mask",
    "fourier",
    "name_key",
    "token_mask",
]
