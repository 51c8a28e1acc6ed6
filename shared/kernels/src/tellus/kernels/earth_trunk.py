"""The shared 3D Earth transformer trunk: shifted-window stages, down/up-sampling and a skip.

Every domain plugs into the same trunk through an adapter of its own: the adapter turns its
fields into a token grid ``[B, Z, H, W, C]`` (Z: levels or depth slabs, surface included;
H x W: latitude x longitude patches), supplies the Earth-specific positional bias of its
grid (:class:`TrunkBias`, one table per block and window type), and turns the trunk's
output ``[B, Z, H, W, 2C]`` back into its fields. The trunk itself knows no variable name
and holds no parameter sized by a grid, so one set of trunk weights serves any grid whose
token counts its windows tile (they are padded to whole windows)::

    tokens [B, Z, H, W, C]
        stage 1: depths[0] blocks, C,  heads[0]      ------------------ skip
        DownSample (2x2 merge in lat/lon, LayerNorm, 4C -> 2C)                 |
        stage 2: depths[1] blocks, 2C, heads[1]                                 |
        stage 3: depths[2] blocks, 2C, heads[2]                                 |
        UpSample (2C -> 4C, un-merge, crop, LayerNorm, C -> C)                  |
        stage 4: depths[3] blocks, C,  heads[3]                                 |
        concat with skip -> [B, Z, H, W, 2C] <----------------------------------

Each block is Swin-style pre-norm: ``x + DropPath(Attn(LN(x), bias))`` then
``x + DropPath(MLP(LN(x)))``; every second block shifts its windows by half a window, with
longitude periodic (:mod:`tellus.kernels.window_attention`). This is the architecture of
Pangu-Weather (Bi et al. 2023); the atmosphere model is this trunk between Pangu's patch
embedding and recovery.

Three options serve other domains (an ocean forecaster in the style of ORCA-DL, Guo et al.
2024), each off by default, so that a trunk without them computes exactly what it did
before they existed:

* a **key mask** (``key_mask [B, Z, H, W]``, True where a token may be attended to: ocean):
  no token outside it is ever a key, in any block; the middle stages use it merged 2 x 2 as
  :class:`DownSample` merges the tokens (a merged token is valid if any of its four is);
* **lead-routed experts** (``TrunkConfig.experts = n``): every MLP holds ``n`` experts and
  sample ``b`` goes through expert ``expert[b]``, chosen by the caller (no learned gate);
* ``shift_windows=False``: no block shifts (a window that covers the whole grid needs no
  shift; shifting it would only split it in latitude).

A trunk whose middle stages hold no blocks (``depths = (d1, 0, 0, d4)``) has no down- and
up-sampling either: stage 4 follows stage 1 at one resolution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.kernels import earth_bias, partitioning, prunable, window_attention
from tellus.kernels.partitioning import constrain
from tellus.kernels.prunable import feature_moments

TOKENS = ("batch", "act_level", "lat", "lon", "act_embed")
_init = nnx.initializers.truncated_normal(stddev=0.02)
ZHW = tuple[int, int, int]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """What every block of a stage shares (a part of :class:`TrunkConfig`; other window
    transformers built from these blocks, such as per-variable encoders, make their own).

    Attributes:
      window: (level, lat, lon) attention window.
      mlp_ratio: MLP hidden width / token width.
      attention_impl: ``"fast"`` or ``"reference"`` (:func:`window_attention.attention`).
      partitioning: ``"auto"`` or ``"shard_map"`` for the window attention core.
      remat_blocks: rematerialize each block in the backward pass.
      experts: lead-routed experts in every MLP (:class:`LeadExperts`); 0: one plain MLP.
      shift_windows: every second block shifts its windows by half a window.
      lora_rank: rank of the low-rank adapters (``flax.nnx.LoRA``) on every block's
        attention projections and MLP layers; 0: none (see :func:`lora_paths`).
    """

    window: ZHW
    mlp_ratio: float = 4.0
    attention_impl: str = "fast"
    partitioning: str = "auto"
    remat_blocks: bool = False
    experts: int = 0
    shift_windows: bool = True
    lora_rank: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", tuple(int(v) for v in self.window))
        if len(self.window) != 3:
            raise ValueError(f"the window is (level, lat, lon): {self.window}")
        if isinstance(self.experts, bool) or not isinstance(self.experts, int) or self.experts < 0:
            raise ValueError(f"experts must be an int >= 0, got {self.experts!r}")
        r = self.lora_rank
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ValueError(f"lora_rank must be an int >= 0, got {r!r}")
        if r and self.experts:
            raise ValueError("low-rank adapters on lead-routed experts are not supported")


@dataclasses.dataclass(frozen=True)
class TrunkConfig:
    """The trunk's shape (no grid in it).

    Attributes:
      dim: token width C of the first and last stage (the middle stages use 2C).
      depths: blocks in the four stages; ``(d1, 0, 0, d4)``: one resolution, no resampling.
      heads: attention heads in the four stages.
      window: (level, lat, lon) attention window.
      mlp_ratio: MLP hidden width / token width.
      drop_path: the largest stochastic-depth rate (reached by the deepest blocks).
      attention_impl: ``"fast"`` or ``"reference"`` (:func:`window_attention.attention`).
      partitioning: ``"auto"`` or ``"shard_map"`` for the window attention core.
      remat_blocks: rematerialize each block in the backward pass.
      experts: lead-routed experts in every MLP (0: one plain MLP, as Pangu).
      shift_windows: every second block shifts its windows (False: none does).
      lora_rank: low-rank adapters on the blocks' attention and MLP weights (0: none).
      pruned: the blocks built without attention (indices over the four stages in order,
        from 0; entropy-guided pruning, :mod:`tellus.training.entropy`): each is ``x = 2x``
        then its MLP, and has no bias table.
    """

    dim: int
    depths: tuple[int, int, int, int]
    heads: tuple[int, int, int, int]
    window: ZHW
    mlp_ratio: float = 4.0
    drop_path: float = 0.2
    attention_impl: str = "fast"
    partitioning: str = "auto"
    remat_blocks: bool = False
    experts: int = 0
    shift_windows: bool = True
    lora_rank: int = 0
    pruned: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for field in ("depths", "heads", "window", "pruned"):
            object.__setattr__(self, field, tuple(int(v) for v in getattr(self, field)))
        if len(self.depths) != 4 or len(self.heads) != 4 or len(self.window) != 3:
            raise ValueError(
                f"the trunk needs 4 stages of depths/heads and a (level, lat, lon) window: "
                f"{self.depths}, {self.heads}, {self.window}"
            )
        for stage, h in enumerate(self.heads):
            if self.stage_dims[stage] % h:
                raise ValueError(
                    f"stage {stage}: width {self.stage_dims[stage]} is not divisible by {h} heads"
                )
        _ = self.blocks  # validates the block options
        n = sum(self.depths)
        if any(not 0 <= i < n for i in self.pruned) or len(set(self.pruned)) != len(self.pruned):
            raise ValueError(
                f"pruned must name distinct blocks 0..{n - 1} of the trunk, got {self.pruned}"
            )
        object.__setattr__(self, "pruned", tuple(sorted(self.pruned)))

    def stage_attention(self) -> tuple[tuple[bool, ...], ...]:
        """Per stage, per block: whether the block has attention (not :attr:`pruned`)."""
        out, first = [], 0
        for depth in self.depths:
            out.append(tuple(first + i not in self.pruned for i in range(depth)))
            first += depth
        return tuple(out)

    @property
    def blocks(self) -> BlockConfig:
        """The options every block of this trunk shares."""
        return BlockConfig(
            window=self.window,
            mlp_ratio=self.mlp_ratio,
            attention_impl=self.attention_impl,
            partitioning=self.partitioning,
            remat_blocks=self.remat_blocks,
            experts=self.experts,
            shift_windows=self.shift_windows,
            lora_rank=self.lora_rank,
        )

    @property
    def resamples(self) -> bool:
        """Whether the trunk down- and up-samples (its middle stages hold blocks)."""
        return self.depths[1] + self.depths[2] > 0

    @property
    def stage_dims(self) -> tuple[int, int, int, int]:
        return (self.dim, 2 * self.dim, 2 * self.dim, self.dim)

    @property
    def drop_path_rates(self) -> tuple[float, ...]:
        """Per-block rates: linear from 0 to ``drop_path`` over the encoder (stages 1-2),
        mirrored in the decoder (stages 3-4), as in Pangu's pseudocode."""
        n = self.depths[0] + self.depths[1]
        rates = [self.drop_path * i / max(n - 1, 1) for i in range(n)]
        first, second = rates[: self.depths[0]], rates[self.depths[0] :]
        third = (second + second[-1:] * self.depths[2])[: self.depths[2]]
        fourth = (first + first[-1:] * self.depths[3])[: self.depths[3]]
        return tuple(first + second + third + fourth)

    def stage_grids(self, token_grid: Sequence[int]) -> tuple[ZHW, ZHW, ZHW, ZHW]:
        """The (Z, H, W) token grid of each stage for a first-stage grid ``token_grid``."""
        z, h, w = (int(v) for v in token_grid)
        coarse = (z, _ceil_div(h, 2), _ceil_div(w, 2)) if self.resamples else (z, h, w)
        return ((z, h, w), coarse, coarse, (z, h, w))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def drop_path(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Stochastic depth: drops whole samples of a residual branch with probability ``rate``
    and rescales the kept ones by ``1 / (1 - rate)``; the identity when ``key`` is None."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def _dense(
    d_in: int,
    d_out: int,
    names: tuple[str | None, str | None],
    rngs: nnx.Rngs,
    lora_rank: int = 0,
):
    return partitioning.dense(d_in, d_out, names, rngs, kernel_init=_init, lora_rank=lora_rank)


