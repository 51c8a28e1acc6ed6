"""The ORCA-DL network (Guo et al. 2024) on the blocks and the trunk of ``tellus.kernels``.

Normalized fields in, normalized fields out, one lead per sample (the lead month routes
every MLP to its expert and rotates the forcing, :mod:`tellus.ocean.lead`)::

    x [B, H, W, C]: V variables, each its depth levels as channels (thetao, so, uo, vo:
      one per depth; SST, SSH: one)         forcing [B, H, W, F] (wind stress)
      | split by variable                     |
      v                                       v
    V encoders (2D Swin, experts)           wind encoder (2D Swin, no experts)
      patch embed + LayerNorm + absolute position, stages of blocks with 2 x 2 merges
      between (C, 2C, 4C ...), skips kept   -> bottleneck [B, h, w, 4C]
      | concat V x 4C -> linear -> D          | linear 4C -> D
      +---------- z + (rot(f) . z) rot(f), rot by lead (lead.mix_forcing) ---+
      + absolute position -> tokens [B, 1, h, w, D]
    fusion: the shared EarthTrunk (tellus.kernels.earth_trunk), experts in its MLPs, the
      window the whole bottleneck grid (no shift, no resampling in the faithful preset)
      -> [B, 1, h, w, 2D] -> linear -> V x 4C
    V decoders (2D Swin, experts): stages in reverse, 2 x 2 up-sampling, the encoder's skip
      concatenated and projected, LayerNorm, patch recovery -> the variable's channels
      -> concat [B, H, W, C]

Every block is :class:`tellus.kernels.earth_trunk.EarthSpecificBlock` over a token grid
with one vertical level (2D windows ``(1, wh, ww)``), longitude periodic (shifted windows
wrap), grids padded to whole patches and windows. The network owns the Earth-specific bias
tables of its grids; the fusion trunk's are a :class:`~tellus.kernels.earth_trunk.TrunkBias`.

Land: ``ocean [B | 1, H, W]`` (True over the ocean). Inputs are set to zero over land
before anything else, so no land value (NaN, 1e30) enters any arithmetic, and every
attention layer takes the token mask of its grid as a key mask: a patch token is ocean if
any of its cells is, a merged token if any of its four is, and no land token is ever a
key. Outputs over land are zero.

Where this departs from the released ORCA-DL code, and why:

* attention: the shared Earth-specific bias of Pangu-Weather (absolute in latitude inside a
  window, relative in longitude) instead of a 2D rotary position embedding inside windows,
  so that every block is the trunk's own, one attention for every domain; the encoders' and
  the fusion's absolute position embeddings are kept;
* the land mask: a token is land when all its cells are, and land tokens are never keys;
  the released code builds its token mask by a convolution with zero weights, which marks
  every token as land, so that the -100 it adds to the logits is the same for every key of
  a window and cancels in the softmax: land is not masked in its attention;
* up-sampling: the trunk's ``UpSample`` (linear 2 x 2 expansion, LayerNorm, linear), reused
  rather than a second layer of the kind; it has one linear map more than ORCA-DL's;
* the fusion is the shared trunk (so that the ocean joins one Earth trunk), its first and
  last stage with a skip: its output is the last stage's tokens concatenated with the first
  stage's (2D wide), projected back to the decoders' widths;
* the rotary lead embedding rotates channel pairs, keeping each pair's norm; the released
  code's rotation stacks the halves along the channel axis, which is not a rotation.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.kernels import earth_bias, earth_trunk, partitioning, patch_embed
from tellus.ocean import lead as lead_lib

_init = nnx.initializers.truncated_normal(stddev=0.02)
HW = tuple[int, int]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """The network's shape (JSON-serializable; no statistics, no variable names).

    Attributes:
      n_lat, n_lon: grid of the fields.
      channels: channels of each ocean variable, in input order (its depth levels, or 1).
      forcing_channels: channels of the forcing (wind stress: 2).
      patch: (lat, lon) patch of every embedding.
      dim: encoder width C of the first stage; stage ``s`` is ``C * 2**s`` wide.
      depths: blocks per encoder stage (the decoders mirror them).
      heads: attention heads per encoder stage.
      window: (lat, lon) attention window of the encoders and decoders.
      trunk: the fusion trunk (:class:`earth_trunk.TrunkConfig` fields); its ``dim`` is the
        latent width D, its window should cover the bottleneck grid (:attr:`bottleneck`).
      experts: lead-routed experts in every encoder and decoder MLP (0: none).
      mlp_ratio: MLP hidden width / token width in the encoders and decoders.
      drop_path: the largest stochastic-depth rate of the encoders and decoders.
      lead_frequencies: the rotary lead embedding's ladder (:func:`lead.frequencies`).
      attention_impl: ``"fast"`` or ``"reference"``.
      seed: initialization seed.
    """

    n_lat: int
    n_lon: int
    channels: tuple[int, ...]
    trunk: dict[str, Any]
    forcing_channels: int = 2
    patch: HW = (2, 3)
    dim: int = 16
    depths: tuple[int, ...] = (2, 2, 2)
    heads: tuple[int, ...] = (2, 4, 8)
    window: HW = (3, 5)
    experts: int = 6
    mlp_ratio: float = 4.0
    drop_path: float = 0.2
    lead_frequencies: str = "orca"
    attention_impl: str = "fast"
    seed: int = 0

    def __post_init__(self) -> None:
        for field in ("channels", "patch", "depths", "heads", "window"):
            object.__setattr__(self, field, tuple(int(v) for v in getattr(self, field)))
        object.__setattr__(self, "trunk", earth_trunk.TrunkConfig(**dict(self.trunk)).to_dict())
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"every variable needs at least one channel: {self.channels}")
        if len(self.depths) != len(self.heads) or not self.depths:
            raise ValueError(f"depths {self.depths} and heads {self.heads} must pair up")
        if len(self.patch) != 2 or len(self.window) != 2:
            raise ValueError(f"patch and window are (lat, lon): {self.patch}, {self.window}")
        for s, h in enumerate(self.heads):
            if (self.dim * 2**s) % h:
                raise ValueError(f"encoder stage {s}: width {self.dim * 2**s} not divisible by {h}")
        if self.lead_frequencies not in lead_lib.FREQUENCIES:
            raise ValueError(f"lead_frequencies must be one of {lead_lib.FREQUENCIES}")
        if self.trunk_config.dim % 2:
            raise ValueError(f"the latent width {self.trunk_config.dim} must be even (rotary)")
        if self.experts < 0 or self.experts != self.trunk_config.experts:
            raise ValueError(
                f"the encoders' experts ({self.experts}) and the fusion trunk's "
                f"({self.trunk_config.experts}) must agree"
            )

    @property
    def trunk_config(self) -> earth_trunk.TrunkConfig:
        return earth_trunk.TrunkConfig(**self.trunk)

    @property
    def stage_grids(self) -> tuple[HW, ...]:
        """(lat, lon) token grid of each encoder stage."""
        return encoder_grids((self.n_lat, self.n_lon), self.patch, len(self.depths))

    @property
    def bottleneck(self) -> HW:
        """The (lat, lon) token grid the fusion trunk sees."""
        return self.stage_grids[-1]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.dim * 2**s for s in range(len(self.depths)))

    def block_config(self, experts: int) -> earth_trunk.BlockConfig:
        return earth_trunk.BlockConfig(
            window=(1, *self.window),
            mlp_ratio=self.mlp_ratio,
            attention_impl=self.attention_impl,
            experts=experts,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetConfig:
        return cls(**d)


def encoder_grids(shape: HW, patch: HW, n_stages: int) -> tuple[HW, ...]:
    """The (lat, lon) token grid of each of ``n_stages`` encoder stages for fields of
    ``shape``: the patch grid, then halved (rounded up) by every 2 x 2 merge."""
    h, w = patch_embed.patch_grid(shape, patch)[1]
    grids = [(h, w)]
    for _ in range(n_stages - 1):
        h, w = _ceil_div(h, 2), _ceil_div(w, 2)
        grids.append((h, w))
    return tuple(grids)


def token_masks(ocean: jax.Array, cfg: NetConfig) -> list[jax.Array]:
    """The key mask ``[B | 1, 1, h, w]`` of every encoder stage from the cell mask
    ``ocean [B | 1, H, W]``: a patch token is ocean if any of its cells is (padded cells are
    land), a merged token if any of its 2 x 2 is (:func:`earth_trunk.merge_mask`)."""
    _, (gh, gw), pads = patch_embed.patch_grid((cfg.n_lat, cfg.n_lon), cfg.patch)
    m = jnp.pad(jnp.asarray(ocean, bool), ((0, 0), *pads))
    ph, pw = cfg.patch
    m = m.reshape(m.shape[0], gh, ph, gw, pw).any(axis=(2, 4))[:, None]
    masks = [m]
    for _ in cfg.depths[1:]:
        masks.append(earth_trunk.merge_mask(masks[-1]))
    return masks


def _dense(d_in: int, d_out: int, rngs: nnx.Rngs, names=("embed", "mlp")) -> nnx.Linear:
    return partitioning.dense(d_in, d_out, names, rngs, kernel_init=_init)


class _StageBias(nnx.Module):
    """The Earth-specific bias tables of one stage's blocks on its grid."""

    def __init__(self, window: HW, grid: HW, depth: int, heads: int, *, rngs: nnx.Rngs):
        win = (1, *window)
        padded = (1, *(_ceil_div(n, w) * w for n, w in zip(grid, window, strict=True)))
        n_types = earth_bias.n_window_types(padded, win)
        self.tables = nnx.List(
            [earth_bias.EarthSpecificBias(win, n_types, heads, rngs=rngs) for _ in range(depth)]
        )

    def __call__(self) -> list[jax.Array]:
        return [t() for t in self.tables]


