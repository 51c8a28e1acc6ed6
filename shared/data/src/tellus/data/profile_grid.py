"""Observations on the grid: each row of an observation table mapped to its nearest cell.

The mapping (:func:`to_grid`), for a store in the schema (dims time, depth, latitude,
longitude, both ascending, longitude in [0, 360)):

* latitude: the nearest grid latitude; a point more than half a cell (half the spacing of
  the two outermost rows) beyond the first or last row is *outside the grid*;
* longitude: the nearest grid longitude on the circle, so 359.9 and 0.1 are 0.2 deg apart
  (on a global grid: one whose rows span 360 deg with their spacing; otherwise the same
  half-cell rule as latitude applies);
* depth: the nearest level (points between the surface and the first level go to the
  first); a point more than half the last spacing below the deepest level is *below the
  deepest level*; a negative depth (above the sea surface) is an error;
* time: a monthly store (distinct calendar months, 27-32 days apart) takes each row to
  the store time of the same calendar month, whatever day labels it; any other store to
  the nearest time, at most half a step beyond the first or last;
* ties (a point exactly midway) go to the lower index (south, west, shallower, earlier).

A row whose cell is land (``ocean_mask`` 0 at that depth, or, without a mask, a NaN value
of the variable at that time) is *on land*. Several rows in one cell are averaged. Every
error names the first offending row: its number, profile, time, lat, lon and depth.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import profiles, schema
from tellus.data.errors import SchemaError

OnInvalid = Literal["raise", "drop"]


@dataclasses.dataclass(frozen=True)
class GriddedObservations:
    """Observations on the grid, ready to guide a reconstruction.

    Attributes:
      time_index, depth_index, lat_index, lon_index: int [n_rows], each row's cell (-1 for
        rows dropped with ``on_invalid="drop"``).
      valid: bool [n_rows], False for dropped rows.
      values: float64 [time, depth, lat, lon], the mean of the rows in each cell, NaN where
        there is none.
      mask: bool [time, depth, lat, lon], True where ``values`` holds an observation.
      count: int [time, depth, lat, lon], the number of rows in each cell.
      coords: the grid's time, depth, latitude and longitude.
      variable: the variable observed.
    """

    time_index: np.ndarray
    depth_index: np.ndarray
    lat_index: np.ndarray
    lon_index: np.ndarray
    valid: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    count: np.ndarray
    coords: dict[str, np.ndarray]
    variable: str

    @property
    def n_points(self) -> int:
        """Cells holding at least one observation."""
        return int(self.mask.sum())

    def to_dataset(self) -> xr.Dataset:
        """``value`` (NaN where unobserved), ``mask`` and ``count`` on the grid's coords."""
        dims = (schema.TIME, schema.DEPTH, schema.LATITUDE, schema.LONGITUDE)
        return xr.Dataset(
            {
                "value": (dims, self.values, {"long_name": f"observed {self.variable}"}),
                "mask": (dims, self.mask),
                "count": (dims, self.count),
            },
            coords={d: self.coords[d] for d in dims},
        )


