"""A ResoNet-style forecaster of Nino3.4: a CNN stem, a Transformer over its tokens, 24 leads.

ResoNet (Lyu et al. 2023) combines a convolutional network, which extracts local features of
the SST and heat-content anomaly maps, with a Transformer encoder over the CNN's spatial
tokens, which lets distant basins interact (the Indian Ocean with the Pacific, the western
Pacific heat content with the eastern SST). Here:

* inputs: ``[batch, history (3 months, t-2..t), variable (SST, heat content), lat, lon]``
  anomalies in K, and the calendar month (1..12) of the last input month ``t``;
* :class:`Forecaster` (a wrapper, so that the network itself knows no units) divides each
  variable by its training standard deviation and multiplies the output by the index's
  standard deviation, so that :class:`ResoNet` only sees unit-scale numbers and the user
  only K;
* the stem: ``len(conv_channels)`` stages of two 3x3 convolutions (periodic in longitude,
  zero-padded in latitude) and a 2x2 average pooling, e.g. 24x72 -> 6x18 tokens;
* a pre-LayerNorm Transformer encoder over those tokens, with learned positional embeddings
  and the init month (sin/cos of its phase, projected) added to every token;
* a head on the flattened tokens that predicts the 3-month running mean of Nino3.4 at every
  lead 1..``n_leads`` at once. By default it is of reduced rank: an MLP maps the tokens to
  ``lead_rank`` (4) numbers and one linear map reads every lead from them. The predictable
  part of ENSO at all leads comes from a few slow modes (the recharge oscillator's T and h,
  plus the IOD), so a forecast for lead L is a fixed combination of a few state-like
  features (reduced-rank regression); the long leads, whose targets are mostly noise (even
  the optimal forecast explains little of their variance), then fit 4 weights each instead
  of ``head_hidden``, and borrow the features the well-determined short leads learn. What
  this head gained over a full-rank one is measured in ``docs/results.md``.

Parameters carry the logical axis names of :mod:`tellus.kernels.partitioning`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.kernels import partitioning, prunable
from tellus.kernels.partitioning import constrain
from tellus.training import checkpoint

MONTHS = 12
_init = nnx.initializers.normal(stddev=0.02)
TOKENS = ("batch", "token", "act_embed")


@dataclasses.dataclass(frozen=True)
class ResoNetConfig:
    """Model shape, plus the normalization the :class:`Forecaster` applies.

    Attributes:
      n_lat, n_lon: input grid.
      history: input months (t-2..t: 3).
      n_vars: input variables (SST and heat-content anomalies: 2).
      n_leads: predicted leads (1..n_leads months).
      conv_channels: channels of each stem stage; each stage halves lat and lon.
      embed: Transformer width.
      depth: Transformer blocks.
      heads: attention heads.
      mlp_ratio: MLP hidden width / embed.
      head_hidden: hidden width of the output head.
      lead_rank: the number of features every lead is read from (a rank-``lead_rank``
        head); ``None`` for a full-rank head (one independent output per lead).
      seed: parameter initialization seed.
      pruned: the Transformer blocks built without attention (entropy-guided pruning,
        :mod:`tellus.training.entropy`; indices from 0).
      input_std: per-variable scale (K) the inputs are divided by.
      target_std: scale (K) of the outputs.
    """

    n_lat: int = 24
    n_lon: int = 72
    history: int = 3
    n_vars: int = 2
    n_leads: int = 24
    conv_channels: tuple[int, ...] = (16, 32)
    embed: int = 32
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 2
    head_hidden: int = 64
    lead_rank: int | None = 4
    seed: int = 0
    input_std: tuple[float, ...] = (1.0, 1.0)
    target_std: float = 1.0
    pruned: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        f = 2 ** len(self.conv_channels)
        if self.n_lat % f or self.n_lon % f:
            raise ValueError(
                f"grid {self.n_lat}x{self.n_lon} does not divide by the stem's pooling {f}"
            )
        if self.embed % self.heads:
            raise ValueError(f"embed={self.embed} is not a multiple of heads={self.heads}")
        if self.lead_rank is not None and not 1 <= self.lead_rank < self.n_leads:
            raise ValueError(
                f"lead_rank={self.lead_rank} must be None or in [1, n_leads={self.n_leads})"
            )
        if len(self.input_std) != self.n_vars:
            raise ValueError(f"input_std needs {self.n_vars} values, got {self.input_std}")
        pruned = tuple(sorted(int(i) for i in self.pruned))
        if any(not 0 <= i < self.depth for i in pruned) or len(set(pruned)) != len(pruned):
            raise ValueError(
                f"pruned must name distinct blocks 0..{self.depth - 1}, got {self.pruned}"
            )
        object.__setattr__(self, "pruned", pruned)

    @property
    def token_grid(self) -> tuple[int, int]:
        f = 2 ** len(self.conv_channels)
        return self.n_lat // f, self.n_lon // f

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResoNetConfig:
        d = dict(d)
        for k in ("conv_channels", "input_std", "pruned"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


PRESETS: dict[str, ResoNetConfig] = {
    # The smallest that still learns: for tests and smoke runs on a CPU.
    "tiny": ResoNetConfig(conv_channels=(8, 16), embed=16, depth=1, heads=2, head_hidden=32),
    # The default of `just train-enso`, sized for a CPU (its time: docs/results.md).
    "small": ResoNetConfig(),
    # Closer to ResoNet's width (several conv layers of 32-64 channels, a 4-6 block
    # Transformer of width 128-256); for an accelerator.
    "paper": ResoNetConfig(
        conv_channels=(32, 64), embed=128, depth=4, heads=8, mlp_ratio=4, head_hidden=256
    ),
}


def preset(name: str, **overrides: Any) -> ResoNetConfig:
    """A named preset (``tiny``, ``small``, ``paper``) with optional field overrides."""
    try:
        return dataclasses.replace(PRESETS[name], **overrides)
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None


def _dense(d_in: int, d_out: int, names: tuple[str | None, str | None], rngs: nnx.Rngs):
    return partitioning.dense(d_in, d_out, names, rngs, kernel_init=_init)


_norm = partitioning.layer_norm


class PeriodicConv(nnx.Module):
    """3x3 convolution, periodic in longitude and zero-padded in latitude: [B, lat, lon, C]."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(
            c_in,
            c_out,
            kernel_size=(3, 3),
            padding="VALID",
            kernel_init=nnx.with_partitioning(
                nnx.initializers.variance_scaling(1.0, "fan_in", "normal"),
                (None, None, "channels", "embed"),
            ),
            bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="wrap")
        x = jnp.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)))
        return self.conv(x)


