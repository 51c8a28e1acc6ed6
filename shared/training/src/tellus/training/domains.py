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
* its **loss** on its own batches (masked where it has a mask);
* its **loader** (``load``): its trained model(s) at a path as a :class:`Predictor`, whose
  ``forecast`` takes an ``xarray.Dataset`` in the schema and returns one. :func:`for_checkpoint`
  finds the domain of a checkpoint folder by the ``kind`` in its envelope; ``tellus.load``
  calls both.

:class:`SharedTrunkModel` puts several domains on one trunk (``backbone``) with their
adapters under ``domains/<name>``; :func:`train_domain` makes the :class:`TrainDomain` that
``trainer.fit`` steps, owning ``domains/<name>`` so that a step of one domain moves only the
trunk and that domain's adapters. Checkpoints of it are of kind ``shared_trunk``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import jax
from flax import nnx

from tellus.kernels import earth_trunk
from tellus.training import checkpoint, step, trainer
from tellus.training.streams import Stream

ENTRY_POINTS = "tellus.domains"


@runtime_checkable
class Predictor(Protocol):
    """A domain's trained model(s) as a user calls them: an ``xarray.Dataset`` in the schema
    in, an ``xarray.Dataset`` out (what each domain's ``forecast`` takes is in its
    ``Domain.load``)."""

    def forecast(self, ds: Any, /, **options: Any) -> Any: ...


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
      load: ``load(path, **options) -> Predictor``: the trained model(s) of ``kind`` at
        ``path``, a folder in any of the domain's layouts (one ``fit`` workdir, or a run of
        several: an atmosphere run's ``lead_*h``, an ENSO ensemble's ``member_*``); None
        when the domain has no loader.
      is_v0: whether a checkpoint config written before the envelope (version 0: no
        ``kind`` in it) is one of ``kind``'s; None when the domain has no version-0
        checkpoints.
    """

    name: str
    summary: str
    kind: checkpoint.Kind
    build: Callable[[dict[str, Any], earth_trunk.EarthTrunk | None], nnx.Module]
    loss_fn: step.LossFn
    trunk_config: Callable[[dict[str, Any]], earth_trunk.TrunkConfig]
    load: Callable[..., Predictor] | None = None
    is_v0: Callable[[Mapping[str, Any]], bool] | None = None


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


# How deep below a folder :func:`checkpoint_folders` looks: 1 finds an atmosphere run's
# ``lead_{H}h/checkpoints``, 2 an ENSO ensemble's ``member_{k}/finetune/checkpoints``.
SEARCH_DEPTH = 2
CHECKPOINTS = "checkpoints"


def checkpoint_folders(path: str | os.PathLike, depth: int = SEARCH_DEPTH) -> list[Path]:
    """The ``checkpoints`` folders of ``path`` (a ``fit`` workdir has one): its own, else
    those of the shallowest level of subfolders (at most ``depth`` below) that has any.
    A ``checkpoints`` folder itself stands for its workdir."""
    root = Path(path)
    if root.name == CHECKPOINTS and root.is_dir():
        root = root.parent
    for level in range(depth + 1):
        found = sorted(p for p in root.glob("/".join(["*"] * level + [CHECKPOINTS])) if p.is_dir())
        if found:
            return found
    return []


def read_envelopes(path: str | os.PathLike) -> dict[Path, dict[str, Any]]:
    """The config JSON (the envelope ``{kind, version, task, model, train, groups}``) of the
    latest complete checkpoint in each of :func:`checkpoint_folders`, by folder.

    Raises:
      FileNotFoundError: ``path`` does not exist, is not a folder, has no ``checkpoints``
        folder (nor do its subfolders), or none of them holds a complete checkpoint.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    if not root.is_dir():
        raise FileNotFoundError(f"{str(path)!r} is a file, not a checkpoint folder")
    folders = checkpoint_folders(root)
    if not folders:
        raise FileNotFoundError(
            f"{str(path)!r} is not a Tellus checkpoint: no {CHECKPOINTS}/ folder in it or in "
            f"its subfolders (expected a training workdir, an atmosphere run of lead_*h "
            f"models or an ENSO ensemble of member_* folders)"
        )
    out = {}
    for folder in folders:
        ck = checkpoint.Checkpointer(folder, async_save=False)
        try:
            last = ck.latest_step()
            if last is not None:
                out[folder] = ck.read_json(last)[0]
        finally:
            ck.close()
    if not out:
        raise FileNotFoundError(
            f"no complete checkpoint in {', '.join(str(f) for f in folders)}; an unfinished "
            f"training, or one killed before its first checkpoint"
        )
    return out


def _kind_of(cfg: Mapping[str, Any], known: Mapping[str, Domain]) -> str | None:
    """The kind name of a checkpoint config; for version 0 (no ``kind``), the kind of the
    one domain that recognizes it (None when none does)."""
    if cfg.get("kind") is not None:
        return str(cfg["kind"])
    claims = sorted(d.kind.name for d in known.values() if d.is_v0 is not None and d.is_v0(cfg))
    if len(claims) > 1:
        raise checkpoint.CheckpointKindError(
            f"a version-0 checkpoint config is recognized by the kinds {claims}"
        )
    return claims[0] if claims else None


def for_checkpoint(path: str | os.PathLike, domains: Mapping[str, Domain] | None = None) -> Domain:
    """The registered domain whose :attr:`Domain.kind` is the kind of the checkpoints at
    ``path`` (read from their envelopes; version 0 through :attr:`Domain.is_v0`).

    Args:
      path: a ``fit`` workdir, its ``checkpoints`` folder, or a folder of several (an
        atmosphere run of ``lead_*h`` models, an ENSO ensemble of ``member_*``).
      domains: the domains to choose from (default: :func:`registered`).

    Raises:
      FileNotFoundError: ``path`` is not a checkpoint folder (:func:`read_envelopes`).
      CheckpointKindError: the checkpoints are of a kind no domain reads, or of several.
    """
    known = dict(domains) if domains is not None else registered()
    envelopes = read_envelopes(path)
    kinds = {folder: _kind_of(cfg, known) for folder, cfg in envelopes.items()}
    names = sorted({k or "version 0 of no known kind" for k in kinds.values()})
    if len(names) > 1:
        raise checkpoint.CheckpointKindError(
            f"{str(path)!r} holds checkpoints of several kinds ({', '.join(names)}); "
            f"give the folder of one model"
        )
    kind = next(iter(kinds.values()))
    by_kind = {d.kind.name: d for d in known.values()}
    readable = ", ".join(f"{d.name} ({d.kind.name!r})" for d in known.values()) or "none"
    if kind is None:
        raise checkpoint.CheckpointKindError(
            f"{str(path)!r} holds a checkpoint written before checkpoint envelopes (version "
            f"0, no kind) that no registered domain recognizes; registered: {readable}"
        )
    if kind not in by_kind:
        raise checkpoint.CheckpointKindError(
            f"{str(path)!r} holds a {kind!r} checkpoint, which no registered domain reads; "
            f"registered: {readable}"
        )
    return by_kind[kind]


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
    "CHECKPOINTS",
    "ENTRY_POINTS",
    "KIND",
    "SEARCH_DEPTH",
    "Domain",
    "Predictor",
    "SharedTrunkConfig",
    "SharedTrunkModel",
    "build_shared",
    "checkpoint_folders",
    "for_checkpoint",
    "get",
    "read_envelopes",
    "registered",
    "train_domain",
]
