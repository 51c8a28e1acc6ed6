"""Feature entropy of a trained model's transformer blocks, and which attention layers add
the least (the first step of entropy-guided attention pruning, Lin et al. 2024, "MLP can be
a good transformer learner").

The entropy of a block's features is measured with the paper's Gaussian proxy: for features
``x`` of width ``C`` collected over many batches (every token of every sample), ``H(x) =
sum_c log sigma_c`` (the differential entropy of a Gaussian with those variances, less its
constant). Every block with prunable attention (:class:`tellus.kernels.prunable.
PrunableAttention`: the Earth-specific blocks of the shared trunk, the ENSO Transformer's
blocks) can record the moments of its input ``x`` and of ``x + Attn(LN(x))``; the entropy an
attention sub-layer adds is the difference of the two, and the layers that add the least are
the first candidates to degenerate into the identity and remove.

The recipe, as the paper's: measure and rank (:func:`measure`), make the chosen blocks'
lambda a state variable (:func:`anneal`), fine-tune with lambda falling linearly from 1 to 0
(:func:`lambda_schedule`, given to ``fit`` as its ``rest_schedule``), keep the last
checkpoint, then build the model without those attention layers (the trunk config's
``pruned``: :func:`block_indices`) and load the fine-tuned parameters into it
(:func:`pruned_params`); it computes what the ``lambda = 0`` model computes.

Usage::

    ranking = entropy.measure(model, lambda m, batch: m(batch["x"]), batches)
    ranking[0].path  # the attention layer that adds the least entropy
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from tellus.kernels import earth_trunk
from tellus.kernels.prunable import AttentionLambda, PrunableAttention


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
    squares, :func:`tellus.kernels.prunable.feature_moments`), in float64.

    Raises:
      ValueError: a feature without variance (its log is minus infinity).
    """
    count, total, squares = np.asarray(moments, np.float64)
    var = squares / count - (total / count) ** 2
    if np.any(var <= 0):
        raise ValueError(f"{int(np.sum(var <= 0))} features have no variance: no entropy")
    return float(0.5 * np.sum(np.log(var)))


def blocks(model: nnx.Module) -> dict[str, Any]:
    """Every block with prunable attention of ``model`` (with or without its attention) by
    its path, in the model's order: for one trunk, the order of the config's ``pruned``
    indices (stage by stage, block by block)."""
    return {
        "/".join(map(str, path)): m
        for path, m in nnx.iter_graph(model)
        if isinstance(m, PrunableAttention)
    }


def block_indices(model: nnx.Module, paths: Iterable[str]) -> tuple[int, ...]:
    """The indices (the model config's ``pruned``) of the blocks at ``paths``, sorted.

    Raises:
      KeyError: a path that is no prunable block of ``model``.
    """
    order = list(blocks(model))
    out = []
    for path in paths:
        if path not in order:
            raise KeyError(f"{path!r} is not a prunable block; blocks: {order}")
        out.append(order.index(path))
    return tuple(sorted(out))


def choose(ranking: Sequence[BlockEntropy], fraction: float) -> list[str]:
    """The paths of the ``round(fraction * len(ranking))`` attention layers that add the
    least entropy (whole layers: 0.4 of 8 is 3).

    Raises:
      ValueError: ``fraction`` outside [0, 1].
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(
            f"the fraction of attention layers to remove must be in [0, 1]: {fraction}"
        )
    return [e.path for e in ranking[: round(fraction * len(ranking))]]


def anneal(model: nnx.Module, paths: Iterable[str]) -> None:
    """Makes the attention lambda of the blocks at ``paths`` a state variable
    (:class:`tellus.kernels.prunable.AttentionLambda`, starting at 1), so that a training
    step reads it as state and :func:`lambda_schedule` can anneal it without recompiling.

    Raises:
      KeyError: a path that is no prunable block with attention.
    """
    found = blocks(model)
    for path in paths:
        if path not in found or found[path].attn is None:
            raise KeyError(f"{path!r} is not a block with attention; blocks: {sorted(found)}")
        found[path].attn_lambda = nnx.data(AttentionLambda(jnp.ones((), jnp.float32)))


def lambda_at(step: int, anneal_steps: int) -> float:
    """The paper's linear schedule: 1 at step 0, 0 from step ``anneal_steps`` on."""
    if anneal_steps <= 0:
        return 0.0
    return float(max(0.0, 1.0 - step / anneal_steps))


def lambda_schedule(anneal_steps: int) -> Callable[[int, Any], Any]:
    """A ``fit`` ``rest_schedule``: every ``attn_lambda`` of the state at
    :func:`lambda_at` of the step."""

    def schedule(step: int, rest: Any) -> Any:
        lam = lambda_at(step, anneal_steps)

        def put(path, x):
            name = getattr(path[-1], "key", None)
            return np.full(np.shape(x), lam, np.float32) if name == "attn_lambda" else x

        return jax.tree_util.tree_map_with_path(put, rest)

    return schedule


def pruned_params(params: Any, removed: Iterable[str]) -> dict[str, Any]:
    """The flat ``{path: array}`` of ``params`` (a pure dict) without the attention of the
    blocks at ``removed`` (``{path}/attn/...``), the parameters the pruned model keeps."""
    prefixes = tuple(f"{p}/attn/" for p in removed)
    flat = {"/".join(map(str, k)): v for k, v in traverse_util.flatten_dict(params).items()}
    return {k: v for k, v in flat.items() if not k.startswith(prefixes)}


def measure(
    model: nnx.Module,
    forward: Callable[[nnx.Module, Any], Any],
    batches: Iterable[Any],
) -> list[BlockEntropy]:
    """The entropy each block's attention adds, measured over ``batches``, least first.

    Args:
      model: a model with prunable blocks (a Pangu forecaster, the Earth model, ResoNet).
      forward: ``forward(model, batch)``, a forward pass (no gradient, no dropout).
      batches: the batches to collect the features over (many, as the paper does).

    Returns:
      One :class:`BlockEntropy` per block, sorted by :attr:`BlockEntropy.added`.

    Raises:
      ValueError: the model has no prunable block, or ``batches`` is empty.
    """
    found = {p: b for p, b in blocks(model).items() if b.attn is not None}
    if not found:
        raise ValueError("the model has no blocks with prunable attention to measure")
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
      KeyError: a path that is no prunable block of ``model``.
      ValueError: ``lam`` outside [0, 1].
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    found = blocks(model)
    for path in paths:
        if path not in found:
            raise KeyError(f"{path!r} is not a prunable block; blocks: {sorted(found)}")
        found[path].attn_lambda = float(lam)


def remove(model: nnx.Module, paths: Iterable[str]) -> None:
    """Removes the attention of the blocks at ``paths`` (their parameters go): each becomes
    ``x = 2x`` followed by its MLP, the ``lambda = 0`` block of :func:`degenerate`.

    Raises:
      KeyError: a path that is no prunable block of ``model``.
    """
    found = blocks(model)
    for path in paths:
        if path not in found:
            raise KeyError(f"{path!r} is not a prunable block; blocks: {sorted(found)}")
        found[path].attn = None
        found[path].attn_lambda = 0.0


__all__ = [
    "BlockEntropy",
    "anneal",
    "block_indices",
    "blocks",
    "choose",
    "degenerate",
    "gaussian_entropy",
    "lambda_at",
    "lambda_schedule",
    "measure",
    "pruned_params",
    "remove",
]
