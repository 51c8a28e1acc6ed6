"""``tellus plan``: what a training step needs on a pod, compiled on simulated devices.

The command parses its options and calls :func:`tellus.training.plan.run_plan`; the
compile (in a subprocess) lives there, the roofline, fit check and suggestions in
:mod:`tellus.training.roofline`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from tellus.pipelines import checks, errors


class Dtype(StrEnum):
    bf16 = "bf16"
    f32 = "f32"


def plan(
    config: Annotated[
        Path | None,
        typer.Option(
            help="Plan an experiment file instead of a target: the Earth model's step on "
            "each of its tasks, with the file's batch and mesh (the stores need not be here: "
            "a task's grid = [n_lat, n_lon] stands in)."
        ),
    ] = None,
    target: Annotated[
        str,
        typer.Option(
            help="What to plan: 'toy' or 'pangu-<preset>' (pangu-paper, pangu-small, pangu-tiny)."
        ),
    ] = "pangu-paper",
    batch: Annotated[
        int, typer.Option(help="Global batch size (a multiple of data x fsdp).", min=1)
    ] = 256,
    mesh: Annotated[
        str,
        typer.Option(
            help="Mesh axis sizes, e.g. data=32,fsdp=8 for 256 devices; axes left out are 1."
        ),
    ] = "data=32,fsdp=8",
    accelerator: Annotated[
        list[str] | None,
        typer.Option(
            help="Accelerator to estimate for (repeatable): tpu-v5e, tpu-v5p, h100-sxm; "
            "default all."
        ),
    ] = None,
    remat: Annotated[
        bool, typer.Option(help="Rematerialize activations in the backward pass.")
    ] = False,
    dtype: Annotated[
        Dtype, typer.Option(help="Forward-pass compute dtype (master params stay float32).")
    ] = Dtype.bf16,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write the plan and estimates as JSON here.",
            callback=checks.new_file_option,
        ),
    ] = None,
    headroom: Annotated[
        float, typer.Option(help="Fraction of device memory kept free, in [0, 1).")
    ] = 0.10,
) -> None:
    """Compile the real train step for a mesh on simulated CPU devices and print parameters,
    FLOPs, per-device memory and a roofline step time per accelerator. Exits 1 when the step
    does not fit an accelerator's memory (with the mesh axis to grow), 2 on bad options."""
    from tellus.training import plan as plan_lib
    from tellus.training import roofline, targets

    if config is not None:
        code = plan_experiment(
            config, accelerator=accelerator, remat=remat, dtype=dtype.value, headroom=headroom
        )
        if code:
            raise typer.Exit(code)
        return
    # Checked here, before the compile's subprocess starts, and named by option.
    checks.choice(target, targets.names(), "--target")
    sizes = checks.mesh_sizes(mesh, allow_rest=False)
    split = sizes.get("data", 1) * sizes.get("fsdp", 1)
    if batch % split:
        raise errors.UserError(
            f"{batch} is not a multiple of data x fsdp = {split} (--mesh {mesh}); use "
            f"{split * max(1, round(batch / split))} or change the mesh",
            param="--batch",
        )
    for name in accelerator or ():
        checks.choice(name, sorted(roofline.ACCELERATORS), "--accelerator")
    if not 0 <= headroom < 1:
        raise errors.UserError(f"{headroom} is not in [0, 1)", param="--headroom")
    code = plan_lib.run_plan(
        target,
        batch,
        mesh,
        accelerators=accelerator,
        remat=remat,
        dtype=dtype.value,
        json_path=json_path,
        headroom=headroom,
    )
    if code:
        raise typer.Exit(code)


def _task_specs(config: Path) -> tuple[Any, list[dict[str, Any]]]:
    """The experiment and the plan spec of each task (``tellus.training.targets.earth``)."""
    import dataclasses

    from tellus.kernels import earth_model as em
    from tellus.pipelines import experiment

    try:
        exp = experiment.load(config, check_stores=False)
    except experiment.ExperimentError as e:
        raise errors.UserError(str(e), param="--config") from None
    model = em.preset(exp.model.preset)
    trunk = {"drop_path": exp.model.drop_path, "depths": exp.model.depths}
    trunk = {k: v for k, v in trunk.items() if v is not None}
    model = dataclasses.replace(model, trunk=dataclasses.replace(model.trunk, **trunk))
    specs = []
    for i, t in enumerate(exp.tasks):
        task = t.model_dump(exclude={"grid"})
        spec: dict[str, Any] = {"name": t.name, "model": model.to_dict(), "task": task}
        if t.grid is not None:
            spec["grid"] = list(t.grid)
        elif Path(t.store).exists():
            from tellus.data import sources

            meta = sources.open_metadata(t.store)
            spec["grid"] = [meta.sizes["latitude"], meta.sizes["longitude"]]
        else:
            raise errors.UserError(
                f"{config}: tasks[{i}].grid: no store at {t.store!r} here; give the task's "
                "grid = [n_lat, n_lon] to plan it",
                param="--config",
            )
        spec["levels"] = {v: list(t.levels) for v in t.variables} if t.levels else {}
        specs.append(spec)
    return exp, specs


def plan_experiment(
    config: Path,
    *,
    accelerator: list[str] | None,
    remat: bool,
    dtype: str,
    headroom: float,
) -> int:
    """Plans every task's step of an experiment file; the worst exit status."""
    import json
    import tempfile

    from tellus.training import plan as plan_lib
    from tellus.training import roofline, targets

    exp, specs = _task_specs(config)
    mesh = exp.train.mesh or "data=1"
    sizes = checks.mesh_sizes(mesh, param="train.mesh", allow_rest=False)
    split = sizes.get("data", 1) * sizes.get("fsdp", 1)
    if exp.train.batch % split:
        raise errors.UserError(
            f"{config}: train.batch {exp.train.batch} is not a multiple of data x fsdp = {split}",
            param="--config",
        )
    for name in accelerator or ():
        checks.choice(name, sorted(roofline.ACCELERATORS), "--accelerator")
    codes = []
    with tempfile.TemporaryDirectory(prefix="tellus-plan-config-") as tmp:
        for spec in specs:
            path = Path(tmp) / f"{spec['name']}.json"
            path.write_text(json.dumps(spec))
            codes.append(
                plan_lib.run_plan(
                    targets.EARTH_PREFIX + str(path),
                    exp.train.batch,
                    mesh,
                    accelerators=accelerator,
                    remat=remat,
                    dtype=dtype,
                    headroom=headroom,
                )
            )
    return max(codes)
