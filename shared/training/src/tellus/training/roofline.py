"""What a planned step costs on real accelerators: the chip table, the roofline step time,
the memory fit and what to change when it does not fit.

:func:`estimate` turns a :class:`~tellus.training.plan.PlanResult` (the FLOPs, bytes
accessed and memory of the compiled per-device step) into a roofline step time for each
accelerator of :data:`ACCELERATORS`, ``max(flops / peak, bytes / bandwidth)``, and checks
that the step fits in the device's memory with :data:`DEFAULT_HEADROOM` to spare;
:func:`suggest` says which mesh axis to grow when it does not. The roofline ignores
communication: a planning estimate, to be confirmed on the hardware.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tellus.training.plan import PlanResult

GiB = 2**30
GB = 10**9
TB = 10**12

# Keep 10% of device memory free for the runtime, collectives' buffers and fragmentation.
DEFAULT_HEADROOM = 0.10


class PlanError(RuntimeError):
    """The plan could not be made: bad arguments, or the compile failed."""


class PlanDoesNotFit(PlanError):
    """The compiled step does not fit in a device's memory."""


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """One accelerator chip, as its vendor documents it.

    Attributes:
      name: display name.
      peak_flops: dense bf16 matmul peak, FLOP/s per chip.
      hbm_bandwidth: HBM bandwidth, bytes/s per chip.
      memory_bytes: HBM capacity per chip.
      source: where the numbers come from.
    """

    name: str
    peak_flops: float
    hbm_bandwidth: float
    memory_bytes: int
    source: str


