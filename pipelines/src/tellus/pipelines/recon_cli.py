"""``tellus train ocean_recon`` and ``tellus evaluate ocean_recon`` (also named ``recon``):
thin entry points over :mod:`tellus.ocean.recon` and :mod:`tellus.ocean.recon_evaluate`
(the embedded ocean's runs in ``$TELLUS_DATA/ocean/{model,observed}.zarr``, built by
``tellus data build ocean``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import checks, devices, errors, ocean_cli

DEFAULT_RUN = Path("runs") / "ocean_recon"
DEFAULT_REPORT = Path("runs") / "ocean_recon_report"
TRAIN_FIRST = "; train the diffusion model with `tellus train ocean_recon`"
# The CPU recipe of `just train-recon` (tellus.ocean.recon.Recipe's defaults).
CPU_PRESET, CPU_STEPS, CPU_BATCH, CPU_LR, CPU_EMA = "cpu", 1000, 4, 1e-3, 0.995
CPU_FINETUNE, CPU_FINETUNE_YEARS, CPU_FINETUNE_LR = 250, 4, 2e-4
COVERAGES = "1,2.5,5,7.5,10"
# ReconMOST's 5 x 5 Gaussian (sigma 1 cell), a wider 9 x 9 (sigma 2), none, or all three.
SPREADS = {
    "auto": ((5, 1.0), (9, 2.0), None),
    "on": ((5, 1.0),),
    "wide": ((9, 2.0),),
    "off": (None,),
}


def _data_option(value: Path | None) -> Path:
    if value is not None:
        checks.existing_dir(value, "--data", ocean_cli.BUILD_FIRST)
    return value or ocean_cli.ocean_dir()


def coverages(text: str) -> tuple[float, ...]:
    """``"1,2.5,5"`` (percent) -> ``(0.01, 0.025, 0.05)``.

    Raises:
      UserError: not numbers, or one outside (0, 100].
    """
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not 0.0 < v <= 100.0 for v in values):
        raise errors.UserError(
            f"{text!r} is not a comma-separated list of percentages in (0, 100], e.g. {COVERAGES}",
            param="--coverage",
        )
    return tuple(v / 100.0 for v in values)


def train_recon(
    workdir: Annotated[
        Path,
        typer.Option(help="Where the denoiser goes.", callback=checks.writable_dir_option),
    ] = DEFAULT_RUN,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder of model.zarr and observed.zarr (default $TELLUS_DATA/ocean, made "
            "by `tellus data build ocean`)."
        ),
    ] = None,
    preset: Annotated[str, typer.Option(help="Network preset: cpu or paper.")] = CPU_PRESET,
    steps: Annotated[int, typer.Option(help="Steps on the model run.", min=1)] = CPU_STEPS,
    finetune_steps: Annotated[
        int,
        typer.Option(
            help="Steps on the observed run's first years (0: pretraining only, as ReconMOST).",
            min=0,
        ),
    ] = CPU_FINETUNE,
    finetune_years: Annotated[
        int, typer.Option(help="Observed years to fine-tune on (from the first).", min=1)
    ] = CPU_FINETUNE_YEARS,
    finetune_lr: Annotated[
        float, typer.Option(help="Peak learning rate of the fine-tuning.", min=0.0)
    ] = CPU_FINETUNE_LR,
    batch: Annotated[int, typer.Option(help="Batch size (months).", min=1)] = CPU_BATCH,
    lr: Annotated[float, typer.Option(help="Peak learning rate.", min=0.0)] = CPU_LR,
    ema_decay: Annotated[
        float, typer.Option(help="Decay of the EMA of the weights (what reconstructs).")
    ] = CPU_EMA,
    anomalies: Annotated[
        bool,
        typer.Option(
            help="Model temperature anomalies from the training months' calendar-month "
            "climatology (--no-anomalies: ReconMOST's full temperature in [-5, 40] C)."
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="Initialization, shuffling and noise.")] = 0,
    mesh: Annotated[str | None, typer.Option(help=devices.MESH_HELP)] = None,
) -> None:
    """Pretrain the ocean diffusion model (ReconMOST's denoiser) on every month of the model
    run, unconditionally, with an EMA of the weights, then fine-tune it on the observed run's
    first years (resumes after a kill)."""
    from tellus.kernels import partitioning
    from tellus.ocean import recon, unet

    t0 = time.perf_counter()
    checks.choice(preset, unet.PRESETS, "--preset")
    for value, name in ((lr, "--lr"), (finetune_lr, "--finetune-lr")):
        if not value > 0:
            raise errors.UserError(f"{value:g} is not a learning rate > 0", param=name)
    recipe = recon.Recipe(
        steps=steps,
        batch_size=batch,
        learning_rate=lr,
        ema_decay=ema_decay,
        finetune_steps=finetune_steps,
        finetune_years=finetune_years,
        finetune_lr=finetune_lr,
        anomalies=anomalies,
        preset=preset,
        seed=seed,
    )
    with errors.user_errors(ValueError, param="--ema-decay"):
        recipe.check()
    run_on = devices.resolve(mesh, batch)
    folder = _data_option(data)
    model_store = ocean_cli.check_run(folder, "model", "--data")
    observed = ocean_cli.check_run(folder, "observed", "--data") if finetune_steps else None
    if observed is not None:
        with errors.user_errors(ValueError, param="--finetune-years"):
            recon.finetune_months(observed, finetune_years)
    typer.echo(run_on.describe(remat="off", bf16=False))
    with errors.user_errors(ValueError, param="--data"):  # no 3D temperature, other grids
        info = recon.train_recon(
            workdir,
            model_store,
            observed,
            recipe=recipe,
            mesh=run_on.mesh(),
            rules=partitioning.RULES,
        )
    for phase, h in info["histories"].items():
        typer.echo(f"{phase}: {f'final loss {h[-1][1]:.4f}' if h else 'already trained'}")
    typer.echo(f"train-recon done in {time.perf_counter() - t0:.0f} s; denoiser in {workdir}")


def evaluate_recon(
    workdir: Annotated[Path, typer.Option(help="The trained denoiser.")] = DEFAULT_RUN,
    data: Annotated[
        Path | None,
        typer.Option(help="Folder of observed.zarr (default $TELLUS_DATA/ocean)."),
    ] = None,
    report: Annotated[
        Path, typer.Option(help="Report folder.", callback=checks.writable_dir_option)
    ] = DEFAULT_REPORT,
    coverage: Annotated[
        str, typer.Option(help="Coverages in percent of the ocean points down to 2 000 m.")
    ] = COVERAGES,
    test_months: Annotated[
        int, typer.Option(help="The last months of the observed run reconstructed.", min=1)
    ] = 12,
    steps: Annotated[
        int, typer.Option(help="DDIM steps per reconstruction.", min=1, max=1000)
    ] = 50,
    samples: Annotated[int, typer.Option(help="Samples per month.", min=2)] = 4,
    scale: Annotated[
        float | None,
        typer.Option(
            help="A fixed guidance scale (default: chosen on validation months).", min=0.0
        ),
    ] = None,
    mode: Annotated[str, typer.Option(help="Guidance: x0 or posterior.")] = "x0",
    spread: Annotated[
        str,
        typer.Option(
            help="Spread the x0 guidance to neighbouring cells: on (ReconMOST's 5 x 5 "
            "Gaussian), wide (9 x 9, sigma 2 cells), off, or auto (chosen with the scale on "
            "the validation months)."
        ),
    ] = "auto",
    eta: Annotated[
        float,
        typer.Option(
            help="DDIM stochasticity: 1 draws new noise every step (DDPM-like), 0 is "
            "deterministic.",
            min=0.0,
            max=1.0,
        ),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Profiles and sampler noise.")] = 0,
) -> None:
    """Reconstruct the observed run's last months from Argo-like profiles at each coverage;
    ReconMOST's MSEs against climatology, nearest neighbour and GP optimal interpolation;
    spread-error; PNGs and summary.json in the report folder."""
    from tellus.ocean import diffusion, recon, recon_evaluate

    t0 = time.perf_counter()
    checks.choice(mode, diffusion.MODES, "--mode")
    checks.choice(spread, SPREADS, "--spread")
    settings = recon_evaluate.Settings(
        coverages=coverages(coverage),
        test_months=test_months,
        steps=steps,
        samples=samples,
        mode=mode,
        eta=eta,
        spreads=SPREADS[spread],
        scale=scale,
        seed=seed,
    )
    with errors.user_errors(ValueError, param="--test-months"):
        settings.check()  # (coverages and samples are checked above)
    checks.existing_dir(workdir, "--workdir", TRAIN_FIRST)
    with errors.user_errors(FileNotFoundError, param="--workdir"):
        recon.read_info(workdir)
        recon.find_phase(workdir)  # a phase with checkpoints: finetune/, pretrain/ or itself
    observed = ocean_cli.check_run(_data_option(data), "observed", "--data")
    with errors.user_errors(ValueError, param="--data"):
        summary = recon_evaluate.run(workdir, observed, report, settings=settings)
    choice = summary["guidance_scale"]
    typer.echo(f"guidance scale {choice['scale']:g}, spread {choice['spread']}")
    for c, by in summary["mse"].items():
        line = ", ".join(f"{s} {v['mse_withheld']:.3f}" for s, v in by.items())
        typer.echo(f"{100 * float(c):g} %: withheld-point MSE (deg C^2): {line}")
    bar = summary["bar"]
    typer.echo(
        f"bar: beats GP OI at 5 %: {bar['beats_gp_withheld_at_5_percent']}, beats climatology "
        f"at every coverage: {all(bar['beats_climatology_withheld'].values())} -> "
        f"{'pass' if bar['pass'] else 'FAIL'}"
    )
    typer.echo(f"report in {report} ({time.perf_counter() - t0:.0f} s)")


__all__ = ["coverages", "evaluate_recon", "train_recon"]
