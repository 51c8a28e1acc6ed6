"""Targets derived from a store variable: box-mean indices such as Nino3.4 and its ONI.

A :class:`~tellus.data.tasks.DerivedTarget` names an index that no store holds but every
sample of its task needs at the lead times: the (cos-latitude, i.e. area) weighted mean of a
2D variable over a :class:`~tellus.data.regions.Box`, as anomalies from its calendar-month
climatology over a base period, then a centred running mean over ``running_mean`` steps.
Nino3.4's centred 3-month mean (ONI-style) is::

    running_mean(monthly_anomalies(box_mean(sst_anomaly, NINO34), base_period), 3)

This module is the one implementation: :class:`~tellus.data.sources.WindowSource` computes
a task's derived targets with :func:`derive` once when it opens a store, and
:mod:`tellus.enso.indices` computes its indices with the same functions.

Every function keeps the dims other than latitude and longitude (``time``, and
``realization`` for a store of several segments); climatologies are per calendar month over
``time`` only, so each segment of a segmented store has its own.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from tellus.data import schema, tasks
from tellus.data.regions import Box


def box_weights(
    box: Box, latitude: np.ndarray, longitude: np.ndarray, *, weighted: bool = True
) -> np.ndarray:
    """Weights [lat, lon] summing to 1 over the box: cos(latitude), or equal if not weighted.

    Raises:
      ValueError: no grid point lies in the box.
    """
    inside = box.mask(latitude, longitude).values > 0
    if not inside.any():
        raise ValueError(f"no grid point lies in box {box}")
    w = (
        np.cos(np.deg2rad(np.asarray(latitude, dtype=np.float64)))[:, None]
        if weighted
        else (np.ones((len(latitude), 1)))
    )
    w = np.where(inside, w, 0.0)
    return w / w.sum()


def box_mean(field: xr.DataArray, box: Box, *, weighted: bool = True) -> xr.DataArray:
    """The (cos-latitude weighted) mean of ``field`` over ``box``, keeping other dims."""
    w = box_weights(
        box, field[schema.LATITUDE].values, field[schema.LONGITUDE].values, weighted=weighted
    )
    # Only the rows and columns the box touches are read (a lazily opened store reads that
    # window of each chunk, not the globe).
    rows = np.flatnonzero(w.any(axis=1))
    cols = np.flatnonzero(w.any(axis=0))
    rows = slice(int(rows[0]), int(rows[-1]) + 1)
    window = {schema.LATITUDE: rows, schema.LONGITUDE: cols}
    weights = xr.DataArray(w[rows][:, cols], dims=schema.SPATIAL_DIMS)
    out = (field.isel(window) * weights).sum(schema.SPATIAL_DIMS, skipna=False)
    return out.rename(box.name)


def monthly_anomalies(
    index: xr.DataArray, base_period: tuple[str, str] | None = None
) -> xr.DataArray:
    """Anomalies from the mean of each calendar month over ``base_period`` (None: all times).

    Args:
      index: a series with a ``time`` dim (and any other dims).
      base_period: (first, last) time labels, inclusive, e.g. ``("1981", "2010")``.

    Raises:
      ValueError: the base period holds no time of ``index``.
    """
    base = (
        index
        if base_period is None
        else index.sel({schema.TIME: slice(base_period[0], base_period[1])})
    )
    if base.sizes[schema.TIME] == 0:
        raise ValueError(f"base period {base_period} holds no time step of the index")
    clim = base.groupby(f"{schema.TIME}.month").mean(schema.TIME)
    out = index.groupby(f"{schema.TIME}.month") - clim
    return out.drop_vars("month").rename(index.name)


def running_mean(index: xr.DataArray, window: int = 3) -> xr.DataArray:
    """Centred running mean over ``window`` steps; NaN where the window leaves the record."""
    return index.rolling({schema.TIME: window}, center=True).mean()


def box_index(
    field: xr.DataArray,
    box: Box,
    base_period: tuple[str, str] | None = None,
    window: int = 1,
    *,
    weighted: bool = True,
) -> xr.DataArray:
    """The box mean of ``field`` as calendar-month anomalies over ``base_period``, then (for
    ``window`` > 1) its centred running mean over ``window`` steps."""
    anomalies = monthly_anomalies(box_mean(field, box, weighted=weighted), base_period)
    return anomalies if window == 1 else running_mean(anomalies, window)


def derive(ds: xr.Dataset, target: tasks.DerivedTarget) -> xr.DataArray:
    """The derived target ``target`` of ``ds``: dims ``([realization,] time)``, named
    ``target.name``, NaN where its running mean leaves the record.

    Raises:
      KeyError: ``ds`` lacks the target's variable.
      ValueError: the base period holds no time of ``ds``, or no grid point is in the box.
    """
    if target.variable not in ds.data_vars:
        raise KeyError(
            f"derived target {target.name!r} needs {target.variable!r}, not in the dataset "
            f"({sorted(ds.data_vars)})"
        )
    out = box_index(
        ds[target.variable],
        target.box,
        target.base_period,
        target.running_mean,
        weighted=target.weighted,
    )
    return out.rename(target.name)


__all__ = [
    "box_index",
    "box_mean",
    "box_weights",
    "derive",
    "monthly_anomalies",
    "running_mean",
]
