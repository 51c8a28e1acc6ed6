"""``tellus demo`` (``just demo``): the foundation-model story, from a fresh clone.

One command, five phases, each timed, every one cached or resumable so that a second run
reuses what the first made:

1. **data**: the embedded worlds that are missing: the Held-Suarez atmosphere, the ENSO
   model and observed worlds, the veros ocean (the default one where it is built, else the
   shorter ``demo`` preset in ``$TELLUS_DATA/ocean-demo``) and an independent draw of the
   observed ENSO world to test on;
2. **pretrain**: the tiny Earth model on the three domains at once (the atmosphere a day
   ahead, the ocean's model run and the ENSO model world a month ahead), one trunk;
3. **finetune**: Nino3.4 at leads 1-24 months, a task the pretraining never had, from the
   observed world's first ``share`` of its training century: the pretrained model fine-tuned
   (everything, and heads only) and the same model from scratch, with equal steps;
4. **evaluate**: every model and the ENSO package's baselines (persistence, damped
   persistence, a linear inverse model, fitted on the same training years) on the
   independent draw, against the optimum of the world, with a block-bootstrap interval of
   the fine-tune against from scratch; skill against fine-tuning steps on held-out observed
   years;
5. **report**: ``runs/demo/report``: ``summary.json``, ``scorecard.md`` and plots (the
   scorecard, skill by lead and by season, the fine-tuning curve, the pretraining losses and
   maps of the pretrained model's forecasts in each domain).

The per-domain stories are ``tellus demo atmosphere|enso|ocean``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from tellus.pipelines import checks, fm_study, fm_tasks, paths

PHASES = ("data", "pretrain", "finetune", "evaluate", "report")
# The observed ENSO years the fine-tuning curve is scored on: after the training century
# (1850-1949) and a gap longer than the longest lead.
VALIDATION_START = "1952-01-01"
# The maps: one held-out state per domain, its variable and level.
MAP_STARTS = {"atmosphere": "2000-10-28", "ocean": None, "enso": "1990-12-01"}
MAP_FIELDS = {
    "atmosphere": ("temperature", 850.0),
    "ocean": ("sea_water_potential_temperature", fm_tasks.OCEAN_LEVELS[0]),
    "enso": ("sea_surface_temperature_anomaly", None),
}
SYSTEM = "finetuned_full"


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The demo's sizes (the defaults are the CPU story; tests use smaller ones).

    Attributes:
      pretrain_steps, finetune_steps, batch: the pretraining and every ENSO run (fine-tunes
        and from scratch alike).
      share: the share of the observed training century the ENSO runs see.
      modes: fine-tuning modes (``full`` is the one set against from scratch).
      test_years: years of the independent observed-world draw the models are scored on.
      curve_every: steps between the checkpoints scored for the fine-tuning curve.
      atmosphere_preset, ocean_preset: presets built where no store exists.
      enso_model_years, enso_observed_years: the ENSO worlds built where none exist.
      boot: bootstrap resamples.
    """

    pretrain_steps: int = 1500
    finetune_steps: int = 300
    batch: int = 4
    share: float = 0.1
    modes: tuple[str, ...] = ("full", "heads")
    test_years: int = 300
    curve_every: int = 50
    atmosphere_preset: str = "default"
    ocean_preset: str = "demo"
    enso_model_years: int = 1200
    enso_observed_years: int = 150
    boot: int = 1000


