"""Feature entropy of a trained model's transformer blocks, and which attention layers add
the least (the first step of entropy-guided attention pruning, Lin et al. 2024, "MLP can be
a good transformer learner").

The entropy of a block's features is measured with the paper's Gaussian proxy: for features
``x`` of width ``C`` collected over many batches (every token of every sample), ``H(x) =
sum_c log sigma_c`` (the differential entropy of a Gaussian with those variances, less its
constant). Each :class:`tellus.kernels.earth_trunk.EarthSpecificBlock` can record the
moments of its input ``x`` and of ``x + Attn(LN(x))`` (``record_moments``); the entropy an
attention sub-layer adds is the difference of the two, and the layers that add the least are
the first candidates to degenerate into the identity and remove.

Usage::

    ranking = entropy.measure(model, lambda m, batch: m(batch["x"]), batches)
    ranking[0].path  # the attention layer that adds the least entropy
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np
from flax import nnx

from tellus.kernels import earth_trunk


@dataclasses.dataclass(frozen=True)
class BlockEntropy:
    """One block's measured entropies (nats, the Gaussian proxy, constants left out).

    Attributes:
      path: the block's path in the model (e.g. ``trunk/stage2/blocks/3``).
      entropy_in: of the block's input.
      entropy_attn: of its input plus its attention sub-layer's output.
      samples: the feature vectors (tokens) measured.
    """

    path: str
    entropy_in: float
    entropy_attn: float
    samples: int

    @property
    def added(self) -> float:
        """The entropy the attention sub-layer adds to the block's input."""
        return self.entropy_attn - self.entropy_in


def gaussian_entropy(moments: np.ndarray) -> float:
    """``sum_c log sigma_c`` from accumulated ``[3, C]`` moments (count, sum, sum of
    squares, :func:`tellus.kernels.earth_trunk.feature_moments`), in float64.

    Raises:
      ValueError: a feature without variance (its log is minus infinity).
    """
    count, total, squares = np.asarray(moments, np.float64)
    var = squares / count - (total / count) ** 2
    if np.any(var <= 0):
        raise ValueError(f"{int(np.sum(var <= 0))} features have no variance: no entropy")
    return float(0.5 * np.sum(np.log(var)))


def blocks(model: nnx.Module) -> dict[str, earth_trunk.EarthSpecificBlock]:
    """Every Earth-specific block of ``model`` by its path, in the model's order."""
    return {
        "/".join(map(str, path)): m
        for path, m in nnx.iter_graph(model)
        if isinstance(m, earth_trunk.EarthSpecificBlock)
    }


def measure(
    model: nnx.Module,
    forward: Callable[[nnx.Module, Any], Any],
    batches: Iterable[Any],
) -> list[BlockEntropy]:
    """The entropy each block's attention adds, measured over ``batches``, least first.

    Args:
      model: a model with Earth-specific blocks (a Pangu forecaster, the Earth model...).
      forward: ``forward(model, batch)``, a forward pass (no gradient, no dropout).
      batches: the batches to collect the features over (many, as the paper does).

    Returns:
      One :class:`BlockEntropy` per block, sorted by :attr:`BlockEntropy.added`.

    Raises:
      ValueError: the model has no Earth-specific block, or ``batches`` is empty.
    """
    found = {p: b for p, b in blocks(model).items() if b.attn is not None}
    if not found:
        raise ValueError("the model has no Earth-specific blocks to measure")
    stages = [m for _, m in nnx.iter_graph(model) if isinstance(m, earth_trunk.Stage)]
    remat = [s.remat for s in stages]

    @nnx.jit
    def step(m, batch):
        _, sown = nnx.capture(forward, nnx.Intermediate)(m, batch)
        return sown

    sums: dict[str, np.ndarray] = {}
    try:
        for s in stages:
            s.remat = False  # the intermediates of a rematerialized block are not kept
        for b in found.values():
            b.record_moments = True
        n = 0
        for batch in batches:
            n += 1
            for path, value in nnx.to_flat_state(step(model, batch)):
                key = "/".join(map(str, path))
                (moments,) = value.get_value()  # one sow per call
                sums[key] = sums.get(key, 0.0) + np.asarray(jax.device_get(moments), np.float64)
    finally:
        for b in found.values():
            b.record_moments = False
        for s, r in zip(stages, remat, strict=True):
            s.remat = r
    if n == 0:
        raise ValueError("no batches to measure the entropy over")
    out = [
        BlockEntropy(
            path,
            gaussian_entropy(sums[f"{path}/moments_in"]),
            gaussian_entropy(sums[f"{path}/moments_attn"]),
            int(sums[f"{path}/moments_in"][0, 0]),
        )
        for path in found
    ]
    return sorted(out, key=lambda e: e.added)


def degenerate(model: nnx.Module, paths: Iterable[str], lam: float) -> None:
    """Sets the attention residual of the blocks at ``paths`` to ``x = (2 - lam) x + lam
    Attn(LN(x))`` (``lam`` from 1, the plain block, to 0, the identity times 2).

    Raises:
      KeyError: a path that is no Earth-specific block of ``model``.
      ValueError: ``lam`` outside [0, 1].
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    found = blocks(model)
    for path in paths:
        if path not in found:
            raise KeyError(f"{path!r} is not an Earth-specific block; blocks: {sorted(found)}")
        found[path].attn_lambda = float(lam)


def remove(model: nnx.Module, paths: Iterable[str]) -> None:
    """Removes the attention of the blocks at ``paths`` (their parameters go): each becomes
    ``x = 2x`` followed by its MLP, the ``lambda = 0`` block of :func:`degenerate`.

    Raises:
      KeyError: a path that is no Earth-specific block of ``model``.
    """
    found = blocks(model)
    for path in paths:
        if path not in found:
            raise KeyError(f"{path!r} is not an Earth-specific block; blocks: {sorted(found)}")
        found[path].attn = None
        found[path].attn_lambda = 0.0


__all__ = ["BlockEntropy", "blocks", "degenerate", "gaussian_entropy", "measure", "remove"]
