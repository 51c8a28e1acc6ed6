"""The denoiser of the ocean diffusion model: a UNet whose bottleneck attention is the shared
Earth trunk (ReconMOST's network, Song et al. 2025, on the guided-diffusion UNet of Dhariwal
& Nichol 2021).

A noisy temperature field ``x_t [B, H, W, D]`` (the D depth levels as channels, ``[-1, 1]``
units, 0 over land) and its timestep ``t [B]`` in, the noise estimate ``[B, H, W, D]`` out::

    x_t -> 0 over land -> pad to a multiple of 2^(levels - 1): latitude with land rows,
           longitude by wrapping its first columns round
      conv 3x3 (D -> C)                        t -> sinusoid(C) -> dense 4C, SiLU, dense 4C
      level l = 0 .. L-1, width C * mults[l]:  res_blocks ResBlocks [, conv 3x3 stride 2]
      bottleneck: ResBlock, attention (the shared EarthTrunk), ResBlock
      level l = L-1 .. 0: res_blocks + 1 ResBlocks on [h, skip] [, nearest 2x + conv 3x3]
      GroupNorm, SiLU, conv 3x3 (C -> D) -> crop -> 0 over land

ResBlock: ``GN, SiLU, conv, + dense(time), GN, SiLU, conv (zero init)`` plus a 1x1 conv on
the skip when the width changes. Every convolution is periodic in longitude (circular
padding) and zero-padded in latitude. The bottleneck attention: GroupNorm, a linear map to
the trunk's width, tokens ``[B, 1, h, w, dim]`` through
:class:`tellus.kernels.earth_trunk.EarthTrunk` with this grid's bias tables
(:class:`~tellus.kernels.earth_trunk.TrunkBias`, owned here) and a key mask (a token is ocean
if any cell of any depth under it is; land tokens are never keys), a linear map of its
``2 dim`` output back (zero init), added to the input. The trunk may be shared with other
domains (:func:`make_denoiser` takes it, the Domain contract's ``build(cfg_dict, trunk)``).

Where this departs from ReconMOST, and why:

* levels: ReconMOST's 6 levels (multipliers ``(1, 2, 2, 2, 4, 4)``, 5 down-samplings) on a
  173 x 360 grid reach a ~6 x 12 bottleneck; the embedded ocean's 35 x 90 grid takes 4
  levels ``(1, 2, 2, 4)`` (3 down-samplings, 40 x 96 padded, a 5 x 12 bottleneck) in the
  ``paper`` preset, keeping the widest multiplier at the bottleneck;
* the bottleneck attention is the shared trunk (two pre-norm transformer blocks, one window
  over the whole bottleneck with the Earth-specific bias, land keys masked) instead of one
  plain self-attention block, so that the ocean diffusion model sits on the same trunk as
  every other domain;
* a grid not divisible by ``2^(levels - 1)`` is padded (land rows in latitude, wrapped
  columns in longitude) and cropped back: the padded longitudes repeat the first ones, so
  the coarse levels' circle has a seam of ``pad / 2^l`` duplicated columns;
* the time embedding is added in each ResBlock (no scale-shift norm); no dropout.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.kernels import earth_trunk, partitioning

HW = tuple[int, int]
_zeros = nnx.initializers.zeros_init()


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def bottleneck_trunk(grid: HW, dim: int, heads: int, depths: HW = (1, 1)) -> dict[str, Any]:
    """The trunk of the bottleneck: ``depths[0] + depths[1]`` blocks at one resolution, one
    window over the whole ``grid``, no shift, no drop-path, no experts."""
    return earth_trunk.TrunkConfig(
        dim=dim,
        depths=(depths[0], 0, 0, depths[1]),
        heads=(heads,) * 4,
        window=(1, *grid),
        drop_path=0.0,
        shift_windows=False,
    ).to_dict()


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """The denoiser's shape (JSON-serializable).

    Attributes:
      n_lat, n_lon: the grid.
      depths: depth levels D (the input and output channels).
      trunk: the bottleneck trunk (:class:`earth_trunk.TrunkConfig` fields; its window should
        cover :attr:`bottleneck`, :func:`bottleneck_trunk`).
      base: width C of the first level.
      mults: width multiplier of each level (its number of levels L).
      res_blocks: ResBlocks per level on the way down (``res_blocks + 1`` up).
      groups: GroupNorm groups (dividing every width).
      timesteps: T of the diffusion schedule the model is trained on.
      seed: initialization seed.
    """

    n_lat: int
    n_lon: int
    depths: int
    trunk: dict[str, Any]
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    res_blocks: int = 1
    groups: int = 8
    timesteps: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mults", tuple(int(m) for m in self.mults))
        object.__setattr__(self, "trunk", earth_trunk.TrunkConfig(**dict(self.trunk)).to_dict())
        for name in ("n_lat", "n_lon", "depths", "base", "res_blocks", "groups", "timesteps"):
            if int(getattr(self, name)) < (0 if name == "res_blocks" else 1):
                raise ValueError(
                    f"UNetConfig.{name} must be a positive int, got {getattr(self, name)}"
                )
        if not self.mults or min(self.mults) < 1:
            raise ValueError(f"UNetConfig.mults must be positive multipliers, got {self.mults}")
        bad = [w for w in self.widths if w % self.groups]
        if bad:
            raise ValueError(
                f"UNetConfig.groups ({self.groups}) must divide every width; not {bad}"
            )
        tc = self.trunk_config
        if tc.experts:
            raise ValueError("the denoiser's trunk has no experts (no lead to route by)")
        if tc.window[0] != 1:
            raise ValueError(
                f"the bottleneck has one level: the trunk window must be (1, h, w), got {tc.window}"
            )

    @property
    def trunk_config(self) -> earth_trunk.TrunkConfig:
        return earth_trunk.TrunkConfig(**self.trunk)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base * m for m in self.mults)

    @property
    def factor(self) -> int:
        """The down-sampling of the bottleneck: ``2^(levels - 1)``."""
        return 2 ** (len(self.mults) - 1)

    @property
    def padded(self) -> HW:
        return _ceil_to(self.n_lat, self.factor), _ceil_to(self.n_lon, self.factor)

    @property
    def bottleneck(self) -> HW:
        h, w = self.padded
        return h // self.factor, w // self.factor

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        return cls(**d)


def _conv(
    c_in: int, c_out: int, k: int, rngs: nnx.Rngs, *, names=("embed", "mlp"), stride=1, zero=False
):
    init = _zeros if zero else nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")
    return nnx.Conv(
        c_in,
        c_out,
        (k, k),
        strides=stride,
        padding="VALID",
        kernel_init=nnx.with_partitioning(init, (None, None, *names)),
        bias_init=nnx.with_partitioning(_zeros, (names[1],)),
        rngs=rngs,
    )


def circular_pad(x: jax.Array, r: int) -> jax.Array:
    """``[B, H, W, C]`` padded by ``r``: zeros in latitude, wrapped in longitude."""
    if r == 0:
        return x
    x = jnp.pad(x, ((0, 0), (r, r), (0, 0), (0, 0)))
    return jnp.concatenate([x[:, :, -r:], x, x[:, :, :r]], axis=2)


class Conv(nnx.Module):
    """A ``k x k`` convolution, periodic in longitude, zero-padded in latitude."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, *, rngs: nnx.Rngs, **kw: Any):
        self.r = k // 2
        self.conv = _conv(c_in, c_out, k, rngs, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(circular_pad(x, self.r))


def _norm(c: int, groups: int, rngs: nnx.Rngs) -> nnx.GroupNorm:
    return nnx.GroupNorm(
        c,
        num_groups=groups,
        epsilon=1e-5,
        scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("norm",)),
        bias_init=nnx.with_partitioning(_zeros, ("norm",)),
        rngs=rngs,
    )


