"""Orbax checkpoints of a ``TrainState`` with its configs and data-iterator state.

Each step directory holds three items (neuralgcm's ``Composite(state=..., config=JsonSave)``):

* ``state``: the TrainState, flattened to ``{"params['trunk']['up']['kernel']": array}``
  so that restores and partial restores match leaves by path name;
* ``config``: the JSON envelope ``{kind, version, task, model, train, groups}``
  (:func:`config_dict`): what the checkpoint is, the data task, the model config (used to
  rebuild the model through a factory), the training config and the parameter groups of the
  optimizer state;
* ``data``: JSON data-iterator state, so a resumed run sees the same data order.

Orbax writes each step to a temporary directory and renames it when complete, so a save
killed half way never replaces (or shows up as) the last good checkpoint.

A :class:`Kind` names a kind of model, its current version and the :class:`Migration` from
each older one; :func:`rebuild` checks a checkpoint against it and migrates older versions
(version 0: written before the envelope, read by its own metadata). :func:`restore_latest`
resumes from the newest checkpoint that can be read, moving damaged ones aside;
:mod:`tellus.training.transfer` starts a new phase from an earlier one's checkpoint.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from tellus.training.config import TrainConfig
from tellus.training.step import (
    Grouping,
    StepFns,
    TrainState,
    flat_params,
    init_train_state,
    param_path,
)

PyTree = Any
log = logging.getLogger(__name__)


def flatten_state(tree: PyTree) -> dict[str, Any]:
    """``{path string: leaf}`` for every leaf of ``tree``."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(p): x for p, x in leaves}


def _unflatten_like(template: PyTree, flat: dict[str, Any]) -> PyTree:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(treedef, [flat[jax.tree_util.keystr(p)] for p, _ in leaves])


class Checkpointer:
    """Async CheckpointManager keeping the last N steps plus the best by a metric.

    Args:
      directory: root directory (created if missing).
      keep: how many most recent checkpoints to keep.
      best_metric: metric name (lower is better) whose best checkpoint is also kept;
        ``None`` keeps only the latest.
      async_save: save in a background thread.
    """

    def __init__(
        self,
        directory: str | Path,
        keep: int = 3,
        best_metric: str | None = None,
        async_save: bool = True,
    ):
        policies: list[Any] = [ocp.checkpoint_managers.LatestN(n=keep)]
        if best_metric is not None:
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=lambda m: m[best_metric],
                    reverse=True,  # as orbax's best_mode="min"
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            # Only read by best_step(); retention is the preservation policy above.
            best_fn=None if best_metric is None else (lambda m: m[best_metric]),
            best_mode="min",
            create=True,
        )
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "config", "data")
        )

    def save(
        self,
        step: int,
        state: TrainState,
        config: dict[str, Any],
        data_state: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Starts an (async) save of ``state``, the config JSON and the iterator state."""
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(flatten_state(state)),
                config=ocp.args.JsonSave(config),
                data=ocp.args.JsonSave(data_state or {}),
            ),
            metrics=None if metrics is None else {k: float(v) for k, v in metrics.items()},
        )

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()

    def latest_step(self) -> int | None:
        """Latest complete checkpoint step (unfinished saves are never listed)."""
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def read_json(self, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(config, data_state)`` JSON of ``step``."""
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(config=ocp.args.JsonRestore(), data=ocp.args.JsonRestore()),
        )
        return dict(out["config"]), dict(out["data"])

    def restore(
        self, step: int, target: TrainState, shardings: TrainState | None = None
    ) -> TrainState:
        """Restores ``step`` onto the structure of ``target``.

        Args:
          step: checkpoint step.
          target: a concrete or abstract state of the same structure.
          shardings: NamedShardings (e.g. from ``step.state_shardings`` on any mesh);
            ``None`` puts every leaf on the first device.

        Returns:
          The restored TrainState, laid out as ``shardings``.
        """
        if shardings is None:
            dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            shardings = jax.tree.map(lambda _: dev, target)
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), target, shardings
        )
        out = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(flatten_state(abstract)))
        )
        return _unflatten_like(target, out["state"])

    def quarantine(self, step: int) -> Path:
        """Moves the directory of checkpoint ``step`` aside, never deleting it.

        It goes to ``<directory>.corrupt/<step>`` beside this checkpoint directory (``<step>.1``,
        ``<step>.2``, ... when a step of that number was moved there before), and the manager
        forgets it: ``all_steps`` and ``latest_step`` no longer list it.

        Returns:
          The directory's new path.

        Raises:
          FileNotFoundError: there is no directory for ``step``.
        """
        self.manager.wait_until_finished()
        source = self.directory / str(step)
        if not source.is_dir():
            raise FileNotFoundError(f"no checkpoint directory {source} to move aside")
        aside = self.directory.parent / f"{self.directory.name}.corrupt"
        aside.mkdir(parents=True, exist_ok=True)
        target, n = aside / str(step), 0
        while target.exists():
            n += 1
            target = aside / f"{step}.{n}"
        source.rename(target)  # a sibling folder, so the same file system: one rename
        self.manager.reload()  # the manager caches its list of steps
        return target


