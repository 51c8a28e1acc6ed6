"""``tellus study prune``: what entropy-guided attention pruning does to the atmosphere and
ENSO models (``just prune-study``).

For each share of the atmosphere lead model's attention layers (0, 25, 40, 50 %: 0, 2, 3, 4 of
the CPU preset's 8) it prunes the trained model (``tellus prune atmosphere``: the same
fine-tuning steps for every row, the 0 % one included, so that the rows compare removal, not
extra training), scores it as ``tellus evaluate atmosphere`` does (latitude-weighted RMSE of
Z500, T850 and T2M at 1 and 5 days against persistence and climatology), and times training
and inference and reads the training step's compiled memory in this one process. For 0, 1
and 2 of the ENSO Transformer's 2 blocks it prunes the ensemble (``tellus prune enso``) and
scores the Nino3.4 correlation at 6, 12 and 24 months on the observed test years.
``--one-at-a-time`` makes the entropy's rows remove their layers one per round, measuring
the entropy again on the model each round leaves (``tellus prune atmosphere --one-at-a-time``).

Everything is resumable (each pruning, each evaluation is kept); the table goes to
``OUT/table.md`` and ``OUT/study.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tellus.pipelines import checks, enso_cli, errors, paths, prune_cli

VARIABLES = ("Z500", "T850", "T2M")
LEADS = ("1d", "5d")


def _fractions(text: str, param: str) -> list[float]:
    try:
        out = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise errors.UserError(
            f"expected fractions like '0,0.25,0.4,0.5', got {text!r}", param=param
        ) from None
    if not out or any(not 0.0 <= f <= 1.0 for f in out):
        raise errors.UserError(f"fractions must lie in [0, 1], got {text!r}", param=param)
    return out


def atmosphere_row(
    source: Path,
    out: Path,
    store: Path,
    fraction: float,
    steps: int,
    rollout: int = 1,
    learning_rate: float = 2e-4,
    layers: tuple[int, ...] | None = None,
    distill: float = 0.0,
    teacher: Path | None = None,
    one_at_a_time: bool = False,
) -> dict[str, Any]:
    """Prunes, evaluates and times one row (each part kept for a rerun): ``fraction`` of
    the attention layers by entropy, or the blocks ``layers`` (a control); with ``distill``
    its fine-tuning targets blend in ``teacher``'s forecasts; with ``one_at_a_time`` the
    entropy's layers go one per round, measured again on what each round leaves
    (:func:`tellus.atmosphere.prune.prune_one_at_a_time`, the rounds sharing ``steps``)."""
    from tellus.atmosphere import evaluate, prune
    from tellus.training import pruning

    plan = prune.PrunePlan(
        source=source,
        out=out,
        store=store,
        spec=pruning.PruneSpec(fraction=fraction, layers=layers),
        steps=steps,
        rollout=rollout,
        learning_rate=learning_rate,
        distill=distill,
        teacher=teacher,
    )
    t0 = time.perf_counter()
    record = (prune.prune_one_at_a_time if one_at_a_time else prune.prune_lead)(plan)
    seconds = time.perf_counter() - t0
    report = out / "report"
    if not (report / "verdict.csv").exists():
        evaluate.run(
            store,
            out,
            report,
            evaluate.EvalConfig(every="24h", naive=False, rollout_days=0, tracks=False),
        )
    import pandas as pd

    from tellus.evaluation import scorecard

    verdict = pd.read_csv(report / "verdict.csv")
    scores = {}
    for _, r in verdict.iterrows():
        lead = {"24h": "1d"}.get(r["lead"], r["lead"])
        name = scorecard.SHORT_NAMES.get(r["variable"], r["variable"])
        if lead in LEADS and name in VARIABLES:
            scores[f"{name} {lead}"] = {
                "rmse": float(r[evaluate.MODEL]),
                "persistence": float(r["persistence"]),
                "climatology": float(r["climatology"]),
                "beats_both": bool(r["beats_all"]),
            }
    return {
        "fraction": fraction if layers is None else len(record["removed"]) / len(record["ranking"]),
        "chosen_by": "entropy" if layers is None else "named",
        "distill": distill,
        "one_at_a_time": "rounds" in record,
        "rounds": record.get("rounds", []),
        "removed": record["removed"],
        "pruned": record["pruned"],
        "ranking": record["ranking"],
        "parameters": record["parameters"],
        "max_difference_from_lambda_zero": record["max_difference_from_lambda_zero"],
        "prune_seconds": seconds,
        "scores": scores,
    }


def enso_row(
    source: Path, out: Path, worlds: Path, blocks: int, depth: int, steps: int
) -> dict[str, Any]:
    """Prunes ``blocks`` of the ensemble's ``depth`` Transformer blocks and scores it."""
    from tellus.data import validation
    from tellus.enso import prune
    from tellus.training import pruning

    plan = prune.PrunePlan(
        source=source,
        out=out,
        model_store=worlds / "model.zarr",
        observed_store=worlds / "observed.zarr",
        spec=pruning.PruneSpec(fraction=blocks / depth),
        steps=steps,
    )
    result = prune.prune_ensemble(plan)
    corr = prune.correlation(out, validation.open_dataset(worlds / "observed.zarr"))
    return {
        "blocks_removed": blocks,
        "pruned": result["pruned"],
        "removed_by_member": [r["removed"] for r in result["members"]],
        "correlation": {str(k): v for k, v in corr.items()},
    }


