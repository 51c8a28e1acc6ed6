"""``tellus plan``: what a training step needs on a pod, compiled on simulated devices.

The command parses its options and calls :func:`tellus.training.plan.run_plan`; the
planning (subprocess compile, roofline, fit check, suggestions) lives there.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import checks, errors


class Dtype(StrEnum):
    bf16 = "bf16"
    f32 = "f32"


def plan(
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
    from tellus.training import targets

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
        checks.choice(name, sorted(plan_lib.ACCELERATORS), "--accelerator")
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
