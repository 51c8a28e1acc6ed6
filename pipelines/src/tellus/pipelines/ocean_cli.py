"""``tellus train ocean``, ``tellus evaluate ocean`` and ``tellus forecast ocean``: thin entry
points over :mod:`tellus.ocean` (its runs live in ``$TELLUS_DATA/ocean/{model,observed}.zarr``,
built by ``tellus data build ocean``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import checks, devices, errors, paths

DEFAULT_RUN = Path("runs") / "ocean"
DEFAULT_REPORT = Path("runs") / "ocean_report"
DEFAULT_FORECAST = Path("runs") / "ocean_forecast.zarr"
BUILD_FIRST = "; build it with `tellus data build ocean`"
TRAIN_FIRST = "; train the forecaster with `tellus train ocean`"
# The CPU recipe of `just train-ocean` (the README gives its estimated time): the cpu
# network, 450 steps on the model run and 120 on the observed years 1-4, batches of 2.
CPU_PRESET, CPU_PRETRAIN, CPU_FINETUNE, CPU_BATCH = "cpu", 450, 120, 2
CPU_PRETRAIN_LR, CPU_FINETUNE_LR = 1e-3, 2e-4


def ocean_dir() -> Path:
    """Where the ocean's runs live: ``$TELLUS_DATA/ocean`` (default ``./data/ocean``)."""
    return paths.default_folder("ocean")


def check_run(directory: Path, run: str, param: str) -> Path:
    """``directory/run.zarr`` is a complete store of the embedded ocean (or any Zarr store
    that is not one of its builds).

    Raises:
      UserError: it is missing, not a store, or a build of it is unfinished.
    """
    from tellus.data import writing
    from tellus.data.errors import SchemaError

    store = directory / f"{run}.zarr"
    checks.existing_store(store, param, BUILD_FIRST)
    try:
        expected = writing.expected_chunks(store)
    except SchemaError:  # a store not written chunk by chunk (ingested, or the user's own)
        return store
    if len(writing.completed_chunks(store)) < expected:
        raise errors.UserError(
            f"{str(store)!r} is incomplete ({len(writing.completed_chunks(store))} of "
            f"{expected} chunks); finish it with `tellus data build ocean`",
            param=param,
        )
    return store


def _data_option(value: Path | None) -> Path:
    if value is not None:
        checks.existing_dir(value, "--data", BUILD_FIRST)
    return value or ocean_dir()