class Encoder(nnx.Module):
    """One variable's 2D Swin encoder: ``[B, H, W, c] -> ([B, 1, h, w, C_last], skips)``."""

    def __init__(self, cfg: NetConfig, in_channels: int, experts: int, *, rngs: nnx.Rngs):
        self.config = cfg
        c = cfg.dim
        pimpl = "conv" if cfg.attention_impl == "reference" else "matmul"
        self.embed = patch_embed.PatchEmbed2D(in_channels, c, cfg.patch, impl=pimpl, rngs=rngs)
        self.embed_norm = partitioning.layer_norm(c, rngs)
        gh, gw = cfg.stage_grids[0]
        self.position = nnx.Param(
            nnx.with_partitioning(_init, (None, None, "embed"))(rngs.params(), (gh, gw, c))
        )
        n = sum(cfg.depths)
        rates = [cfg.drop_path * i / max(n - 1, 1) for i in range(n)]
        blocks = cfg.block_config(experts)
        edges = [0, *itertools.accumulate(cfg.depths)]
        self.stages = nnx.List(
            [
                earth_trunk.Stage(blocks, w, h, rates[edges[s] : edges[s + 1]], rngs=rngs)
                for s, (w, h) in enumerate(zip(cfg.widths, cfg.heads, strict=True))
            ]
        )
        self.biases = nnx.List(
            [
                _StageBias(cfg.window, g, d, h, rngs=rngs)
                for g, d, h in zip(cfg.stage_grids, cfg.depths, cfg.heads, strict=True)
            ]
        )
        self.downs = nnx.List([earth_trunk.DownSample(w, rngs=rngs) for w in cfg.widths[:-1]])
        self.norm = partitioning.layer_norm(cfg.widths[-1], rngs)

    def __call__(
        self,
        x: jax.Array,
        masks: Sequence[jax.Array],
        expert: jax.Array | None,
        key: jax.Array | None = None,
    ) -> tuple[jax.Array, list[jax.Array]]:
        t = self.embed_norm(self.embed(x)) + self.position[...]
        t = t[:, None]  # [B, 1, h, w, C]: one vertical level
        keys = [None] * len(self.stages) if key is None else jax.random.split(key, len(self.stages))
        skips = []
        for s, stage in enumerate(self.stages):
            t = stage(t, self.biases[s](), keys[s], key_mask=masks[s], expert=expert)
            skips.append(t)
            if s < len(self.downs):
                t = self.downs[s](t)
        return self.norm(t), skips