LORA_PARAMS = ("lora_a", "lora_b")


def lora_paths(paths: Sequence[str]) -> list[str]:
    """The low-rank adapter parameters among ``paths`` (``.../lora_a``, ``.../lora_b``)."""
    return [p for p in paths if p.rsplit("/", 1)[-1] in LORA_PARAMS]


class Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, lora_rank: int = 0, rngs: nnx.Rngs):
        self.fc1 = _dense(dim, hidden, ("embed", "mlp"), rngs, lora_rank)
        self.fc2 = _dense(hidden, dim, ("mlp", "embed"), rngs, lora_rank)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class LeadExperts(nnx.Module):
    """``n`` MLPs of which sample ``b`` uses expert ``expert[b]`` (hard routing, no gate).

    ORCA-DL's lead-time experts (Guo et al. 2024): the caller routes each sample by its lead
    (lead month ``m`` -> expert ``(m - 1) mod n``). Each sample's expert weights are
    gathered and applied in one batched matmul, so the cost is that of one MLP, and the
    gradient of an expert that no sample used is exactly zero.

    Attributes:
      experts: ``n`` :class:`Mlp` (parameter paths ``experts/<i>/fc1/kernel``, ...).
    """

    def __init__(self, dim: int, hidden: int, n: int, *, rngs: nnx.Rngs):
        if n < 1:
            raise ValueError(f"LeadExperts needs at least one expert, got {n}")
        self.experts = nnx.List([Mlp(dim, hidden, rngs=rngs) for _ in range(n)])

    def __call__(self, x: jax.Array, expert: jax.Array) -> jax.Array:
        """``x [B, ..., C]``, ``expert [B]`` int in ``[0, n)`` -> ``[B, ..., C]``."""
        expert = jnp.asarray(expert)
        if expert.shape != x.shape[:1]:
            raise ValueError(f"expert indices must be [batch = {x.shape[0]}]; got {expert.shape}")

        def gathered(attr: str) -> tuple[jax.Array, jax.Array]:
            layers = [getattr(e, attr) for e in self.experts]
            kernel = jnp.stack([lin.kernel[...] for lin in layers])[expert]  # [B, in, out]
            bias = jnp.stack([lin.bias[...] for lin in layers])[expert]  # [B, out]
            return kernel, bias.reshape(bias.shape[:1] + (1,) * (x.ndim - 2) + bias.shape[1:])

        k1, b1 = gathered("fc1")
        k2, b2 = gathered("fc2")
        h = jnp.einsum("b...c,bcd->b...d", x, k1) + b1
        return jnp.einsum("b...d,bdc->b...c", jax.nn.gelu(h, approximate=False), k2) + b2