class Stem(nnx.Module):
    """Stages of two periodic convolutions and a 2x2 average pooling: [B, lat, lon, C]."""

    def __init__(self, c_in: int, channels: tuple[int, ...], *, rngs: nnx.Rngs):
        convs = []
        for c in channels:
            convs.append((PeriodicConv(c_in, c, rngs=rngs), PeriodicConv(c, c, rngs=rngs)))
            c_in = c
        self.convs = nnx.List([nnx.List(pair) for pair in convs])

    def __call__(self, x: jax.Array) -> jax.Array:
        for a, b in self.convs:
            x = jax.nn.gelu(b(jax.nn.gelu(a(x))))
            x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        return x


class Attention(nnx.Module):
    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.heads = heads
        self.qkv = _dense(dim, 3 * dim, ("embed", "heads"), rngs)
        self.out = _dense(dim, dim, ("heads", "embed"), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        y = jax.nn.dot_product_attention(q, k, v)
        return self.out(y.reshape(b, n, d))


class Block(nnx.Module, prunable.PrunableAttention):
    """Pre-LayerNorm Transformer block; ``attention=False`` builds it pruned (``x = 2x``,
    then the MLP: :mod:`tellus.kernels.prunable`)."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: int, *, rngs: nnx.Rngs, attention: bool = True
    ):
        self.norm1 = _norm(dim, rngs)
        self.attn = Attention(dim, heads, rngs=rngs) if attention else None
        self.init_pruning()
        self.norm2 = _norm(dim, rngs)
        self.fc1 = _dense(dim, dim * mlp_ratio, ("embed", "mlp"), rngs)
        self.fc2 = _dense(dim * mlp_ratio, dim, ("mlp", "embed"), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        attn = self.attn
        x = self.attention_residual(x, lambda: attn(self.norm1(x)))
        x = x + self.fc2(jax.nn.gelu(self.fc1(self.norm2(x))))
        return constrain(x, TOKENS)


def month_features(month: jax.Array) -> jax.Array:
    """[B] calendar months (1..12) -> [B, 4]: sin/cos of the annual and semi-annual phase."""
    phase = 2.0 * jnp.pi * (jnp.asarray(month, jnp.float32) - 1.0) / MONTHS
    return jnp.stack(
        [jnp.sin(phase), jnp.cos(phase), jnp.sin(2 * phase), jnp.cos(2 * phase)], axis=-1
    )


class ResoNet(nnx.Module):
    """CNN stem + Transformer encoder + multi-lead head on normalized inputs."""

    def __init__(self, cfg: ResoNetConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        c_in = cfg.history * cfg.n_vars
        self.stem = Stem(c_in, cfg.conv_channels, rngs=rngs)
        self.embed = _dense(cfg.conv_channels[-1], cfg.embed, ("channels", "embed"), rngs)
        n_tokens = math.prod(cfg.token_grid)
        init = nnx.with_partitioning(_init, ("token", "embed"))
        self.pos = nnx.Param(init(rngs.params(), (n_tokens, cfg.embed), jnp.float32))
        self.month = _dense(4, cfg.embed, (None, "embed"), rngs)
        self.blocks = nnx.List(
            [
                Block(cfg.embed, cfg.heads, cfg.mlp_ratio, rngs=rngs, attention=i not in cfg.pruned)
                for i in range(cfg.depth)
            ]
        )
        self.norm = _norm(cfg.embed, rngs)
        self.head1 = _dense(
            n_tokens * cfg.embed + cfg.embed, cfg.head_hidden, ("embed", "mlp"), rngs
        )
        rank = cfg.lead_rank or cfg.n_leads
        self.head2 = _dense(cfg.head_hidden, rank, ("mlp", None), rngs)
        self.leads = (
            None if cfg.lead_rank is None else _dense(rank, cfg.n_leads, (None, None), rngs)
        )

    def tokens(self, x: jax.Array) -> jax.Array:
        """The stem's tokens [B, n_tokens, conv_channels[-1]] of normalized inputs."""
        b, h, v, nlat, nlon = x.shape
        x = jnp.transpose(x, (0, 3, 4, 1, 2)).reshape(b, nlat, nlon, h * v)
        x = self.stem(x)
        return x.reshape(b, -1, x.shape[-1])

    def __call__(self, x: jax.Array, month: jax.Array) -> jax.Array:
        """Args: x [B, history, var, lat, lon] normalized; month [B] (1..12).
        Returns: [B, n_leads] normalized index predictions."""
        # The inputs take the weights' dtype (bfloat16 under mixed precision), so the
        # network computes in it instead of promoting back to float32.
        dtype = self.embed.kernel.dtype
        x = x.astype(dtype)
        m = self.month(month_features(month).astype(dtype))  # [B, E]
        t = self.embed(self.tokens(x)) + self.pos[None] + m[:, None, :]
        t = constrain(t, TOKENS)
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)
        z = jnp.concatenate([t.reshape(t.shape[0], -1), m], axis=-1)
        y = self.head2(jax.nn.gelu(self.head1(z)))
        return y if self.leads is None else self.leads(y)


