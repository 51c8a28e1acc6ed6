"""Builds the optax optimizer from an ``OptimizerConfig``."""

from __future__ import annotations

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


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """Global-norm clipping (optional) followed by AdamW on the schedule.

    Args:
      cfg: optimizer config.

    Returns:
      An optax gradient transformation.
    """
    parts = []
    if cfg.clip_global_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_global_norm))
    parts.append(
        optax.adamw(
            learning_rate=learning_rate_schedule(cfg),
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
        )
    )
    return optax.chain(*parts)
