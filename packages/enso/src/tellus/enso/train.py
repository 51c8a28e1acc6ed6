"""Training the ResoNet ensemble: pretrain on the model world, fine-tune on observed years.

The protocol of Ham et al. (2019, Nature 573, 568-572): a forecaster learns from a long
coupled-model (CMIP-like) run, then is fine-tuned on the early part of the observed record
and tested on its late part, with a gap of more than the longest lead between the last
fine-tuning target and the first test input so that no test month was seen in training.
Each of ``seeds`` members is trained this way from its own initialization; the ensemble mean
is the forecast.

Samples: the inputs at months t-2..t (SST and heat-content anomaly maps), the calendar month
of t, and the targets: the centred 3-month running mean of Nino3.4 (ONI-style) at t+1..t+24,
for the default ``history`` (3) and ``n_leads`` (24) of the model config. They are read
through the data layer: :func:`task_for` makes the monthly :class:`~tellus.data.tasks.TaskConfig`
of a model config (its ``history`` and ``n_leads``, the Nino3.4 target as a
:class:`~tellus.data.tasks.DerivedTarget` with its climatology base period), and
:class:`~tellus.data.sources.WindowSource` reads it from a world's store (segment by segment
for a long model run), derives the target and finds the windows (the centred mean at the last
lead needs one month more, so a window exists only where that month does).
:class:`SampleSource` hands its samples to the shared grain loader
(:class:`tellus.training.streams.LoaderStream`) in the keys the loss reads. Inputs and
targets are scaled by standard deviations measured on the pretraining data (stored in the
model config).

The evaluation (:mod:`tellus.enso.skill`, :mod:`tellus.enso.explain`) also needs whole
fields (the LIM's EOFs) and in-memory worlds (the long test draw): :class:`Series` holds a
world as arrays, with the same target (:func:`tellus.data.derived.derive`) and the same
window offsets (its task), and :func:`gather` gives the samples WindowSource gives.

Layout of ``workdir``: ``member_{k}/pretrain`` and ``member_{k}/finetune`` (each a
:func:`tellus.training.trainer.fit` directory, resumable) and ``ensemble.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr
from flax import nnx

from tellus.data import derived, schema, sources, tasks
from tellus.enso import model as model_lib
from tellus.enso import world
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as train_config
from tellus.training import streams, trainer, transfer

log = logging.getLogger(__name__)

# The model config's defaults, for callers that have no config yet (the command line's
# checks before the worlds are built). Training and evaluation take ``history`` and
# ``n_leads`` from the model's config (:func:`task_for`).
HISTORY = model_lib.ResoNetConfig.history
N_LEADS = model_lib.ResoNetConfig.n_leads
# The centred 3-month mean at t + N_LEADS needs month t + N_LEADS + 1.
TARGET_REACH = N_LEADS + 1
INPUT_VARIABLES = (world.SST, world.HEAT)
# The tensorstore cache of decoded chunks a world's WindowSource keeps (per process): at most
# this, and at most the world's input fields (0.2 GiB for the default 1200-year model run), so
# that a sample reads three months of a decoded chunk instead of decoding whole chunks.
CACHE_BYTES = 1 << 30


def task_for(cfg: Any = None, base_period: tuple[str, str] | None = None) -> tasks.TaskConfig:
    """The monthly task of a model config: SST and heat-content anomaly maps at its
    ``history`` months t-h+1..t, the centred 3-month mean Nino3.4 at t+1..t+``n_leads``.

    Args:
      cfg: anything with ``history`` and ``n_leads`` (a :class:`~tellus.enso.model.
        ResoNetConfig`, a :class:`~tellus.enso.trunk_model.TrunkForecasterConfig`); None for
        the ResoNet defaults.
      base_period: the climatology of the Nino3.4 anomaly (first, last month, inclusive);
        None for every month of the world.
    """
    cfg = model_lib.ResoNetConfig() if cfg is None else cfg
    return tasks.TaskConfig(
        input_variables=INPUT_VARIABLES,
        target_variables=(),
        time_step="MS",
        history_steps=int(cfg.history),
        lead_steps=tuple(range(1, int(cfg.n_leads) + 1)),
        derived_targets=(tasks.DerivedTarget.nino34_3month(base_period, variable=world.SST),),
    )


# --- samples through the data layer ----------------------------------------------------------


class SampleSource:
    """The windows of a :class:`~tellus.data.sources.WindowSource` of an ENSO task, by index,
    in the keys the loss reads: ``x`` [history, var, lat, lon] float32, ``month`` (of the last
    input month, 1..12) int32, ``y`` [n_leads] float32 (the derived Nino3.4 target).

    A random-access source for the shared grain loader
    (:class:`tellus.training.streams.LoaderStream`); windows run segment by segment, in time
    order (:attr:`inits`).
    """

    def __init__(self, windows: sources.WindowSource, name: str = "enso"):
        if len(windows.task.derived_targets) != 1 or windows.task.target_variables:
            raise ValueError(
                f"an ENSO sample has one derived target and no target variables; the task has "
                f"{windows.task.derived_names} and {windows.task.target_variables}"
            )
        self.windows = windows
        self.name = name
        self._months = windows.init_times.month.to_numpy().astype(np.int32)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        s = self.windows[int(index)]
        return {
            "x": np.ascontiguousarray(np.moveaxis(s[sources.INPUTS], -1, 1)),
            "month": self._months[int(index)],
            "y": s[sources.DERIVED][:, 0],
        }

    def __repr__(self) -> str:
        # grain compares it when restoring an iterator state: keep it stable.
        return f"SampleSource({self.name!r}, n={len(self)})"

    @property
    def task(self) -> tasks.TaskConfig:
        return self.windows.task

    @property
    def inits(self) -> np.ndarray:
        """[N, 2] (segment, month index of t) of every sample."""
        return self.windows.inits


def store_of(world_ds: xr.Dataset | str | os.PathLike) -> str:
    """The Zarr store of a world: a path, or the store a Dataset was opened from.

    Raises:
      ValueError: an in-memory Dataset (build the world with ``path=``).
    """
    if isinstance(world_ds, str | os.PathLike):
        return str(world_ds)
    source = world_ds.encoding.get("source")
    if source is None or not Path(source).exists():
        raise ValueError(
            "training reads its samples from a world's Zarr store; this dataset was not "
            "opened from one: build it with tellus.enso.world.build_world(..., path=...)"
        )
    return str(source)


def samples(
    world_ds: xr.Dataset | str | os.PathLike,
    cfg: Any = None,
    dates: sources.DateRange | None = None,
    base_period: tuple[str, str] | None = None,
    *,
    name: str = "enso",
) -> SampleSource:
    """The samples of a world's store for a model config (:func:`task_for`) within
    ``dates`` (all windows of every segment if None)."""
    windows = sources.WindowSource(
        store_of(world_ds), task_for(cfg, base_period), dates, cache_bytes=CACHE_BYTES
    )
    return SampleSource(windows, name)


def batches(source: SampleSource, batch_size: int, seed: int = 0) -> streams.LoaderStream:
    """Endless shuffled batches of ``source`` through the shared grain loader."""
    return streams.LoaderStream(source, batch_size, seed)


def _fields(ds: xr.Dataset, variables: Sequence[str] = INPUT_VARIABLES) -> np.ndarray:
    """[segment, time, var, lat, lon] float32 of a world (with or without ``realization``)."""
    fields = xr.concat([ds[v] for v in variables], dim="variable")
    if world.REALIZATION not in fields.dims:
        fields = fields.expand_dims(world.REALIZATION)
    fields = fields.transpose(world.REALIZATION, schema.TIME, "variable", *schema.SPATIAL_DIMS)
    return np.ascontiguousarray(fields.values, dtype=np.float32)


def normalization(source: SampleSource) -> tuple[tuple[float, ...], float]:
    """Per-variable field std and target std over every month of the segments that hold
    samples of ``source`` (the pretraining data)."""
    windows = source.windows
    rows = np.unique(windows.segment_indices)
    fields = _fields(sources.open_metadata(windows.store), windows.task.input_variables)
    std = fields[rows].std(axis=(0, 1, 3, 4), dtype=np.float64)
    tgt = float(np.nanstd(np.ascontiguousarray(windows.derived[rows, :, 0])))
    return tuple(float(s) for s in std), tgt


# --- a world as arrays (the evaluation's) ----------------------------------------------------


@dataclasses.dataclass
class Series:
    """A world as plain arrays.

    Attributes:
      fields: [segment, time, var, lat, lon] SST and heat-content anomalies (K), float32.
      index: [segment, time] the task's derived target (the centred 3-month mean Nino3.4
        anomaly, K), NaN at the ends.
      months: [time] calendar month (1..12).
      nino34: [segment, time] the monthly Nino3.4 anomaly (K).
      task: the task whose windows :func:`inits_between` and :func:`gather` take (None: the
        default :func:`task_for`).
    """

    fields: np.ndarray
    index: np.ndarray
    months: np.ndarray
    nino34: np.ndarray
    task: tasks.TaskConfig | None = None

    @property
    def n_time(self) -> int:
        return self.fields.shape[1]

    @property
    def window_task(self) -> tasks.TaskConfig:
        return task_for() if self.task is None else self.task


def to_series(
    ds: xr.Dataset,
    base_period: tuple[str, str] | None = None,
    *,
    task: tasks.TaskConfig | None = None,
) -> Series:
    """Converts a world Dataset (with or without ``realization``) to :class:`Series`.

    Args:
      ds: the world.
      base_period: the Nino3.4 climatology's months (ignored when ``task`` is given).
      task: the task (default :func:`task_for` with ``base_period``); its derived target is
        computed by :func:`tellus.data.derived.derive`, as WindowSource computes it.
    """
    task = task_for(base_period=base_period) if task is None else task
    (target,) = task.derived_targets
    nino = derived.derive(ds, dataclasses.replace(target, running_mean=1))
    if world.REALIZATION not in nino.dims:
        nino = nino.expand_dims(world.REALIZATION)
    nino = nino.transpose(world.REALIZATION, schema.TIME)
    index = derived.running_mean(nino, target.running_mean)
    return Series(
        fields=_fields(ds, task.input_variables),
        index=index.values.astype(np.float32),
        months=ds[schema.TIME].dt.month.values.astype(np.int32),
        nino34=nino.values.astype(np.float32),
        task=task,
    )


def inits_between(series: Series, first_input: int, last_target: int) -> np.ndarray:
    """[N, 2] (segment, t) of every sample whose inputs start at or after month
    ``first_input`` and whose targets (their running means included) end at or before
    ``last_target`` (month indices, inclusive), in every segment: the windows WindowSource
    finds for the same months."""
    reach = series.window_task.reach_offsets
    back, ahead = -reach[0], reach[-1]
    t = np.arange(first_input + back, last_target - ahead + 1)
    t = t[(t >= back) & (t + ahead < series.n_time)]
    seg = np.arange(series.fields.shape[0])
    return np.stack(np.meshgrid(seg, t, indexing="ij"), -1).reshape(-1, 2)


def gather(series: Series, inits: np.ndarray) -> dict[str, np.ndarray]:
    """Samples at ``inits`` [N, 2]: ``x`` [N, history, var, lat, lon], ``month`` [N], ``y``
    [N, n_leads] (the keys and values of :class:`SampleSource`)."""
    task = series.window_task
    s, t = inits[:, 0], inits[:, 1]
    hist = t[:, None] + np.asarray(task.history_offsets)[None]
    lead = t[:, None] + np.asarray(task.lead_steps)[None]
    return {
        "x": series.fields[s[:, None], hist],
        "month": series.months[t],
        "y": series.index[s[:, None], lead],
    }


@dataclasses.dataclass(frozen=True)
class ObservedSplit:
    """Fine-tuning on the first ``finetune_years``, testing on the last ``test_years``.

    Raises (``check``): the gap between the last fine-tuning target and the first test input
    is not more than ``min_gap_months`` (and the longest lead).
    """

    finetune_years: int = 100
    test_years: int = 40
    min_gap_months: int = N_LEADS

    def finetune_inits(self, series: Series) -> np.ndarray:
        return inits_between(series, 0, self.finetune_years * 12 - 1)

    def test_start(self, series: Series | int) -> int:
        n_time = series if isinstance(series, int) else series.n_time
        return n_time - self.test_years * 12

    def test_inits(self, series: Series) -> np.ndarray:
        return inits_between(series, self.test_start(series), series.n_time - 1)

    def check(self, series: Series | int, longest_lead: int = 0) -> int:
        """The gap (months) between the last fine-tuning target and the first test input,
        of a series or a record of that many months.

        Raises:
          ValueError: the gap is not more than ``min_gap_months`` and ``longest_lead``.
        """
        n_time = series if isinstance(series, int) else series.n_time
        gap = self.test_start(n_time) - self.finetune_years * 12
        need = max(self.min_gap_months, longest_lead)
        if gap <= need:
            raise ValueError(
                f"{n_time // 12} observed years leave a gap of {gap} months between "
                f"fine-tuning ({self.finetune_years} y) and test ({self.test_years} y); "
                f"need more than {need}"
            )
        return gap

    def date_ranges(self, times: pd.DatetimeIndex) -> dict[str, sources.DateRange]:
        """``finetune`` and ``test`` as WindowSource date ranges of a monthly record
        ``times``: a window lies in a range with all its months, running means included,
        so it holds the samples of :meth:`finetune_inits` and :meth:`test_inits`."""
        times = pd.DatetimeIndex(times)
        self.check(len(times))
        end = times[-1] + pd.offsets.MonthBegin(1)
        return {
            "finetune": sources.DateRange(times[0], times[self.finetune_years * 12]),
            "test": sources.DateRange(times[self.test_start(len(times))], end),
        }

    def base_period(self, ds: xr.Dataset) -> tuple[str, str]:
        """The fine-tuning years as a climatology base period (no test data in it)."""
        t = ds[schema.TIME].values
        return str(t[0])[:7], str(t[self.finetune_years * 12 - 1])[:7]


def loss_fn(model: model_lib.Forecaster, batch: dict[str, jax.Array]) -> jax.Array:
    """MSE of every lead, in units of the index's standard deviation."""
    pred = model(batch["x"], batch["month"])
    return jnp.mean(((pred - batch["y"]) / model.config.target_std) ** 2)


