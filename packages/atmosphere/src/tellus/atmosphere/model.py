"""The 3D Earth-Specific Transformer (Pangu-Weather architecture): the atmosphere adapter
around the shared Earth trunk.

Shapes (``B`` batch, ``L`` pressure levels, ``H x W`` latitude x longitude grid)::

    upper   [B, L, H, W, 5]   Z, Q, T, U, V on L levels (normalized)
    surface [B, H, W, 4]      MSLP, U10, V10, T2M (normalized)
    static  [H, W, S] or [B, H, W, S]   constant masks, joined to the surface input
        |  PatchEmbed3D (2x4x4)              PatchEmbed2D (4x4)       } AtmosphereAdapter
        v                                      v                       } .encode
    tokens [B, Z, H', W', C] with Z = ceil(L/2) + 1: the surface is level 0
        EarthTrunk (tellus.kernels.earth_trunk): four stages of Earth-specific blocks,
        down/up-sampling, skip -> [B, Z, H', W', 2C]; the bias tables of this grid are
        the adapter's (AtmosphereAdapter.bias)
        PatchRecovery3D / PatchRecovery2D: back to [B, L, H, W, 5] and [B, H, W, 4]
                                                                        } .decode

Where this follows the paper rather than the published pseudocode: the pseudocode concatenates
the surface tokens after the upper-air ones but splits its output as if they came first; here
the surface is level 0 on both sides.

Parameter paths: ``adapter/{embed_upper, embed_surface, recover_upper, recover_surface,
bias/stages/<stage>/<block>/table}`` and ``trunk/{stage1..4, down, up}``. Checkpoints
written before this split (version 0) name the same arrays ``stage1/blocks/0/attn/bias``,
``embed_upper`` ... at the top level; :data:`V0_RENAMES` maps them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.atmosphere.config import PanguConfig
from tellus.kernels import earth_trunk, patch_embed
from tellus.kernels.partitioning import constrain

TOKENS = earth_trunk.TOKENS


class AtmosphereAdapter(nnx.Module):
    """Pangu's fields <-> the trunk's tokens: patch embedding with the surface as level 0,
    the Earth-specific bias tables of this grid, patch recovery."""

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
        self.bias = earth_trunk.TrunkBias(cfg.trunk, cfg.token_grid, rngs=rngs)
        self.recover_upper = patch_embed.PatchRecovery3D(
            2 * c, cfg.upper_vars, (cfg.levels, cfg.lat, cfg.lon), cfg.patch, impl=pimpl, rngs=rngs
        )
        self.recover_surface = patch_embed.PatchRecovery2D(
            2 * c, cfg.surface_vars, (cfg.lat, cfg.lon), cfg.patch[1:], impl=pimpl, rngs=rngs
        )

    def check(self, upper: jax.Array, surface: jax.Array, static: jax.Array) -> None:
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

    def encode(self, upper: jax.Array, surface: jax.Array, static: jax.Array) -> jax.Array:
        """Fields -> tokens ``[B, Z, H', W', C]`` (surface first)."""
        self.check(upper, surface, static)
        if static.ndim == 3:
            static = jnp.broadcast_to(static, (surface.shape[0], *static.shape))
        static = static.astype(surface.dtype)
        up_tok = self.embed_upper(upper)
        sf_tok = self.embed_surface(jnp.concatenate([surface, static], axis=-1))
        return constrain(jnp.concatenate([sf_tok[:, None], up_tok], axis=1), TOKENS)

    def decode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The trunk's ``[B, Z, H', W', 2C]`` -> (upper, surface) fields."""
        return self.recover_upper(x[:, 1:]), self.recover_surface(x[:, 0])


class PanguModel(nnx.Module):
    """One lead-time model: ``(upper, surface, static) -> (upper, surface)`` at ``t + lead``.

    Inputs and outputs are normalized fields; normalization, residual prediction and
    stepping live in :mod:`tellus.atmosphere.forecaster`.
    """

    def __init__(
        self, cfg: PanguConfig, *, rngs: nnx.Rngs, trunk: earth_trunk.EarthTrunk | None = None
    ):
        """Builds the adapter and, unless a shared ``trunk`` is given, a trunk of its own.

        Raises:
          ValueError: ``trunk`` is not of the shape ``cfg`` describes.
        """
        self.config = cfg
        self.adapter = AtmosphereAdapter(cfg, rngs=rngs)
        if trunk is not None and trunk.config != cfg.trunk:
            raise ValueError(
                f"the shared trunk is {trunk.config}, the atmosphere model was configured for "
                f"{cfg.trunk}"
            )
        self.trunk = trunk if trunk is not None else earth_trunk.EarthTrunk(cfg.trunk, rngs=rngs)

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
        x = self.adapter.encode(upper, surface, static)
        x = self.trunk(x, self.adapter.bias(), key=key)
        return self.adapter.decode(x)


def _v0_path(path: str) -> str:
    """A version-0 parameter path (inside the model) -> its path after the split."""
    head = path.split("/")[0]
    if head in ("embed_upper", "embed_surface", "recover_upper", "recover_surface"):
        return f"adapter/{path}"
    if head.startswith("stage"):
        parts = path.split("/")  # stageK/blocks/i/attn/bias/table
        if parts[3:] == ["attn", "bias", "table"]:
            return f"adapter/bias/stages/{int(head[5:]) - 1}/{parts[2]}/table"
        return f"trunk/{path}"
    if head in ("down", "up"):
        return f"trunk/{path}"
    raise KeyError(f"unknown version-0 parameter {path!r}")


def v0_renames(params: dict[str, object], prefix: str = "") -> dict[str, object]:
    """Version-0 ``{path: array}`` (paths under ``prefix``, e.g. ``"net/"``) renamed to the
    adapter/trunk layout."""
    out = {}
    for path, x in params.items():
        if not path.startswith(prefix):
            out[path] = x
            continue
        out[prefix + _v0_path(path[len(prefix) :])] = x
    return out


def make_model(cfg: PanguConfig) -> PanguModel:
    """Builds the model (annotations kept, no eager sharding)."""
    with nnx.use_eager_sharding(False):
        return PanguModel(cfg, rngs=nnx.Rngs(cfg.seed))


def abstract_model(cfg: PanguConfig) -> PanguModel:
    """The model with ``jax.ShapeDtypeStruct`` params: no memory allocated."""
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(lambda: PanguModel(cfg, rngs=nnx.Rngs(cfg.seed)))


__all__ = ["AtmosphereAdapter", "PanguModel", "abstract_model", "make_model", "v0_renames"]
