"""Entropy-guided attention pruning of a trained atmosphere lead model (``tellus prune
atmosphere``), and what the pruned model costs and scores.

:func:`prune_lead` runs :func:`tellus.training.pruning.prune` on a ``lead_{H}h`` folder of
``tellus train atmosphere``: the entropy is measured over training windows spread through the
training period, the fine-tuning is the lead model's loss (one step, or a ``rollout``-step
unroll as its last training phase) on the training period at a small learning rate
(warm-up + cosine, as the rollout phases), and the pruned
model goes to ``out/lead_{H}h``, a lead-model folder that ``tellus evaluate atmosphere
--workdir out``, ``tellus forecast`` and ``tellus.load`` read like any other.

:func:`speed` measures configs' training and inference throughput and the training steps'
compiled memory on random fields (the figures of ``just bench``), the pruned and unpruned
models timed against each other round by round in one process; :func:`attention_share`
how much of a config's training step its attention layers are (``just bench --parts
pruning``), which bounds what removing a fraction of them can speed up.

:func:`prune_one_at_a_time` removes the layers one per round instead, measuring the entropy
again on what each round leaves (``tellus prune atmosphere --one-at-a-time``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.atmosphere import bench, plan_target, train
from tellus.atmosphere import config as model_config
from tellus.atmosphere import forecaster as fc
from tellus.data import sources
from tellus.training import benchmarking, pruning, streams, trainer
from tellus.training import config as train_config

CHAINED = 5
"""24 h steps per timed inference call of :func:`speed` (a 5-day forecast)."""
PAPER_ANNEAL = 0.75
"""The paper anneals lambda over 300 of its 400 fine-tuning epochs."""


@dataclasses.dataclass(frozen=True)
class PrunePlan:
    """One pruning of one lead model.

    Attributes:
      source: the trained ``lead_{H}h`` folder (its last phase is the starting point).
      out: the run folder of the pruned model (it goes to ``out/lead_{H}h``).
      store: the analysis store the model was trained on.
      spec: the fraction or the layers to remove, and the annealing share.
      steps: fine-tuning steps (the same for every fraction, 0 included).
      rollout: the fine-tuning loss's unroll (1: one step; 2 and more: GraphCast's rollout
        loss, as the lead model's last training phase).
      learning_rate: their peak learning rate.
      batch_size: samples per step.
      measure_batches: batches the entropy is measured over.
      seed: the fine-tuning's seed.
      distill: the weight of a teacher's forecasts in the fine-tuning's targets
        (:func:`teacher_targets`): 0 trains on the analyses alone, 1 on the teacher's
        forecasts alone.
      teacher: the lead-model folder of the teacher (default: ``source``); read only when
        ``distill`` > 0.
    """

    source: Path
    out: Path
    store: Path
    spec: pruning.PruneSpec = dataclasses.field(default_factory=pruning.PruneSpec)
    steps: int = 200
    rollout: int = 1
    learning_rate: float = 2e-4
    batch_size: int = 4
    measure_batches: int = 16
    seed: int = 0
    distill: float = 0.0
    teacher: Path | None = None

    def __post_init__(self) -> None:
        for f in ("source", "out", "store"):
            object.__setattr__(self, f, Path(getattr(self, f)))
        if self.teacher is not None:
            object.__setattr__(self, "teacher", Path(self.teacher))
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must be in [0, 1], got {self.distill}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.rollout < 1:
            raise ValueError(f"rollout must be >= 1, got {self.rollout}")


def source_config(source: str | Path) -> fc.ForecasterConfig:
    """The config of a trained ``lead_{H}h`` folder (its ``forecaster.json``).

    Raises:
      FileNotFoundError: the folder is not a trained lead model.
    """
    f = Path(source) / "forecaster.json"
    if not f.exists():
        raise FileNotFoundError(
            f"{source} is not a lead model folder of `tellus train atmosphere` (no "
            "forecaster.json); pass runs/atmosphere/lead_24h or similar"
        )
    return fc.ForecasterConfig.from_dict(json.loads(f.read_text()))


def with_pruned(cfg: fc.ForecasterConfig, indices: tuple[int, ...]) -> fc.ForecasterConfig:
    """``cfg`` with its network's ``pruned`` blocks set to ``indices``."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pruned=indices))


