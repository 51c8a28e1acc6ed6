"""Training the ocean diffusion model and reconstructing the 3D temperature from sparse
observations with it (ReconMOST, Song et al. 2025).

:func:`train_recon` pretrains the denoiser (:class:`tellus.ocean.unet.UNetDenoiser`)
unconditionally on every month of a model run (:class:`tellus.ocean.recon_domain.Samples`,
the shared grain loader) through :func:`tellus.training.trainer.fit`: the epsilon MSE over
the ocean (:func:`tellus.ocean.diffusion_loss.diffusion_loss`), AdamW with warm-up and
cosine decay (:func:`tellus.training.config.warmup_cosine`) and an EMA of the weights kept
by the train step itself (``OptimizerConfig.ema_decay``: it is saved in every checkpoint,
so a killed run resumes with its EMA). Optionally (``Recipe.finetune_steps``) it then
fine-tunes the pretrained EMA weights on the first ``finetune_years`` of an observed run,
the months the evaluation's climatology and GP kernels are fitted on (never its validation
or test months), as the ocean forecaster is fine-tuned: the prior then knows the observed
run's mean state, as the climatology baseline does. ReconMOST itself only pretrains;
``finetune_steps=0`` is that.

Layout of ``workdir``: ``pretrain/`` and ``finetune/`` (each a ``fit`` workdir:
``checkpoints/``, ``tensorboard/``, checkpoints with the envelope ``{kind:
ocean.diffusion}``) and ``recon.json`` (the recipe, the stores, the months, the grid),
written when the training is done.

:func:`load_denoiser` rebuilds the last phase's denoiser with its EMA weights;
:class:`Reconstructor` compiles the guided sampler (:func:`tellus.ocean.diffusion.sample`)
once for a batch of months and reconstructs any number of months from gridded observations
(:class:`tellus.data.profile_grid.GriddedObservations`), several samples per month, in deg
C with NaN over land; :func:`reconstruct` is the one-call form.

The recipe (:class:`Recipe`) and where it departs from ReconMOST's released settings (128
base channels, 1 000 DDPM steps, lr 1e-4, batch 4, EMA 0.9999, the full temperature in
[-5, 40] C), and why:

* the model's units are temperature anomalies from the training months' calendar-month
  climatology, one of the model run's standard deviations per depth level to 1
  (:mod:`tellus.ocean.anomaly_scaling`; ``anomalies=False`` is ReconMOST's [-5, 40] C):
  the embedded ocean's anomalies are about a tenth of a degree, 1/400 of that range, and a
  CPU-sized epsilon-predicting denoiser whose data are far smaller than its noise gives
  clean estimates worse than zero at all but the lowest noise levels;
* the ``cpu`` preset of :mod:`tellus.ocean.unet` (32 base channels, 3 levels, one ResBlock
  per level, a 64-wide trunk at the bottleneck) instead of ``paper``: the recipe must train
  in minutes on 2 cores;
* lr 1e-3 with warm-up and cosine decay instead of a constant 1e-4: a constant 1e-4 does not
  get far in a few hundred steps;
* EMA 0.995 instead of 0.9999: the train step's EMA has no warm-up, and after ``n`` steps
  the initial weights still weigh ``decay^n`` in it (0.9999 leaves 90 % after 1 000 steps;
  0.995 leaves 0.7 %). :func:`train_recon` refuses a decay whose initial weights would keep
  more than :data:`MAX_EMA_INIT` of the pretraining's average (the fine-tuning starts from
  the pretrained average, so there the initial weights are meant to stay);
* the same 1 000-step linear schedule, sampled by DDIM on 50 of its steps rather than by
  the full DDPM chain, so that an evaluation of 60 month-reconstructions fits in minutes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx

from tellus.data import schema, sources
from tellus.ocean import anomaly_scaling, diffusion, recon_domain, unet
from tellus.ocean import diffusion_loss as loss_lib
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as config_lib
from tellus.training import trainer

RUN_INFO = "recon.json"
PRETRAIN, FINETUNE = "pretrain", "finetune"
# The largest weight the initial parameters may keep in the EMA at the last step.
MAX_EMA_INIT = 0.2


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The pretraining's steps, batch, learning rate, EMA and network (the CPU recipe of
    ``just train-recon``; its measured time is in ``docs/results.md`` once run).

    Attributes:
      steps: optimizer steps of the pretraining on the model run.
      batch_size: months per step.
      learning_rate: peak learning rate (linear warm-up over a tenth of the steps, at most
        50, then cosine decay to a hundredth).
      ema_decay: decay of the EMA of the weights that reconstructions use.
      finetune_steps: steps on the observed run's first ``finetune_years`` (0: none).
      finetune_years: the observed years fine-tuned on, from the first.
      finetune_lr: the fine-tuning's peak learning rate.
      anomalies: the model's units are scaled anomalies from the training months'
        calendar-month climatology (:mod:`tellus.ocean.anomaly_scaling`); False: ReconMOST's
        full temperature in [-5, 40] C -> [-1, 1].
      preset: the network (:data:`tellus.ocean.unet.PRESETS`), fitted to the store's grid.
      timesteps: T of the linear DDPM schedule.
      seed: initialization, shuffling and noise.
    """

    steps: int = 1000
    batch_size: int = 4
    learning_rate: float = 1e-3
    ema_decay: float = 0.995
    finetune_steps: int = 250
    finetune_years: int = 4
    finetune_lr: float = 2e-4
    anomalies: bool = True
    preset: str = "cpu"
    timesteps: int = 1000
    seed: int = 0

    def check(self) -> None:
        """Raises ValueError (naming the field) for a recipe that cannot run."""
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}"
            )
        if not self.learning_rate > 0 or not self.finetune_lr > 0:
            raise ValueError(
                f"learning rates must be > 0, got {self.learning_rate}, {self.finetune_lr}"
            )
        if self.finetune_steps < 0 or self.finetune_years < 1:
            raise ValueError(
                f"finetune_steps must be >= 0 and finetune_years >= 1, got "
                f"{self.finetune_steps}, {self.finetune_years}"
            )
        if self.preset not in unet.PRESETS:
            raise KeyError(f"unknown preset {self.preset!r}; known: {sorted(unet.PRESETS)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ema_decay**self.steps > MAX_EMA_INIT:
            raise ValueError(
                f"ema_decay {self.ema_decay} over {self.steps} steps leaves "
                f"{self.ema_decay**self.steps:.0%} of the initial weights in the average "
                f"(at most {MAX_EMA_INIT:.0%}); lower it or train longer"
            )


def train_config(recipe: Recipe, phase: str = PRETRAIN) -> config_lib.TrainConfig:
    """The ``fit`` config of a phase of ``recipe``: :func:`warmup_cosine` with the EMA on,
    three checkpoints of which the last one stays."""
    pre = phase == PRETRAIN
    tc = config_lib.warmup_cosine(
        recipe.steps if pre else recipe.finetune_steps,
        recipe.batch_size,
        recipe.learning_rate if pre else recipe.finetune_lr,
        checkpoints=3,
        keep_checkpoints=1,
        seed=recipe.seed,
    )
    return dataclasses.replace(
        tc, optimizer=dataclasses.replace(tc.optimizer, ema_decay=recipe.ema_decay)
    )


def envelope(source: recon_domain.Samples) -> trainer.Envelope:
    """What every checkpoint says about itself: the kind, its version and the task (the
    variable, its depths and the grid)."""
    depths, grid = [float(d) for d in source.depths], [int(n) for n in source.ocean.shape[:2]]
    task = {"variable": recon_domain.TEMPERATURE_VARIABLE, "depths": depths, "grid": grid}
    kind = recon_domain.KIND
    return trainer.Envelope(kind=kind.name, version=kind.version, task=task)


def _source(store, dates, recipe: Recipe, what: str) -> recon_domain.Samples:
    source = recon_domain.Samples(store, dates)
    source.name = what
    if len(source) < recipe.batch_size:
        raise ValueError(
            f"{store}: {len(source)} months, fewer than a batch of {recipe.batch_size}"
        )
    return source


def finetune_months(observed_store: str | os.PathLike, years: int) -> sources.DateRange:
    """The first ``years`` of an observed run as a date range.

    Raises:
      ValueError: the run is shorter than ``years``.
    """
    times = pd.DatetimeIndex(sources.open_metadata(str(observed_store)).indexes[schema.TIME])
    if len(times) < 12 * years:
        raise ValueError(
            f"{observed_store}: {len(times)} months, fewer than the {years} years to fine-tune on"
        )
    stop = times[12 * years] if len(times) > 12 * years else times[-1] + pd.offsets.MonthBegin(1)
    return sources.DateRange(times[0], stop)


def _from_ema(source: Path):
    """A model factory for ``fit``: the denoiser of ``cfg`` with the EMA weights of the
    newest checkpoint in ``source`` (uncommitted on the default device, as fresh parameters
    are, so that the phase compiles the same program as the one before)."""

    def build(cfg: dict[str, Any]) -> unet.UNetDenoiser:
        model = unet.make_denoiser(cfg)
        trained = nnx.to_pure_dict(nnx.state(load_denoiser(source), nnx.Param))
        nnx.update(model, nnx.State(jax.tree.map(lambda v: jnp.asarray(np.asarray(v)), trained)))
        return model

    return build


def train_recon(
    workdir: str | Path,
    model_store: str | os.PathLike,
    observed_store: str | os.PathLike | None = None,
    *,
    recipe: Recipe = Recipe(),
    config: unet.UNetConfig | None = None,
    dates: sources.DateRange | None = None,
    mesh: Any = None,
    rules: Any = None,
    show_progress: bool = True,
    on_step: Any = None,
) -> dict[str, Any]:
    """Pretrains the denoiser on the months of ``model_store``, then fine-tunes it on the
    first years of ``observed_store`` (or resumes either).

    Args:
      workdir: ``pretrain/``, ``finetune/`` and ``recon.json`` go here.
      model_store: the model run (:mod:`tellus.ocean.world`), or any store with a 3D
        ``sea_water_potential_temperature``.
      observed_store: the observed run; needed when ``recipe.finetune_steps`` > 0.
      recipe: steps, batch, learning rates, EMA, preset, schedule, seed.
      config: a network of the store's grid instead of the recipe's preset (tests).
      dates: the model run's months to pretrain on (default all).
      mesh, rules: the device mesh and the logical axis rules (default one device).
      on_step: ``fit``'s per-step callback ``(step, {"loss", "domain"})`` (both phases).

    Returns:
      ``{"histories": {"pretrain": [(step, loss)], "finetune": [...]}, "seconds": ...}``
      and everything ``recon.json`` holds.

    Raises:
      ValueError: the recipe cannot run, a store has no 3D temperature or fewer months
        than a batch (or the years to fine-tune on), the two grids differ, or the network
        does not fit them.
      KeyError: an unknown preset.
    """
    t0 = time.perf_counter()
    recipe.check()
    workdir = Path(workdir)
    pre = _source(model_store, dates, recipe, "model run")
    ft = ft_dates = None
    if recipe.finetune_steps:
        if observed_store is None:
            raise ValueError("fine-tuning (finetune_steps > 0) needs the observed run's store")
        ft_dates = finetune_months(observed_store, recipe.finetune_years)
        ft = _source(observed_store, ft_dates, recipe, "observed run")
        if ft.ocean.shape != pre.ocean.shape or not np.allclose(ft.depths, pre.depths):
            raise ValueError(
                f"the observed run's grid {ft.ocean.shape} is not the model run's "
                f"{pre.ocean.shape} (or its depths differ)"
            )
    cfg = config
    if cfg is None:
        cfg = recon_domain.make_config(
            pre, unet.PRESETS[recipe.preset], timesteps=recipe.timesteps, seed=recipe.seed
        )
    if (cfg.n_lat, cfg.n_lon, cfg.depths) != pre.ocean.shape:
        raise ValueError(
            f"the network is for a {cfg.n_lat} x {cfg.n_lon} grid of {cfg.depths} depths; "
            f"the store's is {pre.ocean.shape}"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    env = envelope(pre)

    def phase(name, factory, source, seed):
        steps = recipe.steps if name == PRETRAIN else recipe.finetune_steps
        if show_progress:
            print(
                f"{name}: the denoiser on {len(source)} {source.name} months, {steps} steps "
                f"of {recipe.batch_size}"
            )
        if recipe.anomalies:  # the phase's months' climatology, the pretraining's scale
            std = None if name == PRETRAIN else scales[PRETRAIN].std
            scaling = scales[name] = anomaly_scaling.AnomalyScaling.fit(source, std=std)
            (workdir / name).mkdir(parents=True, exist_ok=True)
            scaling.save(workdir / name / anomaly_scaling.FILE)
            source = anomaly_scaling.AnomalySamples(source, scaling)
        return trainer.fit(
            factory,
            cfg,
            train_config(recipe, name),
            trainer.TrainDomain(
                recon_domain.NAME,
                loss_lib.diffusion_loss,
                recon_domain.batches(source, recipe.batch_size, seed),
            ),
            workdir / name,
            envelope=env,
            mesh=mesh,
            rules=rules,
            show_progress=show_progress,
            on_step=on_step,
        )

    scales: dict[str, anomaly_scaling.AnomalyScaling] = {}
    histories = {PRETRAIN: phase(PRETRAIN, unet.make_denoiser, pre, recipe.seed)}
    if ft is not None:
        histories[FINETUNE] = phase(FINETUNE, _from_ema(workdir / PRETRAIN), ft, recipe.seed + 1000)
    info = {
        "recipe": dataclasses.asdict(recipe),
        "preset": recipe.preset if config is None else "custom",
        "parameters": unet.count_parameters(cfg),
        "model_store": str(model_store),
        "observed_store": None if observed_store is None else str(observed_store),
        "n_months": len(pre),
        "months": [str(pre.times[0])[:7], str(pre.times[-1])[:7]],
        "finetune_months": None
        if ft is None
        else [str(ft.times[0])[:7], str(ft.times[-1])[:7], len(ft)],
        "grid": list(pre.ocean.shape),
        "depths": [float(d) for d in pre.depths],
        "mesh": None if mesh is None else {str(a): int(n) for a, n in mesh.shape.items()},
    }
    (workdir / RUN_INFO).write_text(json.dumps(info, indent=1))
    info.update(histories=histories, seconds=time.perf_counter() - t0)
    return info


def read_info(workdir: str | Path) -> dict[str, Any]:
    """``recon.json`` of a finished training.

    Raises:
      FileNotFoundError: no finished training there.
    """
    path = Path(workdir) / RUN_INFO
    if not path.exists():
        raise FileNotFoundError(
            f"no trained ocean diffusion model in {str(workdir)!r} ({RUN_INFO} missing); "
            "run `tellus train ocean_recon` first"
        )
    return json.loads(path.read_text())


def find_phase(path: str | Path) -> Path:
    """The ``fit`` workdir to load at ``path``: ``path`` itself when it holds checkpoints,
    else its ``finetune/`` when that does, else its ``pretrain/``.

    Raises:
      FileNotFoundError: none holds checkpoints.
    """
    path = Path(path)
    for where in (path, path / FINETUNE, path / PRETRAIN):
        if (where / "checkpoints").is_dir():
            return where
    raise FileNotFoundError(
        f"no checkpoints in {str(path)!r} (nor in its {FINETUNE}/ or {PRETRAIN}/); "
        "run `tellus train ocean_recon` first"
    )


def load_denoiser(workdir: str | Path, *, ema: bool = True) -> unet.UNetDenoiser:
    """The denoiser of the newest checkpoint of a training (:func:`find_phase`: the last
    phase), with its EMA weights (``ema=False``: the raw weights; a checkpoint without an
    EMA gives its raw weights).

    Raises:
      FileNotFoundError: no complete checkpoint.
      CheckpointKindError: a checkpoint of another kind.
    """
    workdir = find_phase(workdir)
    ck = ckpt_lib.Checkpointer(workdir / "checkpoints", async_save=False)
    try:
        step = ck.latest_step()
        if step is None:
            raise FileNotFoundError(
                f"no complete checkpoint in {str(workdir)!r}; run `tellus train ocean_recon` first"
            )
        model, _, state, _ = ckpt_lib.rebuild(ck, step, recon_domain.KIND)
    finally:
        ck.close()
    if ema and state.ema is not None:
        nnx.update(model, nnx.State(state.ema))
    return model


def load_scaling(workdir: str | Path) -> anomaly_scaling.AnomalyScaling | None:
    """The units the last phase of a training was trained in (:func:`find_phase`): its
    anomaly scaling, or None for ReconMOST's [-5, 40] C.

    Raises:
      FileNotFoundError: no checkpoints.
    """
    return anomaly_scaling.AnomalyScaling.of(find_phase(workdir))


class Reconstructor:
    """The guided sampler of a denoiser, compiled once for ``batch`` months of ``samples``
    samples each.

    Args:
      model: the trained denoiser (:func:`load_denoiser`).
      ocean: bool ``[depth, lat, lon]``, True over the ocean (the store's layout).
      steps: reverse steps (DDIM on an evenly spaced subsequence of the schedule).
      samples: samples per month, each from its own noise.
      mode: ``"x0"`` (ReconMOST's) or ``"posterior"`` (through the denoiser).
      spread: ``(size, sigma)`` of the Gaussian spread of an x0-mode gradient, or None.
      method: ``"ddim"`` or ``"ddpm"``.
      eta: DDIM's stochasticity: 1 (the default) draws fresh noise at every step as DDPM
        does on the shorter chain; 0 is deterministic DDIM, whose samples carry the initial
        noise through every step and, with the ``cpu`` denoiser on the embedded ocean, came
        out with three times the data's standard deviation (1 gave the data's).
      batch: months per compiled call (a shorter last batch is padded with unobserved
        months, whose samples are dropped).
      scaling: the model's units (:func:`load_scaling`): anomalies from a calendar-month
        climatology, or None for ReconMOST's [-5, 40] C.

    Calling it (:meth:`__call__`) with observations of any number of months returns the
    samples in deg C, NaN over land. The guidance scale is an argument of the compiled
    program (no recompilation per scale), and may differ per sample slot, which is how a
    scale is chosen on validation months with one call for several scales.
    """

    def __init__(
        self,
        model: unet.UNetDenoiser,
        ocean: np.ndarray,
        *,
        steps: int = 50,
        samples: int = 4,
        mode: str = "x0",
        spread: tuple[int, float] | None = None,
        method: str = "ddim",
        eta: float = 1.0,
        batch: int = 12,
        scaling: anomaly_scaling.AnomalyScaling | None = None,
    ):
        cfg = model.config
        ocean = np.asarray(ocean, bool)
        if ocean.shape != (cfg.depths, cfg.n_lat, cfg.n_lon):
            raise ValueError(
                f"ocean must be [depth, lat, lon] = {(cfg.depths, cfg.n_lat, cfg.n_lon)}; "
                f"got {ocean.shape}"
            )
        if mode not in diffusion.MODES:
            raise ValueError(f"mode must be one of {diffusion.MODES}, got {mode!r}")
        diffusion.timesteps(cfg.timesteps, steps)  # checks steps
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if int(samples) != samples or samples < 1 or int(batch) != batch or batch < 1:
            raise ValueError(f"samples and batch must be ints >= 1, got {samples}, {batch}")
        self.ocean = ocean
        self.samples, self.batch, self.steps = int(samples), int(batch), int(steps)
        self.mode, self.spread, self.method, self.eta = mode, spread, method, float(eta)
        self.scaling = scaling
        sched = diffusion.linear_schedule(cfg.timesteps)
        shape = (self.batch, cfg.n_lat, cfg.n_lon, cfg.depths)
        ocean_b = jnp.asarray(np.moveaxis(ocean, 0, -1)[None])  # [1, H, W, D]
        graphdef, state = nnx.split(model)
        n = self.samples * self.batch

        def run(state, y, mask, scale, key):
            m = nnx.merge(graphdef, state)
            per_slot = jnp.broadcast_to(
                scale.reshape(-1, 1, 1, 1, 1), (self.samples, self.batch, 1, 1, 1)
            )
            g = diffusion.Guidance(y, mask, per_slot.reshape(n, 1, 1, 1), mode, spread)
            return diffusion.sample(
                unet.denoise_fn(m, ocean_b),
                shape,
                key,
                ocean_b,
                schedule=sched,
                steps=self.steps,
                method=method,
                guidance=g,
                samples=self.samples,
                eta=self.eta,
                clip_x0=True if scaling is None else scaling.clip,
            )

        self._state = state
        self._run = jax.jit(run)

    def __call__(
        self,
        values: np.ndarray,
        mask: np.ndarray,
        scale: float | Sequence[float],
        *,
        seed: int = 0,
        months: Sequence[int] | np.ndarray | None = None,
        progress: Any = None,
    ) -> np.ndarray:
        """Samples of every month of the observations.

        Args:
          values: observed temperature (deg C) ``[time, depth, lat, lon]``, anything where
            not observed (``GriddedObservations.values``).
          mask: bool, same shape, True at observed points.
          scale: the guidance scale, or one per sample slot (``samples`` of them).
          seed: the noise of month ``i`` of batch ``b`` is drawn from ``fold_in(key(seed),
            b)``: the same seed and batching give the same samples.
          months: the calendar month (1-12) of each time; needed with an anomaly scaling.
          progress: a :class:`tellus.data.progress.Progress` advanced by one per batch.

        Returns:
          float32 ``[samples, time, depth, lat, lon]`` in deg C, NaN over land.
        """
        values, mask = np.asarray(values), np.asarray(mask, bool)
        want = (self.ocean.shape[0], *self.ocean.shape[1:])
        if values.ndim != 4 or values.shape[1:] != want or mask.shape != values.shape:
            raise ValueError(
                f"observations must be [time, {', '.join(map(str, want))}] values and mask; "
                f"got {values.shape} and {mask.shape}"
            )
        scales = np.broadcast_to(np.asarray(scale, np.float32), (self.samples,)).copy()
        mask = mask & self.ocean[None]
        observed = np.where(mask, values, np.nan)
        if self.scaling is not None:
            if months is None or len(months) != values.shape[0]:
                raise ValueError("an anomaly scaling needs the calendar month of every time")
            months = np.asarray(months)
            y = self.scaling.encode(observed, months)
        else:
            y = np.asarray(diffusion.to_unit(observed, mask))
        n_time = values.shape[0]
        out = np.empty((self.samples, n_time, *self.ocean.shape), np.float32)
        for b, start in enumerate(range(0, n_time, self.batch)):
            stop = min(start + self.batch, n_time)
            yb = np.zeros((self.batch, *self.ocean.shape), np.float32)
            mb = np.zeros((self.batch, *self.ocean.shape), bool)
            yb[: stop - start], mb[: stop - start] = y[start:stop], mask[start:stop]
            x = self._run(
                self._state,
                jnp.asarray(np.moveaxis(yb, 1, -1)),
                jnp.asarray(np.moveaxis(mb, 1, -1)),
                jnp.asarray(scales),
                jax.random.fold_in(jax.random.key(seed), b),
            )
            x = np.moveaxis(np.asarray(x), -1, 2)[:, : stop - start]  # [S, t, D, H, W]
            if self.scaling is not None:
                t = self.scaling.decode(x, months[start:stop])
                out[:, start:stop] = np.where(self.ocean[None, None], t, np.nan)
            else:
                out[:, start:stop] = np.asarray(diffusion.from_unit(x, self.ocean[None, None]))
            if progress is not None:
                progress.advance()
        return out


def reconstruct(
    model: unet.UNetDenoiser,
    observations: Any,
    ocean: np.ndarray,
    *,
    steps: int = 50,
    samples: int = 4,
    scale: float = 4.0,
    mode: str = "x0",
    spread: tuple[int, float] | None = None,
    seed: int = 0,
    method: str = "ddim",
    eta: float = 1.0,
    batch: int | None = None,
    scaling: anomaly_scaling.AnomalyScaling | None = None,
) -> np.ndarray:
    """Reconstructions of every month of ``observations`` (see :class:`Reconstructor`).

    Args:
      model: the trained denoiser.
      observations: gridded observations with ``values`` and ``mask`` ``[time, depth, lat,
        lon]`` and ``coords["time"]`` (:class:`tellus.data.profile_grid.GriddedObservations`).
      ocean: bool ``[depth, lat, lon]``.
      steps, samples, scale, mode, spread, seed, method, eta: as for :class:`Reconstructor`.
      batch: months per compiled call (default all of them).
      scaling: the model's units (:func:`load_scaling`), or None for [-5, 40] C.

    Returns:
      float32 ``[samples, time, depth, lat, lon]`` in deg C, NaN over land.
    """
    values, mask = np.asarray(observations.values), np.asarray(observations.mask)
    run = Reconstructor(
        model,
        ocean,
        steps=steps,
        samples=samples,
        mode=mode,
        spread=spread,
        method=method,
        eta=eta,
        batch=batch or values.shape[0],
        scaling=scaling,
    )
    months = pd.DatetimeIndex(np.asarray(observations.coords["time"])).month.to_numpy()
    return run(values, mask, scale, seed=seed, months=months)


__all__ = [
    "FINETUNE",
    "MAX_EMA_INIT",
    "PRETRAIN",
    "RUN_INFO",
    "Recipe",
    "Reconstructor",
    "envelope",
    "find_phase",
    "finetune_months",
    "load_denoiser",
    "load_scaling",
    "read_info",
    "reconstruct",
    "train_config",
    "train_recon",
]
