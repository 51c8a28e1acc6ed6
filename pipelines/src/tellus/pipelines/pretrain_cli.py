"""``tellus pretrain --config FILE``: the Earth model pretrained on every store of an
experiment file at once (:mod:`tellus.pipelines.experiment`,
:func:`tellus.training.pretraining.pretrain`); ``tellus finetune --config FILE``: a
pretrained model fine-tuned on the file's one task
(:func:`tellus.training.finetuning.finetune`). Both resume after a kill. ``tellus forecast
earth``: either one's model forecasting one of its tasks from a store
(:meth:`tellus.training.earth_forecast.EarthPredictor.rollout`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import checks, devices, errors, experiment


def _mesh_error(e: errors.UserError) -> errors.UserError:
    """devices.resolve names --mesh/--batch; in a file they are train.mesh/train.batch."""
    text = str(e).replace("--mesh", "train.mesh").replace("--batch", "train.batch")
    return errors.UserError(text)


def _setup(config: Path, *, finetune: bool = False):
    """The checked experiment, its devices, model, training config and tasks."""
    try:
        exp = experiment.load(config)
    except experiment.ExperimentError as e:
        raise errors.UserError(str(e), param="--config") from None
    if finetune and exp.finetune is None:
        raise errors.UserError(
            f"{config}: no [finetune] section (pretrained = the pretraining's workdir)",
            param="--config",
        )
    if finetune and len(exp.tasks) != 1:
        raise errors.UserError(
            f"{config}: tasks: fine-tuning takes one task, got {len(exp.tasks)}", param="--config"
        )
    try:
        run_on = devices.resolve(exp.train.mesh, exp.train.batch)
    except errors.UserError as e:
        raise errors.UserError(f"{config}: {_mesh_error(e)}", param="--config") from None

    from tellus.kernels import earth_model as em
    from tellus.training import config as train_config
    from tellus.training import pretraining

    model = em.preset(exp.model.preset)
    trunk = {"drop_path": exp.model.drop_path, "depths": exp.model.depths}
    trunk = {k: v for k, v in trunk.items() if v is not None}
    if trunk:
        with errors.user_errors(ValueError, what=f"{config}: model"):
            model = dataclasses.replace(model, trunk=dataclasses.replace(model.trunk, **trunk))
    t = exp.train
    overrides: dict = {} if t.checkpoint_every is None else {"checkpoint_every": t.checkpoint_every}
    if t.profile_steps is not None:
        overrides["profile_steps"] = t.profile_steps
    train = train_config.warmup_cosine(t.steps, t.batch, t.learning_rate, seed=t.seed, **overrides)
    if t.warmup is not None:
        train = dataclasses.replace(
            train, optimizer=dataclasses.replace(train.optimizer, warmup_steps=t.warmup)
        )
    data = [
        pretraining.StoreData(
            name=k.name,
            domain=k.domain,
            store=k.store,
            variables=tuple(k.variables),
            levels=tuple(k.levels),
            lead=k.lead,
            start=k.start,
            stop=k.stop,
            weight=k.weight,
            index=k.index,
            index_variable=k.index_variable,
        )
        for k in exp.tasks
    ]
    with errors.user_errors(ValueError, KeyError, what=f"{config}"):
        pretraining.open_tasks(data)  # each store has the task's variables and windows
    return exp, run_on, model, train, data


def _losses(by_task: dict[str, list[tuple[int, float]]]) -> None:
    for name, hist in by_task.items():
        if hist:
            typer.echo(f"{name}: loss {hist[0][1]:.4f} -> {hist[-1][1]:.4f} over {len(hist)} steps")
        else:
            typer.echo(f"{name}: already trained")


CONFIG_HELP = (
    "Experiment file (TOML): model, training and the stores to train on; see "
    "pipelines/configs/pretrain-cpu.toml."
)


def pretrain(config: Annotated[Path, typer.Option(help=CONFIG_HELP)]) -> None:
    """Pretrain one Earth model on several stores at once (resumes from the last checkpoint)."""
    exp, run_on, model, train, data = _setup(config)
    from tellus.kernels import partitioning
    from tellus.training import pretraining

    typer.echo(run_on.describe(remat="off", bf16=False))
    t0 = time.perf_counter()
    out = pretraining.pretrain(
        model,
        data,
        exp.workdir_path,
        train,
        mesh=run_on.mesh(),
        rules=partitioning.RULES,
    )
    _losses(out["by_task"])
    typer.echo(f"pretrain done in {time.perf_counter() - t0:.0f} s; model in {exp.workdir_path}")


def finetune(config: Annotated[Path, typer.Option(help=CONFIG_HELP)]) -> None:
    """Fine-tune a pretrained Earth model on the one task of an experiment file with a
    [finetune] section (new variables' embeddings and heads fresh; resumes)."""
    exp, run_on, _, train, data = _setup(config, finetune=True)
    from tellus.kernels import partitioning
    from tellus.training import finetuning

    typer.echo(run_on.describe(remat="off", bf16=False))
    t0 = time.perf_counter()
    f = exp.finetune
    with errors.user_errors(finetuning.FinishedError, what=f"{config}"):
        out = finetuning.finetune(
            f.pretrained,
            data[0],
            exp.workdir_path,
            train,
            mode=f.mode,
            new_lr_scale=f.new_lr_scale,
            lora_rank=f.lora_rank,
            keep_checkpoints=f.keep_checkpoints,
            mesh=run_on.mesh(),
            rules=partitioning.RULES,
        )
    typer.echo(
        f"{len(out['new'])} parameter arrays new, {len(out['trainable'])} trained, "
        f"{len(out['frozen'])} frozen (mode {f.mode})"
    )
    if out["adapters"]:
        typer.echo(f"trained arrays saved alone in {out['adapters']} (on {f.pretrained})")
    hist = out["history"]
    _losses({data[0].name: hist})
    typer.echo(f"finetune done in {time.perf_counter() - t0:.0f} s; model in {exp.workdir_path}")


def forecast_earth(
    workdir: Annotated[
        Path, typer.Option(help="A pretraining's or fine-tune's workdir (its `workdir =`).")
    ],
    store: Annotated[
        Path,
        typer.Option(
            help="Zarr store of the initial states, in the schema, holding the task's "
            "variables (any grid).",
        ),
    ],
    init: Annotated[
        list[str] | None,
        typer.Option(
            help="Init time(s), e.g. 2000-03-01 (default: every time of the store).",
            callback=checks.timestamps_option,
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="The task to run (default: the model's only one).")
    ] = None,
    steps: Annotated[
        int,
        typer.Option(help="Forecasts chained, each from the one before (field tasks).", min=1),
    ] = 1,
    out: Annotated[
        Path,
        typer.Option(
            help="Zarr store of the forecast (WeatherBench2 forecast layout; replaced if it "
            "exists).",
            callback=checks.replaceable_store_option,
        ),
    ] = Path("runs/earth_forecast.zarr"),
) -> None:
    """Forecast with a pretrained or fine-tuned Earth model: one of its tasks from a store's
    states, at the task's lead, STEPS times chained; an index task gives its index by lead."""
    import pandas as pd

    from tellus.data import validation
    from tellus.training import earth_forecast

    checks.existing_dir(workdir, "--workdir", "; run `tellus pretrain` or `tellus finetune`")
    if not earth_forecast.is_earth_model(workdir):
        raise errors.UserError(
            f"{str(workdir)!r} holds no Earth model (no checkpoint of kind earth.model, no "
            "adapters); expected a `tellus pretrain` or `tellus finetune` workdir",
            param="--workdir",
        )
    checks.existing_store(store, "--store")
    with errors.user_errors(param="--store"):  # a store outside the schema
        ds = validation.open_dataset(store, allow_gaps=True, check_values="none")
    if init:
        times = pd.DatetimeIndex(ds["time"].values)
        wanted = pd.DatetimeIndex([checks.timestamp(t, "--init") for t in init])
        missing = wanted[~wanted.isin(times)]
        if len(missing):
            raise errors.UserError(
                f"{', '.join(missing.astype(str))} not in {str(store)!r} "
                f"({times[0]} .. {times[-1]})",
                param="--init",
            )
    with errors.user_errors(FileNotFoundError, param="--workdir"):
        predictor = earth_forecast.load(workdir)
    names = ", ".join(sorted(predictor.tasks))
    if task is None and len(predictor.tasks) > 1:
        raise errors.UserError(
            f"{str(workdir)!r} was trained on several tasks: name one ({names})", param="--task"
        )
    if task is not None and task not in predictor.tasks:
        raise errors.UserError(
            f"task {task!r} is not one of {str(workdir)!r}'s: {names}", param="--task"
        )
    data = predictor.tasks[task] if task else next(iter(predictor.tasks.values()))
    if data.index and steps != 1:
        raise errors.UserError(
            f"task {data.name!r} forecasts its {data.index} index at leads 1..{data.lead} at "
            f"once; expected 1, got {steps}",
            param="--steps",
        )
    with errors.user_errors(ValueError, param="--store"):  # variables, levels, grid
        result = predictor.rollout(
            ds, task=data.name, init_time=wanted if init else None, steps=steps
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_zarr(out, mode="w", zarr_format=3, consolidated=False)
    leads = result["prediction_timedelta"].values
    unit = result["prediction_timedelta"].attrs.get("units")
    shown = [f"{x} {unit}" if unit else str(pd.Timedelta(x)) for x in (leads[0], leads[-1])]
    typer.echo(
        f"{out}: task {result.attrs['task']!r}, {len(result.data_vars)} variable(s) from "
        f"{result.sizes['time']} init(s) at {len(leads)} lead(s), {shown[0]} .. {shown[1]}"
    )


__all__ = ["finetune", "forecast_earth", "pretrain"]
