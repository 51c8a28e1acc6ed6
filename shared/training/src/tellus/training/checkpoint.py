"""Orbax checkpoints of a ``TrainState`` with its configs and data-iterator state.

Each step directory holds three items (neuralgcm's ``Composite(state=..., config=JsonSave)``):

* ``state``: the TrainState, flattened to ``{"params['trunk']['up']['kernel']": array}``
  so that restores and partial restores match leaves by path name;
* ``config``: JSON with the model config (used to rebuild the model through a factory)
  and the training config;
* ``data``: JSON data-iterator state, so a resumed run sees the same data order.

Orbax writes each step to a temporary directory and renames it when complete, so a save
killed half way never replaces (or shows up as) the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from tellus.training.config import TrainConfig
from tellus.training.optimizer import make_optimizer
from tellus.training.step import StepFns, TrainState, init_train_state, split_model

PyTree = Any


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


def config_dict(model_config: Any, train_config: TrainConfig) -> dict[str, Any]:
    """The JSON stored with every checkpoint."""
    m = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
    return {"model": m, "train": train_config.to_dict()}


def rebuild(
    ckpt: Checkpointer,
    step: int,
    factory: Callable[[dict[str, Any]], nnx.Module],
    shardings_fn: Callable[[StepFns, TrainState, nnx.Module], TrainState] | None = None,
) -> tuple[nnx.Module, StepFns, TrainState, dict[str, Any]]:
    """Rebuilds the model from the checkpoint's config and restores its state.

    Args:
      ckpt: checkpointer.
      step: step to load.
      factory: ``factory(model_config_dict) -> model``.
      shardings_fn: optional ``(fns, abstract_state, model) -> shardings`` for a mesh.

    Returns:
      ``(model, fns, state, data_state)``; ``model`` holds the restored params.
    """
    cfg, data_state = ckpt.read_json(step)
    train_cfg = TrainConfig.from_dict(cfg["train"])
    model = factory(cfg["model"])
    fns = StepFns(split_model(model)[0], make_optimizer(train_cfg.optimizer), train_cfg)
    abstract = jax.eval_shape(lambda: init_train_state(model, train_cfg)[1])
    shardings = None if shardings_fn is None else shardings_fn(fns, abstract, model)
    state = ckpt.restore(step, abstract, shardings)
    nnx.update(model, nnx.State(state.params))
    return model, fns, state, data_state


@dataclasses.dataclass(frozen=True)
class PartialLoad:
    """Outcome of a partial restore."""

    params: PyTree
    loaded: list[str]
    skipped: list[str]


def load_matching_params(
    ckpt: Checkpointer,
    step: int,
    factory: Callable[[dict[str, Any]], nnx.Module],
    new_params: PyTree,
) -> PartialLoad:
    """Loads checkpoint params into ``new_params`` where path and shape match.

    Used to start a model with new heads from a pretrained trunk.

    Args:
      ckpt: checkpointer.
      step: step to load.
      factory: rebuilds the checkpointed model from its config dict.
      new_params: pure params dict of the new model.

    Returns:
      New params plus the lists of loaded and skipped (new-model) paths.
    """
    cfg, _ = ckpt.read_json(step)
    train_cfg = TrainConfig.from_dict(cfg["train"])
    old_model = factory(cfg["model"])
    abstract = jax.eval_shape(lambda: init_train_state(old_model, train_cfg)[1])
    old = flatten_state(ckpt.restore(step, abstract).params)
    loaded, skipped = [], []

    def pick(path, x):
        key = jax.tree_util.keystr(path)
        if key in old and old[key].shape == x.shape and old[key].dtype == x.dtype:
            loaded.append(key)
            return jax.device_put(np.asarray(old[key]), getattr(x, "sharding", None))
        skipped.append(key)
        return x

    params = jax.tree_util.tree_map_with_path(pick, new_params)
    return PartialLoad(params, loaded, skipped)


def warm_start(
    source: str | Path, factory: Callable[[dict[str, Any]], nnx.Module]
) -> Callable[[dict[str, Any]], nnx.Module]:
    """A model factory for :func:`tellus.training.trainer.fit` that starts a new training
    phase (fine-tuning, a longer rollout) from the last checkpoint of an earlier one.

    The returned factory builds the model from its config and loads every parameter from
    the latest checkpoint in ``source/checkpoints``; optimizer state and step start afresh.
    ``fit`` calls it on a resume too and then restores the new phase's own checkpoint over
    it, so a killed phase resumes where it stopped (``source`` must still be there).

    Args:
      source: the earlier phase's workdir (the one passed to ``fit``).
      factory: builds a model from a config dict (the same for both phases).

    Raises (when called):
      FileNotFoundError: ``source`` has no complete checkpoint.
      ValueError: the new model has parameters the checkpoint lacks (or of another shape).
    """
    source = Path(source)

    def build(cfg: dict[str, Any]) -> nnx.Module:
        model = factory(cfg)
        ck = Checkpointer(source / "checkpoints", async_save=False)
        try:
            step = ck.latest_step()
            if step is None:
                raise FileNotFoundError(
                    f"no complete checkpoint in {source}/checkpoints to "
                    "start from; run the earlier phase first"
                )
            params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
            out = load_matching_params(ck, step, factory, params)
        finally:
            ck.close()
        if out.skipped:
            raise ValueError(
                f"the checkpoint in {source} lacks {len(out.skipped)} parameters "
                f"of the new model (or has them in another shape), e.g. "
                f"{out.skipped[:3]}"
            )
        nnx.update(model, nnx.State(out.params))
        return model

    return build