class Decoder(nnx.Module):
    """One variable's 2D Swin decoder: the bottleneck ``[B, 1, h, w, C_last]`` and the
    encoder's skips -> ``[B, H, W, c]``."""

    def __init__(self, cfg: NetConfig, out_channels: int, *, rngs: nnx.Rngs):
        self.config = cfg
        n = sum(cfg.depths)
        rates = [cfg.drop_path * i / max(n - 1, 1) for i in range(n)]
        edges = [0, *itertools.accumulate(cfg.depths)]
        blocks = cfg.block_config(cfg.experts)
        order = list(range(len(cfg.depths)))[::-1]  # deepest stage first
        self.stages = nnx.List(
            [
                earth_trunk.Stage(
                    blocks,
                    cfg.widths[s],
                    cfg.heads[s],
                    rates[edges[s] : edges[s + 1]][::-1],
                    rngs=rngs,
                )
                for s in order
            ]
        )
        self.biases = nnx.List(
            [
                _StageBias(cfg.window, cfg.stage_grids[s], cfg.depths[s], cfg.heads[s], rngs=rngs)
                for s in order
            ]
        )
        self.ups = nnx.List(
            [earth_trunk.UpSample(cfg.widths[s], cfg.widths[s - 1], rngs=rngs) for s in order[:-1]]
        )
        self.joins = nnx.List(
            [_dense(2 * cfg.widths[s - 1], cfg.widths[s - 1], rngs) for s in order[:-1]]
        )
        self.norm = partitioning.layer_norm(cfg.dim, rngs)
        pimpl = "conv" if cfg.attention_impl == "reference" else "matmul"
        self.recover = patch_embed.PatchRecovery2D(
            cfg.dim, out_channels, (cfg.n_lat, cfg.n_lon), cfg.patch, impl=pimpl, rngs=rngs
        )

    def __call__(
        self,
        z: jax.Array,
        skips: Sequence[jax.Array],
        masks: Sequence[jax.Array],
        expert: jax.Array | None,
        key: jax.Array | None = None,
    ) -> jax.Array:
        n = len(self.stages)
        keys = [None] * n if key is None else jax.random.split(key, n)
        t = z
        for i, stage in enumerate(self.stages):
            s = n - 1 - i  # the encoder stage this one mirrors
            if i > 0:
                t = self.ups[i - 1](t, skips[s].shape[2:4])
                t = self.joins[i - 1](jnp.concatenate([t, skips[s]], axis=-1))
            t = stage(t, self.biases[i](), keys[i], key_mask=masks[s], expert=expert)
        return self.recover(self.norm(t[:, 0]))


