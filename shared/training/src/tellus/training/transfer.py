"""Parameters carried from one training run into another: a fine-tuning phase, a longer
rollout or a model with new heads starts from an earlier phase's checkpoint.

:func:`warm_start` wraps a model factory for :func:`tellus.training.trainer.fit` so that the
model it builds holds the last parameters of an earlier phase (all of them, or, with
``partial``, those whose path and shape match: a pretrained trunk under new adapters or
heads); :func:`load_matching_params` is that match, on one checkpoint step. The optimizer
state and the step start afresh; the checkpoint is read through
:mod:`tellus.training.checkpoint` (its kind checked and older versions migrated).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.training.checkpoint import Checkpointer, Kind, flatten_state, rebuild

PyTree = Any
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PartialLoad:
    """Outcome of a partial restore."""

    params: PyTree
    loaded: list[str]
    skipped: list[str]


def load_matching_params(
    ckpt: Checkpointer,
    step: int,
    factory: Callable[[dict[str, Any]], nnx.Module] | Kind,
    new_params: PyTree,
) -> PartialLoad:
    """Loads checkpoint params into ``new_params`` where path and shape match.

    Used to start a model with new heads from a pretrained trunk.

    Args:
      ckpt: checkpointer.
      step: step to load.
      factory: the checkpoint's :class:`Kind` (or a bare factory from its config dict).
      new_params: pure params dict of the new model.

    Returns:
      New params plus the lists of loaded and skipped (new-model) paths.
    """
    _, _, state, _ = rebuild(ckpt, step, factory)
    old = flatten_state(state.params)
    loaded, skipped = [], []

    def pick(path, x):
        key = jax.tree_util.keystr(path)
        if key in old and old[key].shape == x.shape and old[key].dtype == x.dtype:
            loaded.append(key)
            return jax.device_put(np.asarray(old[key]), getattr(x, "sharding", None))
        skipped.append(key)
        return x

    params = jax.tree_util.tree_map_with_path(pick, new_params)
    return PartialLoad(params, loaded, skipped)


def warm_start(
    source: str | Path,
    factory: Callable[[dict[str, Any]], nnx.Module],
    *,
    source_kind: Kind | None = None,
    partial: bool = False,
    report: str | Path | None = None,
) -> Callable[[dict[str, Any]], nnx.Module]:
    """A model factory for :func:`tellus.training.trainer.fit` that starts a new training
    phase (fine-tuning, a longer rollout) from the last checkpoint of an earlier one.

    The returned factory builds the model from its config and loads every parameter from
    the latest checkpoint in ``source/checkpoints``; optimizer state and step start afresh.
    ``fit`` calls it on a resume too and then restores the new phase's own checkpoint over
    it, so a killed phase resumes where it stopped (``source`` must still be there).

    With ``partial`` (a pretrained trunk into a model with new adapters or heads), the
    parameters the checkpoint has with the same path and shape are loaded, the others keep
    their fresh initialization, and the split is logged and written to ``report`` (JSON
    ``{"loaded": [...], "initialized": [...]}``).

    Args:
      source: the earlier phase's workdir (the one passed to ``fit``).
      factory: builds a model from a config dict.
      source_kind: the kind of the source checkpoint (checked, migrated); default: rebuilt
        with ``factory`` (the same model for both phases).
      partial: allow parameters the checkpoint lacks (else a ValueError).
      report: where to write the loaded / initialized lists.

    Raises (when called):
      FileNotFoundError: ``source`` has no complete checkpoint.
      ValueError: the new model has parameters the checkpoint lacks (or of another shape).
    """
    source = Path(source)

    def build(cfg: dict[str, Any]) -> nnx.Module:
        model = factory(cfg)
        ck = Checkpointer(source / "checkpoints", async_save=False)
        try:
            step = ck.latest_step()
            if step is None:
                raise FileNotFoundError(
                    f"no complete checkpoint in {source}/checkpoints to "
                    "start from; run the earlier phase first"
                )
            params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
            out = load_matching_params(ck, step, source_kind or factory, params)
        finally:
            ck.close()
        if partial:
            log.info(
                "warm start from %s: %d parameter arrays loaded, %d initialized fresh%s",
                source,
                len(out.loaded),
                len(out.skipped),
                f" ({', '.join(out.skipped[:4])}{', ...' if len(out.skipped) > 4 else ''})"
                if out.skipped
                else "",
            )
            if report is not None:
                Path(report).parent.mkdir(parents=True, exist_ok=True)
                Path(report).write_text(
                    json.dumps(
                        {
                            "source": str(source),
                            "step": step,
                            "loaded": out.loaded,
                            "initialized": out.skipped,
                        },
                        indent=1,
                    )
                )
        elif out.skipped:
            raise ValueError(
                f"the checkpoint in {source} lacks {len(out.skipped)} parameters "
                f"of the new model (or has them in another shape), e.g. "
                f"{out.skipped[:3]}"
            )
        # Placed as the fresh parameters are (orbax restores onto a mesh of its own), so
        # that a phase started warm compiles the same program as one started fresh (and a
        # persistent compilation cache serves both).
        placed = jax.tree.map(_placed_like, out.params, params)
        nnx.update(model, nnx.State(placed))
        return model

    return build


def _placed_like(value: Any, like: Any) -> Any:
    """``value`` placed as ``like`` is, when ``like`` is a jax array: on its sharding when
    ``like`` is committed to it, else uncommitted on the default device (a fresh model's
    parameters are; a committed array would pin every step's arguments to a mesh)."""
    if not (isinstance(like, jax.Array) and isinstance(value, jax.Array | np.ndarray)):
        return value
    if like.committed:
        return jax.device_put(value, like.sharding)
    return jnp.asarray(np.asarray(value), dtype=like.dtype)


__all__ = ["PartialLoad", "load_matching_params", "warm_start"]