def train_ocean(
    workdir: Annotated[
        Path,
        typer.Option(help="Where the forecaster goes.", callback=checks.writable_dir_option),
    ] = DEFAULT_RUN,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder of model.zarr and observed.zarr (default $TELLUS_DATA/ocean, made by "
            "`tellus data build ocean`)."
        ),
    ] = None,
    preset: Annotated[str, typer.Option(help="Network preset: cpu or paper.")] = CPU_PRESET,
    pretrain_steps: Annotated[
        int, typer.Option(help="Steps on the model run.", min=1)
    ] = CPU_PRETRAIN,
    finetune_steps: Annotated[
        int, typer.Option(help="Steps on the observed run's early years.", min=1)
    ] = CPU_FINETUNE,
    batch: Annotated[int, typer.Option(help="Batch size (initial months).", min=1)] = CPU_BATCH,
    pretrain_lr: Annotated[
        float, typer.Option(help="Peak learning rate on the model run.", min=0.0)
    ] = CPU_PRETRAIN_LR,
    finetune_lr: Annotated[
        float, typer.Option(help="Peak learning rate of the fine-tuning.", min=0.0)
    ] = CPU_FINETUNE_LR,
    finetune_years: Annotated[
        int, typer.Option(help="Observed years to fine-tune on (from the first).", min=1)
    ] = 4,
    test_years: Annotated[
        int, typer.Option(help="Last observed years held out for the test.", min=1)
    ] = 3,
    base: Annotated[
        str,
        typer.Option(
            help="What the network's output is added to: anomaly (damped anomaly "
            "persistence and the wind response), persistence (the initial state), or state "
            "(none: the state itself, ORCA-DL's released form)."
        ),
    ] = "anomaly",
    forcing_modes: Annotated[
        int | None,
        typer.Option(
            help="Modes of the wind-stress anomaly the anomaly base answers linearly "
            "(fitted on the model run; 0: damped persistence alone). Default 4 with the "
            "anomaly base, 0 with the others or with --observed-forcing.",
            min=0,
        ),
    ] = None,
    observed_forcing: Annotated[
        bool,
        typer.Option(
            help="Give each lead its own month's observed wind stress (a Tellus extension) "
            "instead of the initial month's, encoded once (ORCA-DL)."
        ),
    ] = False,
    mesh: Annotated[str | None, typer.Option(help=devices.MESH_HELP)] = None,
    remat: Annotated[
        bool,
        typer.Option(
            help="Rematerialize the forward pass in the backward pass (TrainConfig.remat: "
            "the whole loss under jax.checkpoint). Both phases use it."
        ),
    ] = False,
    bf16: Annotated[bool, typer.Option(help=devices.BF16_HELP)] = False,
    profile_steps: Annotated[str | None, typer.Option(help=devices.PROFILE_HELP)] = None,
) -> None:
    """Train on the model run, fine-tune on the observed run's early years (resumes after a
    kill); the last years, after a 12-month gap, are the test years."""
    from tellus.kernels import partitioning
    from tellus.ocean import model as model_lib
    from tellus.ocean import train

    t0 = time.perf_counter()
    checks.choice(preset, model_lib.PRESETS, "--preset")
    checks.choice(base, train.BASES, "--base")
    if forcing_modes is None:
        forcing_modes = train.FORCING_MODES if base == "anomaly" and not observed_forcing else 0
    elif forcing_modes and observed_forcing:
        raise errors.UserError(
            f"{forcing_modes} modes: the wind response answers the initial month's forcing; "
            "with --observed-forcing it takes 0",
            param="--forcing-modes",
        )
    elif forcing_modes and base != "anomaly":
        raise errors.UserError(
            f"{forcing_modes} modes: the wind response is part of the anomaly base; the "
            f"{base!r} base takes 0",
            param="--forcing-modes",
        )
    profile = devices.profile_steps(profile_steps)
    run_on = devices.resolve(mesh, batch)  # the options first, then the data
    folder = _data_option(data)
    model_store = check_run(folder, "model", "--data")
    observed_store = check_run(folder, "observed", "--data")
    split = train.ObservedSplit(finetune_years, test_years)
    with errors.user_errors(ValueError, what="--finetune-years / --test-years"):
        split.check(len(train.store_times(observed_store)), train.LONGEST_LEAD)
    typer.echo(run_on.describe(remat="whole loss" if remat else "off", bf16=bf16))
    budget = train.Budget(
        pretrain_steps,
        finetune_steps,
        batch,
        pretrain_lr,
        finetune_lr,
        compute_dtype="bfloat16" if bf16 else "float32",
        remat=remat,
        profile_steps=profile,
    )
    with errors.user_errors(ValueError, param="--data"):  # a grid the preset is not for
        info = train.train_ocean(
            workdir,
            model_store,
            observed_store,
            preset=preset,
            base=base,
            forcing_modes=forcing_modes,
            observed_forcing=observed_forcing,
            budget=budget,
            split=split,
            mesh=run_on.mesh(),
            rules=partitioning.RULES,
        )
    for phase, h in info["histories"].items():
        last = f"final loss {h[-1][1]:.4f}" if h else "already trained"
        typer.echo(f"{phase}: {last}")
    typer.echo(f"train-ocean done in {time.perf_counter() - t0:.0f} s; forecaster in {workdir}")