@dataclasses.dataclass(frozen=True)
class Budget:
    """Steps and batch sizes of the two phases.

    Fine-tuning is kept short (80 steps of 32: about two passes over the 100 observed
    years): it quickly adapts the amplitude and the long-lead relation to the observed world,
    then starts to fit the noise of those few years, so the long-lead skill falls again with
    more steps. The skill after 40 to 300 fine-tuning steps is measured in
    ``docs/results.md`` ("What closed the long-lead gap").
    """

    pretrain_steps: int = 600
    finetune_steps: int = 80
    batch_size: int = 32
    pretrain_lr: float = 2e-3
    finetune_lr: float = 3e-4
    compute_dtype: str = "float32"
    remat: bool = False
    profile_steps: tuple[int, int] | None = None  # each phase's TrainConfig.profile_steps


def _train_config(steps: int, budget: Budget, lr: float, seed: int) -> train_config.TrainConfig:
    return train_config.warmup_cosine(
        steps,
        budget.batch_size,
        lr,
        decay=50.0,
        checkpoints=3,
        keep_checkpoints=1,
        seed=seed,
        compute_dtype=budget.compute_dtype,
        remat=budget.remat,
        profile_steps=budget.profile_steps,
    )


def envelope(source: SampleSource) -> trainer.Envelope:
    """What each checkpoint of a phase says about itself: the ResoNet kind and version and the
    phase's task (input variables, history, leads, the Nino3.4 target with its base period)."""
    return trainer.Envelope(
        kind=model_lib.KIND.name,
        version=model_lib.KIND.version,
        task=dataclasses.asdict(source.task),
    )


