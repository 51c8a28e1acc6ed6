"""Training the ocean diffusion model: the denoising loss over the ocean and an EMA of the
weights (ReconMOST, Song et al. 2025: epsilon prediction, land set to 0 and out of the loss,
EMA 0.9999).

The batch (what :func:`diffusion_loss` expects)::

    {"temperature": [B, H, W, D] float, deg C, NaN over land,
     "ocean":       [B | 1, H, W, D] or [B | 1, H, W] bool, True over the ocean (optional)}

or, for a field already in the model's units (e.g. scaled anomalies,
:mod:`tellus.ocean.anomaly_scaling`), ``"x0"`` ``[B, H, W, D]`` (NaN or anything over land)
in place of ``"temperature"``: it is the clean field ``x0`` of the loss as it is.

The loss, for ``x0 = to_unit(temperature)`` (``[-5, 40]`` C -> ``[-1, 1]``, land 0), ``t``
uniform in ``[0, T)`` and ``eps`` standard normal on the ocean (0 on land)::

    L = sum_{ocean cells} (eps_hat(x_t, t) - eps)^2 / #ocean cells,
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps

A cell is ocean where the mask says so (by depth: the mask may widen with depth) and its
temperature is finite. Land never enters any arithmetic: it is replaced by a ``where``
before the scaling, its noise is 0, the model zeroes it on the way in and out, and the
squared error is selected by a ``where`` (a NaN times a zero weight would still be NaN, in
the value and in the gradient).

The EMA (:func:`ema_update`) is ``ema <- d ema + (1 - d) params`` over any pytree of arrays
(an ``nnx.State`` of ``nnx.Param``, or the trainer's pure dicts), with an optional warm-up
``d_n = min(d, (1 + n) / (10 + n))`` at step ``n``. Departure from ReconMOST: the warm-up
is there because a CPU run of ~10^3 steps would leave a 0.9999 EMA at ~90 % of its
initialization; with ``step=None`` it is ReconMOST's plain EMA.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.ocean import diffusion

TEMPERATURE = "temperature"
X0 = "x0"
OCEAN = "ocean"
EMA_DECAY = 0.9999


def field_key(batch: dict[str, Any]) -> str:
    """``"temperature"`` (deg C) or ``"x0"`` (model units): the field the batch holds.

    Raises:
      ValueError: it holds neither.
    """
    for key in (TEMPERATURE, X0):
        if key in batch:
            return key
    raise ValueError(
        f"the batch needs {TEMPERATURE!r} (deg C) or {X0!r} (model units) [B, H, W, D]; "
        f"has {sorted(batch)}"
    )


def ocean_cells(batch: dict[str, Any]) -> jax.Array:
    """The bool ``[B | 1, H, W, D]`` cells of a batch that are ocean: the mask (broadcast
    over depth when it is 2-D) and a finite temperature.

    Raises:
      ValueError: no temperature, or a mask that does not fit it.
    """
    key = field_key(batch)
    temp = jnp.asarray(batch[key])
    if temp.ndim != 4:
        raise ValueError(f"batch[{key!r}] must be [B, H, W, D]; got {temp.shape}")
    valid = jnp.isfinite(temp)
    if batch.get(OCEAN) is not None:
        ocean = jnp.asarray(batch[OCEAN], bool)
        if ocean.ndim == 3:
            ocean = ocean[..., None]
        if (
            ocean.ndim != 4
            or ocean.shape[0] not in (1, temp.shape[0])
            or ocean.shape[1:3] != temp.shape[1:3]
            or ocean.shape[3] not in (1, temp.shape[3])
        ):
            raise ValueError(
                f"batch[{OCEAN!r}] must be [B | 1, H, W, D] or [B | 1, H, W] for a temperature "
                f"of {temp.shape}; got {jnp.shape(batch[OCEAN])}"
            )
        valid = valid & ocean
    return valid


def diffusion_loss(
    model: nnx.Module,
    batch: dict[str, Any],
    rng: jax.Array | None = None,
    *,
    schedule: diffusion.Schedule | None = None,
) -> jax.Array:
    """The denoising MSE of ``model`` over the ocean cells of ``batch`` (a ``LossFn``).

    Args:
      model: ``model(x_t, t, ocean) -> eps_hat`` with ``model.config.timesteps`` (a
        :class:`tellus.ocean.unet.UNetDenoiser`).
      batch: ``{"temperature": [B, H, W, D] deg C (NaN over land), "ocean": optional mask}``.
      rng: PRNG key of the timesteps and the noise (the trainer's per-step key).
      schedule: the noise schedule (default: linear over ``model.config.timesteps``).

    Raises:
      ValueError: no ``rng``, or a batch outside the format above.
    """
    if rng is None:
        raise ValueError("diffusion_loss needs rng (a PRNG key for the timesteps and the noise)")
    valid = ocean_cells(batch)
    key = field_key(batch)
    temp = jnp.asarray(batch[key], jnp.float32)
    valid = jnp.broadcast_to(valid, temp.shape)
    sched = diffusion.linear_schedule(model.config.timesteps) if schedule is None else schedule
    x0 = diffusion.to_unit(temp, valid) if key == TEMPERATURE else jnp.where(valid, temp, 0.0)
    k_t, k_eps = jax.random.split(rng)
    t = jax.random.randint(k_t, (temp.shape[0],), 0, sched.num_steps)
    eps = jnp.where(valid, jax.random.normal(k_eps, temp.shape, jnp.float32), 0.0)
    x_t = diffusion.q_sample(sched, x0, t, eps)
    err = jnp.where(valid, model(x_t, t, valid) - eps, 0.0)
    return jnp.sum(err**2) / jnp.maximum(jnp.sum(valid), 1)


def ema_decay_at(decay: float, step: int | jax.Array | None) -> float | jax.Array:
    """The decay at optimizer step ``step``: ``min(decay, (1 + step) / (10 + step))``, or
    ``decay`` itself when ``step`` is None."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    if step is None:
        return decay
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(
    ema: Any, params: Any, decay: float = EMA_DECAY, step: int | jax.Array | None = None
) -> Any:
    """``decay * ema + (1 - decay) * params`` leaf by leaf (the same tree: an ``nnx.State``
    of params, or pure dicts); ``step`` enables the warm-up of :func:`ema_decay_at`.

    Raises:
      ValueError: the two trees differ in structure.
    """
    if jax.tree.structure(ema) != jax.tree.structure(params):
        raise ValueError("ema and params must be the same tree (init the EMA with ema_init)")
    d = ema_decay_at(decay, step)
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


def ema_init(model: nnx.Module) -> nnx.State:
    """A copy of the model's ``nnx.Param`` state to start an EMA from."""
    return jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))


def use_ema(model: nnx.Module, ema: nnx.State) -> nnx.Module:
    """Puts the EMA weights into ``model`` (in place; returns it), e.g. before sampling."""
    nnx.update(model, ema)
    return model


__all__ = [
    "EMA_DECAY",
    "OCEAN",
    "TEMPERATURE",
    "X0",
    "diffusion_loss",
    "ema_decay_at",
    "ema_init",
    "ema_update",
    "field_key",
    "ocean_cells",
    "use_ema",
]
