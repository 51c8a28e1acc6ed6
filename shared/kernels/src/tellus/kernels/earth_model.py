"""The Earth foundation model: encoder, trunk with a continuous bias, field and index heads.

One module of weights for every domain and grid (nothing in it is sized by a grid)::

    fields, grid, levels, lead, domain
      -> EarthEncoder          tokens [B, Z, H', W', C], key mask, token coordinates
      -> EarthTrunk            [B, Z, H', W', 2C]; bias: ContinuousTrunkBias(coordinates)
      -> FieldDecoder          {name: [B, (L,) H, W]} at any requested levels, land = fill
      -> IndexHead(s)          {name: [B, n_outputs]} pooled over a region (Nino3.4)

Presets: ``paper`` (Pangu's trunk, C = 192, depths 2/6/6/2, window (2, 6, 12), 4 x 4 patches
into 4 latent levels; variables of the 0.25 deg atmosphere with 13 pressure levels and
surface fields, of a 1 deg ocean at its depths, and the ENSO world's SST; a Nino3.4 head at
24 leads) and ``tiny`` (for tests). :func:`abstract_model` builds one without allocating.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.kernels.continuous_bias import ContinuousTrunkBias
from tellus.kernels.earth_decoder import NINO34, DecoderConfig, FieldDecoder, IndexHead, Region
from tellus.kernels.earth_encoder import EarthEncoder, EncoderConfig, Grid, Levels
from tellus.kernels.earth_trunk import EarthTrunk, TrunkConfig

ATMOSPHERE_UPPER = (
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
    "specific_humidity",
)
ATMOSPHERE_SURFACE = (
    "mean_sea_level_pressure",
    "2m_temperature",
    "10m_u_component_of_wind",
    "10m_v_component_of_wind",
)
OCEAN_3D = (
    "sea_water_potential_temperature",
    "sea_water_salinity",
    "eastward_sea_water_velocity",
    "northward_sea_water_velocity",
)
OCEAN_SURFACE = (
    "sea_surface_height",
    "surface_downward_eastward_stress",
    "surface_downward_northward_stress",
)
CLIMATE = ("sea_surface_temperature",)
DOMAINS = ("atmosphere", "ocean", "enso")


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """An index head: its name, region and number of outputs (e.g. leads)."""

    name: str
    outputs: int
    region: Region = NINO34
    hidden: int = 256


@dataclasses.dataclass(frozen=True)
class EarthModelConfig:
    """The whole model's shape.

    Attributes:
      encoder: the encoder (its ``dim`` is the trunk's).
      trunk: the trunk.
      bias_hidden: hidden width of each block's continuous-bias MLP.
      decoder_heads: attention heads of the field decoder (its queries are ``dim`` wide).
      indices: the index heads.
    """

    encoder: EncoderConfig
    trunk: TrunkConfig
    bias_hidden: int = 64
    decoder_heads: int = 4
    indices: tuple[IndexConfig, ...] = ()

    def __post_init__(self) -> None:
        if self.encoder.dim != self.trunk.dim:
            raise ValueError(
                f"the encoder's width {self.encoder.dim} is not the trunk's {self.trunk.dim}"
            )

    @property
    def decoder(self) -> DecoderConfig:
        e = self.encoder
        return DecoderConfig(2 * e.dim, e.dim, e.patch, self.decoder_heads, e.variables, e.bands)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EarthModelConfig:
        """The config of :meth:`to_dict` (JSON lists back to tuples)."""
        d = dict(d)
        indices = []
        for i in d.pop("indices", ()):
            i = dict(i)
            region = i.pop("region", None)
            indices.append(IndexConfig(**i, **({"region": Region(**region)} if region else {})))
        return cls(
            encoder=EncoderConfig(**d.pop("encoder")),
            trunk=TrunkConfig(**{k: _tuple(v) for k, v in d.pop("trunk").items()}),
            indices=tuple(indices),
            **d,
        )

    def with_inputs(self, variables: Sequence[str], domains: Sequence[str]) -> EarthModelConfig:
        """The config with a patch embedding for each of ``variables`` and an embedding for
        each of ``domains`` besides its own (its own keep their order: adding names changes
        no existing entry)."""
        e = self.encoder
        new_vars = tuple(dict.fromkeys((*e.variables, *variables)))
        new_domains = tuple(dict.fromkeys((*e.domains, *domains)))
        encoder = dataclasses.replace(e, variables=new_vars, domains=new_domains)
        return dataclasses.replace(self, encoder=encoder)

    def with_index(self, name: str, outputs: int) -> EarthModelConfig:
        """The config with an index head ``name`` of ``outputs`` numbers (replacing one of
        that name with another count; the other heads unchanged)."""
        old = {i.name: i for i in self.indices}
        if name in old and old[name].outputs == outputs:
            return self
        hidden = old[name].hidden if name in old else self.trunk.dim * 4
        head = IndexConfig(name, outputs, hidden=hidden)
        kept = tuple(i if i.name != name else head for i in self.indices)
        return dataclasses.replace(self, indices=kept if name in old else (*kept, head))

    def with_lora(self, rank: int) -> EarthModelConfig:
        """The config with low-rank adapters of ``rank`` on the trunk (0: none)."""
        return dataclasses.replace(self, trunk=dataclasses.replace(self.trunk, lora_rank=rank))


def _tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def make_earth_model(cfg: EarthModelConfig | Mapping[str, Any], seed: int = 0) -> EarthModel:
    """The model of a config or its dict (a checkpoint's ``model``), with fresh weights."""
    if not isinstance(cfg, EarthModelConfig):
        cfg = EarthModelConfig.from_dict(cfg)
    with nnx.use_eager_sharding(False):
        return EarthModel(cfg, rngs=nnx.Rngs(seed))


class EarthModel(nnx.Module):
    """Encoder -> trunk (continuous bias) -> field decoder and index heads."""

    def __init__(self, cfg: EarthModelConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.encoder = EarthEncoder(cfg.encoder, rngs=rngs)
        self.trunk = EarthTrunk(cfg.trunk, rngs=rngs)
        self.bias = ContinuousTrunkBias(cfg.trunk, cfg.bias_hidden, rngs=rngs)
        self.decoder = FieldDecoder(cfg.decoder, rngs=rngs)
        self.indices = nnx.Dict(
            {
                i.name: IndexHead(2 * cfg.trunk.dim, i.outputs, i.hidden, i.region, rngs=rngs)
                for i in cfg.indices
            }
        )

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
        targets: Mapping[str, Levels | None] | None = None,
        target_masks: Mapping[str, jax.Array] | None = None,
        indices: Sequence[str] = (),
        key: jax.Array | None = None,
        fill: float = 0.0,
    ) -> dict[str, jax.Array]:
        """One forward pass.

        Args: as :meth:`EarthEncoder.__call__`, and ``targets`` (``{name: Levels | None}``,
        default the input fields at their own levels), ``target_masks`` (their cell masks,
        :meth:`FieldDecoder.__call__`; default ``cell_masks`` when the targets are the
        inputs), ``indices`` (index heads to evaluate), ``key`` (drop-path), ``fill`` (the
        value of masked cells).

        Returns:
          ``{name: field}`` for every target and ``{index name: [B, n_outputs]}``.
        """
        levels = dict(levels or {})
        enc = self.encoder(
            fields,
            grid,
            levels=levels,
            lead_hours=lead_hours,
            domain=domain,
            mask=mask,
            cell_masks=cell_masks,
        )
        biases = self.bias(enc.latitude, enc.longitude, enc.levels)
        # The tokens take the trunk's weight dtype: under mixed precision (bfloat16
        # weights) the trunk, most of the FLOPs, computes in it rather than promoting back
        # to the float32 of the encoder's coordinate features.
        dtype = jax.tree.leaves(nnx.state(self.trunk, nnx.Param))[0].dtype
        y = self.trunk(enc.tokens.astype(dtype), biases, key=key, key_mask=enc.key_mask)
        if targets is None:
            targets = {n: levels.get(n) for n in fields}
            target_masks = cell_masks if target_masks is None else target_masks
        out = self.decoder(y, grid, targets, mask=mask, cell_masks=target_masks, fill=fill)
        for name in indices:
            index = self.indices[name](y, enc.latitude, enc.longitude, enc.key_mask)
            out[name] = index.astype(jnp.float32)
        return out


def preset(name: str) -> EarthModelConfig:
    """``paper`` or ``tiny`` (see the module docstring).

    Raises:
      ValueError: an unknown name.
    """
    variables = ATMOSPHERE_UPPER + ATMOSPHERE_SURFACE + OCEAN_3D + OCEAN_SURFACE + CLIMATE
    if name == "paper":
        return EarthModelConfig(
            encoder=EncoderConfig(192, (4, 4), 4, 6, variables, DOMAINS),
            trunk=TrunkConfig(192, (2, 6, 6, 2), (6, 12, 12, 6), (2, 6, 12)),
            bias_hidden=64,
            decoder_heads=6,
            indices=(IndexConfig("nino34", 24),),
        )
    if name == "tiny":
        return EarthModelConfig(
            encoder=EncoderConfig(16, (2, 2), 2, 2, variables, DOMAINS, bands=4, mlp_ratio=2.0),
            trunk=TrunkConfig(16, (2, 0, 0, 2), (2, 2, 2, 2), (2, 4, 8), mlp_ratio=2.0),
            bias_hidden=8,
            decoder_heads=2,
            indices=(IndexConfig("nino34", 3, hidden=8),),
        )
    raise ValueError(f"unknown Earth model preset {name!r}; known: paper, tiny")


def abstract_model(cfg: EarthModelConfig, seed: int = 0) -> EarthModel:
    """The model with abstract parameters (``jax.ShapeDtypeStruct``; nothing allocated;
    placing them on a mesh is the caller's step, as for any model here)."""
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(lambda: EarthModel(cfg, rngs=nnx.Rngs(seed)))


__all__ = [
    "DOMAINS",
    "EarthModel",
    "EarthModelConfig",
    "IndexConfig",
    "abstract_model",
    "make_earth_model",
    "preset",
]
