"""Multi-process start-up: the same command on one machine, a TPU pod slice or a cluster.

Every command that trains calls :func:`initialize_from_env` before it touches a device. It
picks the first of these that the environment shows (:func:`detect`):

* ``explicit``: ``TELLUS_COORDINATOR`` (``host:port``), ``TELLUS_NUM_PROCESSES`` and
  ``TELLUS_PROCESS_ID``, for local processes and any launcher that sets them;
* ``slurm``: a task of ``srun`` in a SLURM job with more than one task (``SLURM_JOB_ID``,
  ``SLURM_NTASKS``, ``SLURM_PROCID``, ``SLURM_STEP_NODELIST``);
* ``ompi``: a rank of Open MPI's ``mpirun`` with more than one rank
  (``OMPI_COMM_WORLD_SIZE``, ``OMPI_COMM_WORLD_RANK``);
* ``tpu``: a host of a multi-host TPU VM slice (``TPU_WORKER_HOSTNAMES`` lists more than one
  host; ``TPU_WORKER_ID`` is this one).

For the last three, ``jax.distributed.initialize()`` is called without arguments: JAX's own
cluster detection finds the coordinator, the process count and this process's id (and, on
GPUs, its local devices) from the same variables. Without any of them the call is a no-op
(one process). ``TELLUS_DISTRIBUTED=on`` calls it whatever the variables say (``jax``: a
TPU VM slice whose hosts JAX finds from its metadata server, which ``tellus launch tpu``
sets; Open MPI 5 needs ``mpi4py`` for JAX's detection); ``TELLUS_DISTRIBUTED=off`` turns the
detection off (a single-process command inside an allocation). On CPU, cross-process
collectives use gloo.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

OFF_ENV = "TELLUS_DISTRIBUTED"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What the environment says about this process.

    Attributes:
      kind: ``explicit``, ``slurm``, ``ompi``, ``tpu`` or ``jax`` (forced on: JAX finds
        everything).
      processes: the number of processes (0: not known before the start-up).
      process_id: this process's index.
      coordinator: ``host:port`` when the environment names it (``explicit``), else None
        (JAX derives it).
    """

    kind: str
    processes: int
    process_id: int
    coordinator: str | None = None

    def describe(self) -> str:
        if not self.processes:
            return f"{self.kind}: the cluster as JAX detects it"
        where = f", coordinator {self.coordinator}" if self.coordinator else ""
        return f"{self.kind}: process {self.process_id} of {self.processes}{where}"


def _int(env: Mapping[str, str], name: str, default: int = 0) -> int:
    try:
        return int(env.get(name, default))
    except ValueError:
        raise ValueError(f"{name}={env[name]!r} is not an integer") from None


def detect(env: Mapping[str, str] | None = None) -> Cluster | None:
    """The multi-process environment this process runs in (None: a single process).

    Raises:
      ValueError: a variable that should be an integer is not, or ``TELLUS_COORDINATOR``
        without ``TELLUS_NUM_PROCESSES`` / ``TELLUS_PROCESS_ID``.
    """
    env = os.environ if env is None else env
    switch = env.get(OFF_ENV, "").lower()
    if switch in ("off", "0", "false", "no"):
        return None
    if "TELLUS_COORDINATOR" in env:
        missing = [v for v in ("TELLUS_NUM_PROCESSES", "TELLUS_PROCESS_ID") if v not in env]
        if missing:
            raise ValueError(f"TELLUS_COORDINATOR is set but {', '.join(missing)} is not")
        return Cluster(
            "explicit",
            _int(env, "TELLUS_NUM_PROCESSES"),
            _int(env, "TELLUS_PROCESS_ID"),
            env["TELLUS_COORDINATOR"],
        )
    slurm = ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_STEP_NODELIST")
    if all(v in env for v in slurm) and _int(env, "SLURM_NTASKS") > 1:
        return Cluster("slurm", _int(env, "SLURM_NTASKS"), _int(env, "SLURM_PROCID"))
    if _int(env, "OMPI_COMM_WORLD_SIZE", 1) > 1:
        return Cluster("ompi", _int(env, "OMPI_COMM_WORLD_SIZE"), _int(env, "OMPI_COMM_WORLD_RANK"))
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    if len(hosts) > 1:
        return Cluster("tpu", len(hosts), _int(env, "TPU_WORKER_ID"))
    if switch in ("on", "1", "true", "yes"):
        return Cluster("jax", 0, 0)  # JAX detects the rest (counts known after start-up)
    return None


def initialize_from_env(env: Mapping[str, str] | None = None) -> Cluster | None:
    """Starts JAX's multi-process runtime when :func:`detect` finds one (see the module
    docstring); a no-op for a single process or when already started.

    Returns:
      The cluster, or None for a single process.
    """
    cluster = detect(env)
    if cluster is None:
        return None
    if jax.distributed.is_initialized():
        return cluster
    if cluster.kind == "explicit":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator,
            num_processes=cluster.processes,
            process_id=cluster.process_id,
        )
    else:
        jax.distributed.initialize()  # JAX reads the same variables and finds the rest
    return cluster


def cpu_process_env(devices: int, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that runs on ``devices`` simulated CPU devices:
    ``env`` (default this process's) with ``JAX_PLATFORMS=cpu`` and the device count in
    ``XLA_FLAGS`` replaced; the other XLA flags (a dump folder, an optimization level) are
    kept."""
    env = dict(os.environ if env is None else env)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env


def global_batch(local: Any, sharding: jax.sharding.Sharding) -> Any:
    """Assembles per-process host batches (this process's rows) into global arrays."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local
    )


__all__ = [
    "OFF_ENV",
    "Cluster",
    "cpu_process_env",
    "detect",
    "global_batch",
    "initialize_from_env",
]
