"""``tellus train atmosphere``, ``tellus forecast atmosphere`` and ``tellus evaluate
atmosphere`` (also ``tellus forecast`` and ``tellus evaluate``): thin entry points over
:mod:`tellus.atmosphere`."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import checks, devices, errors, paths

DEFAULT_RUN = Path("runs") / "atmosphere"
TRAIN_FIRST = "; train the lead models with `tellus train atmosphere`"
BUILD_FIRST = "; build it with `tellus data build atmosphere`"
# The CPU recipe of `just train-atmosphere` / `just demo` (see docs/results.md).
# The 24 h model trains on one step, then on 2- and 4-step rollouts (GraphCast's curriculum).
CPU_PRESET, CPU_STEPS, CPU_BATCH, CPU_LOSS, CPU_ROLLOUT = "cpu", "6:250,24:600", 4, "mse", ""
CPU_FINETUNE = "24:2:120,24:4:100"


def _steps(text: str) -> tuple[int, tuple[tuple[int, int], ...]]:
    """``"600"`` -> every model 600 steps; ``"6:250,24:450"`` -> per lead (the largest is
    the default of leads not named)."""
    try:
        if ":" not in text:
            return int(text), ()
        pairs = tuple(
            (int(a.strip().rstrip("h")), int(b))
            for a, b in (part.split(":") for part in text.split(",") if part.strip())
        )
    except ValueError as e:
        raise typer.BadParameter(
            f"steps must be a number or lead:steps pairs like '6:250,24:450', got {text!r}",
            param_hint="--steps",
        ) from e
    if not pairs or any(n < 1 for _, n in pairs):
        raise typer.BadParameter(f"steps must be >= 1, got {text!r}", param_hint="--steps")
    return max(n for _, n in pairs), pairs


def _rollout(text: str) -> tuple[tuple[int, int], ...]:
    """``"24:2"`` -> ``((24, 2),)``: the 24 h model trains on a 2-step rollout."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            lead, k = (int(x.strip().rstrip("h")) for x in part.split(":"))
        except ValueError as e:
            raise typer.BadParameter(
                f"rollout must look like '24:2' (lead hours:steps), got {part!r}",
                param_hint="--rollout",
            ) from e
        if k < 1:
            raise typer.BadParameter(f"rollout steps must be >= 1, got {k}", param_hint="--rollout")
        out.append((lead, k))
    return tuple(out)


def _finetune(text: str) -> tuple:
    """``"24:4:100"`` -> the 24 h model then trains 100 steps on a 4-step rollout."""
    from tellus.atmosphere import train

    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            lead, k, steps = (int(x.strip().rstrip("h")) for x in part.split(":"))
        except ValueError as e:
            raise typer.BadParameter(
                f"finetune must look like '24:4:100' (lead hours:rollout "
                f"steps:optimizer steps), got {part!r}",
                param_hint="--finetune",
            ) from e
        try:
            out.append(train.RolloutPhase(lead, k, steps))
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--finetune") from e
    return tuple(out)


