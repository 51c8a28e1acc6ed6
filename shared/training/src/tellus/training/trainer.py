"""``fit``: one training loop for one domain or several sharing a trunk.

Each :class:`TrainDomain` brings its batch stream (:mod:`tellus.training.streams`), its
loss, its sampling weight and the parameter prefixes of its own adapters. ``fit``

* builds the model, splits its parameters into groups (the shared trunk, each domain's
  adapters, frozen ones: :class:`~tellus.training.step.Grouping`) and compiles one step per
  domain (their batch shapes differ), each updating the shared group and its own;
* picks the domain of step ``i`` from ``(seed, i)`` alone with the sampling weights, so a
  resumed run draws the same sequence without saving it;
* reads every domain's batches ahead in a background thread, placed on the devices with the
  batch sharding of the rules table's ``batch`` entry;
* saves the state, the checkpoint envelope (kind, version, task, model, train, groups) and
  every stream's position; a killed run resumes from the newest checkpoint that restores
  (a corrupt one is moved aside) and reproduces the uninterrupted run's losses bitwise;
* holds a lock on the workdir, so a second training on the same folder refuses;
* logs every domain's loss to TensorBoard (``train/<domain>/loss``) and to the progress
  display (a bar on a terminal, plain lines in a log file), and the validation loss of
  every domain each ``validate_every`` steps, keeping the best checkpoint by it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from tellus.data import locking
from tellus.data import progress as progress_lib
from tellus.kernels import partitioning
from tellus.training import checkpoint as ckpt_lib
from tellus.training import profiling
from tellus.training import step as step_lib
from tellus.training.config import TrainConfig
from tellus.training.streams import Prefetch, Stream

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainDomain:
    """One domain's part of a ``fit``.

    Attributes:
      name: the domain's name (a group name; not ``shared`` or ``frozen``).
      loss_fn: ``loss_fn(model, batch[, rng]) -> scalar``.
      data: the training batch stream.
      weight: sampling weight (the share of steps is ``weight / sum of weights``).
      owns: parameter path prefixes of this domain's own adapters (``"adapters/enso"``);
        only its steps update them. Empty for a single-domain model: everything is shared.
      validation: returns a fresh finite iterable of validation batches, or None.
      batch_size: samples per batch (for samples/s); default ``TrainConfig.batch_size``.
    """

    name: str
    loss_fn: step_lib.LossFn
    data: Stream
    weight: float = 1.0
    owns: tuple[str, ...] = ()
    validation: Callable[[], Iterable[Any]] | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"domain {self.name!r}: sampling weight must be > 0")
        self.owns = tuple(self.owns)


@dataclasses.dataclass(frozen=True)
class Envelope:
    """What a checkpoint says about itself besides the model and training configs.

    Attributes:
      kind: what the model is (``"atmosphere.forecaster"``, ``"enso.resonet"``...), so that
        a loader of another kind refuses it.
      version: the kind's config version; older versions are migrated on load.
      task: the data task (variables, levels, grid, time step) as JSON.
    """

    kind: str = "model"
    version: int = 1
    task: Mapping[str, Any] | None = None


def domain_schedule(weights: Sequence[float], seed: int, step: int) -> int:
    """The index of the domain trained at ``step``: a draw from ``weights`` seeded by
    ``(seed, step)`` only (the same on every process and after a resume)."""
    if len(weights) == 1:
        return 0
    p = np.asarray(weights, np.float64)
    return int(np.random.default_rng([seed, step, 7]).choice(len(p), p=p / p.sum()))


def batch_sharding(mesh: Mesh, rules: partitioning.Rules | None = None) -> NamedSharding:
    """Batches split their first dimension as the rules table's ``batch`` entry says."""
    return NamedSharding(
        mesh, partitioning.logical_to_spec(("batch",), rules or partitioning.RULES)
    )


def _placer(sharding: NamedSharding | None) -> Callable[[Any], Any]:
    def place(batch):
        if sharding is None:
            return jax.tree.map(jax.device_put, batch)
        if jax.process_count() > 1:
            return jax.tree.map(
                lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
            )
        return jax.tree.map(lambda x: jax.device_put(x, sharding), batch)

    return place