def forward(model: fc.Forecaster, batch: dict[str, Any]) -> Any:
    """The lead model on a training batch (no gradient, no drop-path)."""
    return model(batch["inputs"][:, -1], batch["statics"])


def teacher_targets(
    teacher: fc.Forecaster, steps: int, weight: float
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A batch map that blends a teacher's forecasts into a batch's targets (knowledge
    distillation through soft targets): ``targets[:, k]`` becomes ``(1 - weight) y_k +
    weight t_k``, where ``t_k`` is the teacher's own ``k + 1``-step forecast from the
    batch's last input (deterministic: no drop-path), for ``k < steps``.

    With a squared-error loss, training towards the blend equals the weighted sum of the
    losses towards the analyses and towards the teacher, up to a constant; with Pangu's
    absolute error it is the loss towards the blend. The teacher's rollout is compiled once
    and runs wherever the batches are read (under :class:`tellus.training.streams.Prefetch`,
    beside the training step).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the teacher's weight must be in [0, 1], got {weight}")
    graphdef, state = nnx.split(teacher)

    @jax.jit
    def rollout(state, x, statics):
        model = nnx.merge(graphdef, state)
        out = []
        for _ in range(steps):
            x = model(x, statics)
            out.append(x)
        return jnp.stack(out, axis=1)

    def blend(batch: dict[str, Any]) -> dict[str, Any]:
        y = np.asarray(batch["targets"])
        if y.shape[1] != steps:
            raise ValueError(f"the teacher forecasts {steps} steps; the batch has {y.shape[1]}")
        t = np.asarray(rollout(state, batch["inputs"][:, -1], batch["statics"]))
        return {**batch, "targets": ((1.0 - weight) * y + weight * t).astype(y.dtype)}

    return blend


def prune_lead(plan: PrunePlan, show_progress: bool = True) -> dict[str, Any]:
    """Prunes one trained lead model (the module docstring); returns the ``prune.json``
    record, to which it adds the lead.

    Raises:
      FileNotFoundError: ``plan.source`` holds no trained lead model.
    """
    cfg = source_config(plan.source)
    lead = cfg.lead_hours
    model = train.load_forecaster(plan.source)
    task = fc.task_for(lead, train.store_time_step(plan.store), rollout=plan.rollout)
    splits = train.Splits.for_store(plan.store)
    src = sources.WindowSource(plan.store, task, splits.train)
    tcfg = train_config.warmup_cosine(
        plan.steps,
        plan.batch_size,
        plan.learning_rate,
        decay=10.0,
        max_warmup=10,
        seed=plan.seed,
        validate_every=None,
    )
    data = train.batches(src, plan.batch_size, plan.seed)
    if plan.distill > 0.0:
        teacher = plan.teacher or plan.source
        if source_config(teacher).lead_hours != lead:
            raise ValueError(
                f"the teacher {teacher} is not a {lead} h lead model like {plan.source}"
            )
        data = streams.Mapped(
            data,
            teacher_targets(train.load_forecaster(teacher), plan.rollout, plan.distill),
        )
    domain = trainer.TrainDomain(
        name="atmosphere",
        loss_fn=fc.loss_fn if plan.rollout == 1 else fc.rollout_loss_fn(plan.rollout),
        data=data,
        batch_size=plan.batch_size,
    )
    out = train.lead_dir(plan.out, lead)
    record = pruning.prune(
        model=model,
        model_config=cfg,
        factory=fc.make_forecaster,
        source=train.final_phase(plan.source),
        source_kind=fc.KIND,
        with_pruned=with_pruned,
        forward=forward,
        measure_batches=train.validation_batches(src, plan.batch_size, plan.measure_batches),
        domain=domain,
        train_config=tcfg,
        envelope=trainer.Envelope(
            kind=fc.KIND.name, version=fc.KIND.version, task=dataclasses.asdict(task)
        ),
        spec=plan.spec,
        out=out,
        show_progress=show_progress,
    )
    pruned_cfg = with_pruned(cfg, tuple(record["pruned"]))
    (out / "forecaster.json").write_text(json.dumps(pruned_cfg.to_dict()))
    record["lead_hours"] = lead
    if plan.distill > 0.0:
        record["distill"] = {"weight": plan.distill, "teacher": str(plan.teacher or plan.source)}
    return record


def prune_one_at_a_time(plan: PrunePlan, show_progress: bool = True) -> dict[str, Any]:
    """``plan``'s fraction of the attention layers removed one layer per round, the entropy
    measured again on the model each round leaves: round k prunes the one layer that adds the
    least to the model of round k - 1 (:func:`prune_lead`, a fraction of one layer), over an
    equal share of ``plan.steps`` (lambda annealed over ``plan.spec.anneal`` of each round).
    The rounds before the last go to ``out/rounds/{k}``, the last to ``out/lead_{H}h``; a
    killed run resumes at its round. Returns the last round's record with ``rounds`` (each
    round's ranking and removed layer), also written to its ``prune.json``.

    Raises:
      ValueError: named ``layers`` (one at a time removes what the entropy chooses), or
        fewer steps than rounds.
    """
    if plan.spec.layers is not None:
        raise ValueError(
            "one layer at a time removes the layers the entropy chooses; named layers are "
            "removed together"
        )
    cfg = source_config(plan.source)
    remaining = sum(cfg.model.depths) - len(cfg.model.pruned)
    n = round(plan.spec.fraction * remaining)
    if n < 2:  # one layer or none: the same as all at once
        return prune_lead(plan, show_progress)
    per, extra = divmod(plan.steps, n)
    if per < 1:
        raise ValueError(f"{plan.steps} fine-tuning steps cannot be shared among {n} rounds")
    source, rounds = plan.source, []
    for k in range(n):
        last = k == n - 1
        out = plan.out if last else plan.out / "rounds" / str(k + 1)
        record = prune_lead(
            dataclasses.replace(
                plan,
                source=source,
                out=out,
                spec=dataclasses.replace(plan.spec, fraction=1.0 / (remaining - k)),
                steps=per + (extra if last else 0),
                teacher=plan.teacher or plan.source,
            ),
            show_progress,
        )
        # A finished run's last round reads back the combined record written below.
        this = record["rounds"][-1] if "rounds" in record else record
        if len(this["removed"]) != 1:
            raise RuntimeError(f"round {k + 1} removed {this['removed']}, not one layer")
        rounds.append({k_: this[k_] for k_ in ("source", "steps", "removed", "ranking")})
        source = train.lead_dir(out, cfg.lead_hours)
    record = {**record, "fraction": plan.spec.fraction, "steps": plan.steps, "rounds": rounds}
    record["removed"] = [r["removed"][0] for r in rounds]
    (source / "prune.json").write_text(json.dumps(record, indent=1))
    return record


def speed(
    cfgs: dict[str, model_config.PanguConfig], batch_size: int = 4, rounds: int = 15
) -> dict[str, dict[str, Any]]:
    """Training and inference throughput of several configs (pruned or not) on random
    fields, timed against each other round by round
    (:func:`tellus.training.benchmarking.compare_train_steps`), and each training step's
    FLOPs and compiled memory (bytes of its temporaries and arguments). Throughputs are the
    best round's (noise on a shared machine only adds time); the training median is kept
    beside it.

    Inference is ``CHAINED`` 24 h steps of ``batch_size`` states; training an AdamW step on
    the one-step loss.
    """
    train = _compare_train_steps(cfgs, batch_size, rounds)
    calls, flops = {}, {}
    for name, cfg in cfgs.items():
        model = plan_target.placeholder_forecaster(cfg)
        batch = bench.random_batch(cfg, batch_size)
        x, static = jnp.asarray(batch["inputs"][:, 0]), jnp.asarray(batch["statics"])
        graphdef, state = nnx.split(model)
        figures = benchmarking.compiled_figures(
            lambda state, x, s, g=graphdef: nnx.merge(g, state)(x, s), state, x, static
        )
        compiled = figures["compiled"]

        def rollout(c=compiled, state=state, x=x, static=static):
            for _ in range(CHAINED):
                x = c(state, x, static)
            return x

        calls[name] = rollout
        flops[name] = figures["flops"]
    infer = benchmarking.compare_calls(calls, rounds=rounds, best=True)
    out = {}
    for name, t in train.items():
        memory = t["memory"]
        out[name] = {
            "train_samples_per_s": t["best_samples_per_s"],
            "train_step_s": t["best_step_s"],
            "train_median_samples_per_s": t["samples_per_s"],
            "train_flops_per_step": t["flops_per_step"],
            "train_memory_bytes": memory.get("temp_size_in_bytes", 0)
            + memory.get("argument_size_in_bytes", 0),
            "infer_samples_per_s": CHAINED * batch_size / infer[name],
            "infer_flops": flops[name],
        }
    return out


def _compare_train_steps(
    cfgs: dict[str, model_config.PanguConfig], batch_size: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """The configs' training steps on random fields, timed against each other
    (:func:`tellus.training.benchmarking.compare_train_steps`)."""
    return benchmarking.compare_train_steps(
        {
            name: (
                plan_target.placeholder_forecaster(cfg),
                fc.loss_fn,
                bench.random_batch(cfg, batch_size),
                batch_size,
            )
            for name, cfg in cfgs.items()
        },
        rounds=rounds,
    )


def spread(n: int, k: int) -> tuple[int, ...]:
    """``k`` of ``n`` block indices spread evenly through the trunk (``spread(16, 6)``:
    ``(0, 2, 5, 8, 10, 13)``): a fixed choice for timing, where no entropy was measured."""
    if not 0 <= k <= n:
        raise ValueError(f"cannot choose {k} of {n} blocks")
    return tuple(i * n // k for i in range(k))


def attention_share(
    cfg: model_config.PanguConfig,
    removed: tuple[int, ...],
    batch_size: int = 4,
    rounds: int = 5,
) -> dict[str, Any]:
    """How much of a config's training step its attention layers are, and what removing
    ``removed`` of them buys: the step with every layer, without ``removed`` and without
    any attention, timed against each other round by round
    (:func:`tellus.training.benchmarking.compare_train_steps`, best rounds).

    Returns ``{"blocks", "removed", "step_s": {"all", "removed", "none"}, "flops": {...},
    "speedup": all / removed, "speedup_without_attention": all / none, "share": 1 - none /
    all (the attention layers' share of the step's time), "uniform_estimate": 1 / (1 -
    share * len(removed) / blocks)}``: the speedup if every layer cost the same, which
    bounds what removing that fraction can give unless the removed layers are the dear ones.
    """
    n = sum(cfg.depths)
    removed = tuple(sorted(removed))
    if cfg.pruned:
        raise ValueError(f"time an unpruned config; this one has pruned={cfg.pruned}")
    cases = {
        "all": cfg,
        "removed": dataclasses.replace(cfg, pruned=removed),
        "none": dataclasses.replace(cfg, pruned=tuple(range(n))),
    }
    timed = _compare_train_steps(cases, batch_size, rounds)
    t = {name: timed[name]["best_step_s"] for name in cases}
    share = 1.0 - t["none"] / t["all"]
    return {
        "blocks": n,
        "removed": list(removed),
        "batch_size": batch_size,
        "step_s": t,
        "flops": {name: timed[name]["flops_per_step"] for name in cases},
        "speedup": t["all"] / t["removed"],
        "speedup_without_attention": t["all"] / t["none"],
        "share": share,
        "uniform_estimate": 1.0 / (1.0 - share * len(removed) / n),
    }


__all__ = [
    "PAPER_ANNEAL",
    "PrunePlan",
    "attention_share",
    "forward",
    "prune_lead",
    "prune_one_at_a_time",
    "source_config",
    "speed",
    "spread",
    "teacher_targets",
]