class Phases:
    """Times each phase and prints its banner; :attr:`seconds` by phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, what: str) -> Iterator[None]:
        k = PHASES.index(name) + 1
        typer.secho(f"== {k}/{len(PHASES)} {name}: {what}", bold=True)
        t0 = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t0
        typer.echo(f"   {name} done in {_minutes(self.seconds[name])}")


def _minutes(s: float) -> str:
    return f"{int(s // 60)} min {s % 60:02.0f} s"


# --- 1. data -------------------------------------------------------------------------------


def ocean_folder(preset: str) -> tuple[Path, str]:
    """The default ocean where it is built, else the folder of ``preset``; and its preset."""
    from tellus.data import writing

    default = paths.default_folder("ocean")
    if preset == "default" or all(
        (p := default / f"{run}.zarr").exists() and writing.is_complete(p)
        for run in ("model", "observed")
    ):
        return default, "default"
    return paths.default_folder(f"ocean-{preset}"), preset


def build_data(cfg: DemoConfig, data: Path) -> dict[str, str]:
    """Builds what is missing; the stores, named as :func:`fm_tasks.study_stores` names them."""
    from tellus.data import writing
    from tellus.enso import skill, world
    from tellus.pipelines import data_cli, enso_cli

    atmosphere = data / "atmosphere.zarr"
    typer.echo("-- the Held-Suarez atmosphere")
    data_cli.build_atmosphere(atmosphere, cfg.atmosphere_preset)
    typer.echo("-- the ENSO worlds")
    enso_cli.build_worlds(data / "enso", cfg.enso_model_years, cfg.enso_observed_years)
    ocean, preset = ocean_folder(cfg.ocean_preset)
    typer.echo(f"-- the veros ocean ({preset} preset, in {ocean})")
    data_cli.build_ocean(ocean, preset)
    test = data / "enso" / f"observed_draw_{cfg.test_years}y.zarr"
    typer.echo(f"-- {cfg.test_years} independent years of the observed ENSO world")
    if not (test.exists() and writing.is_complete(test)):  # a killed build resumes
        world.build_world("observed", cfg.test_years, seed=skill.LONG_TEST_SEED, path=test)
    return {
        "atmosphere": str(atmosphere),
        "ocean_model": str(ocean / "model.zarr"),
        "ocean_observed": str(ocean / "observed.zarr"),
        "enso_model": str(data / "enso" / "model.zarr"),
        "enso_observed": str(data / "enso" / "observed.zarr"),
        "enso_long": str(test),
    }


# --- 2-3. training -------------------------------------------------------------------------


def pretrain(cfg: DemoConfig, stores: dict[str, str], root: Path) -> Path:
    """The tiny Earth model on the three domains (resumes after a kill)."""
    from tellus.kernels import earth_model as em
    from tellus.training import pretraining as pt

    work = root / "pretrain"
    lr = fm_study.StudyConfig.pretrain_lr
    pt.pretrain(
        em.preset("tiny"),
        fm_tasks.pretraining_data(stores),
        work,
        fm_study.schedule(cfg.pretrain_steps, cfg.batch, lr),
    )
    return work


def enso_runs(cfg: DemoConfig, stores: dict[str, str], root: Path, pre: Path) -> dict[str, Path]:
    """Nino3.4 by lead: fine-tuned from ``pre`` in each mode, and from scratch with equal
    steps (each resumes after a kill); ``{system name: workdir}``."""
    from tellus.kernels import earth_model as em
    from tellus.training import finetuning as ft
    from tellus.training import pretraining as pt

    study = fm_study.StudyConfig()
    data = fm_tasks.task_data("enso", stores, cfg.share)
    every = max(cfg.curve_every, 1)
    runs = {}
    for mode in cfg.modes:
        work = root / f"finetune-{mode}"
        typer.echo(f"-- fine-tuning ({mode}) on {data.start} to {data.stop}")
        ft.finetune(
            pre,
            data,
            work,
            fm_study.schedule(cfg.finetune_steps, cfg.batch, study.finetune_lr, every=every),
            mode=mode,
            lora_rank=study.lora_rank,
            new_lr_scale=study.new_lr_scale,
            keep_checkpoints=True,  # the fine-tuning curve scores them
        )
        runs[f"finetuned_{mode}"] = work
    typer.echo(f"-- the same model from scratch, {cfg.finetune_steps} steps")
    base = em.EarthModelConfig.from_dict(pt.saved_config(pre)["model"])
    work = root / "scratch"
    pt.pretrain(
        base,
        [data],
        work,
        fm_study.schedule(cfg.finetune_steps, cfg.batch, study.scratch_lr, every=every),
    )
    runs["scratch"] = work
    return runs


def _load(name: str, work: Path, step: int | None = None):
    from tellus.training import finetuning as ft
    from tellus.training import pretraining as pt

    if step is None and name != "scratch":
        return ft.load(work)  # the adapters on their base where the base was frozen
    return pt.load(work, step)


# --- 4. evaluation -------------------------------------------------------------------------


class IndexWindows:
    """The windows of an index task's store, read once and kept in memory (every model and
    checkpoint is scored on the same batches): raw ``batches``, ``truth`` [N, leads] (K),
    the start ``times``."""

    def __init__(self, data, norms: dict[str, Any], batch: int = 64):
        from tellus.training import pretraining as pt

        self.data = data
        task = fm_tasks.open_task(data, norms)
        self.n = len(task.source)
        idx = np.arange(self.n)
        self.batches = list(fm_tasks.window_batches(task, idx, batch, (pt.INPUTS, pt.DERIVED)))
        self.truth = np.concatenate([np.asarray(b[pt.DERIVED])[..., 0] for b in self.batches])
        self.truth = self.truth[: self.n].astype(np.float64)
        self.times = pd.DatetimeIndex(task.source.init_times)

    def forecast(self, model, norms: dict[str, Any]) -> np.ndarray:
        """``model``'s index forecasts [N, leads] (K), read with the run's own normalization."""
        task = fm_tasks.open_task(self.data, norms)
        out = fm_tasks.predict_task(model, task, self.batches)
        fc = np.concatenate([p[self.data.name] for p, _ in out])[: self.n]
        return fc.astype(np.float64) * task.index_std


def _mean_correlation(fc: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([np.corrcoef(fc[:, k], truth[:, k])[0, 1] for k in range(fc.shape[1])]))


def _cached(path: Path, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    out = make()
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)  # whole or absent
    return out


def curves(
    cfg: DemoConfig, stores: dict[str, str], runs: dict[str, Path]
) -> dict[str, list[tuple[int, float]]]:
    """Mean Nino3.4 correlation (leads 1-24) on the observed years after the training
    century, at every kept checkpoint of every run (cached beside each run)."""
    from tellus.data.progress import Progress
    from tellus.training import checkpoint as ckpt_lib

    data = dataclasses.replace(
        fm_tasks.task_data("enso", stores), start=VALIDATION_START, stop=None
    )
    steps = {}
    for name, work in runs.items():
        ck = ckpt_lib.Checkpointer(work / "checkpoints", async_save=False)
        try:
            steps[name] = ck.all_steps()
        finally:
            ck.close()
    windows = None
    out: dict[str, list[tuple[int, float]]] = {}
    done = 0
    total = sum(len(v) for v in steps.values())
    with Progress("fine-tuning curve", total, unit="checkpoint") as progress:
        for name, work in runs.items():
            out[name] = []
            for step in steps[name]:

                def score(name=name, work=work, step=step):
                    nonlocal windows
                    model, saved = _load(name, work, step)
                    norms = saved["norms"]["enso"]
                    if windows is None:
                        windows = IndexWindows(data, norms)
                    fc = windows.forecast(model, norms)
                    return {"correlation": np.asarray(_mean_correlation(fc, windows.truth))}

                got = _cached(work / f"demo-validation-step{step}.npz", score)
                out[name].append((int(step), float(got["correlation"])))
                done += 1
                progress.update(done)
    return out


def baselines(
    stores: dict[str, str], train_stop: str, times: pd.DatetimeIndex
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The ENSO package's baselines at the test starts ``times``, fitted on the observed
    world's months up to ``train_stop``: ``(forecasts, truth, calendar month, kept)``, with
    ``kept`` the starts the baselines can be made at (a 3-month history before them)."""
    from tellus.data import schema, validation
    from tellus.enso import skill, train

    task = train.task_for()
    obs_ds = validation.open_dataset(stores["enso_observed"])
    obs = train.to_series(obs_ds, task=task)
    last = int(obs_ds.indexes[schema.TIME].get_indexer([pd.Timestamp(train_stop)])[0])
    fit = train.inits_between(obs, 0, last)
    test_ds = validation.open_dataset(stores["enso_long"])
    test = train.to_series(test_ds, task=task)
    can = set(train.inits_between(test, 0, test.n_time - 1)[:, 1].tolist())
    t = test_ds.indexes[schema.TIME].get_indexer(times)
    kept = np.array([i in can for i in t])
    inits = np.stack([np.zeros(kept.sum(), int), t[kept]], 1)
    fc = skill.baseline_forecasts(obs, fit, test, inits)
    truth = train.gather(test, inits)["y"].astype(np.float64)
    return fc, truth, test.months[inits[:, 1]], kept


