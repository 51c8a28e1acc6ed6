"""Task heads on the trunk's tokens: per-variable, per-level fields, and pooled indices.

The trunk returns ``[B, Z, H', W', 2C]`` on Z latent levels. Two kinds of head read them:

* :class:`FieldDecoder`: for each requested variable and each of its levels, a query made of
  the level's encoding (its hPa, m or "surface", :class:`earth_encoder.LevelEncoding`) plus
  the variable's own query vector attends over the Z latent tokens of its patch column
  (the encoder's level aggregation in reverse), and the variable's linear patch recovery
  turns the result into a ``ph x pw`` patch of values. Any levels can be asked for, also
  ones the encoder never saw; a new variable adds an entry (``heads/<name>``) and changes no
  other. Cells outside the mask (land) are set to ``fill`` (0 for a loss, NaN for a map),
  as the ocean models write them.
* :class:`IndexHead`: the tokens whose patches overlap a :class:`Region` (Nino3.4 by
  default) are averaged over the region and the latent levels (land tokens left out by the
  key mask) and mapped by an MLP to ``n_outputs`` numbers, e.g. an index at each lead.

Shapes: fields ``[B, H, W]`` (surface) or ``[B, L, H, W]``; indices ``[B, n_outputs]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.kernels import partitioning
from tellus.kernels.earth_encoder import (
    SURFACE_LEVEL,
    CrossAttention,
    Grid,
    LevelEncoding,
    Levels,
    field_mask,
    name_key,
)
from tellus.kernels.patch_embed import patch_grid, recover_matmul


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """The field decoder's shape.

    Attributes:
      in_dim: width of the trunk's output tokens (2C).
      dim: width of the level queries.
      patch: (lat, lon) patch, the encoder's.
      heads: attention heads.
      variables: the names with a head.
      bands: Fourier bands of the level encoding.
    """

    in_dim: int
    dim: int
    patch: tuple[int, int]
    heads: int
    variables: tuple[str, ...]
    bands: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        object.__setattr__(self, "variables", tuple(self.variables))


class VariableHead(nnx.Module):
    """One variable's query vector and linear patch recovery.

    Attributes:
      query: ``[dim]``, ``("embed",)``.
      kernel: ``[dim, ph, pw, 1]``, ``("embed", None, None, "channels")``.
      bias: ``[1]``, ``("channels",)``.
    """

    def __init__(self, dim: int, patch: Sequence[int], key: jax.Array):
        kq, kk = jax.random.split(key)
        normal = nnx.with_partitioning(jax.nn.initializers.truncated_normal(0.02), ("embed",))
        self.query = nnx.Param(normal(kq, (dim,), jnp.float32))
        init = nnx.with_partitioning(
            jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", 0, (1, 2, 3)),
            ("embed", None, None, "channels"),
        )
        self.kernel = nnx.Param(init(kk, (dim, *patch, 1), jnp.float32))
        zeros = nnx.with_partitioning(jax.nn.initializers.zeros, ("channels",))
        self.bias = nnx.Param(zeros(kk, (1,), jnp.float32))


class FieldDecoder(nnx.Module):
    """Trunk tokens -> per-variable, per-level fields on any grid."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        base = rngs.params()
        self.heads = nnx.Dict(
            {v: VariableHead(cfg.dim, cfg.patch, name_key(base, v)) for v in cfg.variables}
        )
        self.level_encoding = LevelEncoding(cfg.dim, cfg.bands, rngs=rngs)
        self.norm_kv = partitioning.layer_norm(cfg.in_dim, rngs)
        self.attn = CrossAttention(cfg.dim, cfg.in_dim, cfg.heads, rngs=rngs)
        self.norm_out = partitioning.layer_norm(cfg.dim, rngs)

    def add_variable(self, name: str, *, rngs: nnx.Rngs) -> None:
        """Adds a fresh head for ``name`` (no other entry changes)."""
        if name in self.heads:
            raise ValueError(f"the decoder already has a head for {name!r}")
        self.heads[name] = VariableHead(
            self.config.dim, self.config.patch, name_key(rngs.params(), name)
        )

    def __call__(
        self,
        tokens: jax.Array,
        grid: Grid,
        targets: Mapping[str, Levels | None],
        *,
        mask: jax.Array | None = None,
        cell_masks: Mapping[str, jax.Array] | None = None,
        fill: float = 0.0,
    ) -> dict[str, jax.Array]:
        """Decodes ``targets`` from trunk tokens.

        Args:
          tokens: ``[B, Z, H', W', in_dim]``, ``H' x W'`` the patch grid of ``grid``.
          grid: the output grid.
          targets: ``{name: Levels}`` for fields on levels, ``{name: None}`` for surface
            fields.
          mask: ``[H, W]`` or ``[B | 1, H, W]`` bool, True at valid (ocean) cells.
          cell_masks: ``{name: [B | 1, L, H, W]}`` (``[B | 1, H, W]`` for a surface field)
            bool, True at the valid cells of that target (e.g. above the sea floor).
          fill: the value of cells outside the masks.

        Returns:
          ``{name: [B, L, H, W] or [B, H, W]}``.

        Raises:
          ValueError: a variable without a head, tokens of another grid.
        """
        cfg = self.config
        _, hw_tokens, _ = patch_grid(grid.shape, cfg.patch)
        if tokens.ndim != 5 or tuple(tokens.shape[2:4]) != tuple(hw_tokens):
            raise ValueError(
                f"tokens must be [batch, level, {hw_tokens[0]}, {hw_tokens[1]}, {cfg.in_dim}] "
                f"for the grid {grid.shape} with patch {cfg.patch}; got {tuple(tokens.shape)}"
            )
        b = tokens.shape[0]
        kv = self.norm_kv(jnp.moveaxis(tokens, 1, 3))  # [B, H', W', Z, in_dim]
        valid = None
        if mask is not None:
            valid = jnp.asarray(mask, bool)
            valid = valid[None] if valid.ndim == 2 else valid
        out = {}
        for name, lv in targets.items():
            if name not in self.heads:
                raise ValueError(
                    f"{name}: the decoder has no head for this variable (it has "
                    f"{sorted(self.heads)}); add one with add_variable"
                )
            head = self.heads[name]
            kinds, coord = SURFACE_LEVEL if lv is None else lv.encoded(name)
            query = head.query[...]  # float32 coordinate features, the weights' dtype sums
            q = self.level_encoding(kinds, coord).astype(query.dtype) + query  # [L, dim]
            y = self.norm_out(self.attn(q, kv))  # [B, H', W', L, dim]
            n = y.shape[3]
            y = jnp.moveaxis(y, 3, 1).reshape(b * n, *y.shape[1:3], cfg.dim)
            field = recover_matmul(y, head.kernel[...], head.bias[...], grid.shape)
            field = field.reshape(b, n, *grid.shape).astype(jnp.float32)
            if valid is not None:
                field = jnp.where(valid[:, None], field, fill)
            if cell_masks and name in cell_masks:
                field = jnp.where(field_mask(name, cell_masks[name], field.shape), field, fill)
            out[name] = field[:, 0] if lv is None else field
        return out


