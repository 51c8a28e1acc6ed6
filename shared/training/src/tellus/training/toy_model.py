"""A tiny annotated NNX model and seeded synthetic data, for tests and smoke runs.

A per-grid-point MLP "trunk" plus a linear "head", with logical axis names on every
kernel, trained on a deterministic synthetic target; small enough for CPU tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.data import grid
from tellus.kernels import partitioning
from tellus.training import losses

# The shared rules table: FSDP shards the embed dim of params, TENSOR the mlp dim, and the
# batch runs over data x fsdp.
RULES = partitioning.RULES


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """Model config (JSON-serializable; travels inside checkpoints)."""

    channels: int = 8
    hidden: int = 16
    head_channels: int = 8
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Trunk(nnx.Module):
    def __init__(self, cfg: ToyConfig, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.up = nnx.Linear(
            cfg.channels,
            cfg.hidden,
            kernel_init=nnx.with_partitioning(init, ("embed", "mlp")),
            rngs=rngs,
        )
        self.down = nnx.Linear(
            cfg.hidden,
            cfg.channels,
            kernel_init=nnx.with_partitioning(init, ("mlp", "embed")),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.down(jax.nn.gelu(self.up(x)))


class ToyModel(nnx.Module):
    """``[batch, lat, lon, channels] -> [batch, lat, lon, head_channels]``."""

    def __init__(self, cfg: ToyConfig, rngs: nnx.Rngs):
        self.trunk = Trunk(cfg, rngs)
        self.head = nnx.Linear(
            cfg.channels,
            cfg.head_channels,
            kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", None)),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.trunk(x))


def make_model(cfg: ToyConfig) -> ToyModel:
    """Model factory from config (annotations kept, no eager sharding)."""
    with nnx.use_eager_sharding(False):
        return ToyModel(cfg, nnx.Rngs(cfg.seed))


def model_from_dict(d: dict[str, Any]) -> ToyModel:
    """Factory used when rebuilding from a checkpoint's config JSON."""
    return make_model(ToyConfig(**d))


def loss_fn(model: nnx.Module, batch: dict[str, jax.Array]) -> jax.Array:
    """Latitude-weighted MSE between the model output and the batch target."""
    lat = np.linspace(-90, 90, batch["x"].shape[1])
    pred = model(batch["x"])
    return losses.weighted_mse(pred, batch["y"], grid.latitude_weights(lat))


def synthetic_batch(
    seed: int, index: int, batch: int, lat: int = 5, lon: int = 4, channels: int = 8
) -> dict[str, np.ndarray]:
    """Deterministic batch number ``index`` of the seeded stream (numpy, host side)."""
    rng = np.random.default_rng([seed, index])
    x = rng.standard_normal((batch, lat, lon, channels)).astype(np.float32)
    y = (np.tanh(x) * 0.5 + np.roll(x, 1, axis=-1) * 0.25).astype(np.float32)
    return {"x": x, "y": y}


@dataclasses.dataclass(frozen=True)
class ToyMultiConfig:
    """A shared trunk with one head per domain (``domains``), for multi-domain tests."""

    channels: int = 8
    hidden: int = 16
    head_channels: int = 8
    domains: tuple[str, ...] = ("a", "b")
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ToyMultiModel(nnx.Module):
    """``trunk`` shared by every domain, ``adapters/<domain>`` its own head."""

    def __init__(self, cfg: ToyMultiConfig, rngs: nnx.Rngs):
        base = ToyConfig(cfg.channels, cfg.hidden, cfg.head_channels, cfg.seed)
        self.trunk = Trunk(base, rngs)
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", None))
        self.adapters = nnx.Dict(
            {
                d: nnx.Linear(cfg.channels, cfg.head_channels, kernel_init=init, rngs=rngs)
                for d in cfg.domains
            }
        )

    def __call__(self, x: jax.Array, domain: str) -> jax.Array:
        return self.adapters[domain](self.trunk(x))


def multi_model_from_dict(d: dict[str, Any]) -> ToyMultiModel:
    cfg = ToyMultiConfig(**{**d, "domains": tuple(d.get("domains", ("a", "b")))})
    with nnx.use_eager_sharding(False):
        return ToyMultiModel(cfg, nnx.Rngs(cfg.seed))


def multi_loss_fn(domain: str):
    """The loss of ``domain``'s head on its batches."""

    def loss(model: nnx.Module, batch: dict[str, jax.Array]) -> jax.Array:
        lat = np.linspace(-90, 90, batch["x"].shape[1])
        return losses.weighted_mse(
            model(batch["x"], domain), batch["y"], grid.latitude_weights(lat)
        )

    return loss


class SyntheticSource:
    """Sample ``i`` of :func:`synthetic_batch`'s distribution as a random-access source
    (for the grain loader); ``shift`` makes another domain's targets."""

    def __init__(
        self, seed: int, n: int = 64, lat: int = 5, lon: int = 4, channels: int = 8, shift: int = 1
    ):
        self.seed, self.n, self.shape, self.shift = seed, n, (lat, lon, channels), shift

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        x = np.random.default_rng([self.seed, int(i)]).standard_normal(self.shape)
        x = x.astype(np.float32)
        y = (np.tanh(x) * 0.5 + np.roll(x, self.shift, axis=-1) * 0.25).astype(np.float32)
        return {"x": x, "y": y}

    def __repr__(self) -> str:
        return f"SyntheticSource(seed={self.seed}, n={self.n}, shape={self.shape})"


def place_batch(batch: dict[str, np.ndarray], sharding: Any = None) -> dict[str, jax.Array]:
    """Puts a host batch on devices (optionally with a sharding)."""
    if sharding is None:
        return jax.tree.map(jnp.asarray, batch)
    return jax.tree.map(lambda x: jax.device_put(x, sharding), batch)
