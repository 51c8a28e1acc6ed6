"""``tellus train enso``, ``tellus forecast enso`` and ``tellus evaluate enso`` (also
``tellus evaluate-enso``): thin entry points over :mod:`tellus.enso`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import checks, devices, errors, paths

DEFAULT_RUN = Path("runs") / "enso"
DEFAULT_REPORT = Path("runs") / "enso_report"
DEFAULT_FORECAST = Path("runs") / "enso_forecast.nc"
TRAIN_FIRST = "; train the ensemble with `tellus train enso`"
# The CPU recipe of `just train-enso`: about 25 min on 2 cores, the ensemble at >= 93 % of the
# exact optimum from 6 to 24 months (docs/results.md, "After the Domain contract").
CPU_PRESET, CPU_SEEDS, CPU_PRETRAIN, CPU_FINETUNE, CPU_BATCH = "small", 5, 1200, 80, 32


def worlds_dir() -> Path:
    """Where the ENSO worlds live: ``$TELLUS_DATA/enso`` (default ``./data/enso``)."""
    return paths.data_dir() / "enso"


def build_worlds(directory: Path | None = None, model_years: int = 1200, observed_years: int = 150):
    """Builds (or finishes, or just opens) ``model.zarr`` and ``observed.zarr``."""
    from tellus.data.errors import LockedError
    from tellus.enso import world

    directory = directory or worlds_dir()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return tuple(
            world.build_world(kind, years, path=directory / f"{kind}.zarr")
            for kind, years in (("model", model_years), ("observed", observed_years))
        )
    except LockedError as e:  # another process is building a world: one line, not a trace
        typer.echo(f"cannot build the ENSO worlds: {e}", err=True)
        raise typer.Exit(1) from e


def open_worlds(directory: Path | None = None):
    """Opens the worlds the ensemble was trained on, whatever their length; builds the
    default ones where none exist."""
    from tellus.data import validation, writing

    directory = directory or worlds_dir()
    stores = [directory / f"{kind}.zarr" for kind in ("model", "observed")]
    if all(
        p.exists() and len(writing.completed_chunks(p)) == writing.expected_chunks(p)
        for p in stores
    ):
        return tuple(validation.open_dataset(p) for p in stores)
    return build_worlds(directory)


def _shape_only(n_years: int, param: str):
    """A :class:`tellus.enso.train.Series` of ``n_years`` of a world, without values (for
    the library's own sample counts and split checks before the world is built)."""
    import numpy as np

    from tellus.enso import train, world

    segments = -(-n_years // world.MAX_SEGMENT_YEARS)  # as world.build_world cuts it
    if n_years % segments:
        raise errors.UserError(
            f"{n_years} years above {world.MAX_SEGMENT_YEARS} must split into equal segments "
            f"of at most {world.MAX_SEGMENT_YEARS} years (e.g. {segments * (n_years // segments)})",
            param=param,
        )
    months = n_years // segments * 12
    return train.Series(
        fields=np.empty((segments, months, 0, 0, 0), np.float32),
        index=np.empty((segments, months), np.float32),
        months=np.arange(months) % 12 + 1,
        nino34=np.empty((segments, months), np.float32),
    )


def _n_samples(series, param: str, years: int, first: int = 0, last: int | None = None) -> int:
    """Samples (inputs and every lead's target) between months ``first`` and ``last``."""
    from tellus.enso import train

    n = len(train.inits_between(series, first, series.n_time - 1 if last is None else last))
    if n == 0:
        raise errors.UserError(
            f"{years} years hold no sample of {train.HISTORY} input months and "
            f"{train.TARGET_REACH} months of targets",
            param=param,
        )
    return n


def _check_training(
    preset: str,
    lead_rank: int | None,
    batch: int,
    split,
    model_years: int,
    observed_years: int,
) -> None:
    """Everything :func:`tellus.enso.train.train_enso` would find wrong, found before the
    worlds are built."""
    from tellus.enso import model as model_lib
    from tellus.enso import train

    checks.choice(preset, model_lib.PRESETS, "--preset")
    if lead_rank is not None and not 0 <= lead_rank < train.N_LEADS:
        raise errors.UserError(
            f"{lead_rank} is not in [0, {train.N_LEADS}) (0: a full-rank head)",
            param="--lead-rank",
        )
    pre = _shape_only(model_years, "--model-years")
    obs = _shape_only(observed_years, "--observed-years")
    with errors.user_errors(ValueError, what="--finetune-years / --test-years"):
        split.check(obs)
    n_pre = _n_samples(pre, "--model-years", model_years)
    n_ft = _n_samples(
        obs, "--finetune-years", split.finetune_years, last=split.finetune_years * 12 - 1
    )
    if batch > min(n_pre, n_ft):
        raise errors.UserError(
            f"{batch} is more than the {min(n_pre, n_ft)} samples of the "
            f"{'model run' if n_pre < n_ft else 'fine-tuning years'}",
            param="--batch",
        )


def train_enso(
    workdir: Annotated[
        Path, typer.Option(help="Where the ensemble goes.", callback=checks.writable_dir_option)
    ] = DEFAULT_RUN,
    worlds: Annotated[
        Path | None,
        typer.Option(
            help="Folder of model.zarr and observed.zarr "
            "(default $TELLUS_DATA/enso, built if "
            "missing).",
            callback=checks.writable_dir_option,
        ),
    ] = None,
    preset: Annotated[str, typer.Option(help="Model preset: tiny, small or paper.")] = (CPU_PRESET),
    lead_rank: Annotated[
        int | None,
        typer.Option(
            help="Features every lead is read from (the head's rank); 0 for a full-rank head "
            "(default: the preset's, 4)."
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Ensemble members.", min=1)] = CPU_SEEDS,
    pretrain_steps: Annotated[
        int, typer.Option(help="Steps on the model run.", min=1)
    ] = CPU_PRETRAIN,
    finetune_steps: Annotated[int, typer.Option(help="Steps on the observed years.", min=1)] = (
        CPU_FINETUNE
    ),
    batch: Annotated[int, typer.Option(help="Batch size.", min=1)] = CPU_BATCH,
    finetune_years: Annotated[
        int, typer.Option(help="Observed years to fine-tune on.", min=1)
    ] = 100,
    test_years: Annotated[int, typer.Option(help="Last observed years held out.", min=1)] = 40,
    model_years: Annotated[
        int, typer.Option(help="Length of the model (pretraining) run.", min=1)
    ] = 1200,
    observed_years: Annotated[int, typer.Option(help="Length of the observed run.", min=1)] = 150,
    mesh: Annotated[str | None, typer.Option(help=devices.MESH_HELP)] = None,
    remat: Annotated[
        bool,
        typer.Option(
            help="Rematerialize the forward pass in the backward pass (Budget.remat: the "
            "whole loss under jax.checkpoint; ResoNet has no per-block remat). Both phases "
            "use it."
        ),
    ] = False,
    bf16: Annotated[bool, typer.Option(help=devices.BF16_HELP)] = False,
    profile_steps: Annotated[str | None, typer.Option(help=devices.PROFILE_HELP)] = None,
) -> None:
    """Pretrain on the model world, fine-tune on early observed years (resumes after a kill)."""
    from tellus.enso import train
    from tellus.kernels import partitioning

    t0 = time.perf_counter()
    split = train.ObservedSplit(finetune_years, test_years)
    _check_training(preset, lead_rank, batch, split, model_years, observed_years)
    profile = devices.profile_steps(profile_steps)
    run_on = devices.resolve(mesh, batch)
    typer.echo(run_on.describe(remat="whole loss" if remat else "off", bf16=bf16))
    model_ds, observed_ds = build_worlds(worlds, model_years, observed_years)
    typer.echo(f"worlds ready in {time.perf_counter() - t0:.1f} s")
    info = train.train_enso(
        workdir,
        model_ds,
        observed_ds,
        preset=preset,
        model_overrides={} if lead_rank is None else {"lead_rank": lead_rank or None},
        seeds=tuple(range(seeds)),
        budget=train.Budget(
            pretrain_steps,
            finetune_steps,
            batch,
            compute_dtype="bfloat16" if bf16 else "float32",
            remat=remat,
            profile_steps=profile,
        ),
        split=split,
        mesh=run_on.mesh(),
        rules=partitioning.RULES,
    )
    for seed, h in info["histories"].items():
        if not any(h.values()):
            typer.echo(f"member {seed}: already trained, nothing to resume")
            continue
        last = {k: (round(v[-1][1], 4) if v else None) for k, v in h.items()}
        typer.echo(f"member {seed}: final losses {last}")
    typer.echo(f"train-enso done in {time.perf_counter() - t0:.0f} s; models in {workdir}")


def evaluate_enso(
    workdir: Annotated[Path, typer.Option(help="The trained ensemble.")] = DEFAULT_RUN,
    worlds: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the worlds the ensemble was trained on "
            "(default $TELLUS_DATA/enso, built if missing)."
        ),
    ] = None,
    report: Annotated[
        Path, typer.Option(help="Report folder.", callback=checks.writable_dir_option)
    ] = DEFAULT_REPORT,
    long_test_years: Annotated[
        int,
        typer.Option(
            help="Years of an independent draw of the observed world to score on as well "
            "(0 to skip).",
            min=0,
        ),
    ] = 1200,
    explain_steps: Annotated[
        int,
        typer.Option(
            help="Integration points of the integrated-gradients explanations (more: "
            "attributions that add up more closely to the forecast, slower).",
            min=1,
        ),
    ] = 16,
) -> None:
    """Skill by lead and season against persistence, damped persistence, a LIM and the
    exact optimum, on the observed test years and on a long independent draw of the
    observed world; explanations; PNGs and summary.json in the report folder."""
    from rich.console import Console

    from tellus.enso import skill, train

    t0 = time.perf_counter()
    if not (workdir / "ensemble.json").exists():
        raise errors.UserError(
            f"no trained ensemble in {str(workdir)!r} (ensemble.json missing); "
            f"run `tellus train enso` first",
            param="--workdir",
        )
    if worlds is not None:  # the worlds it was trained on, not new ones in a mistyped folder
        checks.existing_dir(worlds, "--worlds")
        for kind in ("model", "observed"):
            checks.existing_store(
                worlds / f"{kind}.zarr", "--worlds", "; give the --worlds of `tellus train enso`"
            )
    if long_test_years:
        years = _shape_only(long_test_years, "--long-test-years")
        _n_samples(years, "--long-test-years", long_test_years)
    with errors.user_errors(FileNotFoundError, param="--workdir"):  # an unfinished training
        for phase in ("pretrain", "finetune"):
            train.load_ensemble(workdir, phase=phase)
    model_ds, observed_ds = open_worlds(worlds)
    summary, _ = skill.evaluate_ensemble(
        workdir,
        model_ds,
        observed_ds,
        report,
        long_test_years=long_test_years,
        explain_steps=explain_steps,
    )
    console = Console()
    _print_skill(console, summary, f"the last {summary['test_years']} observed years")
    if summary["long_test"]:
        lt = summary["long_test"]
        _print_skill(console, lt, f"{lt['years']} independent observed-world years")
    ex = summary["explanation"]
    console.print(
        f"attribution in western-Pacific heat content (fair share "
        f"{ex['fair_share']:.3f}): {ex['wp_heat_fraction']}"
    )
    console.print(f"report in {report} ({time.perf_counter() - t0:.0f} s)")


def _forecast_out_option(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Callback: ``value`` is a Zarr store to write (``.zarr``) or a NetCDF file, in a folder
    that is or can be made."""
    if value is None or value.suffix == ".zarr":
        return checks.replaceable_store_option(param, value)
    if value.is_dir():
        raise errors.UserError(
            f"{str(value)!r} is a folder; expected a NetCDF file name (or a .zarr store)",
            param=errors.param_name(param),
        )
    checks.writable_dir(value.absolute().parent, errors.param_name(param))
    return value


def forecast_enso(
    init: Annotated[
        list[str],
        typer.Option(
            help="Init month(s), e.g. 1990-12: the last of the 3 months of maps read.",
            callback=checks.timestamps_option,
        ),
    ],
    store: Annotated[
        Path | None,
        typer.Option(
            help="World store of the SST and heat-content anomaly maps (default: the "
            "observed world, $TELLUS_DATA/enso/observed.zarr)."
        ),
    ] = None,
    workdir: Annotated[Path, typer.Option(help="The trained ensemble.")] = DEFAULT_RUN,
    out: Annotated[
        Path,
        typer.Option(
            help="NetCDF file, or a Zarr store if it ends in .zarr (replaced if it exists).",
            callback=_forecast_out_option,
        ),
    ] = DEFAULT_FORECAST,
) -> None:
    """The ensemble's Nino3.4 (centred 3-month mean) at leads 1-24 months from init months
    of a world store: dims (init_time, lead), the members' too."""
    from tellus.data import validation
    from tellus.enso import domain
    from tellus.enso import forecast as fc_lib
    from tellus.training.checkpoint import CheckpointKindError

    hint = "; build the worlds with `tellus train enso`" if store is None else ""
    store = store or worlds_dir() / "observed.zarr"
    checks.existing_store(store, "--store", hint)
    with errors.user_errors(param="--store"):  # a store outside the schema
        ds = validation.open_dataset(store, allow_gaps=True, check_values="none")
    with errors.user_errors(KeyError, param="--store"):
        fc_lib.check_inputs(ds, str(store))
    with errors.user_errors(KeyError, ValueError, param="--init"):
        fc_lib.init_positions(ds, init, where=str(store))  # before any model is loaded
    checks.existing_dir(workdir, "--workdir", TRAIN_FIRST)
    with errors.user_errors(FileNotFoundError, CheckpointKindError, param="--workdir"):
        predictor = domain.load(workdir)
    with errors.user_errors(KeyError, ValueError):  # the store's variables and grid
        result = predictor.forecast(ds, init_time=init, where=str(store))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".zarr":
        result.to_zarr(out, mode="w", zarr_format=3, consolidated=False)
    else:
        result.to_netcdf(out)
    typer.echo(
        f"{out}: Nino3.4 from {result.sizes[fc_lib.INIT_TIME]} init month(s) at leads "
        f"1-{result.sizes[fc_lib.LEAD]} months, {result.sizes[fc_lib.MEMBER]} member(s)"
    )
    if result[fc_lib.NINO34].ndim == 2:  # (init_time, lead): no realizations to list
        from tellus.enso import skill

        shown = [k for k in skill.SUMMARY_LEADS if k <= result.sizes[fc_lib.LEAD]]
        for t in range(result.sizes[fc_lib.INIT_TIME]):
            row = result[fc_lib.NINO34].isel({fc_lib.INIT_TIME: t})
            month = str(row[fc_lib.INIT_TIME].values)[:7]
            values = ", ".join(f"{k} mo {float(row.sel({fc_lib.LEAD: k})):+.2f}" for k in shown)
            typer.echo(f"  {month}: {values} K")


def _print_skill(console, summary: dict, where: str) -> None:
    """The correlation table and the verdicts against the baselines."""
    from rich.table import Table

    from tellus.enso import skill

    table = Table(
        title=f"Nino3.4 (3-month mean) correlation on {where} ({summary['n_starts']} starts)"
    )
    table.add_column("system")
    for lead in skill.SUMMARY_LEADS:
        table.add_column(f"{lead} mo", justify="right")
    table.add_column("> 0.5 to", justify="right")
    longest = summary["longest_lead_above_0.5"]
    rows = {**summary["correlation"], "optimal": summary["optimal_correlation"]}
    for name, by_lead in rows.items():
        table.add_row(
            name, *(f"{by_lead[k]:.2f}" for k in skill.SUMMARY_LEADS), str(longest.get(name, ""))
        )
    frac = summary["fraction_of_optimal"]["resonet"]
    table.add_row("resonet / optimal", *(f"{frac[k]:.2f}" for k in skill.SUMMARY_LEADS), "")
    console.print(table)
    for other, b in summary["resonet_beats"].items():
        lo, hi = b["mean_diff_90pct_interval"]
        console.print(
            f"resonet beats {other} at {b['leads_ge_6_won']}/{b['of']} leads >= 6 "
            f"({b['leads_ge_6_won_at_90pct']} beyond the 90 % bootstrap interval, "
            f"{b['leads_ge_6_lost_at_90pct']} lost beyond it); mean correlation gain "
            f"{b['mean_diff_lead_ge_6']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        )


__all__ = [
    "build_worlds",
    "evaluate_enso",
    "forecast_enso",
    "open_worlds",
    "train_enso",
    "worlds_dir",
]
