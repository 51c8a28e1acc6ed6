"""Entropy-guided attention pruning of a trained model, end to end (Lin et al. 2024, "MLP
can be a good transformer learner"), for any domain whose model has prunable blocks
(:class:`tellus.kernels.prunable.PrunableAttention`).

:func:`prune` runs the paper's recipe on a trained checkpoint, with the domain's own pieces
(its model factory, training batches and loss):

1. measure the entropy each attention layer adds to its block's input over many training
   batches and rank the layers (:func:`tellus.training.entropy.measure`);
2. choose the layers that add the least (a fraction of them, as whole layers) or the ones
   named;
3. fine-tune the whole model with those layers' residual ``x = (2 - lambda) x + lambda
   Attn(LN(x))``, lambda falling linearly from 1 to 0 over the first ``anneal`` share of the
   steps and held at 0 for the rest (the paper: 300 of 400 epochs); ``fit`` resumes it
   after a kill, and the last checkpoint is kept (the paper's choice: the best ones are
   saved while lambda > 0);
4. build the model without those attention layers (the config's ``pruned`` indices), load
   the fine-tuned parameters into it, check that it computes what the ``lambda = 0`` model
   computes, and save it as an ordinary one-checkpoint run of the same kind, which every
   loader of that kind reads.

A fraction of 0 runs the same fine-tuning and removes nothing: the unpruned row of a
comparison, trained as long as the pruned ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.training import checkpoint as ckpt_lib
from tellus.training import entropy, trainer, transfer
from tellus.training import step as step_lib
from tellus.training.config import TrainConfig

log = logging.getLogger(__name__)

Factory = Callable[[dict[str, Any]], nnx.Module]


@dataclasses.dataclass(frozen=True)
class PruneSpec:
    """What to remove and how long to fine-tune.

    Attributes:
      fraction: the share of the model's attention layers to remove, rounded to whole
        layers (0.4 of 8 is 3); ignored when ``layers`` is given.
      layers: the block indices (the config's ``pruned`` numbering) to remove instead.
      anneal: the share of the fine-tuning steps over which lambda falls from 1 to 0.
    """

    fraction: float = 0.0
    layers: tuple[int, ...] | None = None
    anneal: float = 0.75

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1]: {self.fraction}")
        if not 0.0 < self.anneal <= 1.0:
            raise ValueError(f"anneal must be in (0, 1]: {self.anneal}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))


def annealed(factory: Factory, paths: Sequence[str]) -> Factory:
    """``factory`` whose models carry the blocks at ``paths`` with an annealable lambda
    (:func:`tellus.training.entropy.anneal`)."""

    def build(cfg: dict[str, Any]) -> nnx.Module:
        model = factory(cfg)
        entropy.anneal(model, paths)
        return model

    return build


def chosen_paths(
    model: nnx.Module, ranking: Sequence[entropy.BlockEntropy], spec: PruneSpec
) -> list[str]:
    """The blocks ``spec`` removes: its ``layers`` (indices over every prunable block of
    ``model``), or the ``fraction`` of the ranked ones that add the least entropy.

    Raises:
      ValueError: a named layer that does not exist or has no attention left.
    """
    if spec.layers is None:
        return entropy.choose(ranking, spec.fraction)
    order = list(entropy.blocks(model))
    ranked = {e.path for e in ranking}
    out = []
    for i in spec.layers:
        if not 0 <= i < len(order):
            raise ValueError(f"layer {i} does not exist: the model has blocks 0..{len(order) - 1}")
        if order[i] not in ranked:
            raise ValueError(f"layer {i} ({order[i]}) has no attention to remove")
        out.append(order[i])
    return out


def transplant(model: nnx.Module, params: Any) -> list[str]:
    """Loads the pure-dict ``params`` of a larger model into ``model`` by path and shape;
    returns the paths of ``params`` that ``model`` has no place for.

    Raises:
      ValueError: ``model`` has a parameter that ``params`` lacks (or of another shape).
    """
    source = entropy.pruned_params(params, ())
    target = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    missing: list[str] = []

    def take(path, x):
        key = "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
        v = source.get(key)
        if v is None or np.shape(v) != np.shape(x):
            missing.append(key)
            return x
        return jax.device_put(np.asarray(v, np.asarray(x).dtype))

    loaded = jax.tree_util.tree_map_with_path(take, target)
    if missing:
        raise ValueError(
            f"the fine-tuned parameters lack {len(missing)} of the pruned model's: {missing[:3]}"
        )
    nnx.update(model, nnx.State(loaded))
    kept = set(entropy.pruned_params(loaded, ()))
    return sorted(k for k in source if k not in kept)


def save_model(
    directory: str | Path,
    model: nnx.Module,
    model_config: Any,
    train_config: TrainConfig,
    envelope: trainer.Envelope,
    step: int,
    metrics: dict[str, float] | None = None,
) -> None:
    """Writes ``model`` as the only checkpoint of ``directory/checkpoints`` (a fresh
    optimizer state, no EMA), readable by :func:`tellus.training.checkpoint.rebuild` with
    the envelope's kind."""
    cfg = train_config
    if cfg.optimizer.ema_decay is not None:
        cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, ema_decay=None))
    _, state = step_lib.init_train_state(model, cfg)
    state = dataclasses.replace(state, step=jnp.asarray(step, jnp.int32))
    ck = ckpt_lib.Checkpointer(Path(directory) / "checkpoints", async_save=False)
    try:
        if ck.latest_step() == step:  # written before a kill: the same model
            return
        ck.save(
            step,
            state,
            ckpt_lib.config_dict(
                model_config,
                cfg,
                kind=envelope.kind,
                version=envelope.version,
                task=envelope.task,
            ),
            {},
            metrics=metrics,
        )
        ck.wait()
    finally:
        ck.close()


