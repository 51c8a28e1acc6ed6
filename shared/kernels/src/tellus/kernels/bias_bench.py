"""Benchmark: the trunk with Pangu's bias tables against the continuous bias.

``uv run python -m tellus.kernels.bias_bench`` builds the trunk of the atmosphere's ``cpu``
preset (C = 96, depths 2/2/2/2, heads 6/12/12/6, window (2, 4, 8)) on its 8 x 8 x 16 token
grid and times one compiled forward and backward pass (gradients of the trunk and of the
bias parameters) with each kind of bias, after a warm-up; it prints the parameters of each
bias and the median step time. The figures are in ``docs/architecture.md``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.kernels import continuous_bias, earth_trunk, partitioning

CPU = earth_trunk.TrunkConfig(96, (2, 2, 2, 2), (6, 12, 12, 6), (2, 4, 8), drop_path=0.0)
GRID = (8, 8, 16)


def _step(trunk, bias, biases, x):
    @nnx.jit
    def step(trunk, bias, x):
        def loss(trunk, bias):
            return jnp.mean(trunk(x, biases(bias)) ** 2)

        return nnx.grad(loss, argnums=(0, 1))(trunk, bias)

    return lambda: jax.block_until_ready(step(trunk, bias, x))


def run(repeats: int = 5, batch: int = 1) -> dict[str, tuple[int, float]]:
    """``{kind: (bias parameters, median seconds per step)}`` for ``table`` and
    ``continuous``."""
    with nnx.use_eager_sharding(False):
        trunk = earth_trunk.EarthTrunk(CPU, rngs=nnx.Rngs(0))
        tables = earth_trunk.TrunkBias(CPU, GRID, rngs=nnx.Rngs(1))
        cont = continuous_bias.ContinuousTrunkBias(CPU, 64, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (batch, *GRID, CPU.dim))
    lat = np.linspace(-84.375, 84.375, GRID[1])
    lon = np.arange(GRID[2]) * 360.0 / GRID[2]
    lev = np.arange(GRID[0], dtype=np.float64)
    kinds = {
        "table": (tables, lambda b: b()),
        "continuous": (cont, lambda b: b(lat, lon, lev)),
    }
    out = {}
    for name, (bias, call) in kinds.items():
        step = _step(trunk, bias, call, x)
        step()  # compile
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        out[name] = (partitioning.count_params(bias), float(np.median(times)))
    return out


if __name__ == "__main__":
    for kind, (n, s) in run().items():
        print(f"{kind:>10}: {n:>9,} bias parameters, {1e3 * s:8.1f} ms per forward + backward")
