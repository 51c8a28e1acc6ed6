"""Lead time in the ocean forecaster: the rotary lead-time embedding and the expert routing.

ORCA-DL (Guo et al. 2024) predicts the months 1-6 after an initial state directly, one call
per lead, and tells the network the lead in two ways, both here:

* **lead-routed experts**: every MLP of the ocean encoders, the fusion and the decoders
  holds six experts, and lead month ``m`` goes through expert ``(m - 1) mod 6``
  (:func:`expert_index`); no learned gate, so month 7 (the first month of a forecast
  restarted from month 6) uses the experts of month 1;
* a **rotary lead-time embedding** of the wind-stress features before they are mixed into
  the ocean latent (:func:`rotate`): channel pairs ``(2i, 2i + 1)`` are rotated by the angle
  ``t * f_i`` with ``t = m - 1`` (the zero-based lead index of the released code, so the
  first month is not rotated) and frequencies ``f_i`` from :func:`frequencies`.

Two frequency ladders (``D`` channels, ``i = 0 .. D/2 - 1``):

* ``"orca"``: ``f_i = 10000 ** (2 i / D)``, rising with the channel as in the released
  code; for integer leads the angles are effectively a different random rotation per lead
  beyond the first pairs;
* ``"rope"``: ``f_i = 10000 ** (-2 i / D)``, the falling ladder of rotary position
  embeddings (Su et al. 2021), under which neighbouring leads rotate alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

FREQUENCIES = ("orca", "rope")
BASE = 10000.0


def expert_index(lead: jax.Array, n_experts: int) -> jax.Array:
    """The expert of lead month ``lead`` (1, 2, ...): ``(lead - 1) mod n_experts``.

    Raises:
      ValueError: ``n_experts`` < 1.
    """
    if n_experts < 1:
        raise ValueError(f"n_experts must be >= 1, got {n_experts}")
    return jnp.mod(jnp.asarray(lead, jnp.int32) - 1, n_experts)


def frequencies(dim: int, kind: str = "orca") -> np.ndarray:
    """The ``dim // 2`` rotation frequencies (radians per month of lead), float32.

    Raises:
      ValueError: ``dim`` is odd or ``kind`` unknown.
    """
    if dim % 2:
        raise ValueError(f"a rotary embedding needs an even width, got {dim}")
    if kind not in FREQUENCIES:
        raise ValueError(f"lead frequencies must be one of {FREQUENCIES}, not {kind!r}")
    exponent = 2.0 * np.arange(dim // 2) / dim
    sign = 1.0 if kind == "orca" else -1.0
    return (BASE ** (sign * exponent)).astype(np.float32)


def rotate(x: jax.Array, lead: jax.Array, kind: str = "orca") -> jax.Array:
    """Rotates the channel pairs of ``x [B, ..., D]`` by lead ``lead [B]`` (months, 1-based).

    Pair ``(x[2i], x[2i + 1])`` becomes ``(x[2i] cos a - x[2i + 1] sin a, x[2i] sin a +
    x[2i + 1] cos a)`` with ``a = (lead - 1) * f_i`` (:func:`frequencies`); the norm of every
    pair is kept.
    """
    d = x.shape[-1]
    f = jnp.asarray(frequencies(d, kind))
    t = jnp.asarray(lead, jnp.float32) - 1.0
    angle = t.reshape(t.shape + (1,) * (x.ndim - 2) + (1,)) * f  # [B, 1.., D/2]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    pairs = x.reshape(*x.shape[:-1], d // 2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    out = jnp.stack([a * cos - b * sin, a * sin + b * cos], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)


def mix_forcing(ocean: jax.Array, forcing: jax.Array, lead: jax.Array, kind: str) -> jax.Array:
    """ORCA-DL's forcing mix: the forcing features rotated by the lead, ``w = rotate(f)``,
    added along themselves in proportion to their dot product with the ocean latent:
    ``z + (w . z) w`` per token (``[B, H, W, D]`` both)."""
    w = rotate(forcing, lead, kind)
    return ocean + jnp.sum(w * ocean, axis=-1, keepdims=True) * w


__all__ = ["FREQUENCIES", "expert_index", "frequencies", "mix_forcing", "rotate"]