def _nearest(coord: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the nearest value of ascending ``coord`` to each ``x`` (ties: lower)."""
    if len(coord) == 1:
        return np.zeros(len(x), dtype=np.int64)
    i = np.clip(np.searchsorted(coord, x), 1, len(coord) - 1)
    lower = (x - coord[i - 1]) <= (coord[i] - x)
    return np.where(lower, i - 1, i).astype(np.int64)


def _half_cells(coord: np.ndarray) -> tuple[float, float]:
    """Half the spacing at the first and last value (a single value: 0.5 of itself or 1)."""
    if len(coord) == 1:
        return (0.5 * abs(float(coord[0])) or 1.0,) * 2
    return 0.5 * float(coord[1] - coord[0]), 0.5 * float(coord[-1] - coord[-2])


def _is_global(lon: np.ndarray) -> bool:
    if len(lon) < 2:
        return False
    step = float(np.median(np.diff(lon)))
    return abs(float(lon[-1] - lon[0]) + step - 360.0) < 0.01 * step


def nearest_longitude(grid_lon: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Index of the nearest of a global grid's ascending longitudes, on the circle."""
    n = len(grid_lon)
    extended = np.concatenate([[grid_lon[-1] - 360.0], grid_lon, [grid_lon[0] + 360.0]])
    return (_nearest(extended, np.mod(lon, 360.0)) - 1) % n


def _is_monthly(times: pd.DatetimeIndex) -> bool:
    if len(times) < 2:
        return False
    months = times.year * 12 + times.month
    days = np.diff(times.values).astype("timedelta64[s]").astype(float) / 86400.0
    return len(np.unique(months)) == len(times) and 27.0 <= float(np.median(days)) <= 32.0


def _time_indices(grid_times: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, inside) of each time ``t`` in ``grid_times`` (see the module docstring)."""
    times = pd.DatetimeIndex(grid_times)
    t = pd.DatetimeIndex(t)
    if _is_monthly(times):
        key = pd.Index(times.year * 12 + times.month)
        idx = key.get_indexer(t.year * 12 + t.month)
        return np.maximum(idx, 0), idx >= 0
    g = times.values.astype("datetime64[ns]").astype("int64").astype(float)
    x = t.values.astype("datetime64[ns]").astype("int64").astype(float)
    idx = _nearest(g, x)
    lo, hi = _half_cells(g)
    inside = (x >= g[0] - lo) & (x <= g[-1] + hi)
    return idx, inside


def _ocean(grid: xr.Dataset, variable: str) -> tuple[np.ndarray, bool]:
    """(ocean, per_time): ocean_mask as [depth, lat, lon] bool, or, without a mask, the
    finite values of ``variable`` as [time, depth, lat, lon]."""
    if profiles.MASK in grid.data_vars:
        m = grid[profiles.MASK]
        if schema.DEPTH not in m.dims:
            m = m.expand_dims({schema.DEPTH: grid[schema.DEPTH]})
        return (
            m.transpose(schema.DEPTH, schema.LATITUDE, schema.LONGITUDE) > 0.5
        ).to_numpy(), False
    if variable not in grid.data_vars:
        raise SchemaError(
            f"the grid has neither '{profiles.MASK}' nor '{variable}' to tell ocean from land"
        )
    dims = (schema.TIME, schema.DEPTH, schema.LATITUDE, schema.LONGITUDE)
    return grid[variable].transpose(*dims).notnull().to_numpy(), True


def to_grid(
    table: pd.DataFrame,
    grid: xr.Dataset,
    *,
    variable: str | None = None,
    on_invalid: OnInvalid = "raise",
) -> GriddedObservations:
    """Maps each row of ``table`` to its nearest cell of ``grid`` (see the module docstring).

    Args:
      table: an observation table (:mod:`tellus.data.profiles`).
      grid: a store in the schema, or any dataset with its time, depth, latitude and
        longitude coords and ``ocean_mask`` (or ``variable``, NaN over land).
      variable: the variable to grid; may be omitted when the table holds one.
      on_invalid: ``"raise"``: a row on land, outside the grid, below the deepest level or
        outside the grid's times raises; ``"drop"``: such rows are left out (``valid``).

    Returns:
      The rows' cells, and the gridded values, mask and count on the whole grid.

    Raises:
      SchemaError: one line naming the first offending row, its profile, time, lat, lon,
        depth and what is wrong.
    """
    table = profiles.validate_table(table)
    names = pd.unique(table[profiles.VARIABLE])
    if variable is None:
        if len(names) > 1:
            raise SchemaError(f"the table holds {list(names)}; pass variable=")
        variable = str(names[0]) if len(names) else "sea_water_potential_temperature"
    table = table[table[profiles.VARIABLE] == variable].reset_index(drop=True)
    coords = {
        d: grid[d].to_numpy()
        for d in (schema.TIME, schema.DEPTH, schema.LATITUDE, schema.LONGITUDE)
    }
    lat, lon, depth = (
        coords[d].astype(float) for d in (schema.LATITUDE, schema.LONGITUDE, schema.DEPTH)
    )
    for name, c in ((schema.LATITUDE, lat), (schema.LONGITUDE, lon), (schema.DEPTH, depth)):
        if len(c) > 1 and not np.all(np.diff(c) > 0):
            raise SchemaError(f"grid {name} is not strictly ascending")
    y, x, z = (table[c].to_numpy() for c in (schema.LATITUDE, schema.LONGITUDE, schema.DEPTH))

    j = _nearest(lat, y)
    s, n = _half_cells(lat)
    problems = [((y < lat[0] - s) | (y > lat[-1] + n), "is outside the grid's latitudes")]
    if _is_global(lon):
        i = nearest_longitude(lon, x)
    else:
        i = _nearest(lon, x)
        w, e = _half_cells(lon)
        problems.append(((x < lon[0] - w) | (x > lon[-1] + e), "is outside the grid's longitudes"))
    k = _nearest(depth, z)
    problems.append((z > depth[-1] + _half_cells(depth)[1], "is below the deepest level"))
    t, inside = _time_indices(coords[schema.TIME], table[schema.TIME].to_numpy())
    problems.append((~inside, "is outside the grid's times"))
    ocean, per_time = _ocean(grid, variable)
    wet = ocean[t, k, j, i] if per_time else ocean[k, j, i]
    problems.append((~wet, "is on land"))

    valid = np.ones(len(table), dtype=bool)
    for bad, what in problems:
        bad = bad & valid
        if bad.any() and on_invalid == "raise":
            r = int(np.flatnonzero(bad)[0])
            cell = (
                f"nearest cell lat {lat[j[r]]:.4g}, lon {lon[i[r]]:.4g}, depth {depth[k[r]]:.5g} m"
            )
            raise SchemaError(f"row {r} ({profiles.describe_row(table, r)}) {what}; {cell}")
        valid &= ~bad

    shape = (len(coords[schema.TIME]), len(depth), len(lat), len(lon))
    flat = np.ravel_multi_index((t[valid], k[valid], j[valid], i[valid]), shape)
    size = int(np.prod(shape))
    count = np.bincount(flat, minlength=size).reshape(shape)
    total = np.bincount(flat, weights=table[profiles.VALUE].to_numpy()[valid], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(count > 0, total.reshape(shape) / count, np.nan)

    def rows(a):
        return np.where(valid, a, -1).astype(np.int64)

    return GriddedObservations(
        time_index=rows(t),
        depth_index=rows(k),
        lat_index=rows(j),
        lon_index=rows(i),
        valid=valid,
        values=values,
        mask=count > 0,
        count=count,
        coords=coords,
        variable=variable,
    )
