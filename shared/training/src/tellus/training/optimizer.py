"""The optimizer pieces of an ``OptimizerConfig``: the schedule, AdamW's moments, clipping."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tellus.training.config import OptimizerConfig


def learning_rate_schedule(cfg: OptimizerConfig) -> optax.Schedule:
    """Linear warm-up from 0 to the peak, then cosine decay to ``end_learning_rate``."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.peak_learning_rate,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.decay_steps,
        end_value=cfg.end_learning_rate,
    )


def moments(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """AdamW without its learning rate: Adam's moment scaling, then decoupled weight decay.

    The train step keeps one such state per parameter group, clips the gradients of the
    groups a step updates by their joint global norm, and multiplies the result by
    ``-learning_rate_schedule(cfg)(step)`` (times the group's scale): exactly
    ``optax.adamw`` on one group, with the schedule following the global step.
    """
    return optax.chain(
        optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
        optax.add_decayed_weights(cfg.weight_decay),
    )


def clip_by_global_norm(grads, norm, max_norm: float | None):
    """``grads`` scaled by ``min(1, max_norm / norm)`` (optax's rule); unchanged if None."""
    if max_norm is None:
        return grads
    factor = jnp.where(norm < max_norm, 1.0, max_norm / jnp.maximum(norm, 1e-30))
    return jax.tree.map(lambda g: (g * factor).astype(g.dtype), grads)
