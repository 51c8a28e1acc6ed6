"""Plannable training targets by name: a model, its loss and the shape of its batches.

:mod:`tellus.training.plan` compiles the real train step of a *target* on a simulated mesh.
A target says how to build the NNX model (the planner builds it under ``nnx.eval_shape``,
so no parameter memory is allocated), which loss the step differentiates, and what one
global batch looks like (shapes, dtypes and the logical axis name of every dimension, so
the batch is partitioned by the same :data:`tellus.kernels.partitioning.RULES` as
training).

Targets:

* ``toy``: :mod:`tellus.training.toy_model` on a 32 x 64 grid.
* ``earth:<spec.json>``: one task of an Earth-model experiment (:func:`earth`), written by
  ``tellus plan --config FILE`` for each task of the file.
* every target a domain package registers under the :data:`ENTRY_POINT_GROUP` entry point
  group: the entry names a function returning ``{target name: builder}``, each builder
  taking no arguments and returning a :class:`Target`. ``tellus-atmosphere`` registers
  ``pangu-<preset>`` (:mod:`tellus.atmosphere.plan_target`). Domain packages depend on
  this one, so it never imports them by name; their entry points are loaded only when the
  names are listed or a target is built, never at import time.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from collections.abc import Callable, Mapping
from pathlib import Path
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


# --- targets registered by installed packages ----------------------------------------

ENTRY_POINT_GROUP = "tellus.plan_targets"
"""The entry point group that domain packages register their plan targets under."""


def _registered() -> dict[str, Callable[[], Target]]:
    """``{name: builder}`` of every installed package's targets, by entry point name."""
    out: dict[str, Callable[[], Target]] = {}
    for ep in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
    ):
        for name, build in sorted(ep.load()().items()):
            if name == "toy" or name in out:
                raise ValueError(
                    f"plan target {name!r} of entry point {ep.name!r} ({ep.value}) is "
                    "registered twice"
                )
            out[name] = build
    return out


EARTH_PREFIX = "earth:"


def regular_latitudes(n: int) -> np.ndarray:
    """``n`` equiangular latitudes: with the poles when ``n`` is odd (721 for 0.25 deg, as
    WeatherBench2), cell centres otherwise (180 for 1 deg: -89.5 ... 89.5)."""
    if n % 2:
        return np.linspace(-90.0, 90.0, n)
    step = 180.0 / n
    return np.linspace(-90.0 + step / 2, 90.0 - step / 2, n)


def earth(spec: Mapping[str, Any]) -> Target:
    """The Earth model's training step on one task, from its shapes alone.

    Args:
      spec: ``{"name", "model": EarthModelConfig dict, "task": StoreData dict, "grid":
        [n_lat, n_lon], "levels": {variable: [levels]}, "lead_hours"}`` (the grid is
        equiangular, :func:`regular_latitudes`; longitudes from 0).
    """
    from tellus.kernels import earth_model as em
    from tellus.training import pretraining as pt

    data = pt.StoreData(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in spec["task"].items()}
    )
    n_lat, n_lon = (int(v) for v in spec["grid"])
    lat, lon = regular_latitudes(n_lat), np.arange(n_lon) * 360.0 / n_lon
    task = pt.EarthTask.from_shapes(
        data, lat, lon, spec.get("levels", {}), lead_hours=float(spec.get("lead_hours", 6.0))
    )
    cfg = task.model_config(em.EarthModelConfig.from_dict(spec["model"]))
    c = task.layout.num_channels

    def make_model(remat: bool) -> nnx.Module:
        trunk = dataclasses.replace(cfg.trunk, remat_blocks=remat)
        return em.EarthModel(dataclasses.replace(cfg, trunk=trunk), rngs=nnx.Rngs(0))

    def batch(b: int) -> dict[str, BatchLeaf]:
        field = ("batch", None, "lat", "lon", "channels")
        out: dict[str, BatchLeaf] = {pt.INPUTS: ((b, 1, n_lat, n_lon, c), np.float32, field)}
        if task.is_index:
            out[pt.DERIVED] = ((b, data.lead, 1), np.float32, ("batch", None, None))
        else:
            out[pt.TARGETS] = ((b, 1, n_lat, n_lon, c), np.float32, field)
        return out

    return Target(
        name=spec.get("name", data.name),
        description=f"Earth model, task {data.name!r} ({data.domain}): {c} channels on "
        f"{n_lat} x {n_lon}, C={cfg.trunk.dim}, patch {cfg.encoder.patch}",
        make_model=make_model,
        loss_fn=task.loss,
        batch=batch,
        model_remat=True,
    )


def names() -> list[str]:
    """The target names: ``toy``, then those registered by installed packages."""
    return ["toy", *_registered()]


def get(name: str) -> Target:
    """The target called ``name``.

    Raises:
      KeyError: naming the known targets.
    """
    if name == "toy":
        return _toy()
    if name.startswith(EARTH_PREFIX):
        return earth(json.loads(Path(name.removeprefix(EARTH_PREFIX)).read_text()))
    registered = _registered()
    if name not in registered:
        raise KeyError(f"unknown plan target {name!r}; choose from {names()}")
    return registered[name]()
