"""The 3D Earth-Specific Transformer (Pangu-Weather architecture) in Flax NNX.

Shapes (``B`` batch, ``L`` pressure levels, ``H x W`` latitude x longitude grid)::

    upper   [B, L, H, W, 5]   Z, Q, T, U, V on L levels (normalized)
    surface [B, H, W, 4]      MSLP, U10, V10, T2M (normalized)
    static  [H, W, S] or [B, H, W, S]   constant masks, joined to the surface input
        |  PatchEmbed3D (2x4x4)              PatchEmbed2D (4x4)
        v                                      v
    tokens [B, Z, H', W', C] with Z = ceil(L/2) + 1: the surface is level 0
        stage 1: depths[0] blocks, C,  heads[0]      ------------------ skip
        DownSample (2x2 merge in lat/lon, LayerNorm, 4C -> 2C)                 |
        stage 2: depths[1] blocks, 2C, heads[1]                                 |
        stage 3: depths[2] blocks, 2C, heads[2]                                 |
        UpSample (2C -> 4C, un-merge, crop, LayerNorm, C -> C)                  |
        stage 4: depths[3] blocks, C,  heads[3]                                 |
        concat with skip -> 2C  <-----------------------------------------------
        PatchRecovery3D / PatchRecovery2D: back to [B, L, H, W, 5] and [B, H, W, 4]

Each block is Swin-style pre-norm: ``x + DropPath(Attn(LN(x)))`` then
``x + DropPath(MLP(LN(x)))``; every second block shifts its windows by half a window, with
longitude periodic. The attention uses the Earth-specific positional bias: one table per
(level window, latitude window) type (:mod:`tellus.kernels.earth_bias`).

Where this follows the paper rather than the published pseudocode: the pseudocode concatenates
the surface tokens after the upper-air ones but splits its output as if they came first; here
the surface is level 0 on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.atmosphere.config import ZHW, PanguConfig
from tellus.kernels import earth_bias, partitioning, patch_embed, window_attention
from tellus.kernels.partitioning import constrain

TOKENS = ("batch", "level", "lat", "lon", "act_embed")
_init = nnx.initializers.truncated_normal(stddev=0.02)


def _dense(d_in: int, d_out: int, names: tuple[str | None, str | None], rngs: nnx.Rngs):
    return partitioning.dense(d_in, d_out, names, rngs, kernel_init=_init)


_norm = partitioning.layer_norm


def drop_path(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Stochastic depth: drops whole samples of a residual branch with probability ``rate``
    and rescales the kept ones by ``1 / (1 - rate)``; the identity when ``key`` is None."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.fc1 = _dense(dim, hidden, ("embed", "mlp"), rngs)
        self.fc2 = _dense(hidden, dim, ("mlp", "embed"), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class EarthSpecificBlock(nnx.Module):
    """One transformer block over a ``[B, Z, H, W, C]`` token grid."""

    def __init__(
        self,
        cfg: PanguConfig,
        dim: int,
        heads: int,
        grid: ZHW,
        *,
        shift: bool,
        drop_rate: float,
        rngs: nnx.Rngs,
    ):
        padded = tuple(-(-n // w) * w for n, w in zip(grid, cfg.window, strict=True))
        self.drop_rate = drop_rate
        self.norm1 = _norm(dim, rngs)
        self.attn = window_attention.EarthAttention3D(
            dim,
            heads,
            cfg.window,
            earth_bias.n_window_types(padded, cfg.window),
            shift=shift,
            impl=cfg.attention_impl,
            partitioning=cfg.partitioning,
            rngs=rngs,
        )
        self.norm2 = _norm(dim, rngs)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), rngs=rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        k1 = k2 = None
        if key is not None:
            k1, k2 = jax.random.split(key)
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_rate, k1)
        x = x + drop_path(self.mlp(self.norm2(x)), self.drop_rate, k2)
        return constrain(x, TOKENS)


class Stage(nnx.Module):
    """``depth`` blocks; odd blocks use shifted windows."""

    def __init__(
        self,
        cfg: PanguConfig,
        dim: int,
        heads: int,
        grid: ZHW,
        rates: Sequence[float],
        *,
        rngs: nnx.Rngs,
    ):
        self.remat = cfg.remat_blocks
        self.blocks = nnx.List(
            [
                EarthSpecificBlock(cfg, dim, heads, grid, shift=i % 2 == 1, drop_rate=r, rngs=rngs)
                for i, r in enumerate(rates)
            ]
        )

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        keys = (
            [None] * len(self.blocks)
            if key is None
            else list(jax.random.split(key, len(self.blocks)))
        )
        for block, k in zip(self.blocks, keys, strict=True):
            if self.remat:
                x = nnx.remat(lambda b, x, k: b(x, k))(block, x, k)
            else:
                x = block(x, k)
        return x


class DownSample(nnx.Module):
    """Merges 2 x 2 (lat, lon) tokens: pad to even, LayerNorm(4C), linear 4C -> 2C."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.norm = _norm(4 * dim, rngs)
        self.linear = nnx.Linear(
            4 * dim,
            2 * dim,
            use_bias=False,
            kernel_init=nnx.with_partitioning(_init, ("embed", "mlp")),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        b, z, h, w, c = x.shape
        x = jnp.pad(x, ((0, 0), (0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        h2, w2 = x.shape[2] // 2, x.shape[3] // 2
        x = x.reshape(b, z, h2, 2, w2, 2, c).transpose(0, 1, 2, 4, 3, 5, 6)
        x = x.reshape(b, z, h2, w2, 4 * c)
        return constrain(self.linear(self.norm(x)), TOKENS)


class UpSample(nnx.Module):
    """Linear 2C -> 4C, splits each token into 2 x 2, crops to ``hw``, LayerNorm, C -> C."""

    def __init__(self, in_dim: int, out_dim: int, hw: tuple[int, int], *, rngs: nnx.Rngs):
        self.hw = hw
        self.linear1 = nnx.Linear(
            in_dim,
            4 * out_dim,
            use_bias=False,
            kernel_init=nnx.with_partitioning(_init, ("mlp", "embed")),
            rngs=rngs,
        )
        self.norm = _norm(out_dim, rngs)
        self.linear2 = _dense(out_dim, out_dim, ("embed", "mlp"), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, z, h2, w2, _ = x.shape
        x = self.linear1(x)
        c = x.shape[-1] // 4
        x = x.reshape(b, z, h2, w2, 2, 2, c).transpose(0, 1, 2, 4, 3, 5, 6)
        x = x.reshape(b, z, 2 * h2, 2 * w2, c)[:, :, : self.hw[0], : self.hw[1]]
        return constrain(self.linear2(self.norm(x)), TOKENS)


class PanguModel(nnx.Module):
    """One lead-time model: ``(upper, surface, static) -> (upper, surface)`` at ``t + lead``.

    Inputs and outputs are normalized fields; normalization, residual prediction and
    stepping live in :mod:`tellus.atmosphere.forecaster`.
    """

    def __init__(self, cfg: PanguConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        c = cfg.dim
        pimpl = "conv" if cfg.attention_impl == "reference" else "matmul"
        self.embed_upper = patch_embed.PatchEmbed3D(
            cfg.upper_vars, c, cfg.patch, impl=pimpl, rngs=rngs
        )
        self.embed_surface = patch_embed.PatchEmbed2D(
            cfg.surface_vars + cfg.static_vars, c, cfg.patch[1:], impl=pimpl, rngs=rngs
        )
        rates = cfg.drop_path_rates
        d = cfg.depths
        grid, coarse = cfg.token_grid, cfg.coarse_grid
        self.stage1 = Stage(cfg, c, cfg.heads[0], grid, rates[: d[0]], rngs=rngs)
        self.down = DownSample(c, rngs=rngs)
        self.stage2 = Stage(cfg, 2 * c, cfg.heads[1], coarse, rates[d[0] : d[0] + d[1]], rngs=rngs)
        self.stage3 = Stage(
            cfg, 2 * c, cfg.heads[2], coarse, rates[d[0] + d[1] : d[0] + d[1] + d[2]], rngs=rngs
        )
        self.up = UpSample(2 * c, c, grid[1:], rngs=rngs)
        self.stage4 = Stage(cfg, c, cfg.heads[3], grid, rates[d[0] + d[1] + d[2] :], rngs=rngs)
        self.recover_upper = patch_embed.PatchRecovery3D(
            2 * c, cfg.upper_vars, (cfg.levels, cfg.lat, cfg.lon), cfg.patch, impl=pimpl, rngs=rngs
        )
        self.recover_surface = patch_embed.PatchRecovery2D(
            2 * c, cfg.surface_vars, (cfg.lat, cfg.lon), cfg.patch[1:], impl=pimpl, rngs=rngs
        )

    def _check(self, upper: jax.Array, surface: jax.Array, static: jax.Array) -> None:
        cfg = self.config
        want_u = (cfg.levels, cfg.lat, cfg.lon, cfg.upper_vars)
        if upper.ndim != 5 or upper.shape[1:] != want_u:
            raise ValueError(
                f"upper-air input must be [batch, {', '.join(map(str, want_u))}] "
                f"(level, lat, lon, variable); got {upper.shape}"
            )
        want_s = (cfg.lat, cfg.lon, cfg.surface_vars)
        if surface.ndim != 4 or surface.shape[1:] != want_s or surface.shape[0] != upper.shape[0]:
            raise ValueError(
                f"surface input must be [{upper.shape[0]}, "
                f"{', '.join(map(str, want_s))}]; got {surface.shape}"
            )
        want_c = (cfg.lat, cfg.lon, cfg.static_vars)
        if static.shape[-3:] != want_c or static.ndim not in (3, 4):
            raise ValueError(
                f"static input must be [(batch,) {', '.join(map(str, want_c))}]; got {static.shape}"
            )

    def __call__(
        self,
        upper: jax.Array,
        surface: jax.Array,
        static: jax.Array,
        *,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Args: upper [B, L, H, W, Vu], surface [B, H, W, Vs], static [(B,) H, W, S];
        ``key`` enables drop-path (training). Returns (upper, surface) of the same shapes."""
        self._check(upper, surface, static)
        if static.ndim == 3:
            static = jnp.broadcast_to(static, (surface.shape[0], *static.shape))
        static = static.astype(surface.dtype)
        up_tok = self.embed_upper(upper)
        sf_tok = self.embed_surface(jnp.concatenate([surface, static], axis=-1))
        x = jnp.concatenate([sf_tok[:, None], up_tok], axis=1)
        x = constrain(x, TOKENS)
        keys = [None] * 4 if key is None else list(jax.random.split(key, 4))
        x = self.stage1(x, keys[0])
        skip = x
        x = self.down(x)
        x = self.stage2(x, keys[1])
        x = self.stage3(x, keys[2])
        x = self.up(x)
        x = self.stage4(x, keys[3])
        x = jnp.concatenate([x, skip], axis=-1)
        out_upper = self.recover_upper(x[:, 1:])
        out_surface = self.recover_surface(x[:, 0])
        return out_upper, out_surface


def make_model(cfg: PanguConfig) -> PanguModel:
    """Builds the model (annotations kept, no eager sharding)."""
    with nnx.use_eager_sharding(False):
        return PanguModel(cfg, rngs=nnx.Rngs(cfg.seed))


def abstract_model(cfg: PanguConfig) -> PanguModel:
    """The model with ``jax.ShapeDtypeStruct`` params: no memory allocated."""
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(lambda: PanguModel(cfg, rngs=nnx.Rngs(cfg.seed)))


def count_params(model: nnx.Module) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


__all__ = ["PanguModel", "abstract_model", "count_params", "drop_path", "make_model"]
