"""The foundation-model study: does one trunk pretrained on three Earth domains help tasks
it never saw, against the same model trained from scratch with equal steps?

``tellus study fm`` (``just fm-study``) runs it on the embedded worlds, resumably (every run
is a workdir that resumes; every score is cached as JSON beside it):

1. **Pretraining.** The tiny Earth model on the atmosphere world (6-hourly, a day ahead),
   the veros ocean's model run and the ENSO model world (a month ahead), interleaved
   (``all``); and the controls, the same model pretrained on one of those domains alone.
2. **Three tasks the pretraining never saw as such**, each at 10, 30 and 100 % of its
   fine-tuning data (the first share of its training period):

   * ``enso``: Nino3.4 at leads 1-24 months from the observed ENSO world's SST and heat
     content (an index head, a task the pretraining never had), scored by correlation on a
     1200-year independent draw of the observed world;
   * ``ocean``: the observed ocean run a month ahead, rolled out to 12 months from every
     start of its test years (2005-2006), scored by RMSE in normalized units;
   * ``atmosphere_coarse``: the atmosphere world coarsened to 16 x 32, a grid the
     pretraining never had, 24 h ahead, scored by RMSE on the test period (from 2000-10-28).

   Each is fine-tuned from ``all`` (heads only, low-rank adapters, everything; for the
   ocean and the coarse atmosphere at 10 and 100 % only), trained from scratch with the same
   steps, and fine-tuned (everything) from its own domain's control.
3. **Scores.** Every difference to the from-scratch model comes with a 90 % block-bootstrap
   interval (:mod:`tellus.evaluation.bootstrap`: blocks of a year of ENSO starts, a season
   of ocean starts, a day of atmosphere starts). ENSO's skill is also taken at every
   checkpoint of the 10 % runs: skill against fine-tuning steps.

Everything lands in ``runs/fm_study``: ``results.json``, ``results.md`` (the tables of
``docs/results.md``) and the plots.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from tellus.pipelines import paths
from tellus.pipelines.fm_tasks import (
    ATMOSPHERE_TEST_START,
    ATMOSPHERE_TRAIN_END,
    ENSO_LEADS,
    OCEAN_LEADS,
    OCEAN_TEST_INITS,
    enso_forecasts,
    field_errors,
    prepare_stores,
    pretraining_data,
    study_stores,
    task_data,
)

SHARES = (0.1, 0.3, 1.0)
# The ocean's 10 % is 5 months (3 windows): batches of 2, as its own CPU recipe.
TASK_BATCH = {"ocean": 2}
MODES = ("heads", "lora", "full")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The study's sizes (the defaults are the CPU recipe; tests use smaller ones).

    Attributes:
      pretrain_steps, finetune_steps: optimizer steps of each pretraining and each
        fine-tune or from-scratch run (equal for all of a task's runs).
      batch: global batch of every run.
      pretrain_lr, finetune_lr, scratch_lr: peak learning rates (the fine-tunes' new
        parameters and adapters at ``new_lr_scale`` times theirs).
      lora_rank: the adapters' rank.
      long_test_years: years of the independent ENSO draw.
      curve_points: checkpoints of the 10 % ENSO runs scored for the curves.
      boot: bootstrap resamples.
    """

    pretrain_steps: int = 1500
    finetune_steps: int = 300
    batch: int = 4
    pretrain_lr: float = 1e-3
    finetune_lr: float = 3e-4
    scratch_lr: float = 1e-3
    new_lr_scale: float = 1e-3 / 3e-4
    lora_rank: int = 4
    long_test_years: int = 1200
    curve_points: int = 6
    boot: int = 1000


Scorer = Callable[..., dict[str, Any]]


# --- runs ------------------------------------------------------------------------------------

CONTROL = {"enso": "enso", "ocean": "ocean", "atmosphere_coarse": "atmosphere"}


def schedule(steps: int, batch: int, lr: float, *, every: int | None = None):
    from tellus.training import config as train_config

    extra = {"checkpoint_every": every, "keep_checkpoints": 100} if every else {}
    return train_config.warmup_cosine(steps, batch, lr, **extra)


def _pct(share: float) -> str:
    return f"{round(100 * share)}pct"