class OceanNet(nnx.Module):
    """ORCA-DL: normalized state, encoded forcing and lead month -> normalized state at that
    lead. Parameter paths: ``encoders/<v>``, ``wind``, ``merge``, ``wind_proj``, ``position``,
    ``bias`` (the fusion grid's tables), ``trunk``, ``split``, ``decoders/<v>``."""

    def __init__(
        self, cfg: NetConfig, *, rngs: nnx.Rngs, trunk: earth_trunk.EarthTrunk | None = None
    ):
        self.config = cfg
        tc = cfg.trunk_config
        if trunk is not None and trunk.config != tc:
            raise ValueError(
                f"the shared trunk is {trunk.config}, the ocean model was configured for {tc}"
            )
        d, c_last, n_vars = tc.dim, cfg.widths[-1], len(cfg.channels)
        self.encoders = nnx.List([Encoder(cfg, ch, cfg.experts, rngs=rngs) for ch in cfg.channels])
        self.wind = Encoder(cfg, cfg.forcing_channels, 0, rngs=rngs)
        self.merge = _dense(n_vars * c_last, d, rngs)
        self.wind_proj = _dense(c_last, d, rngs)
        hb, wb = cfg.bottleneck
        self.position = nnx.Param(
            nnx.with_partitioning(_init, (None, None, "embed"))(rngs.params(), (hb, wb, d))
        )
        self.bias = earth_trunk.TrunkBias(tc, (1, hb, wb), rngs=rngs)
        self.trunk = trunk if trunk is not None else earth_trunk.EarthTrunk(tc, rngs=rngs)
        self.split = _dense(2 * d, n_vars * c_last, rngs, names=("mlp", "embed"))
        self.decoders = nnx.List([Decoder(cfg, ch, rngs=rngs) for ch in cfg.channels])

    def _check(self, x: jax.Array, name: str, channels: int) -> None:
        cfg = self.config
        want = (cfg.n_lat, cfg.n_lon, channels)
        if x.ndim != 4 or x.shape[1:] != want:
            raise ValueError(
                f"{name} must be [batch, {', '.join(map(str, want))}] (lat, lon, channel); "
                f"got {x.shape}"
            )

    def encode_forcing(self, forcing: jax.Array, ocean: jax.Array) -> jax.Array:
        """Normalized forcing ``[B, H, W, F]`` -> its latent ``[B, h, w, D]`` (no lead in it:
        encode once, mix into every lead)."""
        self._check(forcing, "forcing", self.config.forcing_channels)
        ocean = jnp.asarray(ocean, bool)
        forcing = jnp.where(ocean[..., None], forcing, 0.0)
        z, _ = self.wind(forcing, token_masks(ocean, self.config), None)
        return self.wind_proj(z[:, 0])

    def __call__(
        self,
        x: jax.Array,
        forcing: jax.Array,
        lead: jax.Array,
        ocean: jax.Array,
        *,
        key: jax.Array | None = None,
    ) -> jax.Array:
        """The normalized state at lead ``lead`` (months after the forcing's month).

        Args:
          x: normalized state ``[B, H, W, C]`` (any values over land: they are replaced).
          forcing: the forcing's latent ``[B, h, w, D]`` (:meth:`encode_forcing`).
          lead: ``[B]`` lead months >= 1: expert ``(lead - 1) mod experts``, rotation by
            ``lead - 1``.
          ocean: ``[B | 1, H, W]``, True (or 1) over the ocean.
          key: enables drop-path (training).

        Returns:
          ``[B, H, W, C]``, zero over land.
        """
        cfg = self.config
        self._check(x, "x", sum(cfg.channels))
        ocean = jnp.asarray(ocean, bool)
        if ocean.ndim != 3 or ocean.shape[1:] != (cfg.n_lat, cfg.n_lon):
            raise ValueError(f"ocean must be [batch, {cfg.n_lat}, {cfg.n_lon}]; got {ocean.shape}")
        x = jnp.where(ocean[..., None], x, 0.0)
        lead = jnp.asarray(lead, jnp.int32)
        expert = lead_lib.expert_index(lead, cfg.experts) if cfg.experts else None
        masks = token_masks(ocean, cfg)
        n_vars = len(cfg.channels)
        keys = [None] * (2 * n_vars + 1) if key is None else jax.random.split(key, 2 * n_vars + 1)
        edges = [0, *itertools.accumulate(cfg.channels)]
        latents, skips = [], []
        for v, enc in enumerate(self.encoders):
            z, s = enc(x[..., edges[v] : edges[v + 1]], masks, expert, keys[v])
            latents.append(z[:, 0])
            skips.append(s)
        z = self.merge(jnp.concatenate(latents, axis=-1))  # [B, h, w, D]
        z = lead_lib.mix_forcing(z, forcing, lead, cfg.lead_frequencies)
        z = (z + self.position[...])[:, None]
        y = self.trunk(z, self.bias(), key=keys[2 * n_vars], key_mask=masks[-1], expert=expert)
        parts = jnp.split(self.split(y), n_vars, axis=-1)
        outs = [
            dec(parts[v], skips[v], masks, expert, keys[n_vars + v])
            for v, dec in enumerate(self.decoders)
        ]
        return jnp.where(ocean[..., None], jnp.concatenate(outs, axis=-1), 0.0)


