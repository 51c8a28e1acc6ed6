"""Training the lead-time models: one command, every lead the data's time step allows.

``train_models`` trains one :class:`~tellus.atmosphere.forecaster.Forecaster` per lead
(Pangu: 1, 3, 6 and 24 h; on the 6-hourly embedded dataset: 6 and 24 h) with the shared
training core (resumable checkpoints, TensorBoard, a progress bar). Each model lives in
``workdir/lead_{H}h`` and is rebuilt from its checkpoint by :func:`load_forecaster`.

Data: windows from :class:`~tellus.data.sources.WindowSource` over the ``train`` date
range through the shared grain loader (:class:`tellus.training.streams.LoaderStream`:
seeded shuffle, per-process shards, read ahead of the step, its position saved in every
checkpoint so that a resumed run reads exactly the batches the uninterrupted run would
have); validation windows come from the ``validation`` range.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tellus.atmosphere import config as model_config
from tellus.atmosphere import forecaster as fc
from tellus.data import normalization, sources, statistics
from tellus.kernels import partitioning
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as train_config
from tellus.training import streams, trainer, transfer

log = logging.getLogger(__name__)

PANGU_LEADS = (1, 3, 6, 24)


@dataclasses.dataclass(frozen=True)
class Splits:
    """Half-open date ranges of the train / validation / test periods."""

    train: sources.DateRange
    validation: sources.DateRange
    test: sources.DateRange

    def as_dict(self) -> dict[str, sources.DateRange]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    @classmethod
    def for_store(cls, store: str | Path) -> Splits:
        """Default splits of a store's time axis: the first 75 % to train, the next 8 % to
        validate, the rest (at least a few weeks on the embedded year) to test."""
        times = pd.DatetimeIndex(sources.open_metadata(str(store)).indexes["time"])
        n = len(times)
        if n < 24:
            raise ValueError(
                f"{store} has {n} times; train/validation/test splits need at "
                f"least 24 (the embedded default has 1460)"
            )
        a, b = times[int(0.75 * n)], times[int(0.83 * n)]
        end = times[-1] + (times[-1] - times[-2])
        return cls(
            sources.DateRange(times[0], a), sources.DateRange(a, b), sources.DateRange(b, end)
        )


def available_leads(store: str | Path, leads: Sequence[int] = PANGU_LEADS) -> tuple[int, ...]:
    """The leads (hours) that are whole multiples of the store's time step."""
    times = pd.DatetimeIndex(sources.open_metadata(str(store)).indexes["time"])
    step_h = (times[1] - times[0]) / pd.Timedelta("1h")
    out = tuple(h for h in leads if h % step_h == 0)
    if not out:
        raise ValueError(
            f"none of the leads {list(leads)} h is a multiple of the store's {step_h:g} h time step"
        )
    return out


def store_time_step(store: str | Path) -> str:
    times = pd.DatetimeIndex(sources.open_metadata(str(store)).indexes["time"])
    return f"{int((times[1] - times[0]) / pd.Timedelta('1h'))}h"


def make_forecaster_config(
    store: str | Path,
    lead_hours: int,
    model: model_config.PanguConfig,
    train_range: sources.DateRange,
    *,
    residual: bool = True,
    loss: str = "mae",
    n_increment_samples: int = 256,
    seed: int = 0,
) -> fc.ForecasterConfig:
    """Fills the data-dependent parts of a forecaster config from the store.

    Means and standard deviations come from the store's statistics; the increment scale is
    measured on up to ``n_increment_samples`` training windows of this lead.

    Raises:
      ValueError: the model grid or levels do not match the store.
    """
    store = str(store)
    task = fc.task_for(lead_hours, store_time_step(store), static_variables=fc.STATIC_VARIABLES)
    src = sources.WindowSource(store, task, train_range)
    if (len(src.latitude), len(src.longitude)) != (model.lat, model.lon):
        raise ValueError(
            f"model grid {model.lat} x {model.lon} does not match the store's "
            f"{len(src.latitude)} x {len(src.longitude)} ({store})"
        )
    if len(task.levels) != model.levels:
        raise ValueError(f"model has {model.levels} levels, the task {len(task.levels)}")
    stats = normalization.NormalizationStats.from_store(statistics.stats_path(store))
    mean = normalization.channel_values(stats.mean, src.input_layout)
    std = np.maximum(normalization.channel_values(stats.std, src.input_layout), 1e-12)
    s_mean = normalization.channel_values(stats.mean, src.static_layout)
    s_std = normalization.channel_values(stats.std, src.static_layout)
    s_std = np.where(s_std > 0, s_std, 1.0)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(src), size=min(n_increment_samples, len(src)), replace=False)
    incs = np.stack(
        [(s["targets"][0] - s["inputs"][-1]) / std for s in (src[int(i)] for i in np.sort(idx))]
    )
    inc = np.sqrt(np.mean(incs.astype(np.float64) ** 2, axis=(0, 1, 2)))
    inc = np.where(inc > 1e-6, inc, 1.0)
    return fc.ForecasterConfig(
        model=model,
        lead_hours=lead_hours,
        latitude=tuple(src.latitude),
        mean=tuple(mean),
        std=tuple(std),
        static_mean=tuple(s_mean),
        static_std=tuple(s_std),
        increment_scale=tuple(inc),
        residual=residual,
        loss=loss,
    )


