"""The atmosphere forecaster as plan targets of ``tellus plan`` (``pangu-<preset>``).

:mod:`tellus.training.targets` finds targets through the ``tellus.plan_targets`` entry
point group, which ``packages/atmosphere/pyproject.toml`` points at :func:`plan_targets`:
the training layer never imports this package by name. One target per model preset of
:mod:`tellus.atmosphere.config` (``pangu-paper`` is the 0.25 deg, 721 x 1440 model of
Bi et al. 2023).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from flax import nnx

from tellus.atmosphere import config as pangu_config
from tellus.training.targets import BatchLeaf, Target

PANGU_PREFIX = "pangu-"


def placeholder_forecaster(model_cfg: pangu_config.PanguConfig, remat: bool = False):
    """The 24 h lead forecaster of ``model_cfg`` with placeholder statistics (they only scale
    the fields: the compiled step and its cost are those of a trained model's)."""
    from tellus.atmosphere import forecaster

    c = model_cfg.upper_vars * model_cfg.levels + model_cfg.surface_vars
    s = model_cfg.static_vars
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
    with nnx.use_eager_sharding(False):  # annotations kept, placed by whoever runs it
        return forecaster.Forecaster(cfg, rngs=nnx.Rngs(model_cfg.seed))


def batch_leaves(model_cfg: pangu_config.PanguConfig, b: int) -> dict[str, BatchLeaf]:
    """A training batch of ``b`` samples: ``{name: (shape, dtype, logical names)}``."""
    c = model_cfg.upper_vars * model_cfg.levels + model_cfg.surface_vars
    h, w = model_cfg.lat, model_cfg.lon
    field = ("batch", None, "lat", "lon", "channels")
    return {
        "inputs": ((b, 1, h, w, c), np.float32, field),
        "targets": ((b, 1, h, w, c), np.float32, field),
        "statics": (
            (b, h, w, model_cfg.static_vars),
            np.float32,
            ("batch", "lat", "lon", "channels"),
        ),
    }


def pangu(preset: str) -> Target:
    """The lead-time forecaster with model preset ``preset``, as a plan target."""
    from tellus.atmosphere import forecaster

    model_cfg = pangu_config.preset(preset)
    return Target(
        name=PANGU_PREFIX + preset,
        description=f"Pangu-style forecaster, preset '{preset}': {model_cfg.levels} levels, "
        f"{model_cfg.lat} x {model_cfg.lon} grid, C={model_cfg.dim}, "
        f"patch {model_cfg.patch}, window {model_cfg.window}",
        make_model=lambda remat: placeholder_forecaster(model_cfg, remat),
        loss_fn=forecaster.loss_fn,
        batch=lambda b: batch_leaves(model_cfg, b),
        model_remat=True,
    )


def plan_targets() -> dict[str, Callable[[], Target]]:
    """``{"pangu-<preset>": builder}`` for every preset: the ``tellus.plan_targets`` entry."""
    return {PANGU_PREFIX + p: (lambda p=p: pangu(p)) for p in sorted(pangu_config.PRESETS)}
