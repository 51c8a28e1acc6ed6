"""One lead-time forecaster: normalization and residual prediction around the Pangu network.

The network (:class:`~tellus.atmosphere.model.PanguModel`) sees normalized
``[B, level, lat, lon, var]`` and ``[B, lat, lon, var]`` arrays. This wrapper takes the
stacked raw channels the data layer produces (``[B, lat, lon, C]`` with
``C = 5 x levels + 4``, variable-major: all levels of geopotential, then of specific
humidity, ...), normalizes them with the store's statistics, and maps the network output
back to physical units.

Two target conventions (``ForecasterConfig.residual``):

* ``False``, as Pangu-Weather: the network outputs the normalized state at ``t + lead``.
* ``True`` (default for the CPU presets), as GraphCast: the network outputs the increment
  ``x(t + lead) - x(t)`` in units of its own standard deviation, measured per channel on
  the training data (``increment_scale``); the loss is computed in those units, so slow
  and fast variables count alike. Small models trained briefly learn far better this way.

The loss is Pangu's: latitude-weighted MAE with its per-variable weights (Z 3.00, Q 0.60,
T 1.50, U 0.77, V 0.54; MSLP 1.50, U10 0.77, V10 0.66, T2M 3.00) and the surface term
weighted 0.25 against the upper-air term.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.atmosphere import model as model_lib
from tellus.atmosphere.config import PanguConfig
from tellus.atmosphere.model import PanguModel
from tellus.data import grid, schema, tasks
from tellus.training import checkpoint, losses

# Pangu's order, defined once in the data layer; the stacked channels and the weights below
# follow it.
UPPER_VARIABLES = tasks.ATMOSPHERE_UPPER_AIR
SURFACE_VARIABLES = tasks.ATMOSPHERE_SURFACE
STATIC_VARIABLES = ("land_sea_mask", "soil_type", "geopotential_at_surface")
# Bi et al. (2023), Methods ("Training details"): per-variable loss weights.
UPPER_WEIGHTS = (3.00, 0.60, 1.50, 0.77, 0.54)
SURFACE_WEIGHTS = (1.50, 0.77, 0.66, 3.00)
SURFACE_LOSS_WEIGHT = 0.25


def task_for(
    lead_hours: int,
    time_step: str = "6h",
    levels: Sequence[int] = schema.PRESSURE_LEVELS_13,
    static_variables: Sequence[str] = STATIC_VARIABLES,
    rollout: int = 1,
) -> tasks.TaskConfig:
    """The data task of one lead-time model: the state at ``t`` -> the states at
    ``t + lead, ..., t + rollout x lead`` (one target unless training on a rollout)."""
    (step,) = tasks.steps_from_durations([f"{lead_hours}h"], time_step)
    variables = UPPER_VARIABLES + SURFACE_VARIABLES
    return tasks.TaskConfig(
        input_variables=variables,
        target_variables=variables,
        static_variables=tuple(static_variables),
        levels=tuple(levels),
        time_step=time_step,
        history_steps=1,
        lead_steps=tuple(step * (k + 1) for k in range(rollout)),
    )


@dataclasses.dataclass(frozen=True)
class ForecasterConfig:
    """Everything needed to rebuild a trained forecaster (JSON-serializable).

    Attributes:
      model: the network's architecture.
      lead_hours: the model's lead time.
      latitude: grid latitudes (degrees, ascending), for the loss weights.
      mean, std: per stacked channel, from the store's statistics.
      static_mean, static_std: per static channel.
      increment_scale: per channel, std of ``(x(t+lead) - x(t)) / std`` on training data.
      residual: predict increments (True) or states (False, as Pangu).
      loss: ``"mae"`` (Pangu's weighted MAE) or ``"mse"`` (the same weights on squared
        errors, as GraphCast).
    """

    model: PanguConfig
    lead_hours: int
    latitude: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    static_mean: tuple[float, ...]
    static_std: tuple[float, ...]
    increment_scale: tuple[float, ...]
    residual: bool = True
    loss: str = "mae"

    def __post_init__(self):
        if self.loss not in ("mae", "mse"):
            raise ValueError(f"loss must be 'mae' or 'mse', not {self.loss!r}")
        for f in ("latitude", "mean", "std", "static_mean", "static_std", "increment_scale"):
            object.__setattr__(self, f, tuple(float(v) for v in getattr(self, f)))
        m = self.model
        c = m.upper_vars * m.levels + m.surface_vars
        for f in ("mean", "std", "increment_scale"):
            if len(getattr(self, f)) != c:
                raise ValueError(
                    f"{f} has {len(getattr(self, f))} channels; the model has "
                    f"{m.upper_vars} x {m.levels} + {m.surface_vars} = {c}"
                )
        for f in ("static_mean", "static_std"):
            if len(getattr(self, f)) != m.static_vars:
                raise ValueError(
                    f"{f} has {len(getattr(self, f))} channels; the model has "
                    f"{m.static_vars} static variables"
                )
        if len(self.latitude) != m.lat:
            raise ValueError(f"latitude has {len(self.latitude)} rows; the model has {m.lat}")

    @property
    def channels(self) -> int:
        return self.model.upper_vars * self.model.levels + self.model.surface_vars

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForecasterConfig:
        d = dict(d)
        d["model"] = PanguConfig.from_dict(d["model"])
        return cls(**d)


# Variables that cannot be negative: every call's output is clipped at zero there, so that
# an autoregressive rollout never feeds negative moisture back into the model.
NONNEGATIVE_VARIABLES = ("specific_humidity",)


def nonnegative_channels(cfg: PanguConfig) -> tuple[int, ...]:
    """Indices of the stacked channels (variable-major: each upper-air variable's levels, then
    the surface variables) of :data:`NONNEGATIVE_VARIABLES`."""
    out = []
    for i, name in enumerate(UPPER_VARIABLES[: cfg.upper_vars]):
        if name in NONNEGATIVE_VARIABLES:
            out.extend(range(i * cfg.levels, (i + 1) * cfg.levels))
    base = cfg.upper_vars * cfg.levels
    for i, name in enumerate(SURFACE_VARIABLES[: cfg.surface_vars]):
        if name in NONNEGATIVE_VARIABLES:
            out.append(base + i)
    return tuple(out)


def split_channels(x: jax.Array, cfg: PanguConfig) -> tuple[jax.Array, jax.Array]:
    """``[B, H, W, C]`` stacked channels -> upper ``[B, L, H, W, 5]``, surface ``[B, H, W, 4]``."""
    n_up = cfg.upper_vars * cfg.levels
    if x.shape[-1] != n_up + cfg.surface_vars:
        raise ValueError(
            f"expected {n_up + cfg.surface_vars} channels "
            f"({cfg.upper_vars} x {cfg.levels} levels + {cfg.surface_vars}), "
            f"got {x.shape[-1]}"
        )
    up = x[..., :n_up].reshape(*x.shape[:-1], cfg.upper_vars, cfg.levels)
    return jnp.moveaxis(up, (-2, -1), (-1, -4)), x[..., n_up:]


def merge_channels(upper: jax.Array, surface: jax.Array) -> jax.Array:
    """Inverse of :func:`split_channels`."""
    up = jnp.moveaxis(upper, (-1, -4), (-2, -1))  # [B, H, W, V, L]
    up = up.reshape(*up.shape[:-2], up.shape[-2] * up.shape[-1])
    return jnp.concatenate([up, surface], axis=-1)


def channel_weights(cfg: PanguConfig) -> np.ndarray:
    """Per-channel loss weights reproducing Pangu's ``MAE_upper + 0.25 MAE_surface``
    under a mean over all channels."""
    n_up = cfg.upper_vars * cfg.levels
    c = n_up + cfg.surface_vars
    up_w = UPPER_WEIGHTS if cfg.upper_vars == len(UPPER_WEIGHTS) else (1.0,) * cfg.upper_vars
    sf_w = (
        SURFACE_WEIGHTS if cfg.surface_vars == len(SURFACE_WEIGHTS) else (1.0,) * cfg.surface_vars
    )
    upper = np.repeat(np.asarray(up_w, np.float32), cfg.levels) * c / n_up
    surface = np.asarray(sf_w, np.float32) * SURFACE_LOSS_WEIGHT * c / cfg.surface_vars
    return np.concatenate([upper, surface]).astype(np.float32)


class Forecaster(nnx.Module):
    """``x(t) -> x(t + lead)`` in physical units, on stacked channels."""

    def __init__(self, cfg: ForecasterConfig, *, rngs: nnx.Rngs, trunk: Any = None):
        self.config = cfg
        self.net = PanguModel(cfg.model, rngs=rngs, trunk=trunk)

    def _consts(self):
        c = self.config
        f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
        return f(c.mean), f(c.std), f(c.increment_scale), f(c.static_mean), f(c.static_std)

    def network_output(
        self, x: jax.Array, static: jax.Array, key: jax.Array | None = None
    ) -> jax.Array:
        """The network's raw output for raw inputs ``x [B, H, W, C]``, stacked
        ``[B, H, W, C]`` (increments in ``increment_scale`` units, or normalized states)."""
        mean, std, _, s_mean, s_std = self._consts()
        xn = (x - mean) / std
        sn = (static - s_mean) / s_std
        up, sf = split_channels(xn, self.config.model)
        out_up, out_sf = self.net(up, sf, sn, key=key)
        return merge_channels(out_up, out_sf).astype(jnp.float32)

    def __call__(self, x: jax.Array, static: jax.Array) -> jax.Array:
        """Raw ``[B, H, W, C]`` at ``t`` -> raw ``[B, H, W, C]`` at ``t + lead``."""
        mean, std, inc, _, _ = self._consts()
        out = self.network_output(x, static)
        if self.config.residual:
            return x + out * inc * std
        return out * std + mean


def make_forecaster(d: dict[str, Any] | ForecasterConfig, trunk: Any = None) -> Forecaster:
    """Model factory (also used to rebuild from a checkpoint's config JSON); on a shared
    ``trunk`` (:class:`tellus.kernels.earth_trunk.EarthTrunk`) if given."""
    cfg = d if isinstance(d, ForecasterConfig) else ForecasterConfig.from_dict(d)
    with nnx.use_eager_sharding(False):
        return Forecaster(cfg, rngs=nnx.Rngs(cfg.model.seed), trunk=trunk)


def _config_from_v0(cfg: dict[str, Any]) -> dict[str, Any]:
    """Version 0 (before the checkpoint envelope): the same model and training configs,
    no task and one parameter group."""
    return dict(cfg, task=None, groups={})


def _params_from_v0(params: dict[str, Any]) -> dict[str, Any]:
    """Version 0 held the network as one module; version 1 as adapter + shared trunk."""
    return model_lib.v0_renames(params, prefix="net/")


KIND = checkpoint.Kind(
    name="atmosphere.forecaster",
    version=1,
    factory=make_forecaster,
    migrations={0: checkpoint.Migration(config=_config_from_v0, params=_params_from_v0)},
)
"""What an atmosphere lead-model checkpoint is; ``checkpoint.rebuild(ck, step, KIND)`` checks
it and migrates older versions."""


def loss_fn(model: Forecaster, batch: dict[str, jax.Array], rng: jax.Array | None = None):
    """Pangu's weighted MAE on a batch ``{"inputs": [B, 1, H, W, C], "targets": [B, 1, H,
    W, C], "statics": [B, H, W, S]}`` of raw fields (WindowSource samples)."""
    cfg = model.config
    x, y = batch["inputs"][:, -1], batch["targets"][:, 0]
    mean, std, inc, _, _ = model._consts()
    out = model.network_output(x, batch["statics"], key=rng)
    target = ((y - x) / std) / inc if cfg.residual else (y - mean) / std
    w_lat = grid.latitude_weights(np.asarray(cfg.latitude))
    error = losses.weighted_mae if cfg.loss == "mae" else losses.weighted_mse
    return error(out, target, w_lat, channel_weights(cfg.model))


def rollout_loss_fn(num_steps: int):
    """The loss of a ``num_steps``-step autoregressive rollout (GraphCast-style fine-tuning,
    with gradients through every step), on batches whose ``targets`` hold the states at
    ``lead, 2 lead, ...``. Each step's error is measured in the units of the one-step loss
    (per-channel increment scale x std for residual models, std otherwise), so step 1 equals
    :func:`loss_fn` and later steps count alike; the loss is their mean."""

    def loss(model: Forecaster, batch: dict[str, jax.Array], rng: jax.Array | None = None):
        cfg = model.config
        if batch["targets"].shape[1] != num_steps:
            raise ValueError(
                f"rollout of {num_steps} steps needs {num_steps} targets per "
                f"sample, got {batch['targets'].shape[1]}"
            )
        mean, std, inc, _, _ = model._consts()
        scale = inc * std if cfg.residual else std
        w_lat = grid.latitude_weights(np.asarray(cfg.latitude))
        w_ch = channel_weights(cfg.model)
        error = losses.weighted_mae if cfg.loss == "mae" else losses.weighted_mse
        keys = [None] * num_steps if rng is None else list(jax.random.split(rng, num_steps))
        x, total = batch["inputs"][:, -1], 0.0
        for k in range(num_steps):
            out = model.network_output(x, batch["statics"], key=keys[k])
            x = x + out * inc * std if cfg.residual else out * std + mean
            total = total + error(x / scale, batch["targets"][:, k] / scale, w_lat, w_ch)
        return total / num_steps

    return loss
