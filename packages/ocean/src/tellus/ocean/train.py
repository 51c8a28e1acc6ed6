"""Training the ocean forecaster: the model run, then the observed run's early years.

ORCA-DL (Guo et al. 2024) trains on climate-model runs and is tested on reanalysis; here the
embedded ocean's two runs play those parts (:mod:`tellus.ocean.world`): the forecaster is
trained on every window of ``model.zarr`` (the pretraining), fine-tuned on the windows of the
first years of ``observed.zarr`` (perturbed parameters) and tested on its last years
(:mod:`tellus.ocean.evaluate`), with a gap between the two (:class:`ObservedSplit`).

Both phases are :func:`tellus.training.trainer.fit` runs over the ocean Domain's samples
(:func:`tellus.ocean.domain.samples`, the shared grain loader), with the loss of
:func:`tellus.ocean.forecaster.loss_fn`. The normalization statistics (per calendar month)
are those of the model run, kept in the forecaster's config, so that the fine-tuned model
normalizes as the pretrained one did. The fine-tuning starts from the pretraining's last
checkpoint (:func:`tellus.training.transfer.warm_start`).

Layout of ``workdir``: ``pretrain/`` and ``finetune/`` (each a ``fit`` workdir, resumable,
checkpoints with the envelope ``{kind: ocean.forecaster, version, task}``) and
``ocean.json`` (the recipe, the split and the stores).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tellus.data import schema, sources
from tellus.ocean import domain
from tellus.ocean import forecaster as fc
from tellus.ocean import model as model_lib
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as train_config
from tellus.training import trainer, transfer

PRETRAIN, FINETUNE = "pretrain", "finetune"
RUN_INFO = "ocean.json"
# The longest lead the evaluation scores (months): the test years start at least this far
# after the last fine-tuning month.
LONGEST_LEAD = 12
# The anomaly base's wind response: the leading modes of the wind-stress anomaly. On the
# embedded ocean the first carries the wind anomalies that drive the Nino3.4 box (its
# correlation with the box's SST four months later is 0.93 on the model run).
FORCING_MODES = 4
# What the network's output is added to (``ForecasterConfig.residual`` / ``anomaly_base``):
# nothing (ORCA-DL's released form: the state itself), the initial state, or the anomaly base.
BASES = {"state": (False, False), "persistence": (True, False), "anomaly": (True, True)}


@dataclasses.dataclass(frozen=True)
class ObservedSplit:
    """Fine-tuning on the first ``finetune_years`` of the observed run, testing on its last
    ``test_years``; the months between them (the gap) belong to neither.

    The default, for the embedded ocean's 8 observed years: fine-tune on years 1-4 (months
    0-47), a gap of 12 months (year 5), test on years 6-8 (months 60-95). No fine-tuning
    window reaches a month after 47 (a window lies in its range with every lead's target);
    no test window starts before month 60; the 12-month gap is longer than the longest lead
    trained (6) and as long as the longest evaluated (12), so no test target's month is
    within a lead of a fine-tuning month.
    """

    finetune_years: int = 4
    test_years: int = 3
    min_gap_months: int = LONGEST_LEAD

    def finetune_end(self) -> int:
        """The first month index after the fine-tuning years."""
        return self.finetune_years * 12

    def test_start(self, n_months: int) -> int:
        """The first month index of the test years in a record of ``n_months``."""
        return n_months - self.test_years * 12

    def check(self, n_months: int, longest_lead: int = 0) -> int:
        """The gap (months between the last fine-tuning month and the first test month) of a
        record of ``n_months``.

        Raises:
          ValueError: the gap is shorter than ``min_gap_months`` or ``longest_lead``, or a
            part is empty.
        """
        if self.finetune_years < 1 or self.test_years < 1:
            raise ValueError(
                f"fine-tuning ({self.finetune_years} y) and test ({self.test_years} y) "
                "need a year each"
            )
        gap = self.test_start(n_months) - self.finetune_end()
        need = max(self.min_gap_months, longest_lead)
        if gap < need:
            raise ValueError(
                f"{n_months // 12} observed years leave a gap of {gap} months between "
                f"fine-tuning ({self.finetune_years} y) and test ({self.test_years} y); "
                f"need at least {need}"
            )
        return gap

    def date_ranges(self, times: pd.DatetimeIndex) -> dict[str, sources.DateRange]:
        """``finetune`` and ``test`` as WindowSource date ranges of a monthly record (a
        window lies in a range with all its months).

        Raises:
          ValueError: as :meth:`check`.
        """
        times = pd.DatetimeIndex(times)
        self.check(len(times))
        end = times[-1] + pd.offsets.MonthBegin(1)
        return {
            FINETUNE: sources.DateRange(times[0], times[self.finetune_end()]),
            "test": sources.DateRange(times[self.test_start(len(times))], end),
        }

    def finetune_months(self, times: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """The fine-tuning months of a record (also the baselines' fitting months)."""
        return pd.DatetimeIndex(times)[: self.finetune_end()]

    def test_months(self, times: pd.DatetimeIndex) -> pd.DatetimeIndex:
        times = pd.DatetimeIndex(times)
        return times[self.test_start(len(times)) :]


@dataclasses.dataclass(frozen=True)
class Budget:
    """Steps, batch size and learning rates of the two phases (the CPU recipe of
    ``just train-ocean``; the estimate of its time is in the README)."""

    pretrain_steps: int = 450
    finetune_steps: int = 120
    batch_size: int = 2
    pretrain_lr: float = 1e-3
    finetune_lr: float = 2e-4
    compute_dtype: str = "float32"
    remat: bool = False
    profile_steps: tuple[int, int] | None = None  # each phase's TrainConfig.profile_steps
    seed: int = 0


def _train_config(steps: int, budget: Budget, lr: float) -> train_config.TrainConfig:
    return train_config.warmup_cosine(
        steps,
        budget.batch_size,
        lr,
        decay=20.0,
        checkpoints=3,
        keep_checkpoints=1,
        seed=budget.seed,
        compute_dtype=budget.compute_dtype,
        remat=budget.remat,
        profile_steps=budget.profile_steps,
    )


def envelope(cfg: fc.ForecasterConfig) -> trainer.Envelope:
    """What every checkpoint says about itself: the kind, its version and the task."""
    task = fc.task_for(cfg.depths, cfg.leads, cfg.variables, cfg.forcings)
    return trainer.Envelope(
        kind=fc.KIND.name, version=fc.KIND.version, task=dataclasses.asdict(task)
    )


def store_times(store: str | os.PathLike) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(sources.open_metadata(str(store)).indexes[schema.TIME])


def train_ocean(
    workdir: str | Path,
    model_store: str | os.PathLike,
    observed_store: str | os.PathLike,
    *,
    preset: str = "cpu",
    net: model_lib.NetConfig | None = None,
    variables: tuple[str, ...] = fc.VARIABLES,
    base: str = "anomaly",
    forcing_modes: int = FORCING_MODES,
    observed_forcing: bool = False,
    budget: Budget = Budget(),
    split: ObservedSplit = ObservedSplit(),
    mesh: Any = None,
    rules: Any = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Pretrains on the model run and fine-tunes on the observed run's early years (or
    resumes either).

    Args:
      workdir: ``pretrain/``, ``finetune/`` and ``ocean.json`` go here.
      model_store, observed_store: the two runs' stores (:mod:`tellus.ocean.world`).
      preset: the network (:data:`tellus.ocean.model.PRESETS`), unless ``net`` is given.
      net: a network config of the stores' grid (tests use a small one).
      variables: the state's variables (ORCA-DL's six by default; the network's channels
        must match them).
      base: what the network's output is added to (:data:`BASES`): ``"state"`` predicts
        the state itself (ORCA-DL's form), ``"persistence"`` its change from the initial
        state, ``"anomaly"`` its departure from the anomaly base.
      forcing_modes: the anomaly base's linear response to the initial month's wind
        stress through this many modes, fitted on the model run
        (``ForecasterConfig.forcing_modes``; 0: damped persistence alone).
      observed_forcing: each lead gets its own month's observed wind stress (a Tellus
        extension; ORCA-DL encodes the initial month's once). Takes ``forcing_modes`` 0.
      budget: steps, batch size, learning rates, dtype, remat.
      split: the observed fine-tune / test split.
      mesh, rules: the device mesh and the logical axis rules (default one device).

    Returns:
      ``{"histories": {"pretrain": [(step, loss)], "finetune": [...]}, "seconds", ...}``
      and everything ``ocean.json`` holds.

    Raises:
      ValueError: the split leaves too small a gap, the network does not fit the stores, or
        a run holds no window of the task.
      KeyError: an unknown preset.
    """
    t0 = time.perf_counter()
    workdir = Path(workdir)
    if base not in BASES:
        raise ValueError(f"base must be one of {sorted(BASES)}, got {base!r}")
    residual, anomaly_base = BASES[base]
    if forcing_modes and observed_forcing:
        raise ValueError(
            f"forcing_modes {forcing_modes}: the wind response answers the initial month's "
            "forcing; with observed_forcing use 0"
        )
    if forcing_modes and not anomaly_base:
        raise ValueError(
            f"forcing_modes {forcing_modes}: the wind response is part of the anomaly base; "
            f"the {base!r} base has none (use 0)"
        )
    if net is None:
        if preset not in model_lib.PRESETS:
            raise KeyError(f"unknown preset {preset!r}; known: {sorted(model_lib.PRESETS)}")
        net = model_lib.PRESETS[preset]
    times = store_times(observed_store)
    gap = split.check(len(times), LONGEST_LEAD)
    model_times = store_times(model_store)
    cfg = domain.make_config(
        model_store,
        net,
        (str(model_times[0])[:7], str(model_times[-1])[:7]),
        variables=variables,
        leads=fc.LEADS,
        residual=residual,
        anomaly_base=anomaly_base,
        forcing_modes=forcing_modes,
        observed_forcing=observed_forcing,
    )
    pre = domain.samples(model_store, cfg)
    pre.name = "model run"
    ft_range = split.date_ranges(times)[FINETUNE]
    ft = domain.samples(observed_store, cfg, ft_range)
    ft.name = "observed run"
    for what, s in (("the model run", pre), ("the fine-tuning years", ft)):
        if len(s) < budget.batch_size:
            raise ValueError(
                f"{what} hold {len(s)} windows of {max(cfg.leads)} months of leads, fewer "
                f"than a batch of {budget.batch_size}"
            )
    workdir.mkdir(parents=True, exist_ok=True)
    env = envelope(cfg)
    if show_progress:
        print(
            f"pretraining on {len(pre)} model-run windows, {budget.pretrain_steps} steps of "
            f"{budget.batch_size}"
        )
    pre_factory, ft_factory = (
        fc.make_forecaster,
        transfer.warm_start(workdir / PRETRAIN, fc.make_forecaster),
    )
    if cfg.anomaly_base:
        # Each phase's anomaly base is about the climatology of its own training months.
        task = fc.task_for(cfg.depths, cfg.leads, cfg.variables, cfg.forcings)
        ft_months = split.finetune_months(times)
        clim_pre, _ = domain.anomaly_statistics(
            model_store, task, (str(model_times[0])[:7], str(model_times[-1])[:7])
        )
        clim_ft, _ = domain.anomaly_statistics(
            observed_store, task, (str(ft_months[0])[:7], str(ft_months[-1])[:7])
        )
        response_pre = response_ft = None
        if cfg.forcing_modes:
            # Patterns and response from the model run's twelve years (the observed run's
            # four are too few for a response per grid point); each phase's forcing
            # anomalies about its own months' climatology, as its state's.
            f_clim, patterns, response = domain.forcing_response(
                model_store,
                task,
                (str(model_times[0])[:7], str(model_times[-1])[:7]),
                np.asarray(cfg.damping),
                cfg.forcing_modes,
            )
            f_clim_ft, *_ = domain.forcing_response(
                observed_store,
                task,
                (str(ft_months[0])[:7], str(ft_months[-1])[:7]),
                np.asarray(cfg.damping),
                cfg.forcing_modes,
            )
            response_pre = (f_clim, patterns, response)
            response_ft = (f_clim_ft, patterns, response)
        pre_factory = with_reference(pre_factory, clim_pre, response_pre)
        ft_factory = with_reference(ft_factory, clim_ft, response_ft)
    h_pre = trainer.fit(
        pre_factory,
        cfg,
        _train_config(budget.pretrain_steps, budget, budget.pretrain_lr),
        trainer.TrainDomain(
            "ocean", fc.loss_fn, domain.batches(pre, budget.batch_size, budget.seed)
        ),
        workdir / PRETRAIN,
        envelope=env,
        mesh=mesh,
        rules=rules,
        show_progress=show_progress,
    )
    if show_progress:
        print(
            f"fine-tuning on {len(ft)} observed windows (years 1-{split.finetune_years}), "
            f"{budget.finetune_steps} steps"
        )
    h_ft = trainer.fit(
        ft_factory,
        cfg,
        _train_config(budget.finetune_steps, budget, budget.finetune_lr),
        trainer.TrainDomain(
            "ocean", fc.loss_fn, domain.batches(ft, budget.batch_size, budget.seed + 1000)
        ),
        workdir / FINETUNE,
        envelope=env,
        mesh=mesh,
        rules=rules,
        show_progress=show_progress,
    )
    info = {
        "preset": preset if net == model_lib.PRESETS.get(preset) else "custom",
        "budget": dataclasses.asdict(budget),
        "split": dataclasses.asdict(split),
        "gap_months": gap,
        "model_store": str(model_store),
        "observed_store": str(observed_store),
        "n_pretrain": len(pre),
        "n_finetune": len(ft),
        "mesh": None if mesh is None else {str(a): int(n) for a, n in mesh.shape.items()},
    }
    (workdir / RUN_INFO).write_text(json.dumps(info, indent=1))
    info.update(histories={PRETRAIN: h_pre, FINETUNE: h_ft}, seconds=time.perf_counter() - t0)
    return info


def with_reference(factory, climatology, response=None):
    """``factory`` whose models' anomaly base is about ``climatology`` and, with
    ``response`` ``(forcing climatology, patterns, response)``, answers the forcing
    (``fit`` builds the model with them, then a resume restores the phase's own checkpoint
    over them)."""

    def build(d: dict[str, Any]) -> fc.OceanForecaster:
        model = fc.set_reference(factory(d), climatology)
        return model if response is None else fc.set_forcing_response(model, *response)

    return build


def read_info(workdir: str | Path) -> dict[str, Any]:
    """``ocean.json`` of a training run.

    Raises:
      FileNotFoundError: no finished training there.
    """
    path = Path(workdir) / RUN_INFO
    if not path.exists():
        raise FileNotFoundError(
            f"no trained ocean forecaster in {str(workdir)!r} ({RUN_INFO} missing); "
            "run `tellus train ocean` first"
        )
    return json.loads(path.read_text())


def split_of(info: dict[str, Any]) -> ObservedSplit:
    return ObservedSplit(**info["split"])


def load_forecaster(directory: str | Path) -> fc.OceanForecaster:
    """The forecaster of the latest checkpoint of a ``fit`` workdir.

    Raises:
      FileNotFoundError: no complete checkpoint.
      CheckpointKindError: a checkpoint of another kind.
    """
    directory = Path(directory)
    if not (directory / "checkpoints").is_dir():  # a Checkpointer would create it
        raise FileNotFoundError(f"no checkpoints in {str(directory)!r}; train first")
    ck = ckpt_lib.Checkpointer(directory / "checkpoints", async_save=False)
    try:
        step = ck.latest_step()
        if step is None:
            raise FileNotFoundError(
                f"no complete checkpoint in {str(directory)!r}; train first (tellus train ocean)"
            )
        model, _, _, _ = ckpt_lib.rebuild(ck, step, fc.KIND)
    finally:
        ck.close()
    return model


def find_phase(path: str | Path, phase: str = FINETUNE) -> Path:
    """The ``fit`` workdir to load at ``path``: ``path`` itself (or its parent, for its
    ``checkpoints`` folder) when it is one, else its ``phase`` folder.

    Raises:
      FileNotFoundError: neither holds checkpoints.
    """
    path = Path(path)
    if path.name == "checkpoints":
        path = path.parent
    if (path / "checkpoints").is_dir():
        return path
    if (path / phase / "checkpoints").is_dir():
        return path / phase
    raise FileNotFoundError(
        f"no ocean forecaster in {str(path)!r}: no checkpoints/ or {phase}/checkpoints in it; "
        "run `tellus train ocean` first"
    )


__all__ = [
    "BASES",
    "FINETUNE",
    "FORCING_MODES",
    "LONGEST_LEAD",
    "PRETRAIN",
    "RUN_INFO",
    "Budget",
    "ObservedSplit",
    "envelope",
    "find_phase",
    "load_forecaster",
    "read_info",
    "split_of",
    "store_times",
    "train_ocean",
    "with_reference",
]