def evaluate_ocean(
    workdir: Annotated[Path, typer.Option(help="The trained forecaster.")] = DEFAULT_RUN,
    data: Annotated[
        Path | None,
        typer.Option(help="Folder of observed.zarr (default $TELLUS_DATA/ocean)."),
    ] = None,
    report: Annotated[
        Path, typer.Option(help="Report folder.", callback=checks.writable_dir_option)
    ] = DEFAULT_REPORT,
    rollout_years: Annotated[
        int, typer.Option(help="Years of the rollout check (0 to skip).", min=0)
    ] = 10,
) -> None:
    """RMSE and ACC by variable, depth and lead 1-12 against persistence, damped persistence
    and the calendar-month climatology on the observed test years; upper-ocean heat content,
    Nino3.4, the rollout check, the scorecard; PNGs and summary.json in the report folder."""
    from tellus.ocean import evaluate, train

    t0 = time.perf_counter()
    checks.existing_dir(workdir, "--workdir", TRAIN_FIRST)
    with errors.user_errors(FileNotFoundError, param="--workdir"):
        train.read_info(workdir)
        train.find_phase(workdir)
    observed = check_run(_data_option(data), "observed", "--data")
    with errors.user_errors(ValueError, param="--data"):
        summary = evaluate.run(workdir, observed, report, rollout_years=rollout_years)
    for name, verdict in summary["scorecard"].items():
        if name == "all":
            continue
        won = sum(verdict["beats"])
        typer.echo(
            f"{name}: beats persistence and climatology at {won}/{len(verdict['beats'])} leads"
        )
    roll = summary["rollout"]
    if roll:
        typer.echo(f"{roll['months']}-month rollout check: {'pass' if roll['pass'] else 'FAIL'}")
    typer.echo(f"report in {report} ({time.perf_counter() - t0:.0f} s)")


def forecast_ocean(
    init: Annotated[
        list[str],
        typer.Option(help="Init month(s), e.g. 2005-01.", callback=checks.timestamps_option),
    ],
    store: Annotated[
        Path | None,
        typer.Option(
            help="Store of the initial states (default the observed run, "
            "$TELLUS_DATA/ocean/observed.zarr)."
        ),
    ] = None,
    workdir: Annotated[Path, typer.Option(help="The trained forecaster.")] = DEFAULT_RUN,
    months: Annotated[int, typer.Option(help="Months ahead.", min=1)] = 12,
    out: Annotated[
        Path,
        typer.Option(
            help="Zarr store of the forecast (replaced if it exists).",
            callback=checks.replaceable_store_option,
        ),
    ] = DEFAULT_FORECAST,
) -> None:
    """The ocean state 1..MONTHS months after each init month: (time, prediction_timedelta
    in months, [depth], latitude, longitude), leads 1-6 directly, longer by restarts."""
    import pandas as pd

    from tellus.data import validation
    from tellus.ocean import domain
    from tellus.training.checkpoint import CheckpointKindError

    if store is None:
        store = check_run(ocean_dir(), "observed", "--store")
    else:
        checks.existing_store(store, "--store")
    with errors.user_errors(param="--store"):  # a store outside the schema
        ds = validation.open_dataset(store, allow_gaps=True, check_values="none")
    times = pd.DatetimeIndex(ds["time"].values)
    inits = pd.DatetimeIndex([pd.Timestamp(t) for t in init])
    missing = inits[~inits.isin(times)]
    if len(missing):
        raise errors.UserError(
            f"{', '.join(missing.strftime('%Y-%m-%d'))} not in {str(store)!r} "
            f"({str(times[0])[:7]} .. {str(times[-1])[:7]})",
            param="--init",
        )
    checks.existing_dir(workdir, "--workdir", TRAIN_FIRST)
    with errors.user_errors(FileNotFoundError, CheckpointKindError, param="--workdir"):
        predictor = domain.load(workdir)
    with errors.user_errors(KeyError, ValueError, param="--store"):
        result = predictor.forecast(ds, init_time=inits, months=months)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_zarr(out, mode="w", zarr_format=3, consolidated=False)
    typer.echo(
        f"{out}: {len(result.data_vars)} variables from {len(inits)} init month(s) at leads "
        f"1-{months} months"
    )


__all__ = ["check_run", "evaluate_ocean", "forecast_ocean", "ocean_dir", "train_ocean"]