ACCELERATORS: dict[str, Accelerator] = {
    "tpu-v5e": Accelerator(
        "TPU v5e",
        197e12,
        819 * GB,
        16 * GiB,
        "Google Cloud TPU v5e system architecture, 'TPU v5e chip': 197 TFLOP/s bf16, "
        "16 GiB HBM2, 819 GBps; https://cloud.google.com/tpu/docs/v5e",
    ),
    "tpu-v5p": Accelerator(
        "TPU v5p",
        459e12,
        2765 * GB,
        95 * GiB,
        "Google Cloud TPU v5p system architecture, 'TPU v5p chip': 459 TFLOP/s bf16, "
        "95 GiB HBM2e, 2765 GBps; https://cloud.google.com/tpu/docs/v5p",
    ),
    "h100-sxm": Accelerator(
        "H100 SXM",
        989e12,
        3.35 * TB,
        80 * GB,
        "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: BF16 Tensor Core 1,979 TFLOPS "
        "with sparsity (989 dense), 80 GB HBM3, 3.35 TB/s; "
        "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet",
    ),
}


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Roofline step time and memory fit of a plan on one accelerator.

    Attributes:
      accelerator: key of :data:`ACCELERATORS` (or the name of a custom one).
      compute_seconds: ``flops_per_device / peak_flops``.
      memory_seconds: ``bytes_accessed_per_device / hbm_bandwidth``.
      step_seconds: the larger of the two.
      bound: ``"compute"`` or ``"memory"``: which one sets the step time.
      needed_bytes: the compiled step's peak per device.
      budget_bytes: device memory less the headroom.
      fits: ``needed_bytes <= budget_bytes``.
      suggestion: what to change when it does not fit (empty when it does).
    """

    accelerator: str
    compute_seconds: float
    memory_seconds: float
    step_seconds: float
    bound: str
    needed_bytes: int
    budget_bytes: int
    fits: bool
    suggestion: str = ""


def roofline(
    flops: float, bytes_accessed: float, accel: Accelerator
) -> tuple[float, float, float, str]:
    """``(compute_s, memory_s, step_s, bound)`` of one step on one device of ``accel``."""
    compute = flops / accel.peak_flops
    memory = bytes_accessed / accel.hbm_bandwidth
    return compute, memory, max(compute, memory), "compute" if compute >= memory else "memory"


def _pow2_at_least(x: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(x, 1.0))))


def mesh_str(sizes: Mapping[str, int]) -> str:
    """``"data=4,spatial=2"``: the axes of size above 1 (``"data=1"`` when none is)."""
    return ",".join(f"{k}={v}" for k, v in sizes.items() if v != 1) or "data=1"


def suggest(result: PlanResult, budget_bytes: int) -> str:
    """Which mesh axis to grow (or what to switch on) so that the step fits ``budget_bytes``.

    Params + optimizer state shrink with ``fsdp``; temporaries (activations) shrink with
    the per-device batch (``data``), the grid split (``spatial``) and rematerialization.
    The factors assume each part scales as 1/axis size; they are a first guess.
    """
    state = result.state_bytes_per_device
    other = result.peak_bytes_per_device - state
    mesh = dict(result.mesh)
    if state >= other:
        room = budget_bytes - other
        grow = _pow2_at_least(state / room) if room > 0 else 2
        parts = [
            f"params + optimizer state ({format_bytes(state)}/device) dominate: grow fsdp "
            f"x{grow} (fsdp={mesh['fsdp'] * grow})"
        ]
        if mesh["data"] % grow == 0 and mesh["data"] > 1:
            same = {**mesh, "data": mesh["data"] // grow, "fsdp": mesh["fsdp"] * grow}
            parts.append(f"on the same devices: --mesh {mesh_str(same)}")
        if room <= 0:
            parts.append(
                f"the other buffers ({format_bytes(other)}) alone exceed the budget, so "
                "also shrink the per-device batch or enable remat"
            )
        return "; ".join(parts)
    room = budget_bytes - state
    grow = _pow2_at_least(other / room) if room > 0 else 2
    parts = [f"activations/temporaries ({format_bytes(other)}/device) dominate"]
    per_device = result.batch_per_device
    k = max(1, min(grow, int(per_device)))
    if k > 1:
        parts.append(
            f"grow data x{k} (data={mesh['data'] * k}: "
            f"{per_device / k:g} samples/device instead of {per_device:g}) or "
            f"accumulate gradients over micro-batches"
        )
    if grow > k:
        left = math.ceil(grow / k)
        parts.append(
            f"{'then' if k > 1 else 'one sample per device already:'} grow spatial "
            f"x{left} (spatial={mesh['spatial'] * left}) to split the grid"
        )
    if not result.remat:
        parts.append("enable remat (--remat)")
    if room <= 0:
        parts.append(
            f"params + optimizer state ({format_bytes(state)}) alone exceed the budget: grow fsdp too"
        )
    return "; ".join(parts)


def estimate(
    result: PlanResult,
    accelerators: Sequence[str | Accelerator] | None = None,
    headroom: float = DEFAULT_HEADROOM,
) -> list[Estimate]:
    """Roofline and memory fit of ``result`` on each accelerator.

    Args:
      result: from :func:`tellus.training.plan.plan`.
      accelerators: keys of :data:`ACCELERATORS` or :class:`Accelerator` objects;
        default all of :data:`ACCELERATORS`.
      headroom: fraction of device memory kept free.

    Raises:
      PlanError: an unknown accelerator name.
    """
    out = []
    for key, accel in resolve(accelerators):
        compute, memory, step, bound = roofline(
            result.flops_per_device, result.bytes_accessed_per_device, accel
        )
        budget = int(accel.memory_bytes * (1.0 - headroom))
        needed = result.peak_bytes_per_device
        fits = needed <= budget
        out.append(
            Estimate(
                key,
                compute,
                memory,
                step,
                bound,
                needed,
                budget,
                fits,
                "" if fits else suggest(result, budget),
            )
        )
    return out


def check_fits(estimates: Sequence[Estimate]) -> None:
    """Raises :class:`PlanDoesNotFit` naming every accelerator the step does not fit,
    with the suggested change."""
    bad = [e for e in estimates if not e.fits]
    if bad:
        lines = [
            f"{e.accelerator}: needs {format_bytes(e.needed_bytes)}/device, "
            f"{format_bytes(e.budget_bytes)} usable; {e.suggestion}"
            for e in bad
        ]
        raise PlanDoesNotFit("the plan does not fit in device memory:\n  " + "\n  ".join(lines))


def resolve(accelerators: Sequence[str | Accelerator] | None) -> list[tuple[str, Accelerator]]:
    """``(key, chip)`` of each named (or given) accelerator; all of :data:`ACCELERATORS` by
    default. Raises :class:`PlanError` for an unknown name."""
    if not accelerators:
        return list(ACCELERATORS.items())
    out = []
    for a in accelerators:
        if isinstance(a, Accelerator):
            out.append((a.name, a))
        elif a in ACCELERATORS:
            out.append((a, ACCELERATORS[a]))
        else:
            raise PlanError(f"unknown accelerator {a!r}; choose from {sorted(ACCELERATORS)}")
    return out


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units (``"1.5 GiB"``)."""
    for unit, size in (("TiB", 2**40), ("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def format_count(n: float) -> str:
    """A count with an SI prefix (``"31.9T"``)."""
    for unit, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def format_seconds(s: float) -> str:
    """A duration in s, ms or us."""
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


__all__ = [
    "ACCELERATORS",
    "DEFAULT_HEADROOM",
    "GB",
    "TB",
    "Accelerator",
    "Estimate",
    "GiB",
    "PlanDoesNotFit",
    "PlanError",
    "check_fits",
    "estimate",
    "format_bytes",
    "format_count",
    "format_seconds",
    "mesh_str",
    "resolve",
    "roofline",
    "suggest",
]
