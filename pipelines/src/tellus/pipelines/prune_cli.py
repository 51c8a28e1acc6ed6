"""``tellus prune atmosphere|enso``: entropy-guided attention pruning of a trained model
(:mod:`tellus.training.pruning`), and ``tellus study prune``: what removing 0, 25, 40 and
50 % of the atmosphere model's attention layers (and 0, 1 or 2 of the ENSO Transformer's
blocks) does to throughput, memory and skill (:mod:`tellus.pipelines.prune_study`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import checks, enso_cli, errors, paths

DEFAULT_ATMOSPHERE_SOURCE = Path("runs") / "atmosphere" / "lead_24h"
DEFAULT_ENSO_SOURCE = enso_cli.DEFAULT_RUN
ATMOSPHERE_STEPS, ATMOSPHERE_ROLLOUT, ENSO_STEPS = 200, 1, 300
TRAIN_ATMOSPHERE = "; train it with `tellus train atmosphere`"

FractionOption = Annotated[
    float,
    typer.Option(
        help="Share of the attention layers to remove, the least entropy-adding first "
        "(rounded to whole layers: 0.4 of 8 is 3).",
        min=0.0,
        max=1.0,
    ),
]
LayersOption = Annotated[
    str | None,
    typer.Option(
        help="Remove these blocks instead (indices over the stages in order, from 0: '1,4,6')."
    ),
]
DistillOption = Annotated[
    float,
    typer.Option(
        help="Weight of a teacher's forecasts in the fine-tuning's targets (knowledge "
        "distillation: 0 the analyses alone, 1 the teacher's forecasts alone).",
        min=0.0,
        max=1.0,
    ),
]
AnnealOption = Annotated[
    float,
    typer.Option(
        help="Share of the fine-tuning steps over which lambda falls from 1 to 0 (the paper: "
        "300 of 400 epochs).",
        min=0.01,
        max=1.0,
    ),
]


def parse_layers(text: str | None, param: str = "--layers") -> tuple[int, ...] | None:
    """``'1,4,6'`` -> ``(1, 4, 6)``; None stays None.

    Raises:
      errors.UserError: not a comma-separated list of distinct block indices >= 0.
    """
    if text is None:
        return None
    try:
        out = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise errors.UserError(
            f"expected comma-separated block indices like '1,4,6', got {text!r}", param=param
        ) from None
    if not out or any(i < 0 for i in out) or len(set(out)) != len(out):
        raise errors.UserError(
            f"expected distinct block indices >= 0 like '1,4,6', got {text!r}", param=param
        )
    return out


def _spec(fraction: float, layers: str | None, anneal: float):
    from tellus.training import pruning

    return pruning.PruneSpec(fraction=fraction, layers=parse_layers(layers), anneal=anneal)


def _report(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="attention layers by the entropy they add (least first)")
    for col in ("block", "path", "H(x)", "H(x + Attn)", "added", "removed"):
        table.add_column(col, justify="right" if col.startswith(("H", "added")) else "left")
    removed = set(record["removed"])
    for e in record["ranking"]:
        table.add_row(
            str(e["index"]),
            e["path"],
            f"{e['entropy_in']:.1f}",
            f"{e['entropy_attn']:.1f}",
            f"{e['added']:+.2f}",
            "yes" if e["path"] in removed else "",
        )
    Console().print(table)
    typer.echo(
        f"parameters {record['parameters_before']:,} -> {record['parameters']:,}; "
        f"pruned blocks {record['pruned']}; the pruned model differs from the lambda = 0 "
        f"one by at most {record['max_difference_from_lambda_zero']:.2e}"
    )


def prune_atmosphere(
    source: Annotated[
        Path, typer.Option(help="A trained lead-model folder of `tellus train atmosphere`.")
    ] = DEFAULT_ATMOSPHERE_SOURCE,
    out: Annotated[
        Path,
        typer.Option(
            help="Run folder of the pruned model (it goes to OUT/lead_{H}h).",
            callback=checks.writable_dir_option,
        ),
    ] = Path("runs") / "atmosphere_pruned",
    fraction: FractionOption = 0.4,
    layers: LayersOption = None,
    steps: Annotated[
        int, typer.Option(help="Fine-tuning steps (lambda annealed, then held at 0).", min=1)
    ] = ATMOSPHERE_STEPS,
    anneal: AnnealOption = 0.75,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.", min=0.0)] = 2e-4,
    rollout: Annotated[
        int,
        typer.Option(help="Steps of the fine-tuning loss's unroll (1: the one-step loss).", min=1),
    ] = ATMOSPHERE_ROLLOUT,
    batch: Annotated[int, typer.Option(help="Batch size.", min=1)] = 4,
    store: Annotated[
        Path | None,
        typer.Option(help="The analysis store the model was trained on (default: embedded)."),
    ] = None,
    distill: DistillOption = 0.0,
    teacher: Annotated[
        Path | None,
        typer.Option(
            help="Lead-model folder of the teacher for --distill (default: --source; e.g. "
            "the unpruned model fine-tuned as long, a `tellus study prune` 0 % row)."
        ),
    ] = None,
    one_at_a_time: Annotated[
        bool,
        typer.Option(
            "--one-at-a-time",
            help="Remove the layers one per round, measuring the entropy again on the model "
            "each round leaves (the --steps shared equally among the rounds).",
        ),
    ] = False,
) -> None:
    """Prune a trained atmosphere lead model: rank its attention layers by the entropy they
    add, fine-tune with the chosen ones' residual annealed into the identity, remove them;
    the pruned model forecasts and evaluates like any other (`--workdir OUT`)."""
    from tellus.atmosphere import prune

    spec = _spec(fraction, layers, anneal)
    checks.existing_dir(source, "--source", hint=TRAIN_ATMOSPHERE)
    if not (source / "forecaster.json").exists():
        raise errors.UserError(
            f"{str(source)!r} is not a lead-model folder (no forecaster.json); pass e.g. "
            f"{str(DEFAULT_ATMOSPHERE_SOURCE)!r}",
            param="--source",
        )
    if teacher is not None:
        checks.existing_dir(teacher, "--teacher", hint=TRAIN_ATMOSPHERE)
        if not (teacher / "forecaster.json").exists():
            raise errors.UserError(
                f"{str(teacher)!r} is not a lead-model folder (no forecaster.json)",
                param="--teacher",
            )
        if distill == 0.0:
            raise errors.UserError("a teacher needs a --distill weight above 0", param="--teacher")
    if one_at_a_time and layers is not None:
        raise errors.UserError(
            "one layer at a time removes the layers the entropy chooses; give --fraction, "
            "not --layers",
            param="--one-at-a-time",
        )
    store = store or paths.default_store("atmosphere")
    checks.schema_store(store, "--store")
    plan = prune.PrunePlan(
        source=source,
        out=out,
        store=store,
        spec=spec,
        steps=steps,
        rollout=rollout,
        learning_rate=learning_rate,
        batch_size=batch,
        distill=distill,
        teacher=teacher,
    )
    try:
        record = (prune.prune_one_at_a_time if one_at_a_time else prune.prune_lead)(plan)
    except ValueError as e:
        if "rounds" in str(e):
            raise errors.UserError(errors.one_line(str(e)), param="--steps") from None
        if "teacher" in str(e):
            raise errors.UserError(errors.one_line(str(e)), param="--teacher") from None
        if "layer" in str(e):
            raise errors.UserError(errors.one_line(str(e)), param="--layers") from None
        raise
    for k, r in enumerate(record.get("rounds", ()), 1):
        typer.echo(f"round {k} ({r['steps']} steps): removed {r['removed'][0]}")
    _report(record)
    typer.echo(f"pruned lead model: {out}/lead_{record['lead_hours']}h")


def prune_enso(
    source: Annotated[
        Path, typer.Option(help="A trained ensemble folder of `tellus train enso`.")
    ] = DEFAULT_ENSO_SOURCE,
    out: Annotated[
        Path,
        typer.Option(help="The pruned ensemble's folder.", callback=checks.writable_dir_option),
    ] = Path("runs") / "enso_pruned",
    fraction: FractionOption = 0.5,
    layers: LayersOption = None,
    steps: Annotated[
        int,
        typer.Option(help="Pruning fine-tuning steps on the model world, per member.", min=1),
    ] = ENSO_STEPS,
    anneal: AnnealOption = 0.75,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.", min=0.0)] = 5e-4,
    worlds: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the worlds the ensemble was trained on (default $TELLUS_DATA/enso)."
        ),
    ] = None,
) -> None:
    """Prune a trained ResoNet ensemble: each member after its pretraining (rank, anneal,
    remove), then fine-tuned on the observed years as `tellus train enso` does."""
    from tellus.enso import prune

    spec = _spec(fraction, layers, anneal)
    checks.existing_dir(source, "--source", hint=enso_cli.TRAIN_FIRST)
    if not (source / "ensemble.json").exists():
        raise errors.UserError(
            f"no trained ensemble in {str(source)!r} (ensemble.json missing)"
            + enso_cli.TRAIN_FIRST,
            param="--source",
        )
    directory = worlds or enso_cli.worlds_dir()
    for kind in ("model", "observed"):
        checks.existing_store(
            directory / f"{kind}.zarr", "--worlds", "; give the --worlds of `tellus train enso`"
        )
    plan = prune.PrunePlan(
        source=source,
        out=out,
        model_store=directory / "model.zarr",
        observed_store=directory / "observed.zarr",
        spec=spec,
        steps=steps,
        learning_rate=learning_rate,
    )
    try:
        result = prune.prune_ensemble(plan)
    except ValueError as e:
        if "layer" in str(e):
            raise errors.UserError(errors.one_line(str(e)), param="--layers") from None
        raise
    for record in result["members"]:
        _report(record)
    typer.echo(f"pruned ensemble: {out}")


__all__ = ["parse_layers", "prune_atmosphere", "prune_enso"]