def fit(
    model_factory: Callable[[dict[str, Any]], nnx.Module],
    model_config: Any,
    config: TrainConfig,
    domains: TrainDomain | Sequence[TrainDomain],
    workdir: str | Path,
    *,
    envelope: Envelope = Envelope(),
    mesh: Mesh | None = None,
    rules: partitioning.Rules | None = None,
    freeze: Sequence[str] = (),
    lr_scale: Mapping[str, float] | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
    prefetch: int = 2,
    rest_schedule: Callable[[int, Any], Any] | None = None,
) -> list[tuple[int, float]]:
    """Trains to ``config.num_steps``, resuming from ``workdir`` if it has checkpoints.

    Args:
      model_factory: builds the model from ``model_config.to_dict()`` (also on resume; a
        warm start from another checkpoint is a factory, see
        :func:`tellus.training.transfer.warm_start`).
      model_config: model config with ``to_dict()``.
      config: training config.
      domains: one domain or several sharing the model's shared parameters.
      workdir: checkpoints go to ``workdir/checkpoints``, TensorBoard events to
        ``workdir/tensorboard``.
      envelope: kind, version and task stored in every checkpoint.
      mesh, rules: the device mesh and logical axis rules (default: one device).
      freeze: fnmatch patterns of parameter paths that do not train (``"trunk/*"``).
      lr_scale: learning-rate factor per group (``{"atmosphere": 3.0}``).
      show_progress: show progress (bar or log lines); False for none.
      on_step: called after every step with ``(step, {"loss", "domain"})``.
      prefetch: batches each domain's stream reads ahead in a background thread (0: read in
        the training loop, as before the read-ahead existed).
      rest_schedule: ``rest_schedule(step, rest) -> rest`` sets the model's non-parameter
        state before each step from the step alone (the attention lambda that entropy-guided
        pruning anneals, :func:`tellus.training.entropy.lambda_schedule`); the values
        change, the shapes do not, so the step compiles once, and a resumed run sets the
        same values.

    Returns:
      ``[(step, loss), ...]`` for the steps run in this call (each step's own domain).

    Raises:
      tellus.data.locking.LockedError: another process trains in ``workdir``.
    """
    from tensorboardX import SummaryWriter  # imported late: it is slow to import

    domains = [domains] if isinstance(domains, TrainDomain) else list(domains)
    names = [d.name for d in domains]
    if not domains or len(set(names)) != len(names):
        raise ValueError(f"fit needs one or more domains with distinct names, got {names}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    grouping = step_lib.Grouping(
        owners=tuple((p, d.name) for d in domains for p in d.owns),
        frozen=tuple(freeze),
        lr_scale=tuple((lr_scale or {}).items()),
    )
    cfg_json = ckpt_lib.config_dict(
        model_config,
        config,
        kind=envelope.kind,
        version=envelope.version,
        task=envelope.task,
        groups=grouping.to_dict(),
    )

    # Several processes of one job share the workdir: process 0 holds the lock every job
    # takes (so a second job, of one process or many, is refused), the others one of their
    # own; process 0 alone writes the TensorBoard events.
    lock_file = (
        workdir / f"{locking.LOCK_NAME}.{jax.process_index()}" if jax.process_index() > 0 else None
    )
    with locking.DirectoryLock(workdir, "training", lock_file=lock_file):
        model = model_factory(cfg_json["model"])
        fns, state = step_lib.init_train_state(model, config, grouping)
        _report_groups(grouping, state.params, workdir)
        shardings = batch_sh = None
        if mesh is not None:
            shardings = step_lib.state_shardings(fns, state, model, mesh, rules)
            state = jax.device_put(state, shardings)
            batch_sh = batch_sharding(mesh, rules)

        ck = ckpt_lib.Checkpointer(
            workdir / "checkpoints", keep=config.keep_checkpoints, best_metric=config.best_metric
        )
        streams = {
            d.name: Prefetch(d.data, depth=prefetch, place=_placer(batch_sh)) for d in domains
        }
        restored = ckpt_lib.restore_latest(ck, state, shardings)
        if restored is not None:
            latest, state, data_state = restored
            for d in domains:
                key = d.name if len(domains) > 1 else None
                streams[d.name].load_state_dict(data_state[key] if key else data_state)
            log.info("resumed from step %d", latest)

        steps = {}
        for d in domains:
            active = (step_lib.SHARED, d.name) if d.owns else (step_lib.SHARED,)
            fn = step_lib.make_train_step(fns, d.loss_fn, active)
            steps[d.name] = step_lib.jit_train_step(fn, shardings, batch_sh, mesh, host_lr=True)
        evals = {d.name: _eval_fn(fns, d.loss_fn) for d in domains if d.validation}
        weights = [d.weight for d in domains]

        start = int(state.step)
        history: list[tuple[int, float]] = []
        writer = (
            SummaryWriter(str(workdir / "tensorboard")) if jax.process_index() == 0 else _NoWriter()
        )
        fields = [f"{n}_loss" for n in names] if len(domains) > 1 else ["loss"]
        display = progress_lib.Progress(
            f"training {'+'.join(names)}",
            config.num_steps,
            completed=start,
            fields=fields,
            enabled=show_progress and jax.process_index() == 0,
            every=config.log_every,
        )
        compiled: dict[str, step_lib.CompiledStep] = {}
        last: dict[str, float] = {}
        val: dict[str, float] = {}
        # The loop never waits for the device before queuing the next step: a step's
        # metrics (its loss, whether it was finite) are read once the next step has been
        # dispatched, so the host's reading, logging and next batch overlap the step being
        # computed. At most one step is in flight unread; before a validation or a
        # checkpoint, and at the end, the loop reads what is pending first. A non-finite
        # step never changes the state (the step keeps it), so reading it one step later
        # loses nothing.
        pending: _Pending | None = None
        reported_at = time.perf_counter()
        profiler = profiling.StepProfiler(workdir, config.profile_steps)

        def report(p: _Pending) -> float:
            nonlocal reported_at
            step_lib.check_finite(p.metrics, p.step, state.params, config.nonfinite)
            loss = float(p.metrics["loss"])
            now = time.perf_counter()
            seconds, reported_at = max(now - reported_at, 1e-9), now
            history.append((p.step, loss))
            last[p.domain] = loss
            prefix = f"train/{p.domain}" if len(domains) > 1 else "train"
            writer.add_scalar(f"{prefix}/loss", loss, p.step)
            writer.add_scalar(f"{prefix}/grad_norm", float(p.metrics["grad_norm"]), p.step)
            writer.add_scalar("train/learning_rate", float(p.metrics["learning_rate"]), p.step)
            shown = (
                {f"{n}_loss": v for n, v in last.items()} if len(domains) > 1 else {"loss": loss}
            )
            display.update(p.step + 1, samples_per_s=p.batch_size / seconds, **shown)
            if on_step is not None:
                on_step(p.step, {"loss": loss, "domain": p.domain})
            return loss

        try:
            with display:
                for step in range(start, config.num_steps):
                    d = domains[domain_schedule(weights, config.seed, step)]
                    with profiler.step(step):  # the batch read, the dispatch
                        batch = next(streams[d.name])
                        lr = step_lib.host_learning_rate(config, step)
                        if rest_schedule is not None:
                            state = _scheduled_rest(state, rest_schedule(step, state.rest))
                        if d.name not in compiled:
                            compiled[d.name] = step_lib.compile_train_step(
                                steps[d.name], state, batch, lr
                            )
                            c = compiled[d.name]
                            log.info(
                                "compiled the %s step: memory %s, flops %s",
                                d.name,
                                c.memory,
                                c.flops,
                            )
                        state, metrics = compiled[d.name](state, batch, lr)
                    profiler.dispatched(step, metrics)
                    if pending is not None:
                        report(pending)
                    pending = _Pending(step, d.name, metrics, d.batch_size or config.batch_size)
                    done = step + 1
                    validate = bool(
                        config.validate_every
                        and evals
                        and (done % config.validate_every == 0 or done == config.num_steps)
                    )
                    save = done % config.checkpoint_every == 0 or done == config.num_steps
                    if not (validate or save):
                        continue
                    loss = report(pending)
                    pending = None
                    if validate:
                        val = {
                            n: _validate(evals[n], state, dom.validation, _placer(batch_sh))
                            for n, dom in ((x.name, x) for x in domains)
                            if n in evals
                        }
                        for n, v in val.items():
                            writer.add_scalar(f"validation/{n}/loss", v, done)
                        log.info(
                            "step %d validation %s",
                            done,
                            ", ".join(f"{n} {v:.4g}" for n, v in val.items()),
                        )
                    if save:
                        data_state = (
                            {n: s.state_dict() for n, s in streams.items()}
                            if len(domains) > 1
                            else streams[names[0]].state_dict()
                        )
                        metrics_out = {"loss": loss}
                        if val:
                            metrics_out["val_loss"] = float(np.mean(list(val.values())))
                        ck.save(done, state, cfg_json, data_state, metrics=metrics_out)
            ck.wait()
        finally:
            try:
                for s in streams.values():
                    s.close()
                writer.close()
                ck.close()
            finally:
                profiler.close()
    return history