def config_dict(
    model_config: Any,
    train_config: TrainConfig,
    *,
    kind: str = "model",
    version: int = 1,
    task: Mapping[str, Any] | None = None,
    groups: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON stored with every checkpoint: the envelope ``{kind, version, task}``, the
    model and training configs, and the parameter groups of the optimizer state."""
    m = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
    return {
        "kind": kind,
        "version": int(version),
        "task": None if task is None else dict(task),
        "model": m,
        "train": train_config.to_dict(),
        "groups": dict(groups or {}),
    }


class CheckpointKindError(ValueError):
    """A checkpoint holds another kind of model, or a version this code cannot read."""


@dataclasses.dataclass(frozen=True)
class Migration:
    """How a checkpoint of ``version`` becomes one of ``version + 1``.

    Attributes:
      config: the config JSON of the old version -> that of the next one.
      params: the old ``{"a/b/kernel": array}`` parameters (and EMA) -> the next version's
        (renames, splits); default unchanged.
    """

    config: Callable[[dict[str, Any]], dict[str, Any]]
    params: Callable[[dict[str, Any]], dict[str, Any]] | None = None


@dataclasses.dataclass(frozen=True)
class Kind:
    """A kind of checkpointed model: its name, its current config version, how to build it
    from its config, and the migrations from every older version.

    Version 0 is a checkpoint written before the envelope existed (no ``kind`` in its
    config). A migrated checkpoint is read by its own metadata, whatever its optimizer
    state's layout, and keeps its weights; training it further starts a fresh optimizer.
    """

    name: str
    version: int
    factory: Callable[[dict[str, Any]], nnx.Module]
    migrations: Mapping[int, Migration] = dataclasses.field(default_factory=dict)

    def migrate(self, cfg: dict[str, Any], where: str) -> tuple[dict[str, Any], list[Migration]]:
        """The config brought to this version, and the migrations applied (oldest first).

        Raises:
          CheckpointKindError: another kind, a newer version, or no migration path.
        """
        found = cfg.get("kind")
        version = int(cfg.get("version", 0)) if found is not None else 0
        if found is not None and found != self.name:
            raise CheckpointKindError(
                f"{where} holds a {found!r} checkpoint, not a {self.name!r} one"
            )
        if version > self.version:
            raise CheckpointKindError(
                f"{where} is a version {version} {self.name!r} checkpoint; this Tellus reads "
                f"versions up to {self.version}: upgrade Tellus"
            )
        applied = []
        while version < self.version:
            if version not in self.migrations:
                raise CheckpointKindError(
                    f"{where} is a version {version} {self.name!r} checkpoint and there is no "
                    f"migration from version {version}"
                )
            step = self.migrations[version]
            cfg = step.config(dict(cfg))
            applied.append(step)
            version += 1
        cfg = dict(cfg, kind=self.name, version=self.version)
        return cfg, applied


_KEY = re.compile(r"\['([^']*)'\]|\[(\d+)\]")


def _slash(keystr: str) -> str:
    """``"['net']['blocks'][0]['kernel']"`` -> ``"net/blocks/0/kernel"``."""
    return "/".join(a or b for a, b in _KEY.findall(keystr))


def _restore_legacy(
    ckpt: Checkpointer, step: int, template: TrainState, migrations: list[Migration], where: str
) -> TrainState:
    """An older version's state as a TrainState of today's model: the stored arrays are read
    by the checkpoint's own metadata (their layout, optimizer state included, is the old
    one), the params and EMA renamed by the migrations and checked against ``template``,
    whose optimizer state starts afresh.

    Raises:
      CheckpointKindError: the migrated parameters do not match today's model.
    """
    reader = ocp.CheckpointManager(
        ckpt.directory,
        item_names=("state",),
        item_handlers={"state": ocp.StandardCheckpointHandler()},
    )
    try:
        meta = reader.item_metadata(step)["state"]
        dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = {
            k: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=dev) for k, m in meta.items()
        }
        stored = reader.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
    finally:
        reader.close()

    def part(name: str) -> dict[str, Any]:
        out = {
            _slash(k[len(name) + 1 :]): v for k, v in stored.items() if k.startswith(f".{name}[")
        }
        for m in migrations:
            if m.params is not None:
                out = m.params(out)
        return out

    def fill(tree: PyTree, flat: dict[str, Any], name: str) -> PyTree:
        want = {path for path in flat_params(tree)}
        missing, extra = sorted(want - set(flat)), sorted(set(flat) - want)
        if missing or extra:
            raise CheckpointKindError(
                f"{where}: after migration its {name} do not match the model: missing "
                f"{missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected "
                f"{extra[:3]}{'...' if len(extra) > 3 else ''}"
            )
        leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
        values = []
        for p, x in leaves:
            v = flat[param_path(p)]
            if tuple(v.shape) != tuple(x.shape):
                raise CheckpointKindError(
                    f"{where}: {name} {param_path(p)} has shape {tuple(v.shape)}, the model "
                    f"{tuple(x.shape)}"
                )
            values.append(jnp.asarray(v, x.dtype))
        return jax.tree_util.tree_unflatten(treedef, values)

    params = fill(template.params, part("params"), "parameters")
    ema = None
    if template.ema is not None:
        stored_ema = part("ema")
        ema = fill(template.ema, stored_ema, "EMA parameters") if stored_ema else params
    step_value = stored.get(".step")
    return dataclasses.replace(
        template,
        params=params,
        ema=ema,
        step=template.step if step_value is None else jnp.asarray(step_value, jnp.int32),
    )


def _structure_mismatch(ckpt: Checkpointer, step: int, abstract: TrainState) -> str:
    """One line naming how the stored state differs from the model's."""
    reader = ocp.CheckpointManager(
        ckpt.directory,
        item_names=("state",),
        item_handlers={"state": ocp.StandardCheckpointHandler()},
    )
    try:
        stored = set(reader.item_metadata(step)["state"])
    finally:
        reader.close()
    want = set(flatten_state(abstract))
    missing = sorted(k for k in want - stored if k.startswith(".params"))
    extra = sorted(k for k in stored - want if k.startswith(".params"))
    return (
        f"{ckpt.directory}/{step} holds another model: parameters the model has and the "
        f"checkpoint lacks {[_slash(k) for k in missing[:3]]}"
        f"{'...' if len(missing) > 3 else ''}, stored ones the model does not have "
        f"{[_slash(k) for k in extra[:3]]}{'...' if len(extra) > 3 else ''}"
    )