class ResBlock(nnx.Module):
    """``x + f(x, time)``; a 1x1 convolution on the skip when the width changes."""

    def __init__(self, c_in: int, c_out: int, t_dim: int, groups: int, *, rngs: nnx.Rngs):
        self.norm1 = _norm(c_in, groups, rngs)
        self.conv1 = Conv(c_in, c_out, rngs=rngs)
        self.time = partitioning.dense(t_dim, c_out, ("embed", "mlp"), rngs)
        self.norm2 = _norm(c_out, groups, rngs)
        self.conv2 = Conv(c_out, c_out, rngs=rngs, zero=True)
        self.skip = Conv(c_in, c_out, 1, rngs=rngs) if c_in != c_out else None

    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.time(jax.nn.silu(emb))[:, None, None]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal embedding ``[B, dim]`` of integer timesteps ``t [B]``: cosines then sines
    of ``t / max_period^(i / half)``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


class TrunkAttention(nnx.Module):
    """The bottleneck's attention: the shared trunk over its token grid, residual."""

    def __init__(self, cfg: UNetConfig, trunk: earth_trunk.EarthTrunk, *, rngs: nnx.Rngs):
        c, tc = cfg.widths[-1], cfg.trunk_config
        self.norm = _norm(c, cfg.groups, rngs)
        self.proj_in = partitioning.dense(c, tc.dim, ("mlp", "embed"), rngs)
        self.bias = earth_trunk.TrunkBias(tc, (1, *cfg.bottleneck), rngs=rngs)
        self.trunk = trunk
        self.proj_out = partitioning.dense(
            2 * tc.dim, c, ("embed", "mlp"), rngs, kernel_init=_zeros
        )

    def __call__(self, x: jax.Array, key_mask: jax.Array, key: jax.Array | None) -> jax.Array:
        tokens = self.proj_in(self.norm(x))[:, None]
        y = self.trunk(tokens, self.bias(), key=key, key_mask=key_mask)
        return x + self.proj_out(y[:, 0])