@dataclasses.dataclass(frozen=True)
class _Pending:
    """A dispatched step whose metrics the loop has not read yet."""

    step: int
    domain: str
    metrics: dict[str, Any]
    batch_size: int


def _scheduled_rest(state: step_lib.TrainState, rest: Any) -> step_lib.TrainState:
    """``state`` with ``rest``'s values, each placed and typed as the array it replaces."""

    def place(new, old):
        if new is old:  # unchanged: no round trip through the host
            return old
        value = np.asarray(new, old.dtype)
        if value.shape != old.shape:
            raise ValueError(f"rest_schedule changed a shape: {old.shape} -> {value.shape}")
        return jax.device_put(value, old.sharding)

    return dataclasses.replace(state, rest=jax.tree.map(place, rest, state.rest))


class _NoWriter:
    """The TensorBoard writer of processes other than 0."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _report_groups(grouping: step_lib.Grouping, params: Any, workdir: Path) -> None:
    counts = grouping.counts(params)
    if jax.process_index() != 0:
        return
    if grouping.frozen or len(counts) > 1:
        log.info("parameters per group: %s", ", ".join(f"{g} {n:,}" for g, n in counts.items()))
    (workdir / "parameter_groups.json").write_text(json.dumps(counts, indent=1))


def _eval_fn(fns: step_lib.StepFns, loss_fn: step_lib.LossFn):
    def evaluate(params, rest, batch):
        return loss_fn(step_lib.merge_model(fns.graphdef, params, rest), batch)

    return jax.jit(evaluate)


def _validate(evaluate, state: step_lib.TrainState, batches, place) -> float:
    total, n = 0.0, 0
    for batch in batches():
        total += float(evaluate(state.params, state.rest, place(batch)))
        n += 1
    if n == 0:
        raise ValueError("the validation stream yielded no batch")
    return total / n


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Appends one JSON line and flushes it to disk (survives a SIGKILL right after)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
