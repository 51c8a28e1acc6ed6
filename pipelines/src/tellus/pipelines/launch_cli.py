"""``tellus launch``: the same training command on several processes.

* ``tellus launch slurm --config FILE --nodes N --gpus-per-node G`` writes a batch script
  (``sbatch`` it): one ``srun`` task per GPU, each running ``tellus pretrain`` (or
  ``finetune``) on the file. Its start-up (:mod:`tellus.training.distributed`) sees the
  SLURM variables and calls ``jax.distributed.initialize()``, which takes the first node as
  coordinator and gives each task the GPU of its local rank.
* ``tellus launch tpu --config FILE --name SLICE --zone ZONE`` prints the ``gcloud`` command
  that runs it on every host of a TPU VM slice at once (``--worker=all``); JAX finds the
  slice's hosts from the TPU environment.
* ``tellus launch local --config FILE --processes N`` starts N processes on this machine,
  joined through ``TELLUS_COORDINATOR`` on a free local port (CPU devices split among
  them): the multi-process path without a cluster, for testing a file before a pod.

Each checks the experiment file first, and that its mesh uses exactly the devices asked
for and divides its batch, so that a mistake costs no allocation.
"""

from __future__ import annotations

import math
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from tellus.pipelines import checks, errors, experiment

app = typer.Typer(
    help="Start a training on a SLURM cluster, a TPU slice or local processes.",
    no_args_is_help=True,
)

Command = Literal["pretrain", "finetune"]
CONFIG_HELP = "Experiment file (TOML), as for tellus pretrain / finetune."
COMMAND_HELP = "The training command to run: pretrain or finetune."


def _checked(config: Path, devices: int, *, check_stores: bool) -> experiment.Experiment:
    """The experiment, with its mesh checked against ``devices`` and its batch."""
    from tellus.kernels import mesh

    try:
        exp = experiment.load(config, check_stores=check_stores)
    except experiment.ExperimentError as e:
        raise errors.UserError(str(e), param="--config") from None
    spec = exp.train.mesh
    sizes = checks.mesh_sizes(spec, param="train.mesh") if spec else {mesh.DATA: devices}
    rest = [a for a, n in sizes.items() if n == -1]
    fixed = math.prod(n for n in sizes.values() if n != -1)
    if rest:
        if devices % fixed:
            raise errors.UserError(
                f"{config}: train.mesh {spec!r} cannot fill '{rest[0]}' on {devices} devices",
                param="--config",
            )
        sizes[rest[0]] = devices // fixed
    total = math.prod(sizes.values())
    if total != devices:
        raise errors.UserError(
            f"{config}: train.mesh {spec!r} uses {total} devices; the launch gives {devices} "
            "(a multi-process mesh uses every device)",
            param="--config",
        )
    split = sizes.get(mesh.DATA, 1) * sizes.get(mesh.FSDP, 1)
    if exp.train.batch % split:
        raise errors.UserError(
            f"{config}: train.batch {exp.train.batch} is not a multiple of data x fsdp = "
            f"{split} on {devices} devices",
            param="--config",
        )
    return exp


