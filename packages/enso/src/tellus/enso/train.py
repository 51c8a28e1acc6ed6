"""Training the ResoNet ensemble: pretrain on the model world, fine-tune on observed years.

The protocol of Ham et al. (2019, Nature 573, 568-572): a forecaster learns from a long
coupled-model (CMIP-like) run, then is fine-tuned on the early part of the observed record
and tested on its late part, with a gap of more than the longest lead between the last
fine-tuning target and the first test input so that no test month was seen in training.
Each of ``seeds`` members is trained this way from its own initialization; the ensemble mean
is the forecast.

Samples: the inputs at months t-2..t (SST and heat-content anomaly maps), the calendar month
of t, and the targets: the centred 3-month running mean of Nino3.4 (ONI-style, from
:mod:`tellus.enso.indices`) at t+1..t+24. Inputs and targets are scaled by standard
deviations measured on the pretraining data (stored in the model config).

Layout of ``workdir``: ``member_{k}/pretrain`` and ``member_{k}/finetune`` (each a
:func:`tellus.training.trainer.fit` directory, resumable) and ``ensemble.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from flax import nnx

from tellus.data import schema
from tellus.enso import indices, world
from tellus.enso import model as model_lib
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as train_config
from tellus.training import streams, trainer

log = logging.getLogger(__name__)

HISTORY = 3
N_LEADS = 24
# The centred 3-month mean at t + N_LEADS needs month t + N_LEADS + 1.
TARGET_REACH = N_LEADS + 1


@dataclasses.dataclass
class Series:
    """A world as plain arrays.

    Attributes:
      fields: [segment, time, var, lat, lon] SST and heat-content anomalies (K), float32.
      index: [segment, time] the centred 3-month mean Nino3.4 anomaly (K), NaN at the ends.
      months: [time] calendar month (1..12).
      nino34: [segment, time] the monthly Nino3.4 anomaly (K).
    """

    fields: np.ndarray
    index: np.ndarray
    months: np.ndarray
    nino34: np.ndarray

    @property
    def n_time(self) -> int:
        return self.fields.shape[1]


def to_series(ds: xr.Dataset, base_period: tuple[str, str] | None = None) -> Series:
    """Converts a world Dataset (with or without ``realization``) to :class:`Series`."""
    fields = xr.concat([ds[world.SST], ds[world.HEAT]], dim="variable")
    nino = indices.nino34(ds, base_period)
    if world.REALIZATION not in fields.dims:
        fields = fields.expand_dims(world.REALIZATION)
        nino = nino.expand_dims(world.REALIZATION)
    fields = fields.transpose(world.REALIZATION, schema.TIME, "variable", *schema.SPATIAL_DIMS)
    nino = nino.transpose(world.REALIZATION, schema.TIME)
    oni = indices.running_mean(nino)
    return Series(
        fields=np.ascontiguousarray(fields.values, dtype=np.float32),
        index=oni.values.astype(np.float32),
        months=ds[schema.TIME].dt.month.values.astype(np.int32),
        nino34=nino.values.astype(np.float32),
    )


def inits_between(series: Series, first_input: int, last_target: int) -> np.ndarray:
    """[N, 2] (segment, t) of every sample whose inputs start at or after month
    ``first_input`` and whose targets (their running means included) end at or before
    ``last_target`` (month indices, inclusive), in every segment."""
    t = np.arange(first_input + HISTORY - 1, last_target - TARGET_REACH + 1)
    t = t[(t >= HISTORY - 1) & (t + TARGET_REACH < series.n_time)]
    seg = np.arange(series.fields.shape[0])
    return np.stack(np.meshgrid(seg, t, indexing="ij"), -1).reshape(-1, 2)


def gather(series: Series, inits: np.ndarray) -> dict[str, np.ndarray]:
    """Samples at ``inits`` [N, 2]: ``x`` [N, 3, 2, lat, lon], ``month`` [N], ``y`` [N, 24]."""
    s, t = inits[:, 0], inits[:, 1]
    hist = t[:, None] + np.arange(-HISTORY + 1, 1)[None]
    lead = t[:, None] + np.arange(1, N_LEADS + 1)[None]
    return {
        "x": series.fields[s[:, None], hist],
        "month": series.months[t],
        "y": series.index[s[:, None], lead],
    }


@dataclasses.dataclass(frozen=True)
class ObservedSplit:
    """Fine-tuning on the first ``finetune_years``, testing on the last ``test_years``.

    Raises (``check``): the gap between the last fine-tuning target and the first test input
    is not more than ``min_gap_months``.
    """

    finetune_years: int = 100
    test_years: int = 40
    min_gap_months: int = N_LEADS

    def finetune_inits(self, series: Series) -> np.ndarray:
        return inits_between(series, 0, self.finetune_years * 12 - 1)

    def test_start(self, series: Series) -> int:
        return series.n_time - self.test_years * 12

    def test_inits(self, series: Series) -> np.ndarray:
        return inits_between(series, self.test_start(series), series.n_time - 1)

    def check(self, series: Series) -> int:
        """The gap (months) between the last fine-tuning target and the first test input."""
        gap = self.test_start(series) - self.finetune_years * 12
        if gap <= self.min_gap_months:
            raise ValueError(
                f"{series.n_time // 12} observed years leave a gap of {gap} months between "
                f"fine-tuning ({self.finetune_years} y) and test ({self.test_years} y); "
                f"need more than {self.min_gap_months}"
            )
        return gap

    def base_period(self, ds: xr.Dataset) -> tuple[str, str]:
        """The fine-tuning years as a climatology base period (no test data in it)."""
        t = ds[schema.TIME].values
        return str(t[0])[:7], str(t[self.finetune_years * 12 - 1])[:7]


class SampleSource:
    """The samples at ``inits`` [N, 2] (segment, t) of a series, by index: a random-access
    source for the shared grain loader (:class:`tellus.training.streams.LoaderStream`)."""

    def __init__(self, series: Series, inits: np.ndarray, name: str = "enso"):
        self.series = series
        self.inits = np.asarray(inits)
        self.name = name

    def __len__(self) -> int:
        return len(self.inits)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        b = gather(self.series, self.inits[int(index)][None])
        return {k: v[0] for k, v in b.items()}

    def __repr__(self) -> str:
        return f"SampleSource({self.name!r}, n={len(self)})"


def batches(
    series: Series, inits: np.ndarray, batch_size: int, seed: int = 0, name: str = "enso"
) -> streams.LoaderStream:
    """Endless shuffled batches of the samples at ``inits``."""
    return streams.LoaderStream(SampleSource(series, inits, name), batch_size, seed)


def loss_fn(model: model_lib.Forecaster, batch: dict[str, jax.Array]) -> jax.Array:
    """MSE of the 24 leads, in units of the index's standard deviation."""
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
    )