def _leads(text: str | None, store: Path) -> tuple[int, ...]:
    from tellus.atmosphere import train

    if text is None:
        return train.available_leads(store)
    try:
        leads = tuple(int(x.strip().rstrip("h")) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise typer.BadParameter(
            f"leads must be hours like '6,24', got {text!r}", param_hint="--leads"
        ) from e
    try:
        ok = train.available_leads(store, leads)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--leads") from e
    bad = sorted(set(leads) - set(ok))
    if bad:
        raise typer.BadParameter(
            f"leads {bad} h are not multiples of the store's time step", param_hint="--leads"
        )
    return leads


def _on_store_grid(model, store: Path | str):
    """The preset's network on the store's latitude x longitude grid (a preset names an
    architecture; its own grid is a default, as the paper preset's 721 x 1440), and the
    line that says so (empty when the grids agree)."""
    from tellus.data import validation

    ds = validation.open_dataset(store, check_values="none")
    lat, lon = ds.sizes["latitude"], ds.sizes["longitude"]
    note = ""
    if (lat, lon) != (model.lat, model.lon):
        note = (
            f"model grid {lat} x {lon} from the store (the preset's is {model.lat} x {model.lon})"
        )
    return dataclasses.replace(model, lat=lat, lon=lon), note


def train_atmosphere(
    store: Annotated[
        Path | None,
        typer.Option(
            help="Analysis store (default: the embedded dataset, built if missing).",
            callback=checks.schema_store_option,
        ),
    ] = None,
    workdir: Annotated[
        Path, typer.Option(help="Where the lead models go.", callback=checks.writable_dir_option)
    ] = DEFAULT_RUN,
    preset: Annotated[
        str,
        typer.Option(
            help="Model preset: tiny, small or paper (its network; the grid is the store's)."
        ),
    ] = CPU_PRESET,
    leads: Annotated[
        str | None,
        typer.Option(
            help="Lead models in hours, e.g. '6,24' (default: every Pangu lead the data allows)."
        ),
    ] = None,
    steps: Annotated[
        str,
        typer.Option(
            help="Optimizer steps per lead model: one number, or per lead like '6:250,24:450'."
        ),
    ] = CPU_STEPS,
    batch: Annotated[int, typer.Option(help="Global batch size.", min=1)] = CPU_BATCH,
    residual: Annotated[
        bool, typer.Option(help="Predict increments (GraphCast) instead of states (Pangu).")
    ] = True,
    loss: Annotated[str, typer.Option(help="mae (Pangu) or mse (GraphCast).")] = CPU_LOSS,
    rollout: Annotated[
        str,
        typer.Option(
            help="Lead models trained on a multi-step rollout, e.g. '24:2' ('' for none)."
        ),
    ] = CPU_ROLLOUT,
    finetune: Annotated[
        str,
        typer.Option(
            help="Rollout fine-tuning phases after the main "
            "training, lead:rollout:steps, e.g. '24:4:100' "
            "('' for none)."
        ),
    ] = CPU_FINETUNE,
    mesh: Annotated[str | None, typer.Option(help=devices.MESH_HELP)] = None,
    remat: Annotated[
        bool,
        typer.Option(
            help="Rematerialize each transformer block in the backward pass (the model's "
            "per-block remat, PanguConfig.remat_blocks, as `tellus plan --remat` plans it; "
            "checkpointing the whole loss instead would keep every block's activations at "
            "once and save almost no memory). The rollout fine-tuning phases inherit it."
        ),
    ] = False,
    bf16: Annotated[bool, typer.Option(help=devices.BF16_HELP)] = False,
    profile_steps: Annotated[str | None, typer.Option(help=devices.PROFILE_HELP)] = None,
) -> None:
    """Train one model per lead time (resumes from the last checkpoint after a kill)."""
    from tellus.atmosphere import config, train
    from tellus.kernels import partitioning
    from tellus.pipelines import data_cli
    from tellus.training import config as train_config

    try:
        model = config.preset(preset)
    except KeyError as e:
        raise typer.BadParameter(str(e.args[0]), param_hint="--preset") from e
    if loss not in ("mae", "mse"):
        raise typer.BadParameter(f"loss must be mae or mse, got {loss!r}", param_hint="--loss")
    profile = devices.profile_steps(profile_steps)
    unrolls = _rollout(rollout)
    n_steps, by_lead = _steps(str(steps))
    phases = _finetune(finetune)
    model = dataclasses.replace(model, remat_blocks=remat)
    run_on = None
    if store is None:  # the mesh is checked before the embedded dataset is built
        run_on = devices.resolve(mesh, batch)
        store = data_cli.build_atmosphere(paths.default_store("atmosphere"))
    lead_hours = _leads(leads, store)
    model, grid_note = _on_store_grid(model, store)
    with errors.user_errors(ValueError, what="train atmosphere"):  # the plan's own checks
        plan = train.TrainPlan(
            store=str(store),
            workdir=str(workdir),
            leads=lead_hours,
            model=model,
            train=train_config.warmup_cosine(
                n_steps,
                batch,
                train.PEAK_LEARNING_RATE,
                compute_dtype="bfloat16" if bf16 else "float32",
                profile_steps=profile,
            ),
            splits=train.Splits.for_store(store),
            residual=residual,
            loss=loss,
            rollout=unrolls,
            finetune=phases,
            steps_by_lead=by_lead,
        )
    run_on = run_on or devices.resolve(mesh, batch)  # after the store's and the plan's checks
    if grid_note:
        typer.echo(grid_note)
    typer.echo(run_on.describe(remat="per block" if remat else "off", bf16=bf16))
    try:
        histories = train.train_models(plan, mesh=run_on.mesh(), rules=partitioning.RULES)
    except ValueError as e:
        typer.echo(f"train atmosphere: {e}", err=True)
        raise typer.Exit(1) from e
    for lead, hist in histories.items():
        if hist:
            typer.echo(
                f"{lead} h model: loss {hist[0][1]:.4f} -> {hist[-1][1]:.4f} over {len(hist)} steps"
            )
        else:
            typer.echo(
                f"{lead} h model: already trained "
                f"({plan.train_config(lead).num_steps} steps"
                + "".join(
                    f", then {p.steps} on a {p.rollout}-step rollout" for p in plan.phases(lead)
                )
                + ")"
            )


class Perturbation(StrEnum):
    """Ensemble perturbations (:data:`tellus.atmosphere.perturbations.KINDS`)."""

    perlin = "perlin"
    gaussian = "gaussian"
    bred = "bred"


def _check_store(store: Path | None) -> Path:
    """The analysis store (default: the embedded one), in the schema."""
    store = store or paths.default_store("atmosphere")
    checks.schema_store(store, "--store", missing_hint=BUILD_FIRST)
    return store


def _check_models(workdir: Path) -> None:
    """``workdir`` holds trained lead models (``lead_*h``; :func:`train.load_models`)."""
    checks.existing_dir(workdir, "--workdir", hint=TRAIN_FIRST)
    if not any(workdir.glob("lead_*h")):
        raise errors.UserError(
            f"no trained lead models (lead_*h) in {str(workdir)!r}{TRAIN_FIRST}",
            param="--workdir",
        )


def _check_leads(lead: str, every: str) -> None:
    if checks.hours(every, "--every") > checks.hours(lead, "--lead"):
        raise errors.UserError(f"--every {every} is longer than --lead {lead}")


def forecast(
    init: Annotated[
        list[str],
        typer.Option(help="Init time(s), e.g. 2000-03-01T00.", callback=checks.timestamps_option),
    ],
    lead: Annotated[
        str, typer.Option(help="Longest lead, e.g. 10d or 36h.", callback=checks.duration_option)
    ] = "5d",
    every: Annotated[
        str, typer.Option(help="Output interval.", callback=checks.duration_option)
    ] = "6h",
    store: Annotated[
        Path | None, typer.Option(help="Analysis store for the initial conditions.")
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Trained lead models.")] = DEFAULT_RUN,
    out: Annotated[
        Path,
        typer.Option(
            help="Output Zarr store (WeatherBench2 forecast layout; replaced if it exists).",
            callback=checks.replaceable_store_option,
        ),
    ] = Path("runs/forecast.zarr"),
    members: Annotated[int, typer.Option(help="Ensemble members (1 = deterministic).", min=1)] = 1,
    perturbation: Annotated[
        Perturbation, typer.Option(help="Perturbations of the members.")
    ] = Perturbation.perlin,
    seed: Annotated[int, typer.Option(help="Perturbation seed.")] = 0,
) -> None:
    """Forecast from analysis states with hierarchical temporal aggregation."""
    import pandas as pd

    from tellus.atmosphere import forecast as fc_lib
    from tellus.atmosphere import train
    from tellus.data import sources

    perturbation = Perturbation(perturbation)
    _check_leads(lead, every)
    store = _check_store(store)
    times = pd.DatetimeIndex(sources.open_metadata(store).indexes["time"])
    missing = [t for t in init if checks.timestamp(t, "--init") not in times]
    if missing:
        raise errors.UserError(
            f"{', '.join(missing)} not in {store} ({times[0]} .. {times[-1]}, every "
            f"{times[1] - times[0]})",
            param="--init",
        )
    _check_models(workdir)
    with errors.user_errors(FileNotFoundError, param="--workdir"):  # an unfinished training
        models = train.load_models(workdir)
    with errors.user_errors(ValueError, param="--workdir"):  # models of different runs
        system = fc_lib.ForecastSystem(models)
    with errors.user_errors(ValueError, what=f"--lead {lead} / --every {every}"):
        leads = fc_lib.output_leads(lead, every)
        system.calls(leads)  # every lead a multiple of the shortest model's
    perturb = None
    if members > 1:
        from tellus.atmosphere import ensemble

        static = None
        if perturbation == Perturbation.bred:  # breeding runs the model: it needs the statics
            static = fc_lib.read_initial_conditions(store, init[:1], system.config)[1]
        with errors.user_errors(ValueError, param="--perturbation"):
            perturb = ensemble.perturbation_fn(system, perturbation.value, seed, static=static)
    ds = fc_lib.forecast(system, store, init, leads, out=out, members=members, perturb=perturb)
    calls = len(system.calls(leads))
    typer.echo(
        f"{out}: {len(init)} init(s) x {len(leads)} leads up to {lead}, {members} "
        f"member(s); {calls} model calls per member (lead models "
        f"{', '.join(f'{h} h' for h in system.leads)}); variables "
        f"{', '.join(sorted(ds.data_vars))}"
    )


def evaluate(
    store: Annotated[
        Path | None, typer.Option(help="Analysis store (truth and initial conditions).")
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Trained lead models.")] = DEFAULT_RUN,
    report: Annotated[
        Path, typer.Option(help="Report folder.", callback=checks.writable_dir_option)
    ] = Path("runs/report"),
    lead: Annotated[
        str, typer.Option(help="Longest lead, e.g. 5d.", callback=checks.duration_option)
    ] = "5d",
    every: Annotated[
        str, typer.Option(help="Output interval.", callback=checks.duration_option)
    ] = "6h",
    init_every: Annotated[
        str,
        typer.Option(
            help="Spacing of init times over the test period.", callback=checks.duration_option
        ),
    ] = "24h",
    max_inits: Annotated[int | None, typer.Option(help="Cap on init times.", min=1)] = None,
    naive: Annotated[
        bool, typer.Option(help="Also score naive stepping of the shortest lead model.")
    ] = True,
) -> None:
    """Score the lead models against persistence and climatology: scorecard, curves, maps."""
    from tellus.atmosphere import evaluate as eval_lib

    _check_leads(lead, every)
    store = _check_store(store)
    _check_models(workdir)
    cfg = eval_lib.EvalConfig(
        max_lead=lead, every=every, init_every=init_every, max_inits=max_inits, naive=naive
    )
    try:
        # A missing file is an input not there yet (statistics, a finished training).
        with errors.user_errors(FileNotFoundError, what="evaluate"):
            summary = eval_lib.run(store, workdir, report, cfg)
    except ValueError as e:
        typer.echo(f"evaluate: {e}", err=True)
        raise typer.Exit(1) from e
    print_summary(report, summary)


def print_summary(report: Path, summary: dict) -> None:
    """The RMSE scorecard and the verdict, as a person reads them in a terminal."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    v = pd.read_csv(report / "verdict.csv")
    table = Table(
        title=f"Latitude-weighted RMSE on {summary['init_times']} test inits "
        f"({summary['first_init']} .. {summary['last_init']})"
    )
    for col in v.columns:
        table.add_column(str(col))
    for row in v.itertuples(index=False):
        table.add_row(*[f"{x:.4g}" if isinstance(x, float) else str(x) for x in row])
    console = Console()
    console.print(table)
    ok = summary["beats_persistence_and_climatology_everywhere"]
    console.print(
        f"beats persistence and climatology at every lead: {ok}; report in {report} "
        f"({', '.join(Path(p).name for p in summary['plots'])})"
    )