def evaluate(
    cfg: DemoConfig, stores: dict[str, str], runs: dict[str, Path]
) -> tuple[dict[str, Any], Any]:
    """Every run and baseline on the independent draw: ``(summary, scores)``."""
    from tellus.enso import skill
    from tellus.evaluation import bootstrap

    data = dataclasses.replace(
        fm_tasks.task_data("enso", stores), store=stores["enso_long"], start=None, stop=None
    )
    windows = None
    forecasts = {}
    for name, work in runs.items():

        def predict(name=name, work=work):
            nonlocal windows
            model, saved = _load(name, work)
            norms = saved["norms"]["enso"]
            if windows is None:
                typer.echo(f"-- reading the {cfg.test_years} test years")
                windows = IndexWindows(data, norms)
            typer.echo(f"-- forecasts of {name}")
            return {
                "forecast": windows.forecast(model, norms),
                "truth": windows.truth,
                "times": windows.times.asi8,
            }

        got = _cached(work / f"demo-test-{cfg.test_years}y.npz", predict)
        forecasts[name] = got["forecast"]
        truth, times = got["truth"], pd.DatetimeIndex(got["times"])
    train_stop = fm_tasks.task_data("enso", stores, cfg.share).stop
    fc, base_truth, months, kept = baselines(stores, train_stop, times)
    truth = truth[kept]
    if not np.allclose(truth, base_truth, atol=1e-4):  # one target, two code paths
        raise RuntimeError(
            "the Earth task's Nino3.4 target and the ENSO package's differ on the test draw "
            f"(largest difference {np.abs(truth - base_truth).max():.2e} K)"
        )
    fc.update({k: v[kept] for k, v in forecasts.items()})
    years = times[kept].year.to_numpy()
    summary, sc = skill.compare(fc, truth, months, years, system=SYSTEM)
    iv = bootstrap.correlation_difference(fc[SYSTEM], fc["scratch"], truth, years, n_boot=cfg.boot)
    summary["mean_correlation"] = {k: round(_mean_correlation(v, truth), 4) for k, v in fc.items()}
    summary["finetuned_minus_scratch"] = {
        "mean_correlation_diff": round(float(iv.mean_diff), 4),
        "interval_90pct": [round(float(iv.mean_low), 4), round(float(iv.mean_high), 4)],
        "better_beyond_interval": bool(iv.mean_low > 0),
        "diff_by_lead": [round(float(d), 4) for d in np.ravel(iv.diff)],
    }
    summary["test_years"] = cfg.test_years
    return summary, sc


