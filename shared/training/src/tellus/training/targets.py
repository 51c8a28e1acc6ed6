"""Plannable training targets by name: a model, its loss and the shape of its batches.

:mod:`tellus.training.plan` compiles the real train step of a *target* on a simulated mesh.
A target says how to build the NNX model (the planner builds it under ``nnx.eval_shape``,
so no parameter memory is allocated), which loss the step differentiates, and what one
global batch looks like (shapes, dtypes and the logical axis name of every dimension, so
the batch is partitioned by the same :data:`tellus.kernels.partitioning.RULES` as
training).

Targets:

* ``toy``: :mod:`tellus.training.toy_model` on a 32 x 64 grid.
* ``pangu-<preset>``: the lead-time forecaster of :mod:`tellus.atmosphere` with the model
  preset ``<preset>`` of :mod:`tellus.atmosphere.config` (``pangu-paper`` is the 0.25 deg,
  721 x 1440 model of Bi et al. 2023). ``tellus.atmosphere`` depends on this package, so
  it is imported only when such a target is built, never at import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

BatchLeaf = tuple[tuple[int, ...], Any, tuple[str | None, ...]]
"""``(shape, dtype, logical names)`` of one batch array."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What the planner compiles.

    Attributes:
      name: registry name (``toy``, ``pangu-paper``, ...).
      description: one line for the plan's header.
      make_model: ``make_model(remat) -> nnx.Module``; called under ``nnx.eval_shape``.
      loss_fn: ``loss_fn(model, batch[, rng]) -> scalar``, as for ``make_train_step``.
      batch: ``batch(global_batch) -> {name: (shape, dtype, logical names)}``.
      model_remat: the model rematerializes its own blocks when ``make_model(True)``; if
        False, remat is the train step's whole-loss ``jax.checkpoint``
        (``TrainConfig.remat``).
    """

    name: str
    description: str
    make_model: Callable[[bool], nnx.Module]
    loss_fn: Callable[..., jax.Array]
    batch: Callable[[int], Mapping[str, BatchLeaf]]
    model_remat: bool = False

    def abstract_batch(self, global_batch: int) -> dict[str, jax.ShapeDtypeStruct]:
        """``{name: jax.ShapeDtypeStruct}`` of one global batch (no memory)."""
        return {
            k: jax.ShapeDtypeStruct(shape, dtype)
            for k, (shape, dtype, _) in self.batch(global_batch).items()
        }

    def batch_names(self, global_batch: int) -> dict[str, tuple[str | None, ...]]:
        """Logical axis names of every batch array."""
        return {k: names for k, (_, _, names) in self.batch(global_batch).items()}


# --- toy ------------------------------------------------------------------------------

TOY_GRID = (32, 64)


def _toy() -> Target:
    from tellus.training import toy_model

    cfg = toy_model.ToyConfig(channels=64, hidden=256, head_channels=64)
    lat, lon = TOY_GRID

    def batch(b: int) -> dict[str, BatchLeaf]:
        names = ("batch", "lat", "lon", "channels")
        return {
            "x": ((b, lat, lon, cfg.channels), np.float32, names),
            "y": ((b, lat, lon, cfg.head_channels), np.float32, names),
        }

    return Target(
        name="toy",
        description=f"toy per-grid-point MLP, {cfg.channels}->{cfg.hidden}->{cfg.channels}"
        f"->{cfg.head_channels} channels on a {lat} x {lon} grid",
        make_model=lambda remat: toy_model.ToyModel(cfg, nnx.Rngs(cfg.seed)),
        loss_fn=toy_model.loss_fn,
        batch=batch,
    )


# --- Pangu-style atmosphere forecaster ----------------------------------------------------

PANGU_PREFIX = "pangu-"


def _pangu(preset: str) -> Target:
    from tellus.atmosphere import config as pangu_config
    from tellus.atmosphere import forecaster

    model_cfg = pangu_config.preset(preset)
    c = model_cfg.upper_vars * model_cfg.levels + model_cfg.surface_vars
    s = model_cfg.static_vars

    def make_model(remat: bool) -> nnx.Module:
        # Statistics only scale the fields: placeholders give the same compiled step.
        cfg = forecaster.ForecasterConfig(
            model=dataclasses.replace(model_cfg, remat_blocks=remat),
            lead_hours=24,
            latitude=tuple(np.linspace(-90.0, 90.0, model_cfg.lat)),
            mean=(0.0,) * c,
            std=(1.0,) * c,
            increment_scale=(1.0,) * c,
            static_mean=(0.0,) * s,
            static_std=(1.0,) * s,
            residual=False,
        )
        return forecaster.Forecaster(cfg, rngs=nnx.Rngs(model_cfg.seed))

    def batch(b: int) -> dict[str, BatchLeaf]:
        h, w = model_cfg.lat, model_cfg.lon
        field = ("batch", None, "lat", "lon", "channels")
        return {
            "inputs": ((b, 1, h, w, c), np.float32, field),
            "targets": ((b, 1, h, w, c), np.float32, field),
            "statics": ((b, h, w, s), np.float32, ("batch", "lat", "lon", "channels")),
        }

    return Target(
        name=PANGU_PREFIX + preset,
        description=f"Pangu-style forecaster, preset '{preset}': {model_cfg.levels} levels, "
        f"{model_cfg.lat} x {model_cfg.lon} grid, C={model_cfg.dim}, "
        f"patch {model_cfg.patch}, window {model_cfg.window}",
        make_model=make_model,
        loss_fn=forecaster.loss_fn,
        batch=batch,
        model_remat=True,
    )


def names() -> list[str]:
    """The registered target names (Pangu presets listed when the package is installed)."""
    out = ["toy"]
    try:
        from tellus.atmosphere import config as pangu_config
    except ImportError:  # tellus-atmosphere is optional for tellus-training
        return out
    return out + [PANGU_PREFIX + p for p in sorted(pangu_config.PRESETS)]


def get(name: str) -> Target:
    """The target called ``name``.

    Raises:
      KeyError: naming the known targets.
    """
    if name == "toy":
        return _toy()
    if name.startswith(PANGU_PREFIX):
        preset = name[len(PANGU_PREFIX) :]
        known = names()
        if name not in known:
            raise KeyError(f"unknown plan target {name!r}; choose from {known}")
        return _pangu(preset)
    raise KeyError(f"unknown plan target {name!r}; choose from {names()}")
