"""Pod planning: compile the real train step for a mesh of N devices, without N devices.

``plan(target, batch, "data=32,fsdp=8")`` lowers and compiles the train step of a
:mod:`~tellus.training.targets` target ahead of time on ``N`` simulated CPU devices, with
abstract parameters (``nnx.eval_shape``: nothing is allocated), and reads back from XLA

* the parameters, in total and on each device (from the rules' shardings);
* the FLOPs and bytes accessed of one step (``compiled.cost_analysis()``);
* the per-device memory of the compiled step (``compiled.memory_analysis()``: arguments,
  outputs, aliased (donated) buffers, temporaries).

:mod:`tellus.training.roofline` turns those into a roofline step time and a memory fit
on each accelerator of its table, with the mesh axis to grow when the step does not fit;
:func:`run_plan` prints both (``tellus plan``).

The number of CPU devices is fixed when JAX starts, so the compile runs in a subprocess
(``python -m tellus.training.plan --worker OUT.json ...``) started with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``; the parent reads its JSON.

Per device, not global: the compiled executable is the SPMD-partitioned per-device
program, so its cost and memory analyses are per device (splitting the toy step's batch
over 8 devices divides its FLOPs by 8: a test checks it, and the measured figures are in
``docs/performance.md``). Global FLOPs are ``flops_per_device x devices`` (collectives
excluded).

Caveats: XLA's CPU compiler fuses, lays out and (for bf16) upcasts differently from the
TPU and GPU compilers, so the temporaries and bytes accessed are those of the CPU program;
the roofline ignores communication. Treat the numbers as a planning estimate, and confirm
with ``compile_train_step`` on the real hardware.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tellus.training.roofline import (
    ACCELERATORS,
    DEFAULT_HEADROOM,
    Estimate,
    PlanDoesNotFit,
    PlanError,
    check_fits,
    estimate,
    format_bytes,
    format_count,
    format_seconds,
    mesh_str,
    resolve,
)

DTYPES = {"bf16": "bfloat16", "f32": "float32", "bfloat16": "bfloat16", "float32": "float32"}


@dataclasses.dataclass(frozen=True)
class PlanResult:
    """What the compiled step needs, per device unless named otherwise.

    Attributes:
      target, description: the planned target.
      batch: global batch (samples per step).
      mesh: axis name -> size (all four axes).
      devices: product of the mesh sizes.
      compute_dtype: ``"bfloat16"`` or ``"float32"`` forward pass (master params float32).
      remat: rematerialization on.
      params_total: parameter count of the model.
      params_per_device: parameters held by one device under the rules' shardings.
      state_bytes_per_device: params + optimizer state + EMA + rest, on one device.
      batch_bytes_per_device: one device's slice of the batch.
      flops_per_device: XLA cost analysis of the partitioned step.
      bytes_accessed_per_device: XLA cost analysis ("bytes accessed").
      memory: ``memory_analysis()`` fields (``argument_size_in_bytes``, ...).
      compile_seconds: lowering + compile wall time in the subprocess.
    """

    target: str
    description: str
    batch: int
    mesh: dict[str, int]
    devices: int
    compute_dtype: str
    remat: bool
    params_total: int
    params_per_device: int
    state_bytes_per_device: int
    batch_bytes_per_device: int
    flops_per_device: float
    bytes_accessed_per_device: float
    memory: dict[str, int]
    compile_seconds: float

    @property
    def flops_total(self) -> float:
        """FLOPs of one step over all devices."""
        return self.flops_per_device * self.devices

    @property
    def batch_per_device(self) -> float:
        """Samples one device sees (the batch is split over data x fsdp)."""
        return self.batch / (self.mesh.get("data", 1) * self.mesh.get("fsdp", 1))

    @property
    def temp_bytes(self) -> int:
        return self.memory.get("temp_size_in_bytes", 0)

    @property
    def peak_bytes_per_device(self) -> int:
        """Arguments + outputs not aliased to (donated) arguments + temporaries."""
        m = self.memory
        return (
            m.get("argument_size_in_bytes", 0)
            + m.get("output_size_in_bytes", 0)
            - m.get("alias_size_in_bytes", 0)
            + m.get("temp_size_in_bytes", 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlanResult:
        return cls(**d)


# --- the subprocess ---------------------------------------------------------------------


def _mesh_sizes(mesh: str | Mapping[str, int]) -> dict[str, int]:
    from tellus.kernels import mesh as mesh_lib

    try:
        sizes = mesh_lib.parse_mesh_spec(mesh) if isinstance(mesh, str) else dict(mesh)
        mesh_lib.MeshConfig(sizes)  # validates names
    except ValueError as e:
        raise PlanError(str(e)) from e
    if any(v < 1 for v in sizes.values()):
        raise PlanError(f"give every mesh axis size explicitly (no -1) to plan: {sizes}")
    return {a: sizes.get(a, 1) for a in mesh_lib.AXES}


def plan(
    target: str,
    batch: int,
    mesh: str | Mapping[str, int],
    *,
    remat: bool = False,
    dtype: str = "bf16",
    train_preset: str = "paper",
    timeout: float | None = None,
) -> PlanResult:
    """Compiles ``target``'s train step for ``mesh`` on simulated CPU devices.

    Args:
      target: a name from :func:`tellus.training.targets.names`.
      batch: global batch size (must be a multiple of data x fsdp).
      mesh: ``"data=32,fsdp=8"`` or ``{"data": 32, "fsdp": 8}``; axes left out are 1.
      remat: rematerialize activations in the backward pass.
      dtype: forward-pass compute dtype, ``bf16`` or ``f32``.
      train_preset: the :mod:`tellus.training.config` preset giving the optimizer (and
        whether an EMA of params is kept).
      timeout: seconds before the compile is abandoned.

    Returns:
      The per-device needs of the compiled step.

    Raises:
      PlanError: bad arguments (message from the subprocess) or a failed compile.
    """
    sizes = _mesh_sizes(mesh)
    if dtype not in DTYPES:
        raise PlanError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    devices = math.prod(sizes.values())
    _check_batch(batch, sizes)
    with tempfile.TemporaryDirectory(prefix="tellus-plan-") as tmp:
        out = Path(tmp) / "plan.json"
        cmd = [
            sys.executable,
            "-m",
            "tellus.training.plan",
            "--worker",
            str(out),
            "--target",
            target,
            "--batch",
            str(batch),
            "--mesh",
            mesh_str(sizes),
            "--dtype",
            dtype,
            "--train-preset",
            train_preset,
            "--remat" if remat else "--no-remat",
        ]
        from tellus.training import distributed

        try:
            proc = subprocess.run(
                cmd,
                env=distributed.cpu_process_env(devices),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise PlanError(
                f"compiling {target} for {devices} devices took over {timeout} s"
            ) from e
        payload = json.loads(out.read_text()) if out.exists() else None
        if payload is not None and "error" in payload:
            raise PlanError(payload["error"])
        if proc.returncode != 0 or payload is None:
            tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
            raise PlanError(
                f"compiling {target} on {devices} simulated devices failed "
                f"(exit {proc.returncode}):\n{tail}"
            )
    return PlanResult.from_dict(payload)


def _sharded_bytes(abstract: Any, shardings: Any) -> int:
    import jax
    import numpy as np

    total = 0
    for x, sh in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True):
        total += math.prod(sh.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
    return total


def _check_batch(batch: int, sizes: Mapping[str, int]) -> None:
    split = sizes["data"] * sizes["fsdp"]
    if batch < 1 or batch % split:
        raise PlanError(
            f"global batch {batch} is not a multiple of data x fsdp = {split}; "
            f"use a batch of {split * max(1, round(batch / split))} or change "
            "the mesh"
        )


def _batch_shardings(target: Any, batch: int, mesh: Any) -> dict[str, Any]:
    from jax.sharding import NamedSharding, PartitionSpec

    from tellus.kernels import partitioning

    sizes = dict(mesh.shape)
    _check_batch(batch, sizes)
    out = {}
    for name, (shape, _, names) in target.batch(batch).items():
        # Mesh axes that do not divide a grid dimension (721 rows) pass to the next one that
        # names them (1440 columns), as partitioning.constrain does for activations.
        spec = partitioning.fitting_spec(names, shape, sizes)
        out[name] = NamedSharding(mesh, PartitionSpec(*spec))
    return out


def compile_plan(
    target_name: str,
    batch: int,
    mesh: Mapping[str, int],
    *,
    remat: bool,
    dtype: str,
    train_preset: str = "paper",
) -> PlanResult:
    """The subprocess half of :func:`plan`: builds abstract state and compiles the step.

    Must run in a process whose JAX sees exactly ``prod(mesh)`` devices.
    """
    import jax
    from flax import nnx

    from tellus.kernels import mesh as mesh_lib
    from tellus.kernels import partitioning
    from tellus.training import config as config_lib
    from tellus.training import step as step_lib
    from tellus.training import targets

    sizes = _mesh_sizes(mesh)
    devices = math.prod(sizes.values())
    if jax.device_count() != devices:
        raise PlanError(
            f"this process has {jax.device_count()} devices but the mesh needs "
            f"{devices}; run through plan(), which sets XLA_FLAGS"
        )
    try:
        target = targets.get(target_name)
        train_cfg = config_lib.preset(train_preset)
    except KeyError as e:
        raise PlanError(e.args[0]) from e
    train_cfg = dataclasses.replace(
        train_cfg,
        batch_size=batch,
        grad_accum_steps=1,
        compute_dtype=DTYPES[dtype],
        remat=remat and not target.model_remat,
    )
    mesh_obj = mesh_lib.make_mesh(sizes)
    batch_sh = _batch_shardings(target, batch, mesh_obj)

    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: target.make_model(remat))
    graphdef, params, rest = step_lib.split_model(model)
    box: dict[str, step_lib.StepFns] = {}

    def init(p, r):
        fns, state = step_lib.init_train_state(step_lib.merge_model(graphdef, p, r), train_cfg)
        box["fns"] = fns
        return state

    state = jax.eval_shape(init, params, rest)
    fns = box["fns"]
    state_sh = step_lib.state_shardings(fns, state, model, mesh_obj)
    abstract_batch = target.abstract_batch(batch)

    start = time.perf_counter()
    jitted = step_lib.jit_train_step(
        step_lib.make_train_step(fns, target.loss_fn), state_sh, batch_sh, mesh_obj
    )
    with partitioning.use_mesh(mesh_obj):
        compiled = step_lib.compile_train_step(jitted, state, abstract_batch)
    seconds = time.perf_counter() - start

    cost = compiled.compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return PlanResult(
        target=target.name,
        description=target.description,
        batch=batch,
        mesh=sizes,
        devices=devices,
        compute_dtype=DTYPES[dtype],
        remat=remat,
        params_total=sum(int(x.size) for x in jax.tree.leaves(state.params)),
        params_per_device=sum(
            math.prod(sh.shard_shape(x.shape))
            for x, sh in zip(
                jax.tree.leaves(state.params), jax.tree.leaves(state_sh.params), strict=True
            )
        ),
        state_bytes_per_device=_sharded_bytes(state, state_sh),
        batch_bytes_per_device=_sharded_bytes(abstract_batch, batch_sh),
        flops_per_device=float(compiled.flops or 0.0),
        bytes_accessed_per_device=float((cost or {}).get("bytes accessed", 0.0)),
        memory=dict(compiled.memory),
        compile_seconds=seconds,
    )


# --- report ------------------------------------------------------------------------------


def render(result: PlanResult, estimates: Sequence[Estimate], console: Any = None) -> None:
    """Prints the plan and the per-accelerator estimates as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    m = result.memory
    summary = Table(
        title=f"plan: {result.target} on {result.devices} devices",
        show_header=False,
        title_justify="left",
    )
    summary.add_column(style="bold")
    summary.add_column()
    rows = [
        ("model", result.description),
        ("mesh", ", ".join(f"{k}={v}" for k, v in result.mesh.items())),
        ("batch", f"{result.batch} global, {result.batch_per_device:g} per device"),
        ("compute", f"{result.compute_dtype}, remat {'on' if result.remat else 'off'}"),
        (
            "parameters",
            f"{format_count(result.params_total)} total ({result.params_total:,}), "
            f"{format_count(result.params_per_device)} per device",
        ),
        (
            "FLOPs / step",
            f"{format_count(result.flops_per_device)} per device, {format_count(result.flops_total)} total",
        ),
        ("bytes accessed", f"{format_bytes(result.bytes_accessed_per_device)} per device"),
        (
            "state / device",
            f"{format_bytes(result.state_bytes_per_device)} (params + optimizer + EMA)",
        ),
        ("batch / device", format_bytes(result.batch_bytes_per_device)),
        (
            "memory / device",
            f"arguments {format_bytes(m.get('argument_size_in_bytes', 0))}, "
            f"outputs {format_bytes(m.get('output_size_in_bytes', 0))} "
            f"({format_bytes(m.get('alias_size_in_bytes', 0))} donated), "
            f"temporaries {format_bytes(result.temp_bytes)}",
        ),
        ("peak / device", format_bytes(result.peak_bytes_per_device)),
        ("compile", f"{result.compile_seconds:.1f} s (XLA CPU, SPMD-partitioned)"),
    ]
    for k, v in rows:
        summary.add_row(k, v)
    console.print(summary)

    table = Table(
        title="roofline step time per device (max of compute and HBM time; "
        "communication not counted)",
        title_justify="left",
    )
    for col in ("accelerator", "compute", "HBM", "step", "samples/s", "fits: used / usable"):
        table.add_column(
            col, justify="left" if col in ("accelerator", "fits: used / usable") else "right"
        )
    for e in estimates:
        a = ACCELERATORS.get(e.accelerator)
        used = f"{format_bytes(e.needed_bytes)} / {format_bytes(e.budget_bytes)}"
        table.add_row(
            a.name if a else e.accelerator,
            format_seconds(e.compute_seconds),
            format_seconds(e.memory_seconds),
            f"{format_seconds(e.step_seconds)} {e.bound}",
            f"{format_count(result.batch / e.step_seconds)}" if e.step_seconds else "-",
            f"[green]yes[/] {used}" if e.fits else f"[red]NO[/] {used}",
        )
    console.print(table)
    for e in estimates:
        if not e.fits:
            console.print(f"[red]{e.accelerator} does not fit:[/] {e.suggestion}", highlight=False)
    console.print(
        "used: the compiled peak per device; usable: capacity x (1 - headroom). "
        "Peaks: dense bf16. Sources:",
        style="dim",
        highlight=False,
    )
    for key, a in ACCELERATORS.items():
        if any(e.accelerator == key for e in estimates):
            console.print(f"  {a.name}: {a.source}", style="dim", highlight=False)


