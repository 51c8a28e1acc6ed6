"""Transformer blocks whose attention can be degenerated into the identity and removed
(entropy-guided attention pruning, Lin et al. 2024, "MLP can be a good transformer
learner"; the measuring and the schedule live in :mod:`tellus.training.entropy`).

A block that mixes in :class:`PrunableAttention` computes its attention residual with
:meth:`PrunableAttention.attention_residual`:

* ``x + Attn(LN(x))`` while its ``attn_lambda`` is the float 1.0 (a plain block; the float
  is static, so the compiled program is the plain one);
* ``(2 - lambda) x + lambda Attn(LN(x))`` with any other float, or with an
  :class:`AttentionLambda` variable, whose value is an array in the model's state: a
  training step reads it like any other state, so annealing it from 1 to 0 step by step
  compiles one program;
* ``2x`` when its attention is removed (``attn`` is None): the ``lambda = 0`` block, with
  the attention's parameters gone.

While ``record_moments`` is set the block sows the feature moments (:func:`feature_moments`)
of its input (``moments_in``) and of its input plus attention (``moments_attn``) as
``nnx.Intermediate``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx


class AttentionLambda(nnx.Variable):
    """The attention residual's ``lambda`` of a block being degenerated (a float32 scalar
    in the model's non-parameter state; not trained)."""


def feature_moments(x: jax.Array) -> jax.Array:
    """``[3, C]`` float32: the count, sum and sum of squares of each feature (the last axis)
    of ``x`` over all its other axes, to be summed over batches."""
    f = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    count = jnp.full((f.shape[-1],), f.shape[0], jnp.float32)
    return jnp.stack([count, f.sum(0), (f * f).sum(0)])


class PrunableAttention:
    """Mixin for an ``nnx.Module`` transformer block with an ``attn`` sub-layer.

    The block calls :meth:`init_pruning` in its constructor (after setting ``attn``, None
    for a block built without attention) and :meth:`attention_residual` in its forward pass.
    """

    attn: nnx.Module | None

    def init_pruning(self) -> None:
        # Set by tellus.training.entropy while it measures.
        self.record_moments = False
        # 1.0: the plain block; a float or an AttentionLambda otherwise (module docstring).
        self.attn_lambda: float | AttentionLambda = 1.0 if self.attn is not None else 0.0

    def attention_residual(
        self,
        x: jax.Array,
        attend: Callable[[], jax.Array],
        drop: Callable[[jax.Array], jax.Array] = lambda a: a,
    ) -> jax.Array:
        """``x`` after the attention sub-layer.

        Args:
          x: the block's input.
          attend: computes ``Attn(LN(x))`` (not called when the attention is removed).
          drop: the residual branch's stochastic depth (training).
        """
        if self.attn is None:
            return 2.0 * x
        a = attend()
        if self.record_moments:
            self.sow(nnx.Intermediate, "moments_in", feature_moments(x))  # type: ignore[attr-defined]
        a = drop(a)
        lam = self.attn_lambda
        if isinstance(lam, AttentionLambda):
            lam = lam[...].astype(x.dtype)
            x = (2.0 - lam) * x + lam * a
        elif lam == 1.0:
            x = x + a
        else:
            x = (2.0 - lam) * x + lam * a
        if self.record_moments:
            self.sow(nnx.Intermediate, "moments_attn", feature_moments(x))  # type: ignore[attr-defined]
        return x


__all__ = ["AttentionLambda", "PrunableAttention", "feature_moments"]