def rebuild(
    ckpt: Checkpointer,
    step: int,
    factory: Callable[[dict[str, Any]], nnx.Module] | Kind,
    shardings_fn: Callable[[StepFns, TrainState, nnx.Module], TrainState] | None = None,
) -> tuple[nnx.Module, StepFns, TrainState, dict[str, Any]]:
    """Rebuilds the model from the checkpoint's config and restores its state.

    Args:
      ckpt: checkpointer.
      step: step to load.
      factory: the :class:`Kind` of model expected (checked, older versions migrated), or
        a bare ``factory(model_config_dict) -> model`` (no check).
      shardings_fn: optional ``(fns, abstract_state, model) -> shardings`` for a mesh.

    Returns:
      ``(model, fns, state, data_state)``; ``model`` holds the restored params and the rest
      of its state (non-parameter variables such as buffers). A migrated
      checkpoint comes with a fresh optimizer state (its weights are what it is kept for).

    Raises:
      CheckpointKindError: the checkpoint is of another kind or an unreadable version.
    """
    cfg, data_state = ckpt.read_json(step)
    applied: list[Migration] = []
    make = factory
    if isinstance(factory, Kind):
        cfg, applied = factory.migrate(cfg, f"{ckpt.directory}/{step}")
        make = factory.factory
    train_cfg = TrainConfig.from_dict(cfg["train"])
    model = make(cfg["model"])
    grouping = Grouping.from_dict(cfg.get("groups"))
    fns, template = init_train_state(model, train_cfg, grouping)
    if applied:
        state = _restore_legacy(ckpt, step, template, applied, f"{ckpt.directory}/{step}")
        if shardings_fn is not None:
            state = jax.device_put(state, shardings_fn(fns, state, model))
    else:
        abstract = jax.eval_shape(lambda: template)
        shardings = None if shardings_fn is None else shardings_fn(fns, abstract, model)
        try:
            state = ckpt.restore(step, abstract, shardings)
        except ValueError as e:
            if "tree structures do not match" not in str(e):
                raise
            raise CheckpointKindError(_structure_mismatch(ckpt, step, abstract)) from None
    nnx.update(model, nnx.State(state.params))
    if state.rest:  # the model's other state (buffers, statistics) is in the checkpoint too
        nnx.update(model, nnx.State(state.rest))
    return model, fns, state, data_state