class EarthSpecificBlock(nnx.Module, prunable.PrunableAttention):
    """One transformer block over a ``[B, Z, H, W, C]`` token grid; the bias comes in.

    ``attention=False`` builds it without its attention (pruned: ``x = 2x``, then the MLP;
    :mod:`tellus.kernels.prunable`)."""

    def __init__(
        self,
        cfg: BlockConfig,
        dim: int,
        heads: int,
        *,
        shift: bool,
        drop_rate: float,
        rngs: nnx.Rngs,
        attention: bool = True,
    ):
        self.drop_rate = drop_rate
        self.norm1 = partitioning.layer_norm(dim, rngs)
        self.attn = (
            window_attention.EarthAttention3D(
                dim,
                heads,
                cfg.window,
                None,
                shift=shift,
                impl=cfg.attention_impl,
                partitioning=cfg.partitioning,
                lora_rank=cfg.lora_rank,
                rngs=rngs,
            )
            if attention
            else None
        )
        self.norm2 = partitioning.layer_norm(dim, rngs)
        self.init_pruning()
        hidden = int(dim * cfg.mlp_ratio)
        self.mlp = (
            LeadExperts(dim, hidden, cfg.experts, rngs=rngs)
            if cfg.experts
            else Mlp(dim, hidden, lora_rank=cfg.lora_rank, rngs=rngs)
        )

    def __call__(
        self,
        x: jax.Array,
        bias: jax.Array,
        key: jax.Array | None = None,
        *,
        key_mask: jax.Array | None = None,
        expert: jax.Array | None = None,
    ) -> jax.Array:
        """Args: tokens ``[B, Z, H, W, C]``, the bias ``[n_types, heads, N, N]``, ``key``
        for drop-path, ``key_mask [B | 1, Z, H, W]`` (True: may be attended to), ``expert
        [B]`` (required when the MLP has experts, refused otherwise)."""
        k1 = k2 = None
        if key is not None:
            k1, k2 = jax.random.split(key)
        attn = self.attn

        def attend() -> jax.Array:
            h = self.norm1(x)
            return attn(h, bias) if key_mask is None else attn(h, bias, key_mask)

        x = self.attention_residual(x, attend, lambda a: drop_path(a, self.drop_rate, k1))
        if isinstance(self.mlp, LeadExperts):
            if expert is None:
                raise ValueError(
                    f"this block's MLP has {len(self.mlp.experts)} lead-routed experts: "
                    "pass expert=[batch] indices"
                )
            m = self.mlp(self.norm2(x), expert)
        else:
            if expert is not None:
                raise ValueError("this block's MLP has no experts; expert must be None")
            m = self.mlp(self.norm2(x))
        x = x + drop_path(m, self.drop_rate, k2)
        x = constrain(x, TOKENS)
        if self.attn is None:
            # Between two blocks without attention the residual stream passes through
            # elementwise work only, and XLA's fusions then recompute it from every earlier
            # block inside each block's gradient (docs/performance.md, pruning); the barrier
            # makes each block's output a value computed once.
            x = jax.lax.optimization_barrier(x)
        return x