def pretrainings(root: Path, stores: dict[str, str], cfg: StudyConfig) -> dict[str, Path]:
    """The three-domain pretraining and the one-domain controls (resumable)."""
    from tellus.kernels import earth_model as em
    from tellus.training import pretraining as pt

    out = {}
    for name, only in (
        ("all", None),
        ("atmosphere", "atmosphere"),
        ("ocean", "ocean"),
        ("enso", "enso"),
    ):
        work = root / "pretrain" / name
        t0 = time.perf_counter()
        res = pt.pretrain(
            em.preset("tiny"),
            pretraining_data(stores, only),
            work,
            schedule(cfg.pretrain_steps, cfg.batch, cfg.pretrain_lr),
        )
        if res["history"]:
            typer.echo(
                f"pretraining {name}: {len(res['history'])} steps in {time.perf_counter() - t0:.0f} s"
            )
        out[name] = work
    return out


def task_runs(task: str, root: Path, pre: dict[str, Path], stores, cfg: StudyConfig) -> list[dict]:
    """Every run of one task: fine-tunes from ``all`` in each mode, from scratch, and from
    its domain's control, at each share (resumable)."""
    from tellus.kernels import earth_model as em
    from tellus.training import finetuning as ft
    from tellus.training import pretraining as pt

    base = em.EarthModelConfig.from_dict(pt.saved_config(pre["all"])["model"])
    shares = SHARES if task == "enso" else (SHARES[0], SHARES[-1])
    every = max(cfg.finetune_steps // cfg.curve_points, 1) if task == "enso" else None
    runs = []
    for share in shares:
        data = task_data(task, stores, share)
        batch = TASK_BATCH.get(task, cfg.batch)
        tune = schedule(cfg.finetune_steps, batch, cfg.finetune_lr, every=every)
        for mode in MODES:
            work = root / task / f"{mode}-{_pct(share)}"
            ft.finetune(
                pre["all"],
                data,
                work,
                tune,
                mode=mode,
                lora_rank=cfg.lora_rank,
                new_lr_scale=cfg.new_lr_scale,
                keep_checkpoints=True,
            )
            runs.append({"task": task, "share": share, "run": mode, "dir": str(work)})
        work = root / task / f"scratch-{_pct(share)}"
        pt.pretrain(
            base, [data], work, schedule(cfg.finetune_steps, batch, cfg.scratch_lr, every=every)
        )
        runs.append({"task": task, "share": share, "run": "scratch", "dir": str(work)})
        if share in (SHARES[0], SHARES[-1]):
            work = root / task / f"control-{_pct(share)}"
            ft.finetune(
                pre[CONTROL[task]],
                data,
                work,
                tune,
                mode="full",
                new_lr_scale=cfg.new_lr_scale,
                keep_checkpoints=True,
            )
            runs.append({"task": task, "share": share, "run": "control", "dir": str(work)})
    return runs


def score(
    run: dict, stores, cfg: StudyConfig, step: int | None = None, years: int | None = None
) -> dict:
    """A run's per-start scores (cached in its folder): ENSO forecasts and truth, or the
    fields' squared errors per lead."""
    from tellus.training import finetuning as ft
    from tellus.training import pretraining as pt

    # Named by what made it: a longer study rescores.
    tag = (
        f"scores-{cfg.pretrain_steps}-{cfg.finetune_steps}"
        f"{'' if step is None else f'-step{step}'}{'' if years is None else f'-{years}y'}.npz"
    )
    cache = Path(run["dir"]) / tag
    if cache.exists():
        with np.load(cache) as f:
            return {k: f[k] for k in f.files}
    task = run["task"]
    if run["run"] == "persistence":
        model, norms = None, scoring_norms(task, stores)
    else:
        model, saved = pt.load(run["dir"], step) if step is not None else ft.load(run["dir"])
        norms = saved["norms"][task]
    if task == "enso":
        fc, truth, years_ = enso_forecasts(model, norms, stores, years)
        out = {"forecast": fc, "truth": truth, "blocks": years_}
    else:
        data = task_data(task, stores)
        if task == "ocean":
            _, channels, starts = field_errors(model, norms, data, OCEAN_TEST_INITS, OCEAN_LEADS)
            blocks = starts.year * 4 + (starts.month - 1) // 3  # seasons
        else:
            end = str(pd.Timestamp(ATMOSPHERE_TRAIN_END).year + 1) + "-01-01"
            _, channels, starts = field_errors(model, norms, data, (ATMOSPHERE_TEST_START, end), 1)
            blocks = starts.dayofyear
        # Every run's errors in one scale: each channel's MSE over its variance in the whole
        # training period, averaged over channels.
        sd = np.asarray(scoring_norms(task, stores)["std"], np.float64)
        sq = (channels / sd**2).mean(-1)
        out = {"sq_err": sq, "channel_sq_err": channels, "blocks": np.asarray(blocks)}
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(cache)  # whole or absent
    return out


_NORMS: dict[str, dict] = {}


def scoring_norms(task: str, stores) -> dict:
    """The per-channel mean and std of the task's whole training period: the common scale of
    every run's errors (each run normalizes its inputs with its own share's)."""
    if task not in _NORMS:
        from tellus.training import pretraining as pt

        (t,) = pt.open_tasks([task_data(task, stores, 1.0)])
        _NORMS[task] = t.norm
    return _NORMS[task]


def compare(a: dict, b: dict, cfg: StudyConfig) -> dict:
    """Score of ``a``, of ``b`` and their difference with its 90 % interval."""
    from tellus.evaluation import bootstrap

    if "forecast" in a:
        iv = bootstrap.correlation_difference(
            a["forecast"], b["forecast"], a["truth"], a["blocks"], n_boot=cfg.boot
        )
        better = iv.mean_low > 0
    else:
        iv = bootstrap.rmse_difference(a["sq_err"], b["sq_err"], a["blocks"], n_boot=cfg.boot)
        better = iv.mean_high < 0
    return {
        "score": _skill(a),
        "reference": _skill(b),
        "diff": iv.mean_diff,
        "low": iv.mean_low,
        "high": iv.mean_high,
        "better": bool(better),
        "per_lead": iv.diff.tolist(),
    }


def _skill(s: dict) -> float:
    if "forecast" in s:
        k = s["truth"].shape[1]
        return float(
            np.mean([np.corrcoef(s["forecast"][:, i], s["truth"][:, i])[0, 1] for i in range(k)])
        )
    return float(np.mean(np.sqrt(s["sq_err"].mean(0))))


def _curves(runs: list[dict], stores, cfg: StudyConfig) -> dict[str, list[tuple[int, float]]]:
    """Mean Nino3.4 correlation (leads 1-24, the first 300 years of the long draw) at every
    checkpoint of the 10 % ENSO runs."""
    from tellus.training import checkpoint as ckpt_lib

    out = {}
    for r in runs:
        if r["share"] != SHARES[0]:
            continue
        ck = ckpt_lib.Checkpointer(Path(r["dir"]) / "checkpoints", async_save=False)
        try:
            steps = ck.all_steps()
        finally:
            ck.close()
        out[r["run"]] = [(s, _skill(score(r, stores, cfg, step=s, years=300))) for s in steps]
    return out


def run_study(root: Path, data: Path, cfg: StudyConfig) -> dict[str, Any]:
    """The whole study (see the module docstring); returns and writes ``results.json``."""
    t_start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    stores = study_stores(data, cfg.long_test_years)
    prepare_stores(stores, cfg.long_test_years)
    pre = pretrainings(root, stores, cfg)
    results: dict[str, Any] = {"config": dataclasses.asdict(cfg), "tasks": {}}
    for task in ("enso", "ocean", "atmosphere_coarse"):
        t0 = time.perf_counter()
        runs = task_runs(task, root, pre, stores, cfg)
        if task != "enso":
            (root / task / "persistence").mkdir(parents=True, exist_ok=True)
            runs.append(
                {
                    "task": task,
                    "share": 1.0,
                    "run": "persistence",
                    "dir": str(root / task / "persistence"),
                }
            )
        scores = {(r["run"], r["share"]): score(r, stores, cfg) for r in runs}
        rows = []
        for (name, share), s in scores.items():
            if name in ("scratch", "persistence"):
                continue
            row = {"run": name, "share": share, **compare(s, scores[("scratch", share)], cfg)}
            rows.append(row)
        entry: dict[str, Any] = {
            "rows": rows,
            "scratch": {
                str(sh): _skill(scores[("scratch", sh)]) for (n, sh) in scores if n == "scratch"
            },
            "metric": "mean correlation, leads 1-24" if task == "enso" else "normalized RMSE",
            "seconds": time.perf_counter() - t0,
        }
        if task == "ocean":
            entry["persistence"] = _skill(scores[("persistence", 1.0)])
            entry["temperature_rmse_by_lead"] = {
                f"{n}-{_pct(sh)}": np.sqrt(s["channel_sq_err"].mean(0)[:, 0]).tolist()
                for (n, sh), s in scores.items()
            }
        if task == "enso":
            entry["curves"] = _curves(runs, stores, cfg)
            entry["by_lead"] = {
                f"{n}-{_pct(sh)}": [
                    float(np.corrcoef(s["forecast"][:, i], s["truth"][:, i])[0, 1])
                    for i in range(ENSO_LEADS)
                ]
                for (n, sh), s in scores.items()
            }
        results["tasks"][task] = entry
        typer.echo(f"{task}: {len(runs)} runs scored in {entry['seconds']:.0f} s")
    results["bar"] = bar(results)
    results["seconds"] = time.perf_counter() - t_start
    (root / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (root / "results.md").write_text(report(results))
    plots(results, root)
    return results


def bar(results: dict[str, Any]) -> dict[str, Any]:
    """The claim, decided on one comparison per task chosen before the runs (no pick of the
    best of several): the full fine-tune at 10 % against from scratch, beyond the 90 %
    interval, on at least two of the three tasks."""
    won = sorted(
        t
        for t, e in results["tasks"].items()
        if any(r["better"] for r in e["rows"] if r["share"] == SHARES[0] and r["run"] == "full")
    )
    return {"tasks_better_at_10pct": won, "met": len(won) >= 2}


def report(results: dict[str, Any]) -> str:
    """The study's tables as Markdown."""
    lines = []
    for task, e in results["tasks"].items():
        better = "higher" if task == "enso" else "lower"
        lines += [
            f"### {task} ({e['metric']}, {better} is better)",
            "",
            "| share | run | score | from scratch | difference | 90 % interval | better beyond it |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sorted(e["rows"], key=lambda r: (r["share"], r["run"])):
            lines.append(
                f"| {round(100 * r['share'])} % | {r['run']} | {r['score']:.3f} | "
                f"{r['reference']:.3f} | {r['diff']:+.3f} | [{r['low']:+.3f}, {r['high']:+.3f}] | "
                f"{'yes' if r['better'] else 'no'} |"
            )
        if "persistence" in e:
            lines.append(f"\nPersistence: {e['persistence']:.3f}.")
        lines.append("")
    bar = results["bar"]
    lines.append(
        f"Bar (the full fine-tune beats from scratch at 10 % beyond the interval on >= 2 of 3 "
        f"tasks): "
        f"{'met' if bar['met'] else 'not met'} ({', '.join(bar['tasks_better_at_10pct']) or 'none'})."
    )
    return "\n".join(lines) + "\n"


def plots(results: dict[str, Any], root: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = results["tasks"].get("enso")
    if e is None:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, pts in e["curves"].items():
        if pts:
            s, v = zip(*pts, strict=True)
            ax1.plot(s, v, marker="o", label=name)
    ax1.set(
        xlabel="fine-tuning steps",
        ylabel="Nino3.4 correlation, mean of leads 1-24",
        title="ENSO at 10 % of the data (300 test years)",
    )
    ax1.legend()
    for name in (*MODES, "control"):
        pts = sorted((r["share"], r["score"]) for r in e["rows"] if r["run"] == name)
        if pts:
            x, y = zip(*pts, strict=True)
            ax2.plot([100 * v for v in x], y, marker="o", label=name)
    sc = sorted((float(k), v) for k, v in e["scratch"].items())
    ax2.plot([100 * k for k, _ in sc], [v for _, v in sc], marker="s", color="k", label="scratch")
    ax2.set(
        xscale="log",
        xlabel="share of fine-tuning data (%)",
        ylabel="correlation",
        title="ENSO on the 1200-year draw",
    )
    ax2.legend()
    fig.tight_layout()
    fig.savefig(root / "enso_study.png", dpi=110)
    plt.close(fig)


def study(
    out: Annotated[Path, typer.Option(help="Where the runs and results go.")] = Path(
        "runs/fm_study"
    ),
    pretrain_steps: Annotated[
        int, typer.Option(min=1, help="Steps of each pretraining.")
    ] = StudyConfig.pretrain_steps,
    finetune_steps: Annotated[
        int, typer.Option(min=1, help="Steps of every fine-tune and from-scratch run.")
    ] = StudyConfig.finetune_steps,
    long_test_years: Annotated[
        int, typer.Option(min=10, help="Years of the independent ENSO draw.")
    ] = StudyConfig.long_test_years,
) -> None:
    """Pretrain on three domains, fine-tune to three unseen tasks at 10/30/100 % of their
    data, and compare with the same model from scratch (resumable)."""
    from tellus.pipelines import checks

    data = paths.data_dir()
    for need in (
        "atmosphere.zarr",
        "ocean/model.zarr",
        "ocean/observed.zarr",
        "enso/model.zarr",
        "enso/observed.zarr",
    ):
        checks.existing_store(
            data / need, "TELLUS_DATA", "build the embedded data first (just demo builds all)"
        )
    cfg = StudyConfig(
        pretrain_steps=pretrain_steps,
        finetune_steps=finetune_steps,
        long_test_years=long_test_years,
    )
    res = run_study(out, data, cfg)
    typer.echo(report(res))
    typer.echo(f"study done in {res['seconds'] / 60:.1f} min; results in {out}")
