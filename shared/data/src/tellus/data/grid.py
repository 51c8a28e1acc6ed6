"""Grid geometry: latitude cell bounds and the area weights of latitude rows.

One definition for the whole project: the training losses weight their errors with
:func:`latitude_weights` and the evaluation metrics average over space with it.

As WeatherBench2's ``get_lat_weights``: each latitude row is the centre of a cell bounded by
the midpoints to its neighbours, and by the poles at the two ends; its weight is the cell's
area on the unit sphere, ``sin(upper) - sin(lower)``, normalized to mean 1. For a regular grid
this is ``2 sin(dlat/2) cos(lat)`` inside the grid, i.e. proportional to ``cos(lat)``; a pole
row gets the small but nonzero area of its half cell instead of ``cos(90) = 0``.

The end cells reach the poles where the grid reaches them, its end row within one spacing of
the pole (a global grid with or without pole rows, ``-89.875 .. 89.875``, or a Gaussian one):
there every cell is about half a spacing either side of its row, as WeatherBench2's. A grid
that stops short of a pole (a regional one, ``-20 .. 20``, or an ocean model's ``-68 .. 68``)
ends its outer cell half a spacing beyond its outer row instead: extended to the pole, the
outer rows of the 4 deg ``-68 .. 68`` grid would weigh 2.8 times their neighbours.
"""

from __future__ import annotations

import numpy as np


def latitude_cell_bounds(latitude_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper cell bounds (degrees) of each latitude row.

    Bounds are the midpoints between neighbouring rows; the southernmost cell extends to -90
    and the northernmost to 90 where the end row is within one spacing of that pole, else
    half a spacing beyond the end row (a grid that stops short of the pole).

    Args:
      latitude_deg: strictly monotonic (ascending or descending) 1-D latitudes in degrees,
        within [-90, 90].

    Returns:
      ``(lower, upper)``, each shaped like ``latitude_deg`` and in its order.

    Raises:
      ValueError: for latitudes that are not 1-D, strictly monotonic and within [-90, 90].
    """
    lat = np.asarray(latitude_deg, dtype=np.float64)
    if lat.ndim != 1 or lat.size < 1:
        raise ValueError(f"latitude must be 1-D with at least one row, got shape {lat.shape}")
    descending = lat.size > 1 and lat[0] > lat[-1]
    asc = lat[::-1] if descending else lat
    if np.any(np.diff(asc) <= 0):
        raise ValueError("latitude must be strictly monotonic (ascending or descending)")
    if asc[0] < -90.0 or asc[-1] > 90.0:
        raise ValueError(f"latitude must lie within [-90, 90], got {asc[0]} .. {asc[-1]}")
    mid = 0.5 * (asc[1:] + asc[:-1])
    south, north = -90.0, 90.0
    if asc.size > 1:
        first, last = asc[1] - asc[0], asc[-1] - asc[-2]
        if asc[0] - first > -90.0:  # more than a spacing from the south pole
            south = asc[0] - 0.5 * first
        if asc[-1] + last < 90.0:
            north = asc[-1] + 0.5 * last
    lower = np.concatenate([[south], mid])
    upper = np.concatenate([mid, [north]])
    if descending:
        lower, upper = lower[::-1], upper[::-1]
    return lower, upper


def latitude_weights(latitude_deg: np.ndarray) -> np.ndarray:
    """Cell-area weights of latitude rows, normalized to mean 1, float64 shape ``[lat]``.

    Args:
      latitude_deg: as :func:`latitude_cell_bounds`.

    Returns:
      ``sin(upper) - sin(lower)`` of each row's cell, divided by its mean over the rows.
    """
    lower, upper = latitude_cell_bounds(latitude_deg)
    area = np.sin(np.deg2rad(upper)) - np.sin(np.deg2rad(lower))
    return area / area.mean()