def enso_speed(cfgs: dict[str, Any], batch_size: int = 32) -> dict[str, dict[str, Any]]:
    """Training throughput and compiled memory of ResoNet configs, timed against each
    other on random inputs (:func:`tellus.training.benchmarking.compare_train_steps`)."""
    import numpy as np

    from tellus.enso import model as model_lib
    from tellus.enso import train
    from tellus.training import benchmarking

    rng = np.random.default_rng(0)
    cases = {}
    for name, cfg in cfgs.items():
        batch = {
            "x": rng.standard_normal(
                (batch_size, cfg.history, cfg.n_vars, cfg.n_lat, cfg.n_lon)
            ).astype(np.float32),
            "month": rng.integers(1, 13, batch_size).astype(np.int32),
            "y": rng.standard_normal((batch_size, cfg.n_leads)).astype(np.float32),
        }
        cases[name] = (model_lib.make_model(cfg), train.loss_fn, batch, batch_size)
    figures = benchmarking.compare_train_steps(cases, rounds=9, steps=10)
    return {
        name: {
            "train_samples_per_s": f["best_samples_per_s"],
            "train_median_samples_per_s": f["samples_per_s"],
            "train_memory_bytes": f["memory"].get("temp_size_in_bytes", 0)
            + f["memory"].get("argument_size_in_bytes", 0),
        }
        for name, f in figures.items()
    }