def domain_maps(pre: Path, stores: dict[str, str]) -> list[dict[str, Any]]:
    """The pretrained model's forecast of one held-out state per domain (the atmosphere's
    test period, the observed ocean run, the observed ENSO world), with persistence: each
    ``{"task", "variable", "level", "lead", "latitude", "longitude", "now", "truth",
    "forecast", "rmse", "rmse_persistence"}`` in physical units, NaN where invalid."""
    from tellus.data import grid as data_grid
    from tellus.training import pretraining as pt

    model, saved = pt.load(pre)
    observed = {"ocean": stores["ocean_observed"], "enso": stores["enso_observed"]}
    out = []
    for data in fm_tasks.pretraining_data(stores):
        d = dataclasses.replace(
            data,
            store=observed.get(data.name, data.store),
            start=MAP_STARTS[data.name],
            stop=None,
        )
        (task,) = pt.open_tasks([d], {d.name: saved["norms"][data.name]})
        batch = next(fm_tasks.window_batches(task, np.array([0]), 1, (pt.INPUTS, pt.TARGETS)))
        ((pred, target),) = fm_tasks.predict_task(model, task, [batch])
        now = {k: np.asarray(v) for k, v in task.fields(batch[pt.INPUTS][:, -1]).items()}
        var, level = MAP_FIELDS[data.name]
        sl = task.layout.slices()[var]
        li = task.levels[var].values.index(level) if level is not None else None
        ch = sl.start + (li or 0)
        valid = task.valid[var] if li is None else task.valid[var][li]

        def phys(a, var=var, li=li, ch=ch, valid=valid, task=task):
            a = a[var][0] if li is None else a[var][0, li]
            return np.where(valid, a * task.std[ch] + task.mean[ch], np.nan)

        fields = {"now": phys(now), "truth": phys(target), "forecast": phys(pred)}
        w = data_grid.latitude_weights(np.asarray(task.grid.latitude))[:, None] * valid

        def rmse(a, b, w=w):
            return float(np.sqrt(np.nansum(w * (a - b) ** 2) / w.sum()))

        out.append(
            {
                "task": data.name,
                "store": d.store,
                "time": str(task.source.init_times[0]),
                "variable": var,
                "level": level,
                "level_units": None if li is None else task.levels[var].units,
                "lead_hours": task.lead_hours,
                "latitude": np.asarray(task.grid.latitude),
                "longitude": np.asarray(task.grid.longitude),
                **fields,
                "rmse": rmse(fields["forecast"], fields["truth"]),
                "rmse_persistence": rmse(fields["now"], fields["truth"]),
            }
        )
    return out