def train_enso(
    workdir: str | Path,
    model_ds: xr.Dataset | str | os.PathLike,
    observed_ds: xr.Dataset | str | os.PathLike,
    *,
    preset: str = "small",
    model_overrides: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    budget: Budget = Budget(),
    split: ObservedSplit = ObservedSplit(),
    show_progress: bool = True,
    mesh: Any = None,
    rules: Any = None,
) -> dict[str, Any]:
    """Pretrains and fine-tunes (or resumes) each ensemble member.

    Both phases read their samples through :func:`samples` (a WindowSource over the world's
    store, the grain loader): the pretraining every window of every segment of the model run,
    the fine-tuning the windows of the observed run within ``split``'s fine-tuning years
    (their climatology is the Nino3.4 base period). ``history`` and ``n_leads`` are the
    model config's.

    Args:
      workdir: output folder (``member_{k}/{pretrain,finetune}``, ``ensemble.json``).
      model_ds, observed_ds: the two worlds' Zarr stores (:func:`tellus.enso.world.
        build_world` with ``path``), or the Datasets opened from them.
      preset: :mod:`tellus.enso.model` preset.
      model_overrides: fields of the preset's config to replace (e.g. ``{"lead_rank": None}``
        or ``{"n_leads": 12}``).
      seeds: one member per seed (model init and batch order).
      budget: steps, batch size and learning rates.
      split: the observed fine-tune / test split.
      mesh, rules: the device mesh and logical axis rules (default: one device);
        ``ensemble.json`` records the mesh's axis sizes (``budget`` its remat and dtype).

    Returns:
      ``{"histories": {seed: {"pretrain": [(step, loss)], "finetune": [...]}}, "seconds":
      ..., "n_pretrain": ..., "n_finetune": ..., "gap_months": ...}``.

    Raises:
      ValueError: a world is an in-memory Dataset, or the split leaves too small a gap.
    """
    t0 = time.perf_counter()
    workdir = Path(workdir)
    overrides = dict(model_overrides or {})
    shape = model_lib.preset(preset, **overrides)  # history and n_leads
    model_store, observed_store = store_of(model_ds), store_of(observed_ds)
    observed_meta = sources.open_metadata(observed_store)
    times = pd.DatetimeIndex(observed_meta.indexes[schema.TIME])
    gap = split.check(len(times), longest_lead=shape.n_leads)
    pre = samples(model_store, shape, name="model world")
    ft = samples(
        observed_store,
        shape,
        split.date_ranges(times)["finetune"],
        split.base_period(observed_meta),
        name="observed world",
    )
    input_std, target_std = normalization(pre)
    workdir.mkdir(parents=True, exist_ok=True)
    histories: dict[int, dict[str, list]] = {}
    for seed in seeds:
        cfg = model_lib.preset(
            preset,
            **overrides,
            seed=int(seed),
            input_std=input_std,
            target_std=target_std,
        )
        member = workdir / f"member_{seed}"
        if show_progress:
            print(
                f"member {seed}: pretraining on {len(pre)} model-run samples, "
                f"{budget.pretrain_steps} steps of {budget.batch_size}"
            )
        h_pre = trainer.fit(
            model_lib.make_model,
            cfg,
            _train_config(budget.pretrain_steps, budget, budget.pretrain_lr, seed),
            trainer.TrainDomain("enso", loss_fn, batches(pre, budget.batch_size, seed)),
            member / "pretrain",
            envelope=envelope(pre),
            mesh=mesh,
            rules=rules,
            show_progress=show_progress,
        )
        if show_progress:
            print(
                f"member {seed}: fine-tuning on {len(ft)} observed samples, "
                f"{budget.finetune_steps} steps"
            )
        h_ft = trainer.fit(
            transfer.warm_start(member / "pretrain", model_lib.make_model),
            cfg,
            _train_config(budget.finetune_steps, budget, budget.finetune_lr, seed),
            trainer.TrainDomain("enso", loss_fn, batches(ft, budget.batch_size, seed + 1000)),
            member / "finetune",
            envelope=envelope(ft),
            mesh=mesh,
            rules=rules,
            show_progress=show_progress,
        )
        histories[int(seed)] = {"pretrain": h_pre, "finetune": h_ft}
    info = {
        "preset": preset,
        "model_overrides": overrides,
        "seeds": [int(s) for s in seeds],
        "budget": dataclasses.asdict(budget),
        "mesh": None if mesh is None else {str(a): int(n) for a, n in mesh.shape.items()},
        "split": dataclasses.asdict(split),
        "gap_months": gap,
        "n_pretrain": len(pre),
        "n_finetune": len(ft),
        "input_std": list(input_std),
        "target_std": target_std,
    }
    (workdir / "ensemble.json").write_text(json.dumps(info, indent=1))
    info.update(histories=histories, seconds=time.perf_counter() - t0)
    return info


