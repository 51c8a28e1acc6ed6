"""The Domain contract: how a dataset and task plug into one trunk, one loader and one ``fit``.

A domain package (``tellus.atmosphere``, ``tellus.enso``, ...) describes itself with one
:class:`Domain` and registers it under the Python entry-point group ``tellus.domains`` in
its ``pyproject.toml``; this layer finds it with :func:`registered` and never imports a
domain package by name (the layer order forbids it). A domain brings:

* its **task** (:class:`tellus.data.tasks.TaskConfig`: variables with their vertical
  coordinate, levels, time step, history, leads, forcings, statics) and its samples through
  the data layer: random-access sources over its stores, read by the shared grain loader
  (:class:`tellus.training.streams.LoaderStream`);
* its **model**: an adapter pair (fields -> trunk tokens with the bias tables of its grid;
  tokens -> fields or an index) around :class:`tellus.kernels.earth_trunk.EarthTrunk`, built
  from a config dict on a given (shared) trunk; its checkpoint :class:`Kind`;
* its **loss** on its own batches (masked where it has a mask).

:class:`SharedTrunkModel` puts several domains on one trunk (``backbone``) with their
adapters under ``domains/<name>``; :func:`train_domain` makes the :class:`TrainDomain` that
``trainer.fit`` steps, owning ``domains/<name>`` so that a step of one domain moves only the
trunk and that domain's adapters. Checkpoints of it are of kind ``shared_trunk``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import jax
from flax import nnx

from tellus.kernels import earth_trunk
from tellus.training import checkpoint, step, trainer
from tellus.training.streams import Stream

ENTRY_POINTS = "tellus.domains"


@dataclasses.dataclass(frozen=True)
class Domain:
    """One Earth domain's definition.

    Attributes:
      name: registry name (``atmosphere``, ``enso``).
      summary: one line for listings.
      kind: the checkpoint kind of the domain's own model (what ``tellus train NAME`` saves).
      build: ``build(model_config_dict, trunk) -> model``: the domain's model on the shared
        ``trunk`` (a fresh trunk of its own when None).
      loss_fn: ``loss_fn(model, batch[, rng])`` of that model on the domain's batches.
      trunk_config: the trunk a model config dict implies (to check domains agree on it).
    """

    name: str
    summary: str
    kind: checkpoint.Kind
    build: Callable[[dict[str, Any], earth_trunk.EarthTrunk | None], nnx.Module]
    loss_fn: step.LossFn
    trunk_config: Callable[[dict[str, Any]], earth_trunk.TrunkConfig]


def registered() -> dict[str, Domain]:
    """Every domain an installed distribution registers, by name.

    Raises:
      TypeError: an entry point does not load a :class:`Domain`.
    """
    out = {}
    for ep in metadata.entry_points(group=ENTRY_POINTS):
        domain = ep.load()
        if not isinstance(domain, Domain):
            raise TypeError(f"entry point {ep.value!r} ({ENTRY_POINTS}) is not a Domain")
        out[domain.name] = domain
    return dict(sorted(out.items()))


def get(name: str) -> Domain:
    """The registered domain ``name``.

    Raises:
      KeyError: naming the registered domains.
    """
    known = registered()
    if name not in known:
        raise KeyError(f"unknown domain {name!r}; registered: {sorted(known)}")
    return known[name]


class SharedTrunkModel(nnx.Module):
    """One trunk (``backbone``) and every domain's model built on it (``domains/<name>``).

    The trunk is one object shared by every domain model; in the parameter tree it appears
    once, under ``backbone``.
    """

    def __init__(
        self,
        trunk_config: earth_trunk.TrunkConfig,
        models: Mapping[str, Any],
        *,
        rngs: nnx.Rngs,
        domains: Mapping[str, Domain],
    ):
        self.backbone = earth_trunk.EarthTrunk(trunk_config, rngs=rngs)
        self.domains = nnx.Dict(
            {name: domains[name].build(dict(cfg), self.backbone) for name, cfg in models.items()}
        )


@dataclasses.dataclass(frozen=True)
class SharedTrunkConfig:
    """The trunk and each domain's model config (JSON: it travels in checkpoints)."""

    trunk: dict[str, Any]
    models: dict[str, dict[str, Any]]
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_shared(
    cfg: SharedTrunkConfig | Mapping[str, Any], domains: Mapping[str, Domain] | None = None
) -> SharedTrunkModel:
    """Builds the model of a :class:`SharedTrunkConfig` (or its dict).

    Raises:
      KeyError: a domain is not registered.
      ValueError: a domain's model config implies another trunk than the shared one.
    """
    if not isinstance(cfg, SharedTrunkConfig):
        cfg = SharedTrunkConfig(**dict(cfg))
    domains = dict(domains) if domains is not None else registered()
    missing = sorted(set(cfg.models) - set(domains))
    if missing:
        raise KeyError(f"domains {missing} are not registered; registered: {sorted(domains)}")
    trunk = earth_trunk.TrunkConfig(**cfg.trunk)
    for name, model_cfg in cfg.models.items():
        own = domains[name].trunk_config(dict(model_cfg))
        if own != trunk:
            raise ValueError(f"domain {name!r} is configured for the trunk {own}, not {trunk}")
    with nnx.use_eager_sharding(False):
        return SharedTrunkModel(trunk, cfg.models, rngs=nnx.Rngs(cfg.seed), domains=domains)


KIND = checkpoint.Kind(name="shared_trunk", version=1, factory=build_shared)


def train_domain(
    domain: Domain,
    data: Stream,
    *,
    weight: float = 1.0,
    batch_size: int | None = None,
    validation: Callable[[], Any] | None = None,
) -> trainer.TrainDomain:
    """The part of a shared-trunk ``fit`` that trains ``domain``: its loss on its own model
    inside a :class:`SharedTrunkModel`, owning ``domains/<name>``."""
    name = domain.name

    def loss(model: SharedTrunkModel, batch: Any, rng: jax.Array | None = None) -> jax.Array:
        return _call_loss(domain.loss_fn, model.domains[name], batch, rng)

    return trainer.TrainDomain(
        name=name,
        loss_fn=loss,
        data=data,
        weight=weight,
        owns=(f"domains/{name}",),
        validation=validation,
        batch_size=batch_size,
    )


def _call_loss(loss_fn: step.LossFn, model: Any, batch: Any, rng: jax.Array | None):
    if "rng" in inspect.signature(loss_fn).parameters:
        return loss_fn(model, batch, rng=rng)
    return loss_fn(model, batch)


__all__ = [
    "ENTRY_POINTS",
    "KIND",
    "Domain",
    "SharedTrunkConfig",
    "SharedTrunkModel",
    "build_shared",
    "get",
    "registered",
    "train_domain",
]
