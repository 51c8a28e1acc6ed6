"""Mesh axes and meshes: one device, N local devices, or many hosts, by the same call.

Every Tellus mesh has the same four named axes, size 1 where unused, so that one table of
logical axis rules (:mod:`tellus.kernels.partitioning`) applies to any run:

* ``DATA``: data parallelism; each slice sees different samples, parameters replicated.
* ``FSDP``: data parallelism with parameters and optimizer state sharded (ZeRO-3 style).
* ``TENSOR``: tensor (model) parallelism inside a layer: MLP hidden units and heads.
* ``SPATIAL``: the latitude/longitude grid split across devices, for 0.25 deg fields whose
  activations do not fit on one device.

Axes are created with ``AxisType.Auto``: with JAX's default explicit axes an attention output
projection fails with "Contracting dimensions are sharded" (measured on jax 0.10/flax 0.12).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np

DATA = "data"
FSDP = "fsdp"
TENSOR = "tensor"
SPATIAL = "spatial"
AXES: tuple[str, ...] = (DATA, FSDP, TENSOR, SPATIAL)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Sizes of the mesh axes; axes left out have size 1, and one axis may be -1 (the rest).

    Attributes:
      sizes: axis name -> size, e.g. ``{"data": 32, "fsdp": 8}``.
    """

    sizes: Mapping[str, int] = dataclasses.field(default_factory=lambda: {DATA: -1})

    def __post_init__(self):
        unknown = sorted(set(self.sizes) - set(AXES))
        if unknown:
            raise ValueError(f"unknown mesh axes {unknown}; the axes are {list(AXES)}")
        bad = {k: v for k, v in self.sizes.items() if v != -1 and v < 1}
        if bad:
            raise ValueError(f"mesh axis sizes must be >= 1 (or -1 for the rest): {bad}")
        if sum(v == -1 for v in self.sizes.values()) > 1:
            raise ValueError(f"at most one mesh axis may be -1: {dict(self.sizes)}")

    def shape(self, n_devices: int) -> tuple[int, ...]:
        """Axis sizes in :data:`AXES` order for ``n_devices`` devices.

        Raises:
          ValueError: the sizes do not multiply to ``n_devices``.
        """
        fixed = math.prod(v for v in self.sizes.values() if v != -1)
        sizes = dict(self.sizes)
        for name, v in sizes.items():
            if v == -1:
                if n_devices % fixed:
                    raise ValueError(
                        f"cannot fill axis '{name}': {n_devices} devices are not a "
                        f"multiple of the other axes' product {fixed}"
                    )
                sizes[name] = n_devices // fixed
        shape = tuple(sizes.get(a, 1) for a in AXES)
        if math.prod(shape) != n_devices:
            raise ValueError(
                f"mesh {dict(zip(AXES, shape, strict=True))} needs "
                f"{math.prod(shape)} devices, but {n_devices} are available"
            )
        return shape


def parse_mesh_spec(spec: str) -> dict[str, int]:
    """Parses ``"data=32,fsdp=8"`` into ``{"data": 32, "fsdp": 8}``.

    Raises:
      ValueError: naming the malformed entry.
    """
    sizes: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise ValueError(
                f"bad mesh entry {part!r} in {spec!r}; expected AXIS=SIZE, e.g. data=32,fsdp=8"
            )
        name = name.strip()
        if name in sizes:
            raise ValueError(f"mesh axis '{name}' given twice in {spec!r}")
        sizes[name] = int(value)
    MeshConfig(sizes)  # validates names and sizes
    return sizes


def make_mesh(
    config: MeshConfig | Mapping[str, int] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> jax.sharding.Mesh:
    """A mesh with all of :data:`AXES` (Auto axis types) over ``devices``.

    Args:
      config: axis sizes; default: all devices on ``DATA``.
      devices: default ``jax.devices()``, which on several hosts lists every host's devices.

    Returns:
      The mesh; axes not in ``config`` have size 1.
    """
    if config is None:
        config = MeshConfig()
    elif not isinstance(config, MeshConfig):
        config = MeshConfig(dict(config))
    devices = list(jax.devices() if devices is None else devices)
    shape = config.shape(len(devices))
    if len(devices) == len(jax.devices()):
        # Lets JAX order devices for the physical topology (ICI rings on TPU pods).
        return jax.make_mesh(shape, AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))
    grid = np.asarray(devices, dtype=object).reshape(shape)
    return jax.sharding.Mesh(grid, AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))
