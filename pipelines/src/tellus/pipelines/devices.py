"""The devices a training command runs on: ``--mesh``, ``--remat`` and ``--bf16`` (and
``--profile-steps``, the steps it traces).

``tellus train atmosphere`` and ``tellus train enso`` take the same options, so one command
line trains on one CPU, a GPU node or a TPU slice:

* ``--mesh`` sizes the axes of :mod:`tellus.kernels.mesh` (``data=4,fsdp=2``); left out,
  every device of every process is on ``data``. :func:`resolve` checks it, and that the
  global ``--batch`` splits over ``data x fsdp``, before any work starts; a mesh smaller than
  the devices runs on the first ones (one process only).
* ``--bf16`` computes in bfloat16 (``TrainConfig.compute_dtype``); master weights and
  optimizer state stay float32.
* ``--remat`` is the domain's own (its help says which rematerialization it sets).

With the ``TELLUS_*`` variables of :mod:`tellus.training.distributed` set, :func:`resolve`
starts the multi-process runtime first, so the devices counted are every process's.

:func:`resolve` also turns on JAX's persistent compilation cache (:func:`compile_cache`):
a training's second phase (fine-tuning after pretraining, the next ENSO member, a run
resumed after a kill) compiles the program the first compiled, and reads it from disk
instead (the ocean's CPU step: 3.7 minutes to compile, seconds to read).

On CPU, :func:`resolve` also turns off ``jax_threefry_partitionable`` (:func:`cpu_rng`):
the partitionable form of JAX's default random-number generator, which only matters when
random arrays are sharded over accelerators, compiles about six times slower on a CPU
(docs/performance.md), and every parameter initializer and drop-path mask is one.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from tellus.pipelines import checks
from tellus.pipelines.errors import UserError

MESH_HELP = (
    "Device mesh as axis=size over data, fsdp, tensor and spatial, e.g. data=4,fsdp=2 (axes "
    "left out are 1; one may be -1 for the devices left). Default: every device of every "
    "process on data. The global --batch must be a multiple of data x fsdp."
)
BF16_HELP = "Compute in bfloat16; master weights and optimizer state stay float32."
PROFILE_HELP = (
    "Trace training steps FIRST:STOP (e.g. 10:13: steps 10, 11, 12) of every run with the "
    "JAX profiler into its workdir's profile/ folder (xprof or TensorBoard's profile "
    "plugin, or the .trace.json.gz in Perfetto). Start after step 0, which compiles."
)


def profile_steps(spec: str | None, param: str = "--profile-steps") -> tuple[int, int] | None:
    """``"10:13"`` -> ``(10, 13)``: the steps :class:`TrainConfig.profile_steps` traces
    (None: none); one :class:`UserError` line otherwise."""
    if spec is None or not spec.strip():
        return None
    parts = spec.split(":")
    try:
        first, stop = (int(p) for p in parts)
    except ValueError:
        raise UserError(
            f"expected FIRST:STOP steps, e.g. 10:13; got {spec!r}", param=param
        ) from None
    if not 0 <= first < stop:
        raise UserError(f"expected 0 <= FIRST < STOP, got {spec!r}", param=param)
    return first, stop


@dataclasses.dataclass(frozen=True)
class Devices:
    """The mesh a training runs on, and the devices it was chosen from.

    Attributes:
      sizes: every axis of :data:`tellus.kernels.mesh.AXES` and its size.
      available: devices of every process.
      platform: ``cpu``, ``gpu`` or ``tpu``.
      processes: JAX processes.
    """

    sizes: dict[str, int]
    available: int
    platform: str
    processes: int = 1

    @property
    def count(self) -> int:
        return math.prod(self.sizes.values())

    @property
    def spec(self) -> str:
        """``data=4,fsdp=2``: the axes larger than 1 (``data=1`` on one device)."""
        return ",".join(f"{a}={n}" for a, n in self.sizes.items() if n > 1) or "data=1"

    def mesh(self) -> Any:
        """The mesh (:func:`tellus.kernels.mesh.make_mesh`), on the first ``count`` devices."""
        import jax

        from tellus.kernels import mesh

        devices = None if self.count == self.available else jax.devices()[: self.count]
        return mesh.make_mesh(self.sizes, devices)

    def describe(self, *, remat: str, bf16: bool) -> str:
        """The line a training command prints at start."""
        of = "" if self.count == self.available else f" of {self.available}"
        procs = f" in {self.processes} processes" if self.processes > 1 else ""
        return (
            f"mesh {self.spec} on {self.count}{of} {self.platform} device(s){procs}; "
            f"remat {remat}; compute {'bfloat16' if bf16 else 'float32'}"
        )


CACHE_ENV = "TELLUS_COMPILE_CACHE"
_OFF = ("0", "off", "no", "false", "none")


def compile_cache() -> str | None:
    """Turns on JAX's persistent compilation cache; the folder it uses, or None when off.

    ``$JAX_COMPILATION_CACHE_DIR`` when set (JAX reads it itself); else ``$TELLUS_COMPILE_CACHE``
    (a folder, or ``off``); else ``$XDG_CACHE_HOME/tellus/jax`` (``~/.cache/tellus/jax``).
    Programs that took under a second to compile are not written.
    """
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    setting = os.environ.get(CACHE_ENV, "")
    if setting.lower() in _OFF and setting:
        return None
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    path = os.path.expanduser(setting or os.path.join(home, "tellus", "jax"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return path


RNG_ENV = "JAX_THREEFRY_PARTITIONABLE"


def cpu_rng(platform: str) -> bool:
    """Turns ``jax_threefry_partitionable`` off on a CPU platform unless
    ``$JAX_THREEFRY_PARTITIONABLE`` says otherwise; whether it did.

    The random numbers differ between the two forms (both are the same on one device and
    on a mesh), so a run resumed on CPU keeps drawing from the form it started with only
    when the platform is the same, as it is for a resume on the same machine.
    """
    import jax

    if platform != "cpu" or os.environ.get(RNG_ENV):
        return False
    jax.config.update("jax_threefry_partitionable", False)
    return True


def resolve(spec: str | None, batch: int) -> Devices:
    """The mesh of ``--mesh spec`` (None: every device on ``data``) for a global ``batch``.

    Raises:
      UserError: a malformed spec or unknown axis, a mesh larger than the devices (or, with
        several processes, smaller), or a batch that is not a multiple of data x fsdp.
    """
    import jax

    from tellus.kernels import mesh
    from tellus.training import distributed

    compile_cache()
    try:
        cluster = distributed.initialize_from_env()
    except ValueError as e:
        raise UserError(f"multi-process start-up: {e}") from None
    available, processes = jax.device_count(), jax.process_count()
    platform = jax.devices()[0].platform
    cpu_rng(platform)
    where = f"{available} {platform} device(s)" + (
        f" in {processes} processes" if processes > 1 else ""
    )
    if cluster is not None and cluster.kind != "explicit":
        where += f" ({cluster.kind})"
    if spec is None:
        sizes: dict[str, int] = {mesh.DATA: available}
        shown = f"{mesh.DATA}={available}"
    else:
        sizes = checks.mesh_sizes(spec)
        shown = spec
        if not sizes:
            raise UserError(
                f"{spec!r} names no axis; expected AXIS=SIZE, e.g. data=4,fsdp=2", param="--mesh"
            )
    rest = [a for a, n in sizes.items() if n == -1]
    if rest:
        fixed = math.prod(n for n in sizes.values() if n != -1)
        if available % fixed:
            raise UserError(
                f"cannot fill axis '{rest[0]}' of {spec!r}: the {where} are not a multiple of "
                f"the other axes' product {fixed}",
                param="--mesh",
            )
        sizes[rest[0]] = available // fixed
    full = {a: sizes.get(a, 1) for a in mesh.AXES}
    count = math.prod(full.values())
    if count > available:
        raise UserError(
            f"{shown} needs {count} devices, but there are {where}; give a mesh of at most "
            f"{available} devices",
            param="--mesh",
        )
    if count < available and processes > 1:
        raise UserError(
            f"{shown} uses {count} devices of the {where}; a mesh of several processes must "
            f"use every device",
            param="--mesh",
        )
    split = full[mesh.DATA] * full[mesh.FSDP]
    if batch % split:
        raise UserError(
            f"{batch} is not a multiple of data x fsdp = {split} ("
            + ("the default " if spec is None else "")
            + f"--mesh {shown}"
            + (", every device on data" if spec is None else "")
            + f"); use {split * max(1, round(batch / split))} or give a --mesh that splits it",
            param="--batch",
        )
    return Devices(full, available, platform, processes)


__all__ = ["BF16_HELP", "MESH_HELP", "Devices", "resolve"]