def slurm_script(
    config: Path,
    command: str,
    nodes: int,
    gpus_per_node: int,
    *,
    time_limit: str,
    cpus_per_task: int,
    partition: str | None,
    account: str | None,
    workdir: Path,
) -> str:
    """The ``sbatch`` script of a launch (see the module docstring)."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=tellus-{command}",
        f"#SBATCH --nodes={nodes}",
        f"#SBATCH --ntasks-per-node={gpus_per_node}",
        f"#SBATCH --gpus-per-node={gpus_per_node}",
        f"#SBATCH --cpus-per-task={cpus_per_task}",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={workdir}/slurm-%j.out",
        "#SBATCH --requeue",
    ]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if account:
        lines.append(f"#SBATCH --account={account}")
    lines += [
        "",
        f"# {nodes * gpus_per_node} processes, one per GPU. Each one's start-up reads srun's",
        "# SLURM_* variables and calls jax.distributed.initialize(): the first node is the",
        "# coordinator and each process takes the GPU of its local rank. The training resumes",
        "# from its last checkpoint when the job is requeued or resubmitted.",
        "set -euo pipefail",
        'cd "${SLURM_SUBMIT_DIR:-.}"  # where sbatch ran: the checkout',
        f"srun --kill-on-bad-exit=1 uv run --frozen tellus {command} --config "
        f"{shlex.quote(str(config))}",
        "",
    ]
    return "\n".join(lines)


def tpu_command(
    config: Path, command: str, name: str, zone: str, project: str | None, repo: str
) -> str:
    """The ``gcloud`` command that runs a training on every host of a TPU VM slice."""
    inner = (  # JAX finds the slice's hosts from the TPU metadata
        f"cd {repo} && TELLUS_DISTRIBUTED=on uv run --frozen tellus {command} "
        f"--config {shlex.quote(str(config))}"
    )
    parts = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", name, f"--zone={zone}"]
    if project:
        parts.append(f"--project={project}")
    parts += ["--worker=all", f"--command={inner}"]
    return shlex.join(parts)


@app.command("slurm")
def launch_slurm(
    config: Annotated[Path, typer.Option(help=CONFIG_HELP)],
    nodes: Annotated[int, typer.Option(min=1, help="Nodes.")] = 1,
    gpus_per_node: Annotated[int, typer.Option(min=1, help="GPUs (processes) per node.")] = 8,
    command: Annotated[str, typer.Option(help=COMMAND_HELP)] = "pretrain",
    time_limit: Annotated[str, typer.Option("--time", help="Wall-time limit.")] = "24:00:00",
    cpus_per_task: Annotated[int, typer.Option(min=1, help="CPU cores per process.")] = 8,
    partition: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    account: Annotated[str | None, typer.Option(help="SLURM account.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the script here (else stdout).")] = None,
) -> None:
    """Write the sbatch script that runs an experiment on a SLURM GPU cluster."""
    _command(command)
    exp = _checked(config, nodes * gpus_per_node, check_stores=False)
    script = slurm_script(
        config,
        command,
        nodes,
        gpus_per_node,
        time_limit=time_limit,
        cpus_per_task=cpus_per_task,
        partition=partition,
        account=account,
        workdir=exp.workdir_path,
    )
    exp.workdir_path.mkdir(parents=True, exist_ok=True)  # SLURM opens its log there first
    if out is None:
        typer.echo(script, nl=False)
        return
    out.write_text(script)
    typer.echo(f"wrote {out}: {nodes} x {gpus_per_node} GPUs; submit with: sbatch {out}")


@app.command("tpu")
def launch_tpu(
    config: Annotated[Path, typer.Option(help=CONFIG_HELP)],
    name: Annotated[str, typer.Option(help="The TPU VM slice's name.")],
    zone: Annotated[str, typer.Option(help="Its zone.")],
    chips: Annotated[int, typer.Option(min=1, help="Chips in the slice (the mesh's devices).")],
    command: Annotated[str, typer.Option(help=COMMAND_HELP)] = "pretrain",
    project: Annotated[str | None, typer.Option(help="Cloud project.")] = None,
    repo: Annotated[str, typer.Option(help="The checkout on every host.")] = "~/tellus",
) -> None:
    """Print the gcloud command that runs an experiment on every host of a TPU slice."""
    _command(command)
    _checked(config, chips, check_stores=False)
    typer.echo(tpu_command(config, command, name, zone, project, repo))


def _command(command: str) -> None:
    if command not in ("pretrain", "finetune"):
        raise errors.UserError(f"expected pretrain or finetune, got {command!r}", param="--command")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forward(stream, prefix: str) -> None:
    for line in stream:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


@app.command("local")
def launch_local(
    config: Annotated[Path, typer.Option(help=CONFIG_HELP)],
    processes: Annotated[int, typer.Option(min=2, help="Processes to start.")] = 2,
    devices_per_process: Annotated[
        int, typer.Option(min=1, help="CPU devices of each process.")
    ] = 1,
    command: Annotated[str, typer.Option(help=COMMAND_HELP)] = "pretrain",
) -> None:
    """Run an experiment in several local processes (CPU), as a pod would."""
    from tellus.training import distributed

    _command(command)
    _checked(config, processes * devices_per_process, check_stores=True)
    port = _free_port()
    exe = Path(sys.executable).parent / "tellus"
    procs = []
    for pid in range(processes):
        env = {
            **distributed.cpu_process_env(devices_per_process),  # the user's other XLA flags kept
            "TELLUS_COORDINATOR": f"127.0.0.1:{port}",
            "TELLUS_NUM_PROCESSES": str(processes),
            "TELLUS_PROCESS_ID": str(pid),
        }
        procs.append(
            subprocess.Popen(
                [str(exe), command, "--config", str(config)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    threads = [
        threading.Thread(target=_forward, args=(p.stdout, f"[process {i}] "), daemon=True)
        for i, p in enumerate(procs)
    ]
    for t in threads:
        t.start()
    while True:  # one failure stops the others (they would wait for it in a collective)
        codes = [p.poll() for p in procs]
        if any(c not in (None, 0) for c in codes):
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            codes = [p.wait() for p in procs]
        if all(c is not None for c in codes):
            break
        time.sleep(0.2)
    for t in threads:
        t.join()
    if any(codes):
        typer.echo(f"processes exited with {codes}", err=True)
        raise typer.Exit(max(codes))
    typer.echo(f"{processes} processes done")


__all__ = ["app", "slurm_script", "tpu_command"]