def run_plan(
    target: str,
    batch: int,
    mesh: str,
    *,
    accelerators: Sequence[str] | None = None,
    remat: bool = False,
    dtype: str = "bf16",
    json_path: str | os.PathLike | None = None,
    headroom: float = DEFAULT_HEADROOM,
    train_preset: str = "paper",
    console: Any = None,
) -> int:
    """Plan, print, optionally write JSON; the exit status for command-line entry points.

    Returns:
      0 when the step fits every requested accelerator, 1 when it does not fit one of
      them (the reason and suggestion printed), 2 when the plan could not be made.
    """
    from rich.console import Console

    console = console or Console()
    try:
        resolved = [k for k, _ in resolve(accelerators)]
        result = plan(target, batch, mesh, remat=remat, dtype=dtype, train_preset=train_preset)
    except PlanError as e:
        console.print(f"[red]tellus plan:[/] {e}", highlight=False)
        return 2
    estimates = estimate(result, resolved, headroom)
    render(result, estimates, console)
    if json_path is not None:
        Path(json_path).write_text(
            json.dumps(
                {
                    "plan": result.to_dict(),
                    "headroom": headroom,
                    "estimates": [dataclasses.asdict(e) for e in estimates],
                    "accelerators": {k: dataclasses.asdict(ACCELERATORS[k]) for k in resolved},
                },
                indent=2,
            )
        )
    try:
        check_fits(estimates)
    except PlanDoesNotFit as e:
        console.print(f"[red]refused:[/] {e}", highlight=False)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tellus.training.plan", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--target", default="pangu-paper")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--mesh", required=True, help="e.g. data=32,fsdp=8")
    p.add_argument("--accelerator", action="append", choices=sorted(ACCELERATORS))
    p.add_argument("--remat", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--json", dest="json_path")
    p.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM)
    p.add_argument("--train-preset", default="paper")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tellus.training.plan``: the planner, or (``--worker``) its subprocess."""
    args = _parser().parse_args(argv)
    if args.worker:
        out = Path(args.worker)
        try:
            result = compile_plan(
                args.target,
                args.batch,
                _mesh_sizes(args.mesh),
                remat=args.remat,
                dtype=args.dtype,
                train_preset=args.train_preset,
            )
        except PlanError as e:  # bad arguments: a message, not a traceback
            out.write_text(json.dumps({"error": str(e)}))
            return 2
        out.write_text(json.dumps(result.to_dict()))
        return 0
    return run_plan(
        args.target,
        args.batch,
        args.mesh,
        accelerators=args.accelerator,
        remat=args.remat,
        dtype=args.dtype,
        json_path=args.json_path,
        headroom=args.headroom,
        train_preset=args.train_preset,
    )


if __name__ == "__main__":
    sys.exit(main())
