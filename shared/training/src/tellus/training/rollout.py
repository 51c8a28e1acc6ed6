"""Autoregressive k-step unroll training loss, with gradients through ``lax.scan``.

A wrapper, not a model flag, so that no model needs to know it is unrolled: any one-step
model ``x_t -> x_{t+1}`` becomes a k-step training objective, the mean over lead times of a
per-step loss.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

StepLoss = Callable[[jax.Array, jax.Array], jax.Array]


def rollout(model: nnx.Module, x0: jax.Array, num_steps: int) -> jax.Array:
    """Feeds the model its own output ``num_steps`` times.

    Args:
      model: one-step model mapping ``[batch, ...]`` to the same shape.
      x0: initial state ``[batch, ...]``.
      num_steps: lead times to produce.

    Returns:
      Predictions ``[num_steps, batch, ...]``.
    """
    graphdef, state = nnx.split(model)

    def body(x, _):
        # Rebuild inside the scan body so NNX never sees tracers from another level.
        y = nnx.merge(graphdef, state)(x)
        return y, y

    _, preds = jax.lax.scan(body, x0, None, length=num_steps)
    return preds


def make_rollout_loss(
    step_loss: StepLoss, num_steps: int
) -> Callable[[nnx.Module, dict], jax.Array]:
    """Builds ``loss_fn(model, batch)`` for ``batch = {"x": [B, ...], "y": [B, K, ...]}``.

    Args:
      step_loss: ``step_loss(prediction, target) -> scalar`` for one lead time.
      num_steps: K, the unroll length (``batch["y"].shape[1]``).

    Returns:
      A loss function usable with ``step.make_train_step``; gradients flow through
      every step of the unroll.
    """

    def loss_fn(model: nnx.Module, batch: dict) -> jax.Array:
        if batch["y"].shape[1] != num_steps:
            raise ValueError(f"targets have {batch['y'].shape[1]} lead times, want {num_steps}")
        preds = rollout(model, batch["x"], num_steps)
        targets = jnp.moveaxis(batch["y"], 1, 0)
        return jnp.mean(jax.vmap(step_loss)(preds, targets))

    return loss_fn