@dataclasses.dataclass(frozen=True)
class Region:
    """A latitude x longitude box (degrees; longitudes in [0, 360), ``lon_min > lon_max``
    crosses the prime meridian)."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def _in_lon(self, lon: np.ndarray) -> np.ndarray:
        lon = np.mod(lon, 360.0)
        lo, hi = self.lon_min % 360.0, self.lon_max % 360.0
        return (lon >= lo) & (lon <= hi) if lo <= hi else (lon >= lo) | (lon <= hi)

    def overlaps(self, latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
        """``[H', W']`` bool: which patches (centres ``latitude [H']``, ``longitude [W']`` in
        degrees, each spanning half the spacing to its neighbours) overlap the box by more
        than an edge."""
        lat, lon = np.asarray(latitude, np.float64), np.asarray(longitude, np.float64)
        hl = np.abs(np.gradient(lat)) / 2 if lat.size > 1 else np.array([90.0])
        ulon = np.rad2deg(np.unwrap(np.deg2rad(lon)))
        hw = np.abs(np.gradient(ulon)) / 2 if lon.size > 1 else np.array([180.0])
        in_lat = (lat - hl < self.lat_max) & (lat + hl > self.lat_min)
        lo, hi = self.lon_min % 360.0, self.lon_max % 360.0
        middle = (lo + np.mod(hi - lo, 360.0) / 2) % 360.0
        eps = 1e-9 * np.maximum(hw, 1.0)
        in_lon = (
            self._in_lon(lon)
            | self._in_lon(lon - hw + eps)
            | self._in_lon(lon + hw - eps)
            | (np.abs(np.mod(middle - lon + 180.0, 360.0) - 180.0) <= hw)
        )
        return in_lat[:, None] & in_lon[None, :]


NINO34 = Region(-5.0, 5.0, 190.0, 240.0)


class IndexHead(nnx.Module):
    """Tokens pooled over a region -> ``[B, n_outputs]`` (e.g. Nino3.4 at each lead).

    Attributes:
      norm: LayerNorm of the pooled token.
      fc1, fc2: ``in_dim -> hidden -> n_outputs``.
    """

    def __init__(self, in_dim: int, n_outputs: int, hidden: int, region: Region = NINO34, *, rngs):
        self.region = region
        self.norm = partitioning.layer_norm(in_dim, rngs)
        self.fc1 = partitioning.dense(in_dim, hidden, ("embed", "mlp"), rngs)
        self.fc2 = partitioning.dense(hidden, n_outputs, ("mlp", None), rngs)

    def __call__(
        self,
        tokens: jax.Array,
        latitude: np.ndarray,
        longitude: np.ndarray,
        key_mask: jax.Array | None = None,
    ) -> jax.Array:
        """Args: tokens ``[B, Z, H', W', in_dim]``; their patch centres ``latitude [H']``,
        ``longitude [W']``; ``key_mask [B | 1, Z, H', W']`` (True: ocean).

        Raises:
          ValueError: no patch overlaps the region.
        """
        inside = self.region.overlaps(latitude, longitude)
        if not inside.any():
            raise ValueError(
                f"no token of the grid overlaps the region {self.region}: "
                f"latitudes {np.round(latitude, 2).tolist()}"
            )
        w = jnp.broadcast_to(jnp.asarray(inside), tokens.shape[:4])
        if key_mask is not None:
            w = w & jnp.asarray(key_mask, bool)
        w = w.astype(tokens.dtype)[..., None]
        pooled = (tokens * w).sum(axis=(1, 2, 3)) / jnp.maximum(w.sum(axis=(1, 2, 3)), 1.0)
        return self.fc2(jax.nn.gelu(self.fc1(self.norm(pooled)), approximate=False))


__all__ = [
    "NINO34",
    "DecoderConfig",
    "FieldDecoder",
    "IndexHead",
    "Region",
    "VariableHead",
]