def fusion_trunk(
    cfg_grid: HW, latent: int, heads: int, depths: tuple[int, int] = (2, 2), experts: int = 6
) -> dict[str, Any]:
    """The faithful fusion: ``depths[0] + depths[1]`` blocks at the bottleneck grid, one
    window over all of it, no shift, no resampling (``TrunkConfig(depths=(d1, 0, 0, d2))``)."""
    return earth_trunk.TrunkConfig(
        dim=latent,
        depths=(depths[0], 0, 0, depths[1]),
        heads=(heads,) * 4,
        window=(1, *cfg_grid),
        experts=experts,
        shift_windows=False,
    ).to_dict()


def _preset(
    n_lat, n_lon, levels, *, patch, dim, depths, heads, window, latent, latent_heads
) -> NetConfig:
    """Thetao, so, uo, vo on ``levels`` depths, SST and SSH; the faithful fusion."""
    bottleneck = encoder_grids((n_lat, n_lon), patch, len(depths))[-1]
    return NetConfig(
        n_lat=n_lat,
        n_lon=n_lon,
        channels=(levels,) * 4 + (1, 1),
        trunk=fusion_trunk(bottleneck, latent, latent_heads),
        patch=patch,
        dim=dim,
        depths=depths,
        heads=heads,
        window=window,
    )