BATCH_KEYS = ("inputs", "targets", "statics")
# The CPU recipe's peak learning rate (warm-up + cosine, :func:`train_config.warmup_cosine`).
PEAK_LEARNING_RATE = 2e-3


def batches(source: sources.WindowSource, batch_size: int, seed: int = 0) -> streams.LoaderStream:
    """The endless shuffled training batches of ``source`` (the arrays the loss reads)."""
    return streams.LoaderStream(source, batch_size, seed, keys=BATCH_KEYS)


def validation_batches(source: sources.WindowSource, batch_size: int, max_batches: int = 4):
    """A function returning the first ``max_batches`` batches of ``source`` in time order
    (the same every call, so validation losses are comparable across steps)."""
    n = min(max_batches, len(source) // batch_size)
    if n == 0:
        raise ValueError(f"{len(source)} validation windows cannot fill a batch of {batch_size}")
    spaced = np.linspace(0, len(source) - batch_size, n).astype(int)

    def iterate():
        for start in spaced:
            rows = [source[int(j)] for j in range(start, start + batch_size)]
            yield {k: np.stack([r[k] for r in rows]) for k in BATCH_KEYS}

    return iterate


@dataclasses.dataclass(frozen=True)
class RolloutPhase:
    """A fine-tuning phase after a lead model's main training (GraphCast's curriculum):
    ``steps`` optimizer steps on a ``rollout``-step unroll, starting from the weights the
    previous phase ended with, at a small learning rate decaying tenfold.

    It trains in ``lead_{H}h/rollout_{k}``; :func:`load_forecaster` takes the last phase.
    """

    lead: int
    rollout: int
    steps: int
    learning_rate: float = 2e-4

    def __post_init__(self) -> None:
        if self.rollout < 1 or self.steps < 1:
            raise ValueError(
                f"rollout phase of the {self.lead} h model needs rollout >= 1 "
                f"and steps >= 1, got rollout={self.rollout}, steps={self.steps}"
            )

    def directory(self, workdir: str | Path) -> Path:
        return lead_dir(workdir, self.lead) / f"rollout_{self.rollout}"


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """What ``train_models`` runs: per lead, the main training, then its rollout phases in
    order."""

    store: str
    workdir: str
    leads: tuple[int, ...]
    model: model_config.PanguConfig
    train: train_config.TrainConfig
    splits: Splits
    residual: bool = True
    loss: str = "mae"
    rollout: tuple[tuple[int, int], ...] = ()
    finetune: tuple[RolloutPhase, ...] = ()
    steps_by_lead: tuple[tuple[int, int], ...] = ()
    validation_batches: int = 4

    def __post_init__(self) -> None:
        bad = sorted({lead for lead, _ in self.steps_by_lead} - set(self.leads))
        if bad:
            raise ValueError(
                f"steps given for the {bad} h models, which the plan does not "
                f"train (leads {list(self.leads)})"
            )
        extra = sorted({p.lead for p in self.finetune} - set(self.leads))
        if extra:
            raise ValueError(
                f"rollout fine-tuning of the {extra} h models, which the plan does "
                f"not train (leads {list(self.leads)})"
            )
        for lead in self.leads:
            ks = [p.rollout for p in self.finetune if p.lead == lead]
            if ks != sorted(set(ks)):  # the last phase is the longest: final_phase relies on it
                raise ValueError(
                    f"the rollout phases of the {lead} h model must grow in length, got {ks}"
                )

    def train_config(self, lead: int) -> train_config.TrainConfig:
        """``train`` with the ``lead`` model's own step count (``steps_by_lead``), the
        schedule and checkpoint period scaled to it."""
        steps = dict(self.steps_by_lead).get(lead)
        if steps is None or steps == self.train.num_steps:
            return self.train
        t = self.train
        opt = dataclasses.replace(
            t.optimizer,
            decay_steps=max(1, round(t.optimizer.decay_steps * steps / t.num_steps)),
            warmup_steps=min(t.optimizer.warmup_steps, max(steps // 10, 1)),
        )
        return dataclasses.replace(
            t,
            optimizer=opt,
            num_steps=steps,
            checkpoint_every=max(1, round(t.checkpoint_every * steps / t.num_steps)),
        )

    def phases(self, lead: int) -> tuple[RolloutPhase, ...]:
        """The rollout fine-tuning phases of the ``lead`` model, in the order they run."""
        return tuple(p for p in self.finetune if p.lead == lead)

    def rollout_steps(self, lead: int) -> int:
        """Unroll length of the ``lead`` model's training loss (1: one step)."""
        return dict(self.rollout).get(lead, 1)


def lead_dir(workdir: str | Path, lead_hours: int) -> Path:
    return Path(workdir) / f"lead_{lead_hours}h"


def train_models(
    plan: TrainPlan,
    show_progress: bool = True,
    *,
    mesh: Any = None,
    rules: partitioning.Rules | None = None,
) -> dict[int, list[tuple[int, float]]]:
    """Trains (or resumes) every lead model of ``plan``; returns each loss history.

    Args:
      plan: what to train.
      show_progress: progress bars on a terminal, log lines elsewhere.
      mesh, rules: the device mesh to train on and the logical axis rules (default: one
        device); ``tellus train atmosphere --mesh`` passes them.

    A resumed lead keeps the config in its ``forecaster.json`` but takes ``remat_blocks``
    from ``plan.model``: it changes what the backward pass keeps in memory, not the model.
    The rollout phases train the lead's config, so they inherit it.
    """
    histories = {}
    for lead in plan.leads:
        out = lead_dir(plan.workdir, lead)
        out.mkdir(parents=True, exist_ok=True)
        cfg_file = out / "forecaster.json"
        if cfg_file.exists():  # resume with exactly the config the run started with
            fcfg = fc.ForecasterConfig.from_dict(json.loads(cfg_file.read_text()))
            remat = dataclasses.replace(fcfg.model, remat_blocks=plan.model.remat_blocks)
            fcfg = dataclasses.replace(fcfg, model=remat)
        else:
            fcfg = make_forecaster_config(
                plan.store,
                lead,
                plan.model,
                plan.splits.train,
                residual=plan.residual,
                loss=plan.loss,
            )
            tmp = cfg_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(fcfg.to_dict()))
            tmp.replace(cfg_file)
        k = plan.rollout_steps(lead)
        tcfg = plan.train_config(lead)
        domain, task, n = _domain(plan, lead, k, tcfg.seed, tcfg.batch_size)
        if show_progress:
            print(
                f"training the {lead} h model: {n} windows, "
                f"{tcfg.num_steps} steps of {tcfg.batch_size}"
                + (f", loss over a {k}-step rollout" if k > 1 else "")
            )
        histories[lead] = trainer.fit(
            fc.make_forecaster,
            fcfg,
            tcfg,
            domain,
            out,
            envelope=_envelope(task),
            mesh=mesh,
            rules=rules,
            show_progress=show_progress,
        )
        previous = out
        for phase in plan.phases(lead):
            histories[lead] = histories[lead] + _run_phase(
                plan, phase, fcfg, previous, show_progress, mesh, rules
            )
            previous = phase.directory(plan.workdir)
    return histories


def _envelope(task) -> trainer.Envelope:
    return trainer.Envelope(
        kind=fc.KIND.name, version=fc.KIND.version, task=dataclasses.asdict(task)
    )


def _domain(
    plan: TrainPlan, lead: int, rollout: int, seed: int, batch_size: int
) -> tuple[trainer.TrainDomain, Any, int]:
    """The atmosphere domain of one training phase: its batches, validation and loss."""
    task = fc.task_for(lead, store_time_step(plan.store), rollout=rollout)
    src = sources.WindowSource(plan.store, task, plan.splits.train)
    validation = None
    if plan.validation_batches > 0 and plan.train.validate_every:
        val = sources.WindowSource(plan.store, task, plan.splits.validation)
        validation = validation_batches(val, batch_size, plan.validation_batches)
    domain = trainer.TrainDomain(
        name="atmosphere",
        loss_fn=_loss_fn(rollout),
        data=batches(src, batch_size, seed),
        validation=validation,
        batch_size=batch_size,
    )
    return domain, task, len(src)


def _loss_fn(rollout: int):
    """The training loss of a ``rollout``-step unroll (the one-step loss for 1)."""
    return fc.loss_fn if rollout == 1 else fc.rollout_loss_fn(rollout)


def _run_phase(
    plan: TrainPlan,
    phase: RolloutPhase,
    fcfg: fc.ForecasterConfig,
    previous: Path,
    show_progress: bool,
    mesh: Any = None,
    rules: partitioning.Rules | None = None,
) -> list[tuple[int, float]]:
    """One rollout fine-tuning phase, warm-started from ``previous`` (resumable)."""
    cfg = train_config.warmup_cosine(
        phase.steps,
        plan.train.batch_size,
        phase.learning_rate,
        decay=10.0,
        max_warmup=10,
        seed=plan.train.seed + phase.rollout,
        compute_dtype=plan.train.compute_dtype,
        remat=plan.train.remat,
        validate_every=plan.train.validate_every,
        profile_steps=plan.train.profile_steps,
    )
    domain, task, n = _domain(plan, phase.lead, phase.rollout, cfg.seed, cfg.batch_size)
    if show_progress:
        print(
            f"fine-tuning the {phase.lead} h model on a {phase.rollout}-step rollout: "
            f"{n} windows, {phase.steps} steps of {plan.train.batch_size}, "
            f"LR {phase.learning_rate:g}"
        )
    return trainer.fit(
        transfer.warm_start(previous, fc.make_forecaster, source_kind=fc.KIND),
        fcfg,
        cfg,
        domain,
        phase.directory(plan.workdir),
        envelope=_envelope(task),
        mesh=mesh,
        rules=rules,
        show_progress=show_progress,
    )


def final_phase(directory: str | Path) -> Path:
    """The folder of the last training phase of a ``lead_{H}h`` model that has a checkpoint:
    its longest ``rollout_{k}`` fine-tuning phase, or ``directory`` itself."""
    directory = Path(directory)
    phases = sorted(
        directory.glob("rollout_*"), key=lambda p: int(p.name.split("_")[1]), reverse=True
    )
    for p in phases:
        ck = ckpt_lib.Checkpointer(p / "checkpoints", async_save=False)
        try:
            if ck.latest_step() is not None:
                return p
        finally:
            ck.close()
    return directory


def load_forecaster(directory: str | Path, use_ema: bool = True) -> fc.Forecaster:
    """The latest checkpoint of the last phase (:func:`final_phase`) of ``directory`` (a
    ``lead_{H}h`` folder) as a Forecaster.

    Raises:
      FileNotFoundError: no complete checkpoint there.
    """
    directory = final_phase(directory)
    ck = ckpt_lib.Checkpointer(Path(directory) / "checkpoints", async_save=False)
    try:
        step = ck.latest_step()
        if step is None:
            raise FileNotFoundError(
                f"no complete checkpoint in {directory}/checkpoints; "
                "train first (just train-atmosphere)"
            )
        model, _, state, _ = ckpt_lib.rebuild(ck, step, fc.KIND)
    finally:
        ck.close()
    if use_ema and state.ema is not None:
        from flax import nnx

        nnx.update(model, nnx.State(state.ema))
    return model


def load_models(workdir: str | Path) -> dict[int, fc.Forecaster]:
    """Every trained lead model under ``workdir``, by lead hours."""
    out = {}
    for d in sorted(Path(workdir).glob("lead_*h")):
        lead = int(d.name[len("lead_") : -1])
        out[lead] = load_forecaster(d)
    if not out:
        raise FileNotFoundError(f"no lead_*h model folders in {workdir}")
    return out


def model_info(models: dict[int, fc.Forecaster]) -> dict[str, Any]:
    return {f"{k}h": dataclasses.asdict(v.config.model) for k, v in models.items()}


__all__ = [
    "PANGU_LEADS",
    "PEAK_LEARNING_RATE",
    "RolloutPhase",
    "Splits",
    "TrainPlan",
    "available_leads",
    "batches",
    "final_phase",
    "lead_dir",
    "load_forecaster",
    "load_models",
    "make_forecaster_config",
    "train_models",
    "validation_batches",
]
