"""Model configs of the 3D Earth-Specific Transformer: ``paper`` and CPU presets.

The ``paper`` preset holds the numbers of Bi et al. (2023), "Accurate medium-range global
weather forecasting with 3D neural networks", Nature 619, and its published pseudocode:
0.25 deg inputs (721 x 1440), 13 pressure levels x 5 upper-air variables, 4 surface
variables plus 3 constant masks, patches 2x4x4 / 4x4, C = 192, stages of 2/6/6/2 blocks
with 6/12/12/6 heads, windows (2, 6, 12), MLP ratio 4, drop-path rising linearly to 0.2.

The CPU presets keep the architecture and shrink widths, depths and windows (and, for
``tiny`` and ``small``, patches) so that a model trains on two CPU cores on the embedded
32 x 64 dataset.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tellus.kernels import earth_trunk

ZHW = tuple[int, int, int]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclasses.dataclass(frozen=True)
class PanguConfig:
    """Architecture of one lead-time model (JSON-serializable: it travels in checkpoints).

    Attributes:
      levels: number of pressure levels of the upper-air input.
      lat, lon: grid size of the fields.
      upper_vars: upper-air variables per level (Z, Q, T, U, V).
      surface_vars: surface variables (MSLP, U10, V10, T2M).
      static_vars: constant fields joined to the surface input (land-sea mask, soil type,
        surface geopotential in Pangu).
      patch: (level, lat, lon) patch of the upper-air embedding; the surface uses
        ``patch[1:]``.
      dim: token width C of the first and last stage (the middle stages use 2C).
      depths: blocks in the four stages.
      heads: attention heads in the four stages.
      window: (level, lat, lon) attention window.
      mlp_ratio: MLP hidden width / token width.
      drop_path: the largest stochastic-depth rate (reached by the deepest blocks).
      attention_impl: ``"fast"`` (``jax.nn.dot_product_attention``) or ``"reference"``.
      partitioning: ``"auto"`` (compiler) or ``"shard_map"`` for the window attention core.
      remat_blocks: rematerialize each transformer block in the backward pass.
      seed: parameter initialisation seed.
      pruned: the blocks built without attention (indices over the four stages, from 0;
        entropy-guided pruning, ``tellus prune``).
    """

    levels: int = 13
    lat: int = 721
    lon: int = 1440
    upper_vars: int = 5
    surface_vars: int = 4
    static_vars: int = 3
    patch: ZHW = (2, 4, 4)
    dim: int = 192
    depths: tuple[int, int, int, int] = (2, 6, 6, 2)
    heads: tuple[int, int, int, int] = (6, 12, 12, 6)
    window: ZHW = (2, 6, 12)
    mlp_ratio: float = 4.0
    drop_path: float = 0.2
    attention_impl: str = "fast"
    partitioning: str = "auto"
    remat_blocks: bool = False
    seed: int = 0
    pruned: tuple[int, ...] = ()

    def __post_init__(self):
        for field in ("patch", "depths", "heads", "window", "pruned"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if len(self.patch) != 3 or len(self.window) != 3:
            raise ValueError(f"patch and window are (level, lat, lon): {self.patch}, {self.window}")
        if len(self.depths) != 4 or len(self.heads) != 4:
            raise ValueError(f"depths and heads need 4 stages: {self.depths}, {self.heads}")
        for stage, h in enumerate(self.heads):
            width = self.stage_dims[stage]
            if width % h:
                raise ValueError(f"stage {stage}: width {width} is not divisible by {h} heads")
        if self.attention_impl not in ("fast", "reference"):
            raise ValueError(
                f"attention_impl must be 'fast' or 'reference': {self.attention_impl!r}"
            )
        if self.partitioning not in ("auto", "shard_map"):
            raise ValueError(f"partitioning must be 'auto' or 'shard_map': {self.partitioning!r}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1): {self.drop_path}")
        object.__setattr__(self, "pruned", self.trunk.pruned)  # validated and sorted

    @property
    def stage_dims(self) -> tuple[int, int, int, int]:
        return (self.dim, 2 * self.dim, 2 * self.dim, self.dim)

    @property
    def token_grid(self) -> ZHW:
        """(Z, H, W) of the first stage: level patches + 1 surface level, lat/lon patches."""
        pz, ph, pw = self.patch
        return (_ceil_div(self.levels, pz) + 1, _ceil_div(self.lat, ph), _ceil_div(self.lon, pw))

    @property
    def coarse_grid(self) -> ZHW:
        """(Z, H, W) of the middle stages, after the 2x2 (lat, lon) down-sampling."""
        z, h, w = self.token_grid
        return (z, _ceil_div(h, 2), _ceil_div(w, 2))

    @property
    def trunk(self) -> earth_trunk.TrunkConfig:
        """The shared trunk's part of this config."""
        return earth_trunk.TrunkConfig(
            dim=self.dim,
            depths=self.depths,
            heads=self.heads,
            window=self.window,
            mlp_ratio=self.mlp_ratio,
            drop_path=self.drop_path,
            attention_impl=self.attention_impl,
            partitioning=self.partitioning,
            remat_blocks=self.remat_blocks,
            pruned=self.pruned,
        )

    @property
    def drop_path_rates(self) -> tuple[float, ...]:
        """Per-block rates (:attr:`tellus.kernels.earth_trunk.TrunkConfig.drop_path_rates`)."""
        return self.trunk.drop_path_rates

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PanguConfig:
        return cls(**d)


PRESETS: dict[str, PanguConfig] = {
    "paper": PanguConfig(),
    # The CPU preset of `just train-atmosphere` on the embedded 32 x 64 dataset: Pangu's
    # 2 x 4 x 4 patches give an 8 x 8 x 16 token grid (surface + 7 level patches); windows
    # (2, 4, 8) tile it and the 8 x 4 x 8 coarse grid. Half Pangu's width, 2 blocks a stage.
    "cpu": PanguConfig(
        lat=32,
        lon=64,
        dim=96,
        depths=(2, 2, 2, 2),
        heads=(6, 12, 12, 6),
        window=(2, 4, 8),
        drop_path=0.1,
    ),
    # The smallest model, for tests: 2 x 2 x 2 patches give an 8 x 16 x 32 token grid on the
    # 32 x 64 dataset; C = 48.
    "tiny": PanguConfig(
        lat=32,
        lon=64,
        patch=(2, 2, 2),
        dim=48,
        depths=(2, 2, 2, 2),
        heads=(3, 6, 6, 3),
        window=(2, 4, 8),
        drop_path=0.1,
    ),
    "small": PanguConfig(
        lat=32,
        lon=64,
        patch=(2, 2, 2),
        dim=96,
        depths=(2, 4, 4, 2),
        heads=(6, 12, 12, 6),
        window=(2, 4, 8),
        drop_path=0.1,
    ),
}


def preset(name: str, **overrides: Any) -> PanguConfig:
    """A named config, optionally with fields replaced (``preset("tiny", lat=16)``).

    Raises:
      KeyError: naming the known presets.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown atmosphere model preset {name!r}; choose from {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)