PRESETS: dict[str, NetConfig] = {
    # ORCA-DL's released configuration: 1 deg, 128 x 360, 16 levels; patch (2, 3) -> 64 x 120
    # tokens, C = 96, stages (2, 2, 2) with (3, 6, 12) heads, windows (8, 15), a 1152-wide
    # latent with 12 heads over the whole 16 x 30 bottleneck, six experts.
    "paper": _preset(
        128,
        360,
        16,
        patch=(2, 3),
        dim=96,
        depths=(2, 2, 2),
        heads=(3, 6, 12),
        window=(8, 15),
        latent=1152,
        latent_heads=12,
    ),
    # The same architecture at CPU size on the embedded 4 deg ocean: 35 x 90, 15 levels;
    # patch (2, 3) -> 18 x 30 tokens, stages 18 x 30, 9 x 15, 5 x 8 with (3, 5) windows,
    # the fusion's window the whole 5 x 8 bottleneck.
    "cpu": _preset(
        35,
        90,
        15,
        patch=(2, 3),
        dim=16,
        depths=(2, 2, 2),
        heads=(2, 4, 8),
        window=(3, 5),
        latent=128,
        latent_heads=4,
    ),
}


def make_net(cfg: NetConfig, trunk: earth_trunk.EarthTrunk | None = None) -> OceanNet:
    """Builds the network (annotations kept, no eager sharding)."""
    with nnx.use_eager_sharding(False):
        return OceanNet(cfg, rngs=nnx.Rngs(cfg.seed), trunk=trunk)


def count_parameters(cfg: NetConfig) -> int:
    """Parameters of the network of ``cfg``, counted without allocating them."""
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: OceanNet(cfg, rngs=nnx.Rngs(cfg.seed)))
    return partitioning.count_params(abstract)


def active_parameters(cfg: NetConfig) -> int:
    """Parameters one lead's forward pass uses: all but the ``experts - 1`` experts of every
    MLP it does not route to."""
    total = count_parameters(cfg)
    if not cfg.experts:
        return total
    tc = cfg.trunk_config

    def mlp(width: int, ratio: float) -> int:
        hidden = int(width * ratio)
        return 2 * width * hidden + hidden + width

    per_net = sum(d * mlp(w, cfg.mlp_ratio) for d, w in zip(cfg.depths, cfg.widths, strict=True))
    unused = 2 * len(cfg.channels) * per_net + sum(
        tc.depths[i] * mlp(tc.stage_dims[i], tc.mlp_ratio) for i in range(4)
    )
    return total - (cfg.experts - 1) * unused


__all__ = [
    "PRESETS",
    "Decoder",
    "Encoder",
    "NetConfig",
    "OceanNet",
    "active_parameters",
    "count_parameters",
    "encoder_grids",
    "fusion_trunk",
    "make_net",
    "token_masks",
]