# What orbax 0.12 and tensorstore raise when a step's files cannot be read, found by
# truncating, deleting and corrupting the files of a saved step:
#   ValueError from tensorstore, naming the OCDBT database and its tensorstore spec:
#     "OUT_OF_RANGE: ... Requested byte range [0, 1866) is not valid for value of size 933"
#     (a truncated or empty data file), "NOT_FOUND: ..." (a missing data file), "DATA_LOSS:
#     ... Error decoding manifest" (a truncated manifest.ocdbt), "... ZSTD_decompressStream()
#     failed: Data corruption detected" (changed bytes in a data file);
#   json.JSONDecodeError: a corrupt JSON item (config, data) or state/_METADATA;
#   FileNotFoundError: a missing JSON item file ("File .../data/metadata not found.");
#   KeyError: a missing item folder ('Item "state" was not found in the checkpoint').
# A checkpoint of another structure or shape than the target (a changed model) raises
# orbax's own ValueError, without tensorstore's markers: not a damaged checkpoint, so
# nothing is moved and restore_latest raises a ValueError that names the step.
_TENSORSTORE_MARKERS = ("tensorstore_spec", "OCDBT database")


def _unreadable(e: BaseException | None) -> bool:
    """Whether ``e`` (or what it was raised from) says a checkpoint's files are damaged."""
    while e is not None:
        if isinstance(e, json.JSONDecodeError | UnicodeDecodeError | FileNotFoundError):
            return True
        if isinstance(e, KeyError) and "was not found in the checkpoint" in str(e):
            return True
        if isinstance(e, ValueError) and any(m in str(e) for m in _TENSORSTORE_MARKERS):
            return True
        e = e.__cause__
    return False


def _brief(e: BaseException) -> str:
    """``e`` on one short line: tensorstore's messages end in kilobytes of spec JSON, and the
    cause is at the end of the part before it (the status code, if any, at its start)."""
    text = " ".join(str(e).split(" [tensorstore_spec")[0].split())
    if len(text) > 300:
        code = re.match(r"[A-Z_]+: ", text)
        text = (code.group(0) if code else "") + "..." + text[-260:]
    return f"{type(e).__name__}: {text}"


