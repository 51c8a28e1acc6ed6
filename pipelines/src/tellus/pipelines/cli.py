"""The ``tellus`` command: thin entry points over the libraries."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import (
    atmosphere_cli,
    bench,
    checks,
    data_cli,
    demo,
    domain_cli,
    enso_cli,
    errors,
    fm_study,
    launch_cli,
    ocean_cli,
    paths,
    plan_cli,
    pretrain_cli,
    prune_cli,
    prune_study,
    recon_cli,
)

app = typer.Typer(
    cls=errors.TellusGroup,
    help="Tellus: Earth-system foundation models in JAX.",
    no_args_is_help=True,
)
app.add_typer(data_cli.app, name="data")
# `tellus train|forecast|evaluate DOMAIN`: one subcommand per domain. forecast and evaluate
# without a domain are the atmosphere's (their form before they took one).
train_app = domain_cli.app("Train a domain's models.")
train_app.command("atmosphere")(atmosphere_cli.train_atmosphere)
train_app.command("enso")(enso_cli.train_enso)
train_app.command("ocean")(ocean_cli.train_ocean)
train_app.command("ocean_recon")(recon_cli.train_recon)
train_app.command("recon", hidden=True, help="The short name of `tellus train ocean_recon`.")(
    recon_cli.train_recon
)
app.add_typer(train_app, name="train")
forecast_app = domain_cli.app(
    "Forecast with a domain's trained models (no DOMAIN: the atmosphere).",
    default=domain_cli.DEFAULT_DOMAIN,
)
forecast_app.command("atmosphere")(atmosphere_cli.forecast)
forecast_app.command("enso")(enso_cli.forecast_enso)
forecast_app.command("ocean")(ocean_cli.forecast_ocean)
forecast_app.command("earth")(pretrain_cli.forecast_earth)
app.add_typer(forecast_app, name="forecast")
evaluate_app = domain_cli.app(
    "Score a domain's trained models against its baselines (no DOMAIN: the atmosphere).",
    default=domain_cli.DEFAULT_DOMAIN,
)
evaluate_app.command("atmosphere")(atmosphere_cli.evaluate)
evaluate_app.command("enso")(enso_cli.evaluate_enso)
evaluate_app.command("ocean")(ocean_cli.evaluate_ocean)
evaluate_app.command("ocean_recon")(recon_cli.evaluate_recon)
evaluate_app.command("recon", hidden=True, help="The short name of `tellus evaluate ocean_recon`.")(
    recon_cli.evaluate_recon
)
app.add_typer(evaluate_app, name="evaluate")
app.command("evaluate-enso", hidden=True, help="The older name of `tellus evaluate enso`.")(
    enso_cli.evaluate_enso
)
app.command("plan")(plan_cli.plan)
app.command("bench")(bench.bench)
app.command("pretrain")(pretrain_cli.pretrain)
app.add_typer(launch_cli.app, name="launch")
study_app = typer.Typer(help="Studies that train and compare many models.", no_args_is_help=True)
study_app.command("fm")(fm_study.study)
study_app.command("prune")(prune_study.study)
app.add_typer(study_app, name="study")
app.command("finetune")(pretrain_cli.finetune)
prune_app = domain_cli.app(
    "Remove a trained model's attention layers that add the least entropy (Lin et al. 2024)."
)
prune_app.command("atmosphere")(prune_cli.prune_atmosphere)
prune_app.command("enso")(prune_cli.prune_enso)
app.add_typer(prune_app, name="prune")


demo_app = domain_cli.app(
    "The stories of `just demo`: the foundation model (no DOMAIN), or one domain's.",
    default="earth",
)
demo_app.command("earth")(demo.demo)


@demo_app.command("atmosphere")
def demo_atmosphere(
    store: Annotated[
        Path | None,
        typer.Option(
            help="Atmosphere store (default: the embedded dataset, built if missing).",
            callback=checks.writable_dir_option,
        ),
    ] = None,
    workdir: Annotated[
        Path, typer.Option(help="Where the lead models go.", callback=checks.writable_dir_option)
    ] = atmosphere_cli.DEFAULT_RUN,
    report: Annotated[
        Path, typer.Option(help="Report folder.", callback=checks.writable_dir_option)
    ] = Path("runs/report"),
) -> None:
    """The atmosphere: build the embedded data if missing, train the CPU Pangu preset,
    evaluate it against persistence and climatology, and write the scorecard and plots."""
    from tellus.data import describe

    store = store or paths.default_store("atmosphere")
    typer.echo("== 1/3 the embedded Held-Suarez atmosphere dataset")
    data_cli.build_atmosphere(store)
    describe.render(describe.summarize(store))
    typer.echo("== 2/3 training the lead-time models (cpu preset; resumes after a kill)")
    atmosphere_cli.train_atmosphere(
        store=store,
        workdir=workdir,
        preset=atmosphere_cli.CPU_PRESET,
        leads=None,
        steps=atmosphere_cli.CPU_STEPS,
        batch=atmosphere_cli.CPU_BATCH,
        residual=True,
        loss=atmosphere_cli.CPU_LOSS,
        rollout=atmosphere_cli.CPU_ROLLOUT,
        finetune=atmosphere_cli.CPU_FINETUNE,
    )
    typer.echo("== 3/3 evaluating against persistence and climatology")
    atmosphere_cli.evaluate(
        store=store,
        workdir=workdir,
        report=report,
        lead="5d",
        every="6h",
        init_every="24h",
        max_inits=None,
        naive=True,
    )


@demo_app.command("enso")
def demo_enso() -> None:
    """ENSO: the embedded worlds, the ResoNet ensemble (resumes after a kill), its skill by
    lead and season against the baselines and the optimum, and explanations."""
    typer.echo("== 1/2 the embedded worlds and the ResoNet ensemble (resumes after a kill)")
    enso_cli.train_enso()
    typer.echo("== 2/2 skill by lead and season, explanations")
    enso_cli.evaluate_enso()


app.add_typer(demo_app, name="demo")


# Library warnings that tell a user of the command nothing they can act on.
QUIET_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # zarr 3 writes consolidated metadata (an extension) when xarray asks for it.
    ("Consolidated metadata is currently not part", UserWarning),
    # xarray, reading a store without consolidated metadata: it reads it anyway.
    ("Failed to open Zarr store with consolidated metadata", RuntimeWarning),
    # zarr, about files beside the hierarchy in a store (lock and progress files).
    ("Object at .* is not recognized as a component of a Zarr hierarchy", UserWarning),
    # zarr, about string and datetime dtypes whose v3 encoding is not yet specified.
    ("The data type .* does not have a Zarr V3 specification", FutureWarning),
)


def quiet_library_warnings() -> None:
    """Hides :data:`QUIET_WARNINGS` for the rest of the process (the command's own run)."""
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def main() -> None:
    """The ``tellus`` console script."""
    quiet_library_warnings()
    app()


if __name__ == "__main__":
    main()