class Forecaster(nnx.Module):
    """Normalization around :class:`ResoNet`: K in, K out."""

    def __init__(self, cfg: ResoNetConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.net = ResoNet(cfg, rngs=rngs)

    def __call__(self, x: jax.Array, month: jax.Array) -> jax.Array:
        """Args: x [B, history, var, lat, lon] anomalies (K); month [B] calendar month of
        the last input month. Returns: [B, n_leads] Nino3.4 3-month means (K)."""
        std = jnp.asarray(self.config.input_std, jnp.float32)[None, None, :, None, None]
        return (self.net(x / std, month) * self.config.target_std).astype(x.dtype)


@functools.lru_cache(maxsize=16)
def _builder(cfg: ResoNetConfig):
    # Under jit, with the RngBitGenerator key: one compilation per config (the seed is an
    # argument) instead of one per initializer; threefry's init graph alone is slow to
    # compile on a CPU (docs/performance.md).
    return nnx.jit(lambda key: Forecaster(cfg, rngs=nnx.Rngs(key)))


def make_model(cfg: ResoNetConfig | dict[str, Any]) -> Forecaster:
    """Builds the forecaster from a config or its dict (annotations kept, no eager sharding)."""
    if isinstance(cfg, dict):
        cfg = ResoNetConfig.from_dict(cfg)
    with nnx.use_eager_sharding(False):
        model = _builder(dataclasses.replace(cfg, seed=0))(jax.random.key(cfg.seed, impl="rbg"))
    model.config = cfg
    model.net.cfg = cfg
    return model


def _config_from_v0(cfg: dict[str, Any]) -> dict[str, Any]:
    """Version 0 (before the checkpoint envelope): a model config saved before
    ``lead_rank`` existed describes a full-rank head."""
    return dict(cfg, model=dict({"lead_rank": None}, **cfg["model"]), task=None, groups={})


KIND = checkpoint.Kind(
    name="enso.resonet",
    version=1,
    factory=make_model,
    migrations={0: checkpoint.Migration(config=_config_from_v0)},
)
"""What a ResoNet checkpoint is; ``checkpoint.rebuild(ck, step, KIND)`` checks it and migrates
older versions."""


__all__ = [
    "PRESETS",
    "Forecaster",
    "ResoNet",
    "ResoNetConfig",
    "make_model",
    "month_features",
    "preset",
]