class _FailedReadNoise(logging.Filter):
    """Silences what orbax leaves behind when one of its reads fails.

    orbax reads every array concurrently on an event loop of its own. When one read fails
    (a damaged file, or an array of another shape) it raises that error and closes the loop,
    and what it abandons fails later, each with a traceback on stderr: reads still running
    cannot report back ("RuntimeError: Event loop is closed", an unraisable exception), reads
    not yet done fail when the garbage collector closes them (an unraisable exception caused
    by GeneratorExit, or "RuntimeWarning: coroutine ... was never awaited"), and tasks and
    futures whose errors nobody retrieved are logged by asyncio with their tensorstore specs.
    Inside this context all of these are dropped; :meth:`settle` waits for the abandoned reads
    to end, so that none of it comes later.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not re.match(r"(Task|Future) exception was never retrieved", record.getMessage())

    def _hook(self, unraisable: Any) -> None:
        e = unraisable.exc_value
        closed = isinstance(e, RuntimeError) and "loop is closed" in str(e)
        if closed or isinstance(getattr(e, "__cause__", None), GeneratorExit):
            self._last = time.monotonic()  # (the latter: an abandoned read, closed by the gc)
            return
        self._previous_hook(unraisable)

    def __enter__(self) -> _FailedReadNoise:
        self._last: float | None = None
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        self._previous_hook = sys.unraisablehook
        sys.unraisablehook = self._hook
        logging.getLogger("asyncio").addFilter(self)
        return self

    def settle(self, quiet: float = 0.2, limit: float = 5.0) -> None:
        """Waits until the abandoned reads have been quiet for ``quiet`` s (``limit`` s at most)."""
        start = time.monotonic()
        while True:
            gc.collect()
            now = time.monotonic()
            if now - (self._last or start) >= quiet or now - start >= limit:
                return
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        gc.collect()
        logging.getLogger("asyncio").removeFilter(self)
        sys.unraisablehook = self._previous_hook
        self._warnings.__exit__(*exc)


def restore_latest(
    ck: Checkpointer, target: TrainState, shardings: TrainState | None = None
) -> tuple[int, TrainState, dict[str, Any]] | None:
    """Restores the newest checkpoint that can be read, moving damaged ones aside.

    Tries the complete checkpoints from the newest down. One whose files cannot be read (a
    truncated or missing array file, a corrupt JSON item) is moved to
    ``<checkpoints>.corrupt/<step>`` by :meth:`Checkpointer.quarantine` (never deleted), with
    one warning line naming both folders, and the next older one is tried.

    Args:
      ck: the checkpointer.
      target: a concrete or abstract state of the checkpoints' structure.
      shardings: as for :meth:`Checkpointer.restore`.

    Returns:
      ``(step, state, data_state)`` of the newest readable checkpoint, ``data_state`` being
      the second item of :meth:`Checkpointer.read_json`; None when there is none (left).

    Raises:
      ValueError: the newest readable checkpoint does not fit ``target`` (another model
        structure or shape); it is left where it is.
    """
    for step in sorted(ck.all_steps(), reverse=True):
        where = ck.directory / str(step)
        with _FailedReadNoise() as noise:
            try:
                _, data_state = ck.read_json(step)
                state = ck.restore(step, target, shardings)
            except Exception as e:
                unreadable = _unreadable(e)
                if not unreadable and not isinstance(e, ValueError):
                    raise
                problem = _brief(e) if unreadable else str(e)
            else:
                return step, state, data_state
            noise.settle()
            if not unreadable:  # raised anew, so orbax's abandoned reads are collected here
                raise ValueError(f"checkpoint {where} does not fit the state to restore: {problem}")
        moved = ck.quarantine(step)
        log.warning(
            "checkpoint %s cannot be read (%s); moved it to %s, trying the next older one",
            where,
            problem,
            moved,
        )
    return None