class Stage(nnx.Module):
    """``len(rates)`` blocks; odd blocks use shifted windows (unless ``shift_windows`` is
    off)."""

    def __init__(
        self,
        cfg: BlockConfig,
        dim: int,
        heads: int,
        rates: Sequence[float],
        *,
        rngs: nnx.Rngs,
        attention: Sequence[bool] | None = None,
    ):
        attention = [True] * len(rates) if attention is None else list(attention)
        self.remat = cfg.remat_blocks
        self.blocks = nnx.List(
            [
                EarthSpecificBlock(
                    cfg,
                    dim,
                    heads,
                    shift=cfg.shift_windows and i % 2 == 1,
                    drop_rate=r,
                    rngs=rngs,
                    attention=attention[i],
                )
                for i, r in enumerate(rates)
            ]
        )

    def __call__(
        self,
        x: jax.Array,
        biases: Sequence[jax.Array],
        key: jax.Array | None = None,
        *,
        key_mask: jax.Array | None = None,
        expert: jax.Array | None = None,
    ) -> jax.Array:
        keys = (
            [None] * len(self.blocks)
            if key is None
            else list(jax.random.split(key, len(self.blocks)))
        )
        plain = key_mask is None and expert is None
        for block, bias, k in zip(self.blocks, biases, keys, strict=True):
            if plain and self.remat:
                x = nnx.remat(lambda b, x, bias, k: b(x, bias, k))(block, x, bias, k)
            elif plain:
                x = block(x, bias, k)
            elif self.remat:
                x = nnx.remat(lambda b, x, bias, k, km, e: b(x, bias, k, key_mask=km, expert=e))(
                    block, x, bias, k, key_mask, expert
                )
            else:
                x = block(x, bias, k, key_mask=key_mask, expert=expert)
        return x