ENVELOPE = trainer.Envelope(kind=model_lib.KIND.name, version=model_lib.KIND.version)


def normalization(series: Series, inits: np.ndarray) -> tuple[tuple[float, ...], float]:
    """Per-variable field std and target std over the training months of ``inits``."""
    rows = np.unique(inits[:, 0])
    std = series.fields[rows].std(axis=(0, 1, 3, 4), dtype=np.float64)
    tgt = float(np.nanstd(series.index[rows]))
    return tuple(float(s) for s in std), tgt


def train_enso(
    workdir: str | Path,
    model_ds: xr.Dataset,
    observed_ds: xr.Dataset,
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

    Args:
      workdir: output folder (``member_{k}/{pretrain,finetune}``, ``ensemble.json``).
      model_ds, observed_ds: the two worlds (:func:`tellus.enso.world.build_world`).
      preset: :mod:`tellus.enso.model` preset.
      model_overrides: fields of the preset's config to replace (e.g. ``{"lead_rank": None}``).
      seeds: one member per seed (model init and batch order).
      budget: steps, batch size and learning rates.
      split: the observed fine-tune / test split.
      mesh, rules: the device mesh and logical axis rules (default: one device).

    Returns:
      ``{"histories": {seed: {"pretrain": [(step, loss)], "finetune": [...]}}, "seconds":
      ..., "n_pretrain": ..., "n_finetune": ..., "gap_months": ...}``.
    """
    t0 = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pre = to_series(model_ds)
    pre_inits = inits_between(pre, 0, pre.n_time - 1)
    obs = to_series(observed_ds, split.base_period(observed_ds))
    gap = split.check(obs)
    ft_inits = split.finetune_inits(obs)
    input_std, target_std = normalization(pre, pre_inits)
    overrides = dict(model_overrides or {})
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
                f"member {seed}: pretraining on {len(pre_inits)} model-run samples, "
                f"{budget.pretrain_steps} steps of {budget.batch_size}"
            )
        h_pre = trainer.fit(
            model_lib.make_model,
            cfg,
            _train_config(budget.pretrain_steps, budget, budget.pretrain_lr, seed),
            trainer.TrainDomain(
                "enso", loss_fn, batches(pre, pre_inits, budget.batch_size, seed, "model world")
            ),
            member / "pretrain",
            envelope=ENVELOPE,
            mesh=mesh,
            rules=rules,
            show_progress=show_progress,
        )
        if show_progress:
            print(
                f"member {seed}: fine-tuning on {len(ft_inits)} observed samples, "
                f"{budget.finetune_steps} steps"
            )
        h_ft = trainer.fit(
            ckpt_lib.warm_start(member / "pretrain", model_lib.make_model),
            cfg,
            _train_config(budget.finetune_steps, budget, budget.finetune_lr, seed),
            trainer.TrainDomain(
                "enso",
                loss_fn,
                batches(obs, ft_inits, budget.batch_size, seed + 1000, "observed world"),
            ),
            member / "finetune",
            envelope=ENVELOPE,
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
        "split": dataclasses.asdict(split),
        "gap_months": gap,
        "n_pretrain": len(pre_inits),
        "n_finetune": len(ft_inits),
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
                f"no complete checkpoint in {directory}; train first (tellus train-enso)"
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
    """The ensemble-mean forecast [N, 24] (K) of inputs x [N, 3, 2, lat, lon], month [N]."""
    n = len(x)
    batch_size = min(batch_size, n)
    pad = -n % batch_size  # whole batches only: one compilation
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    month = np.concatenate([month, np.ones(pad, month.dtype)])
    out = np.zeros((len(x), N_LEADS), np.float64)
    for m in models:
        for i in range(0, len(x), batch_size):
            out[i : i + batch_size] += np.asarray(
                _apply(
                    m, jnp.asarray(x[i : i + batch_size]), jnp.asarray(month[i : i + batch_size])
                )
            )
    return out[:n] / len(models)


__all__ = [
    "ENVELOPE",
    "HISTORY",
    "N_LEADS",
    "Budget",
    "ObservedSplit",
    "SampleSource",
    "Series",
    "batches",
    "gather",
    "inits_between",
    "load_ensemble",
    "load_member",
    "loss_fn",
    "normalization",
    "predict",
    "to_series",
    "train_enso",
]