def bottleneck_mask(ocean: jax.Array, cfg: UNetConfig) -> jax.Array:
    """The trunk's key mask ``[B | 1, 1, h, w]`` from the cell mask ``[B | 1, H, W, D]``: a
    token is ocean if any cell of any depth under it is (padded rows are land, wrapped
    columns repeat theirs)."""
    m = _pad_grid(jnp.any(jnp.asarray(ocean, bool), axis=-1, keepdims=True), cfg)[..., 0]
    f = cfg.factor
    b, h, w = m.shape
    return m.reshape(b, h // f, f, w // f, f).any(axis=(2, 4))[:, None]


def _pad_grid(x: jax.Array, cfg: UNetConfig) -> jax.Array:
    (hp, wp), h, w = cfg.padded, cfg.n_lat, cfg.n_lon
    top = (hp - h) // 2
    x = jnp.pad(x, ((0, 0), (top, hp - h - top), (0, 0), (0, 0)))
    return jnp.concatenate([x, x[:, :, : wp - w]], axis=2) if wp > w else x


class UNetDenoiser(nnx.Module):
    """``eps_hat = model(x_t, t, ocean)``. Parameter paths: ``time_in``, ``time_out``,
    ``conv_in``, ``down/<i>``, ``mid1``, ``attention`` (its ``trunk``, the shared one, and
    ``bias``, this grid's tables), ``mid2``, ``up/<i>``, ``norm_out``, ``conv_out``."""

    def __init__(
        self, cfg: UNetConfig, *, rngs: nnx.Rngs, trunk: earth_trunk.EarthTrunk | None = None
    ):
        tc = cfg.trunk_config
        if trunk is not None and trunk.config != tc:
            raise ValueError(
                f"the shared trunk is {trunk.config}, the denoiser was configured for {tc}"
            )
        self.config = cfg
        c, t_dim, g = cfg.base, 4 * cfg.base, cfg.groups
        self.time_in = partitioning.dense(c, t_dim, ("embed", "mlp"), rngs)
        self.time_out = partitioning.dense(t_dim, t_dim, ("mlp", "embed"), rngs)
        self.conv_in = Conv(cfg.depths, c, rngs=rngs, names=("channels", "mlp"))
        down, chans, ch = [], [c], c
        for level, w in enumerate(cfg.widths):
            for _ in range(cfg.res_blocks):
                down.append(ResBlock(ch, w, t_dim, g, rngs=rngs))
                ch = w
                chans.append(ch)
            if level < len(cfg.widths) - 1:
                down.append(Conv(ch, ch, rngs=rngs, stride=2))
                chans.append(ch)
        self.down = nnx.List(down)
        self.mid1 = ResBlock(ch, ch, t_dim, g, rngs=rngs)
        self.attention = TrunkAttention(
            cfg, trunk if trunk is not None else earth_trunk.EarthTrunk(tc, rngs=rngs), rngs=rngs
        )
        self.mid2 = ResBlock(ch, ch, t_dim, g, rngs=rngs)
        up = []
        for level in reversed(range(len(cfg.widths))):
            w = cfg.widths[level]
            for i in range(cfg.res_blocks + 1):
                up.append(ResBlock(ch + chans.pop(), w, t_dim, g, rngs=rngs))
                ch = w
                if level > 0 and i == cfg.res_blocks:
                    up.append(Conv(ch, ch, rngs=rngs))  # after a nearest 2x
        self.up = nnx.List(up)
        self.norm_out = _norm(ch, g, rngs)
        self.conv_out = Conv(ch, cfg.depths, rngs=rngs, names=("embed", "channels"), zero=True)

    @property
    def trunk(self) -> earth_trunk.EarthTrunk:
        return self.attention.trunk

    def __call__(
        self, x: jax.Array, t: jax.Array, ocean: jax.Array, *, key: jax.Array | None = None
    ) -> jax.Array:
        """Args:
          x: ``[B, H, W, D]`` noisy field (any values over land: they are replaced).
          t: ``[B]`` integer timesteps in ``[0, timesteps)``.
          ocean: ``[B | 1, H, W, D]`` (or ``[B | 1, H, W]``: every depth), True over the ocean.
          key: enables the trunk's drop-path, if it has any (training).

        Returns:
          ``[B, H, W, D]`` noise estimate, 0 over land.
        """
        cfg = self.config
        want = (cfg.n_lat, cfg.n_lon, cfg.depths)
        if x.ndim != 4 or x.shape[1:] != want:
            raise ValueError(f"x must be [batch, {', '.join(map(str, want))}]; got {x.shape}")
        ocean = jnp.asarray(ocean, bool)
        if ocean.ndim == 3:
            ocean = jnp.broadcast_to(ocean[..., None], (*ocean.shape, cfg.depths))
        if ocean.ndim != 4 or ocean.shape[1:] != want or ocean.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"ocean must be [{x.shape[0]} | 1, {', '.join(map(str, want))}]; got {ocean.shape}"
            )
        t = jnp.asarray(t)
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be [batch = {x.shape[0]}] timesteps; got {t.shape}")
        # The inputs take the weights' dtype (bfloat16 under mixed precision), so the
        # network computes in it instead of promoting back to float32.
        dtype = self.conv_in.conv.kernel.dtype
        emb = timestep_embedding(t, cfg.base).astype(dtype)
        emb = self.time_out(jax.nn.silu(self.time_in(emb)))
        h = self.conv_in(_pad_grid(jnp.where(ocean, x, 0.0).astype(dtype), cfg))
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid1(h, emb)
        h = self.attention(h, bottleneck_mask(ocean, cfg), key)
        h = self.mid2(h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(jnp.concatenate([h, skips.pop()], axis=-1), emb)
            else:
                h = layer(jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2))
        h = self.conv_out(jax.nn.silu(self.norm_out(h)))
        top = (cfg.padded[0] - cfg.n_lat) // 2
        h = h[:, top : top + cfg.n_lat, : cfg.n_lon].astype(x.dtype)
        return jnp.where(ocean, h, 0.0)


