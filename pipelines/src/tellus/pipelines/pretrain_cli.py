"""``tellus pretrain --config FILE``: the Earth model pretrained on every store of an
experiment file at once (:mod:`tellus.pipelines.experiment`,
:func:`tellus.training.pretraining.pretrain`); ``tellus finetune --config FILE``: a
pretrained model fine-tuned on the file's one task
(:func:`tellus.training.finetuning.finetune`). Both resume after a kill."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import devices, errors, experiment


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
    overrides = {} if t.checkpoint_every is None else {"checkpoint_every": t.checkpoint_every}
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


__all__ = ["finetune", "pretrain"]