def merge_mask(key_mask: jax.Array) -> jax.Array:
    """The key mask of the grid :class:`DownSample` makes: ``[B, Z, H, W]`` ->
    ``[B, Z, ceil(H/2), ceil(W/2)]``, padded at the end as the tokens are, a merged token
    valid where any of its 2 x 2 is."""
    b, z, h, w = key_mask.shape
    m = jnp.pad(jnp.asarray(key_mask, bool), ((0, 0), (0, 0), (0, h % 2), (0, w % 2)))
    return m.reshape(b, z, m.shape[2] // 2, 2, m.shape[3] // 2, 2).any(axis=(3, 5))


class DownSample(nnx.Module):
    """Merges 2 x 2 (lat, lon) tokens: pad to even, LayerNorm(4C), linear 4C -> 2C."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.norm = partitioning.layer_norm(4 * dim, rngs)
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
    """Linear 2C -> 4C, splits each token into 2 x 2, crops to the fine grid, LayerNorm,
    C -> C."""

    def __init__(self, in_dim: int, out_dim: int, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(
            in_dim,
            4 * out_dim,
            use_bias=False,
            kernel_init=nnx.with_partitioning(_init, ("mlp", "embed")),
            rngs=rngs,
        )
        self.norm = partitioning.layer_norm(out_dim, rngs)
        self.linear2 = _dense(out_dim, out_dim, ("embed", "mlp"), rngs)

    def __call__(self, x: jax.Array, hw: tuple[int, int]) -> jax.Array:
        b, z, h2, w2, _ = x.shape
        x = self.linear1(x)
        c = x.shape[-1] // 4
        x = x.reshape(b, z, h2, w2, 2, 2, c).transpose(0, 1, 2, 4, 3, 5, 6)
        x = x.reshape(b, z, 2 * h2, 2 * w2, c)[:, :, : hw[0], : hw[1]]
        return constrain(self.linear2(self.norm(x)), TOKENS)


class TrunkBias(nnx.Module):
    """The Earth-specific bias tables of one grid for every block of a trunk (an adapter's
    part: their number of window types depends on the grid).

    Attributes:
      stages: per stage, per block, an :class:`earth_bias.EarthSpecificBias`.
    """

    def __init__(self, cfg: TrunkConfig, token_grid: Sequence[int], *, rngs: nnx.Rngs):
        stages = []
        for heads, grid, attention in zip(
            cfg.heads, cfg.stage_grids(token_grid), cfg.stage_attention(), strict=True
        ):
            padded = tuple(_ceil_div(n, w) * w for n, w in zip(grid, cfg.window, strict=True))
            n_types = earth_bias.n_window_types(padded, cfg.window)
            stages.append(
                nnx.List(
                    [
                        earth_bias.EarthSpecificBias(cfg.window, n_types, heads, rngs=rngs)
                        if a
                        else None
                        for a in attention
                    ]
                )
            )
        self.stages = nnx.List(stages)

    def __call__(self) -> list[list[jax.Array | None]]:
        """``[stage][block] -> [n_types, heads, N, N]`` (None for a block without attention)."""
        return [[None if t is None else t() for t in stage] for stage in self.stages]


class EarthTrunk(nnx.Module):
    """``[B, Z, H, W, C]`` tokens and their grid's biases -> ``[B, Z, H, W, 2C]``."""

    def __init__(self, cfg: TrunkConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        c = cfg.dim
        rates = cfg.drop_path_rates
        d = cfg.depths
        blocks = cfg.blocks
        edges = (0, d[0], d[0] + d[1], d[0] + d[1] + d[2], sum(d))
        att = cfg.stage_attention()

        def stage(k: int, width: int) -> Stage:
            rate = rates[edges[k] : edges[k + 1]]
            return Stage(blocks, width, cfg.heads[k], rate, rngs=rngs, attention=att[k])

        self.stage1 = stage(0, c)
        self.down = DownSample(c, rngs=rngs) if cfg.resamples else None
        self.stage2 = stage(1, 2 * c)
        self.stage3 = stage(2, 2 * c)
        self.up = UpSample(2 * c, c, rngs=rngs) if cfg.resamples else None
        self.stage4 = stage(3, c)

    def __call__(
        self,
        x: jax.Array,
        biases: Sequence[Sequence[jax.Array]],
        *,
        key: jax.Array | None = None,
        key_mask: jax.Array | None = None,
        expert: jax.Array | None = None,
    ) -> jax.Array:
        """Args: tokens ``[B, Z, H, W, C]``; ``biases[stage][block]`` of this grid
        (:class:`TrunkBias`); ``key`` enables drop-path (training); ``key_mask [B | 1, Z, H,
        W]`` bool, True where a token may be attended to (None: every token); ``expert
        [B]`` the expert of each sample (a trunk with ``experts``)."""
        if x.ndim != 5 or x.shape[-1] != self.config.dim:
            raise ValueError(
                f"trunk tokens must be [batch, level, lat, lon, {self.config.dim}]; got {x.shape}"
            )
        x = constrain(x, TOKENS)
        keys = [None] * 4 if key is None else list(jax.random.split(key, 4))
        fine = {} if key_mask is None else {"key_mask": key_mask}
        coarse = {} if key_mask is None or self.down is None else {"key_mask": merge_mask(key_mask)}
        if self.down is None:
            coarse = fine
        routed = {} if expert is None else {"expert": expert}
        x = self.stage1(x, biases[0], keys[0], **fine, **routed)
        skip = x
        if self.down is not None:
            x = self.down(x)
        x = self.stage2(x, biases[1], keys[1], **coarse, **routed)
        x = self.stage3(x, biases[2], keys[2], **coarse, **routed)
        if self.up is not None:
            x = self.up(x, skip.shape[2:4])
        x = self.stage4(x, biases[3], keys[3], **fine, **routed)
        return jnp.concatenate([x, skip], axis=-1)


__all__ = [
    "LORA_PARAMS",
    "BlockConfig",
    "DownSample",
    "EarthSpecificBlock",
    "EarthTrunk",
    "LeadExperts",
    "Mlp",
    "Stage",
    "TrunkBias",
    "TrunkConfig",
    "UpSample",
    "drop_path",
    "feature_moments",
    "lora_paths",
    "merge_mask",
]