def _preset(base, mults, res_blocks, groups, dim, heads) -> UNetConfig:
    """A denoiser of the embedded ocean: 35 x 90, 15 depth levels."""
    probe = UNetConfig(
        35, 90, 15, bottleneck_trunk((1, 1), dim, heads), base, mults, res_blocks, groups
    )
    return dataclasses.replace(probe, trunk=bottleneck_trunk(probe.bottleneck, dim, heads))


PRESETS: dict[str, UNetConfig] = {
    # ReconMOST's widths: 128 base channels, 3 ResBlocks per level, 4 of its 6 levels
    # (1, 2, 2, 4) for the 35 x 90 grid (40 x 96 padded, a 5 x 12 bottleneck), the trunk
    # 512 wide with 8 heads of 64 (two blocks over the whole bottleneck).
    "paper": _preset(128, (1, 2, 2, 4), 3, 32, 512, 8),
    # CPU-sized: 32 base channels, 3 levels (1, 2, 2) (36 x 92 padded, a 9 x 23 bottleneck),
    # one ResBlock per level, a 64-wide trunk with 4 heads.
    "cpu": _preset(32, (1, 2, 2), 1, 8, 64, 4),
}


def make_denoiser(
    cfg: UNetConfig | dict[str, Any], trunk: earth_trunk.EarthTrunk | None = None
) -> UNetDenoiser:
    """The denoiser of ``cfg`` (a config or its dict) on ``trunk`` (a fresh one when None):
    the Domain contract's ``build``. Annotations kept, no eager sharding."""
    cfg = cfg if isinstance(cfg, UNetConfig) else UNetConfig.from_dict(dict(cfg))
    if trunk is not None and trunk.config != cfg.trunk_config:
        raise ValueError(
            f"the shared trunk is {trunk.config}, the denoiser was configured for {cfg.trunk_config}"
        )
    with nnx.use_eager_sharding(False):
        return UNetDenoiser(cfg, rngs=nnx.Rngs(cfg.seed), trunk=trunk)


def trunk_config(cfg: dict[str, Any]) -> earth_trunk.TrunkConfig:
    """The trunk a denoiser's config dict implies (the Domain contract's ``trunk_config``)."""
    return UNetConfig.from_dict(dict(cfg)).trunk_config


def count_parameters(cfg: UNetConfig) -> int:
    """Parameters of the denoiser of ``cfg`` (trunk included), without allocating them."""
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: UNetDenoiser(cfg, rngs=nnx.Rngs(cfg.seed)))
    return partitioning.count_params(abstract)


def denoise_fn(model: UNetDenoiser, ocean: jax.Array):
    """``fn(x_t, t) -> eps_hat`` of ``model`` over ``ocean`` for :func:`tellus.ocean.diffusion.sample`
    (tile ``ocean`` to the sampler's batch, ``samples * B``, or give it a batch of 1)."""
    return lambda x, t: model(x, t, ocean)


__all__ = [
    "PRESETS",
    "Conv",
    "ResBlock",
    "TrunkAttention",
    "UNetConfig",
    "UNetDenoiser",
    "bottleneck_mask",
    "bottleneck_trunk",
    "circular_pad",
    "count_parameters",
    "denoise_fn",
    "make_denoiser",
    "timestep_embedding",
    "trunk_config",
]