# --- the whole story -----------------------------------------------------------------------


def run(cfg: DemoConfig, root: Path, data: Path) -> dict[str, Any]:
    """The five phases (module docstring); writes ``root/report`` and returns the summary."""
    from tellus.enso import skill
    from tellus.pipelines import demo_report
    from tellus.training import pretraining as pt

    t0 = time.perf_counter()
    phase = Phases()
    root.mkdir(parents=True, exist_ok=True)
    with phase("data", "the embedded worlds that are missing (cached; a killed build resumes)"):
        stores = build_data(cfg, data)
    with phase("pretrain", f"the Earth model on three domains, {cfg.pretrain_steps} steps"):
        pre = pretrain(cfg, stores, root)
    with phase("finetune", f"Nino3.4 at 1-24 months from {round(100 * cfg.share)} % of a century"):
        runs = enso_runs(cfg, stores, root, pre)
    with phase("evaluate", f"against the baselines on {cfg.test_years} independent years"):
        enso, sc = evaluate(cfg, stores, runs)
        curve = curves(cfg, stores, runs)
        maps = domain_maps(pre, stores)
    with phase("report", "scorecard, skill curves, maps, the fine-tuning curve"):
        report = root / "report"
        report.mkdir(parents=True, exist_ok=True)
        (report / "scorecard.md").write_text(demo_report.scorecard_markdown(enso))
        demo_report.plot_scorecard(enso, report / "scorecard.png")
        skill.plot_skill_by_lead(sc, report / "skill_by_lead.png", title="the demo's ENSO task")
        skill.plot_skill_by_season(sc, SYSTEM, report / "skill_by_season.png")
        losses = {name: pt.read_losses(work).get("enso", []) for name, work in runs.items()}
        demo_report.plot_finetuning_curve(losses, curve, report / "finetuning_curve.png")
        pre_losses = pt.read_losses(pre)
        demo_report.plot_pretraining_losses(pre_losses, report / "pretraining_losses.png")
        demo_report.plot_maps(maps, report / "maps.png")
        sc.to_netcdf(report / "scores.nc")
    summary = {
        "config": dataclasses.asdict(cfg),
        "stores": stores,
        "runs": {k: str(v) for k, v in runs.items()},
        "pretraining": {
            "workdir": str(pre),
            "last_100_steps_mean_loss": {
                k: float(np.mean([v for _, v in pts[-100:]])) for k, pts in pre_losses.items()
            },
        },
        "enso": enso,
        "finetuning_curve": curve,
        "maps": [{k: v for k, v in m.items() if not isinstance(v, np.ndarray)} for m in maps],
        "phase_seconds": phase.seconds,
        "seconds": time.perf_counter() - t0,
    }
    (report / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    demo_report.print_summary(summary, report)
    return summary


def demo(
    out: Annotated[
        Path,
        typer.Option(help="Where the runs and the report go.", callback=checks.writable_dir_option),
    ] = Path("runs/demo"),
    pretrain_steps: Annotated[
        int, typer.Option(min=1, help="Steps of the three-domain pretraining.")
    ] = DemoConfig.pretrain_steps,
    finetune_steps: Annotated[
        int, typer.Option(min=1, help="Steps of each fine-tune and of the from-scratch run.")
    ] = DemoConfig.finetune_steps,
    share: Annotated[
        float,
        typer.Option(
            min=0.01, max=1.0, help="Share of the observed training century the ENSO runs see."
        ),
    ] = DemoConfig.share,
    test_years: Annotated[
        int,
        typer.Option(min=30, max=400, help="Years of the independent ENSO draw scored on."),
    ] = DemoConfig.test_years,
) -> None:
    """The foundation-model story: build the missing embedded data, pretrain one Earth model
    on the atmosphere, the ocean and ENSO, fine-tune it to Nino3.4 at 1-24 months, score it
    against the baselines and the same model from scratch, and write runs/demo/report
    (every phase resumes; a second run reuses what the first made)."""
    cfg = DemoConfig(
        pretrain_steps=pretrain_steps,
        finetune_steps=finetune_steps,
        share=share,
        test_years=test_years,
    )
    run(cfg, out, paths.data_dir())
