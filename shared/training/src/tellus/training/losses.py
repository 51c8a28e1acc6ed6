"""Latitude-weighted, channel-weighted and masked regression losses.

Arrays are ``[batch, lat, lon, channel]``. The latitude weights are the cell areas of
:func:`tellus.data.grid.latitude_weights` (WeatherBench2's, normalized to mean 1), the same
the evaluation metrics average with.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array


def _weighted_error(
    error: Array,
    lat_weights: Array | np.ndarray,
    channel_weights: Array | np.ndarray | None,
    mask: Array | np.ndarray | None,
) -> Array:
    """Mean over (batch, valid lat/lon points) of the lat-weighted error, then the
    channel-weighted mean over channels: ``sum_c cw_c * L_c / C``."""
    if error.ndim != 4:
        raise ValueError(f"expected [batch, lat, lon, channel], got shape {error.shape}")
    error = error.astype(jnp.float32)
    w = jnp.asarray(lat_weights, jnp.float32)[None, :, None, None]
    w = jnp.broadcast_to(w, (*error.shape[:3], 1))
    if mask is not None:
        m = jnp.asarray(mask, jnp.float32)
        # Accept [lat, lon], [lat, lon, channel] or full-rank masks.
        if m.ndim == 2:
            m = m[None, :, :, None]
        elif m.ndim == 3:
            m = m[None]
        elif m.ndim != 4:
            raise ValueError(f"mask must be 2-, 3- or 4-D, got shape {m.shape}")
        w = w * m
    w = jnp.broadcast_to(w, error.shape)
    per_channel = jnp.sum(w * error, axis=(0, 1, 2)) / jnp.maximum(
        jnp.sum(w, axis=(0, 1, 2)), 1e-12
    )
    if channel_weights is not None:
        per_channel = per_channel * jnp.asarray(channel_weights, jnp.float32)
    return jnp.mean(per_channel)


def weighted_mse(
    prediction: Array,
    target: Array,
    lat_weights: Array | np.ndarray,
    channel_weights: Array | np.ndarray | None = None,
    mask: Array | np.ndarray | None = None,
) -> Array:
    """Latitude- and channel-weighted mean squared error.

    Args:
      prediction, target: ``[batch, lat, lon, channel]``.
      lat_weights: ``[lat]`` weights (see :func:`tellus.data.grid.latitude_weights`).
      channel_weights: optional ``[channel]`` weights.
      mask: optional validity mask (1 valid, 0 invalid), ``[lat, lon]``,
        ``[lat, lon, channel]`` or full shape; the mean runs over valid points only.

    Returns:
      Scalar float32 loss.
    """
    return _weighted_error(jnp.square(prediction - target), lat_weights, channel_weights, mask)


def weighted_mae(
    prediction: Array,
    target: Array,
    lat_weights: Array | np.ndarray,
    channel_weights: Array | np.ndarray | None = None,
    mask: Array | np.ndarray | None = None,
) -> Array:
    """Latitude- and channel-weighted mean absolute error (arguments as ``weighted_mse``)."""
    return _weighted_error(jnp.abs(prediction - target), lat_weights, channel_weights, mask)