def _last(workdir: Path, factory: Factory) -> tuple[nnx.Module, step_lib.TrainState]:
    ck = ckpt_lib.Checkpointer(workdir / "checkpoints", async_save=False)
    try:
        step = ck.latest_step()
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint in {workdir}/checkpoints")
        model, _, state, _ = ckpt_lib.rebuild(ck, step, factory)
    finally:
        ck.close()
    return model, state


def _finished(out: Path, steps: int) -> dict[str, Any] | None:
    """The record of a pruning already finished in ``out`` (its pruned checkpoint written
    after ``steps`` steps), or None."""
    record = out / "prune.json"
    if not record.exists():
        return None
    ck = ckpt_lib.Checkpointer(out / "checkpoints", async_save=False)
    try:
        latest = ck.latest_step()
    finally:
        ck.close()
    return json.loads(record.read_text()) if latest == steps else None


def prune(
    *,
    model: nnx.Module,
    model_config: Any,
    factory: Factory,
    source: str | Path,
    source_kind: ckpt_lib.Kind,
    with_pruned: Callable[[Any, tuple[int, ...]], Any],
    forward: Callable[[nnx.Module, Any], Any],
    measure_batches: Callable[[], Iterable[Any]],
    domain: trainer.TrainDomain,
    train_config: TrainConfig,
    envelope: trainer.Envelope,
    spec: PruneSpec,
    out: str | Path,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Measures, chooses, fine-tunes with lambda annealed, removes and saves (the module
    docstring); resumable: a finished fine-tuning is not run again, and a finished pruning
    returns its record.

    Args:
      model: the trained model (the weights the ranking is measured on).
      model_config: its config (``to_dict()``; the fine-tuning's model).
      factory: builds the model from the config's dict.
      source: the folder of the trained checkpoint the fine-tuning starts from.
      source_kind: that checkpoint's kind (checked, migrated).
      with_pruned: ``(model_config, indices) -> model_config`` with ``pruned`` set.
      forward: ``forward(model, batch)``, a forward pass for the measurement and the check.
      measure_batches: returns the batches to measure the entropy over.
      domain: the fine-tuning's batches and loss.
      train_config: the fine-tuning's schedule (``num_steps`` steps).
      envelope: the kind, version and task of the checkpoints written.
      spec: what to remove.
      out: the pruned model goes to ``out/checkpoints``, its fine-tuning to
        ``out/finetune``, the record to ``out/prune.json``.

    Returns:
      The record written to ``prune.json``: the ranking, the removed blocks (paths and
      indices), the fine-tuning's losses (of the steps this call ran), the largest difference between the pruned
      model and the ``lambda = 0`` one on a measured batch.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = _finished(out, train_config.num_steps)
    if done is not None:
        return done
    batches = list(measure_batches())
    ranking = entropy.measure(model, forward, batches)
    paths = chosen_paths(model, ranking, spec)
    order = list(entropy.blocks(model))
    already = tuple(i for i, p in enumerate(order) if entropy.blocks(model)[p].attn is None)
    indices = tuple(sorted(set(already) | set(entropy.block_indices(model, paths))))
    anneal_steps = max(1, round(spec.anneal * train_config.num_steps))
    if show_progress:
        print(
            f"removing {len(paths)} of {len(ranking)} attention layers "
            f"({', '.join(paths) or 'none'}); fine-tuning {train_config.num_steps} steps, "
            f"lambda 1 -> 0 over the first {anneal_steps if paths else 0}"
        )
    history = trainer.fit(
        transfer.warm_start(source, annealed(factory, paths), source_kind=source_kind),
        model_config,
        train_config,
        domain,
        out / "finetune",
        envelope=envelope,
        show_progress=show_progress,
        rest_schedule=entropy.lambda_schedule(anneal_steps) if paths else None,
    )
    tuned, state = _last(out / "finetune", annealed(factory, paths))
    found = entropy.blocks(tuned)
    lambdas = [float(np.asarray(found[p].attn_lambda[...])) for p in paths]
    if any(lam != 0.0 for lam in lambdas):
        raise RuntimeError(f"the fine-tuning ended with lambda {lambdas}, not 0")
    pruned_config = with_pruned(model_config, indices)
    pruned = factory(pruned_config.to_dict())
    dropped = transplant(pruned, state.params)
    run = nnx.jit(forward)
    difference = float(
        np.max(np.abs(np.asarray(run(pruned, batches[0])) - np.asarray(run(tuned, batches[0]))))
    )
    losses = [loss for _, loss in history]
    save_model(
        out,
        pruned,
        pruned_config,
        train_config,
        envelope,
        train_config.num_steps,
        {"loss": losses[-1]} if losses else None,
    )
    record = {
        "source": str(source),
        "fraction": spec.fraction,
        "layers": spec.layers,
        "anneal_steps": anneal_steps if paths else 0,
        "steps": train_config.num_steps,
        "ranking": [
            {
                "path": e.path,
                "index": order.index(e.path),
                "entropy_in": e.entropy_in,
                "entropy_attn": e.entropy_attn,
                "added": e.added,
                "tokens": e.samples,
            }
            for e in ranking
        ],
        "removed": paths,
        "pruned": list(indices),
        "dropped_parameters": dropped,
        "parameters": int(sum(x.size for x in jax.tree.leaves(nnx.state(pruned, nnx.Param)))),
        "parameters_before": int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))),
        "last_loss": losses[-1] if losses else None,
        "losses": [[int(step), float(loss)] for step, loss in history],
        "max_difference_from_lambda_zero": difference,
    }
    (out / "prune.json").write_text(json.dumps(record, indent=1))
    log.info("pruned model in %s: %s", out, record["pruned"])
    return record


__all__ = ["PruneSpec", "annealed", "chosen_paths", "prune", "save_model", "transplant"]