def table(study: dict[str, Any]) -> str:
    """The study as Markdown."""
    lines = []
    atm = study.get("atmosphere") or []
    if atm:
        base = atm[0]
        lines += [
            "| removed | blocks | params | train samples/s | infer samples/s | compiled MiB | "
            + " | ".join(f"{v} {lead}" for lead in LEADS for v in VARIABLES)
            + " | beats persistence and climatology |",
            "|---" * (7 + len(VARIABLES) * len(LEADS)) + "|",
        ]
        for r in atm:
            cells = []
            for lead in LEADS:
                for v in VARIABLES:
                    s = r["scores"].get(f"{v} {lead}")
                    b = base["scores"].get(f"{v} {lead}")
                    if s is None:
                        cells.append("-")
                        continue
                    change = 100.0 * (s["rmse"] / b["rmse"] - 1.0) if b else 0.0
                    cells.append(f"{s['rmse']:.3g} ({change:+.1f} %)")
            wins = sum(s["beats_both"] for s in r["scores"].values())
            named = "" if r.get("chosen_by", "entropy") == "entropy" else " (named)"
            if r.get("one_at_a_time"):
                named += " (one at a time)"
            if r.get("distill"):
                named += f" (distilled {r['distill']:g})"
            train = f"{r['train_samples_per_s'] / base['train_samples_per_s']:.2f}x"
            if "train_median_samples_per_s" in r and "train_median_samples_per_s" in base:
                # beside the best rounds' ratio: one slow stretch of one row shows as a gap
                median = r["train_median_samples_per_s"] / base["train_median_samples_per_s"]
                train += f"; median {median:.2f}x"
            lines.append(
                f"| {100 * r['fraction']:.0f} %{named} "
                f"| {r['pruned'] or '-'} | {r['parameters']:,} | "
                f"{r['train_samples_per_s']:.2f} ({train}) | "
                f"{r['infer_samples_per_s']:.2f} ({r['infer_samples_per_s'] / base['infer_samples_per_s']:.2f}x) | "
                f"{r['train_memory_bytes'] / 2**20:.0f} | "
                + " | ".join(cells)
                + f" | {wins} / {len(r['scores'])} |"
            )
    enso = study.get("enso") or []
    if enso:
        base = enso[0]
        lines += [
            "",
            "| ENSO blocks removed | blocks | train samples/s | compiled MiB | corr 6 | corr 12 "
            "| corr 24 |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in enso:
            c = r["correlation"]
            lines.append(
                f"| {r['blocks_removed']} | {r['pruned'] or '-'} | "
                f"{r['train_samples_per_s']:.0f} ({r['train_samples_per_s'] / base['train_samples_per_s']:.2f}x) | "
                f"{r['train_memory_bytes'] / 2**20:.0f} | "
                f"{c['6']:.3f} | {c['12']:.3f} | {c['24']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def study(
    atmosphere_source: Annotated[
        Path, typer.Option(help="The trained atmosphere lead model to prune.")
    ] = prune_cli.DEFAULT_ATMOSPHERE_SOURCE,
    enso_source: Annotated[
        Path, typer.Option(help="The trained ENSO ensemble to prune.")
    ] = prune_cli.DEFAULT_ENSO_SOURCE,
    out: Annotated[
        Path, typer.Option(help="Study folder.", callback=checks.writable_dir_option)
    ] = Path("runs") / "prune_study",
    fractions: Annotated[
        str, typer.Option(help="Shares of the atmosphere model's attention layers to remove.")
    ] = "0,0.25,0.4,0.5",
    layer_sets: Annotated[
        str,
        typer.Option(
            help="Controls: atmosphere rows that remove named blocks instead, sets separated "
            "by ';' ('3,5,6;2,3,5')."
        ),
    ] = "",
    enso_blocks: Annotated[
        str, typer.Option(help="ENSO Transformer blocks to remove ('' to skip ENSO).")
    ] = "0,1,2",
    steps: Annotated[
        int, typer.Option(help="Atmosphere fine-tuning steps (every row).", min=1)
    ] = prune_cli.ATMOSPHERE_STEPS,
    rollout: Annotated[
        int, typer.Option(help="Atmosphere fine-tuning loss's unroll (1: one step).", min=1)
    ] = prune_cli.ATMOSPHERE_ROLLOUT,
    learning_rate: Annotated[
        float, typer.Option(help="Atmosphere fine-tuning peak learning rate.", min=0.0)
    ] = 2e-4,
    enso_steps: Annotated[
        int, typer.Option(help="ENSO pruning fine-tuning steps per member.", min=1)
    ] = prune_cli.ENSO_STEPS,
    store: Annotated[Path | None, typer.Option(help="The atmosphere store.")] = None,
    worlds: Annotated[Path | None, typer.Option(help="The ENSO worlds' folder.")] = None,
    distill: Annotated[
        float,
        typer.Option(
            help="Distillation: the pruned atmosphere rows learn from targets that blend in "
            "this weight of the 0 %% row's forecasts (its fine-tuned model is the teacher; "
            "--fractions must start with 0). Their folders end in _distilled.",
            min=0.0,
            max=1.0,
        ),
    ] = 0.0,
    one_at_a_time: Annotated[
        bool,
        typer.Option(
            "--one-at-a-time",
            help="The entropy's rows remove their layers one per round, the entropy measured "
            "again on the model each round leaves (the rounds share --steps; `tellus prune "
            "atmosphere --one-at-a-time`). Their folders end in _one_at_a_time.",
        ),
    ] = False,
) -> None:
    """Prune 0/25/40/50 % of the atmosphere model's attention layers and 0/1/2 of the ENSO
    Transformer's blocks; throughput, memory and skill of each, as a table."""
    from rich.console import Console
    from rich.markdown import Markdown

    shares = _fractions(fractions, "--fractions")
    controls = [
        prune_cli.parse_layers(t, "--layer-sets") for t in layer_sets.split(";") if t.strip()
    ]
    blocks = [int(v) for v in enso_blocks.split(",") if v.strip()] if enso_blocks else []
    if distill > 0.0 and (not shares or shares[0] != 0.0):
        raise errors.UserError(
            f"--distill learns from the 0 % row, so --fractions must start with 0: {fractions!r}",
            param="--fractions",
        )
    if shares or controls:
        checks.existing_dir(
            atmosphere_source, "--atmosphere-source", hint=prune_cli.TRAIN_ATMOSPHERE
        )
    if blocks:
        checks.existing_dir(enso_source, "--enso-source", hint=enso_cli.TRAIN_FIRST)
    store = store or paths.default_store("atmosphere")
    worlds = worlds or enso_cli.worlds_dir()
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "settings": {
            "steps": steps,
            "rollout": rollout,
            "learning_rate": learning_rate,
            "enso_steps": enso_steps,
            "distill": distill,
            "one_at_a_time": one_at_a_time,
        },
        "atmosphere": [],
        "enso": [],
    }
    teacher = None
    if distill > 0.0:
        from tellus.atmosphere import prune

        lead = prune.source_config(atmosphere_source).lead_hours
        teacher = out / "atmosphere_00" / f"lead_{lead}h"
    for f in shares:
        typer.echo(f"== atmosphere: removing {100 * f:.0f} % of the attention layers")
        weight = distill if f > 0.0 else 0.0
        suffix = "_one_at_a_time" if one_at_a_time and f > 0.0 else ""
        suffix += "_distilled" if weight > 0.0 else ""
        result["atmosphere"].append(
            atmosphere_row(
                atmosphere_source,
                out / f"atmosphere_{round(100 * f):02d}{suffix}",
                store,
                f,
                steps,
                rollout,
                learning_rate,
                distill=weight,
                teacher=teacher if weight > 0.0 else None,
                one_at_a_time=one_at_a_time and f > 0.0,
            )
        )
        (out / "study.json").write_text(json.dumps(result, indent=1))
    for layers in controls:
        name = "-".join(map(str, layers))
        typer.echo(f"== atmosphere control: removing the attention of blocks {name}")
        result["atmosphere"].append(
            atmosphere_row(
                atmosphere_source,
                out / f"atmosphere_layers_{name}{'_distilled' if distill > 0.0 else ''}",
                store,
                0.0,
                steps,
                rollout,
                learning_rate,
                layers,
                distill=distill,
                teacher=teacher,
            )
        )
        (out / "study.json").write_text(json.dumps(result, indent=1))
    if result["atmosphere"]:
        typer.echo("== atmosphere: timing every row against the others")
        from tellus.atmosphere import prune

        cfg = prune.source_config(atmosphere_source).model
        rows = result["atmosphere"]
        figures = prune.speed(
            {
                str(i): dataclasses.replace(cfg, pruned=tuple(r["pruned"]))
                for i, r in enumerate(rows)
            }
        )
        for i, r in enumerate(rows):
            r.update(figures[str(i)])
        (out / "study.json").write_text(json.dumps(result, indent=1))
    if blocks:
        info = json.loads((enso_source / "ensemble.json").read_text())
        from tellus.enso import model as model_lib

        depth = model_lib.preset(info["preset"], **info.get("model_overrides", {})).depth
        for k in blocks:
            typer.echo(f"== ENSO: removing {k} of {depth} Transformer blocks")
            result["enso"].append(
                enso_row(enso_source, out / f"enso_{k}", worlds, k, depth, enso_steps)
            )
            (out / "study.json").write_text(json.dumps(result, indent=1))
        from tellus.enso import train

        base = train.load_member(enso_source / "member_0" / "pretrain").config
        figures = enso_speed(
            {
                str(i): dataclasses.replace(base, pruned=tuple(r["pruned"]))
                for i, r in enumerate(result["enso"])
            }
        )
        for i, r in enumerate(result["enso"]):
            r.update(figures[str(i)])
        (out / "study.json").write_text(json.dumps(result, indent=1))
    text = table(result)
    (out / "table.md").write_text(text)
    Console().print(Markdown(text))


__all__ = ["atmosphere_row", "enso_row", "study", "table"]