def load_member(directory: str | Path) -> model_lib.Forecaster:
    """The model of the latest checkpoint in ``directory`` (a ``fit`` workdir)."""
    directory = Path(directory)
    ck = ckpt_lib.Checkpointer(directory / "checkpoints", async_save=False)
    try:
        step = ck.latest_step()
        if step is None:
            raise FileNotFoundError(
                f"no complete checkpoint in {directory}; train first (tellus train enso)"
            )
        model, _, _, _ = ckpt_lib.rebuild(ck, step, model_lib.KIND)
    finally:
        ck.close()
    return model


def load_ensemble(workdir: str | Path, phase: str = "finetune") -> list[model_lib.Forecaster]:
    """Every member's model after ``phase`` (``finetune`` or ``pretrain``).

    Raises:
      FileNotFoundError: no member folder or no checkpoint.
    """
    members = sorted(Path(workdir).glob("member_*"), key=lambda p: int(p.name.split("_")[1]))
    if not members:
        raise FileNotFoundError(f"no member_* folders in {workdir}; train first")
    return [load_member(m / phase) for m in members]


@nnx.jit
def _apply(model: model_lib.Forecaster, x: jax.Array, month: jax.Array) -> jax.Array:
    return model(x, month)


def predict(
    models: Sequence[model_lib.Forecaster],
    x: np.ndarray,
    month: np.ndarray,
    batch_size: int = 256,
) -> np.ndarray:
    """The ensemble-mean forecast [N, n_leads] (K) of inputs x [N, history, var, lat, lon],
    month [N]."""
    n = len(x)
    batch_size = min(batch_size, n)
    pad = -n % batch_size  # whole batches only: one compilation
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    month = np.concatenate([month, np.ones(pad, month.dtype)])
    out = np.zeros((len(x), models[0].config.n_leads), np.float64)
    for m in models:
        for i in range(0, len(x), batch_size):
            out[i : i + batch_size] += np.asarray(
                _apply(
                    m, jnp.asarray(x[i : i + batch_size]), jnp.asarray(month[i : i + batch_size])
                )
            )
    return out[:n] / len(models)


__all__ = [
    "CACHE_BYTES",
    "HISTORY",
    "INPUT_VARIABLES",
    "N_LEADS",
    "TARGET_REACH",
    "Budget",
    "ObservedSplit",
    "SampleSource",
    "Series",
    "batches",
    "envelope",
    "gather",
    "inits_between",
    "load_ensemble",
    "load_member",
    "loss_fn",
    "normalization",
    "predict",
    "samples",
    "store_of",
    "task_for",
    "to_series",
    "train_enso",
]
