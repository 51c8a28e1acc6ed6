"""The ocean loss: area- and thickness-weighted MSE over the ocean, per variable.

Arrays are ``[N, lat, lon, C]`` in stacked channels (each 3D variable's depth levels, then
the 2D variables, as :class:`~tellus.data.stacking.ChannelLayout`). For variable ``v`` with
channels ``c`` (depths ``k``)::

    L_v = sum_k dz_k L_{v,k} / sum_k dz_k,
    L_{v,k} = sum_{n,i,j over ocean} a_i e^2 / sum_{n,i,j over ocean} a_i

with ``a_i`` the cell-area weight of latitude row ``i``
(:func:`tellus.data.grid.latitude_weights`, through
:func:`tellus.training.losses.weighted_mse`) and ``dz_k`` the thickness of level ``k`` (the
store's ``layer_thickness`` when it has one, else :func:`layer_thickness` of the depths); a
2D variable is one level. The loss is the mean of ``L_v`` over
the variables.

Land never reaches the loss: the target is set to zero over land by a ``where`` before any
arithmetic (a NaN target multiplied by a zero weight would still be NaN, in the value and
in the gradient), and land cells carry zero weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tellus.data import grid
from tellus.training import losses


def layer_thickness(depths: Sequence[float]) -> np.ndarray:
    """Thickness (m) of the layers centred on ``depths`` (m, positive down, increasing).

    A layer reaches halfway to its neighbours; the first reaches up to the surface and the
    last as far below its centre as halfway to the one above. One level is ``2 depth``
    thick (0 to twice its depth).

    Raises:
      ValueError: depths empty, negative or not strictly increasing.
    """
    d = np.asarray(depths, np.float64)
    if d.ndim != 1 or d.size == 0 or d[0] < 0 or np.any(np.diff(d) <= 0):
        raise ValueError(f"depths must be >= 0 and strictly increasing, got {d.tolist()}")
    mid = 0.5 * (d[1:] + d[:-1])
    bottom = d[-1] + (d[-1] - mid[-1] if d.size > 1 else d[-1])
    bounds = np.concatenate([[0.0], mid, [bottom]])
    return np.diff(bounds)


def level_weights(
    channels: Sequence[int],
    depths: Sequence[float],
    thickness: Sequence[float] | None = None,
) -> list[np.ndarray | None]:
    """Per variable, its channels' thickness weights (mean 1), None for a 2D variable.

    Args:
      channels: channels of each variable (``len(depths)`` for a 3D one, 1 for a 2D one).
      depths: the 3D variables' depths (m).
      thickness: the layers' thicknesses (m); None: :func:`layer_thickness` of ``depths``.

    Raises:
      ValueError: a variable with neither 1 nor ``len(depths)`` channels, or thicknesses
        that are not one positive number per depth.
    """
    if thickness is None:
        dz = layer_thickness(depths) if len(depths) else np.zeros(0)
    else:
        dz = np.asarray(thickness, np.float64)
        if dz.shape != (len(depths),) or np.any(dz <= 0):
            raise ValueError(f"need one positive thickness per depth, got {dz.tolist()}")
    out: list[np.ndarray | None] = []
    for c in channels:
        if c == 1 and len(depths) != 1:
            out.append(None)
        elif c == len(depths):
            out.append((dz / dz.mean()).astype(np.float32))
        else:
            raise ValueError(f"a variable of {c} channels with {len(depths)} depths")
    return out


def ocean_mse(
    prediction: jax.Array,
    target: jax.Array,
    ocean: jax.Array,
    latitude: Sequence[float],
    channels: Sequence[int],
    depths: Sequence[float],
    thickness: Sequence[float] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The loss of the module docstring.

    Args:
      prediction, target: ``[N, lat, lon, C]``; the target may be anything over land.
      ocean: ``[N | 1, lat, lon]``, True (or 1) over the ocean.
      latitude: grid latitudes (degrees).
      channels: channels of each variable, in order (summing to C).
      depths: the 3D variables' depths (m).
      thickness: their layers' thicknesses (m), default from the depths.

    Returns:
      ``(loss, per_variable)``: the scalar mean over variables and ``[V]`` each ``L_v``.
    """
    ocean = jnp.asarray(ocean, bool)
    if prediction.shape != target.shape or sum(channels) != prediction.shape[-1]:
        raise ValueError(
            f"prediction {prediction.shape} and target {target.shape} must match, with "
            f"{sum(channels)} channels"
        )
    mask = jnp.broadcast_to(ocean[..., None], (*prediction.shape[:3], 1))
    target = jnp.where(mask, target, 0.0)
    prediction = jnp.where(mask, prediction, 0.0)
    w_lat = grid.latitude_weights(np.asarray(latitude))
    per_variable = []
    start = 0
    for c, w in zip(channels, level_weights(channels, depths, thickness), strict=True):
        sl = slice(start, start + c)
        per_variable.append(
            losses.weighted_mse(prediction[..., sl], target[..., sl], w_lat, w, mask=mask)
        )
        start += c
    per_variable = jnp.stack(per_variable)
    return jnp.mean(per_variable), per_variable


__all__ = ["layer_thickness", "level_weights", "ocean_mse"]
