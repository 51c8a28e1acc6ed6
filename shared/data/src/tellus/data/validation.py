"""Opening stores and checking them against the schema.

:func:`open_dataset` is how every Tellus job reads a store: it opens a local path or any
fsspec URL lazily, brings dims, names, level units, latitude order and longitude range into
the schema (:func:`tellus.data.conventions.canonicalize`), then :func:`validate` checks what
cannot be fixed silently and raises :class:`~tellus.data.errors.SchemaError` with a message
naming the variable, the dim or the store and what was expected.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Literal

import dask
import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import schema
from tellus.data.errors import SchemaError

ValueCheck = Literal["none", "sample", "full"]

# Static fields that declare where a variable may legitimately be missing (1 = valid).
MASK_VARIABLES = ("ocean_mask",)
# Variables of the sea surface outside the ocean kinds (monthly "climate" fields): NaN over
# land too, where a mask declares it.
SEA_VARIABLES = (
    "sea_surface_temperature",
    "sea_surface_temperature_anomaly",
    "ocean_heat_content_anomaly",
)
_SAMPLE_STEPS = 8


def _chunks(source: str) -> dict[str, int]:
    """Dask chunks for a store: its shards along time where it has them (a store of
    :mod:`tellus.data.writing` compresses each time step apart, but a task per step would
    make every out-of-core pass twenty times longer a graph), else its own chunks."""
    ds = xr.open_zarr(source, chunks=None)
    for var in ds.data_vars.values():
        shards = var.encoding.get("shards")
        if shards and schema.TIME in var.dims:
            return {schema.TIME: int(shards[var.dims.index(schema.TIME)])}
    return {}


def open_dataset(
    path: str | os.PathLike,
    *,
    variables: Sequence[str] | None = None,
    levels: Sequence[float] | None = None,
    allow_gaps: bool = False,
    check_values: ValueCheck = "sample",
    chunks: dict | str | None = None,
) -> xr.Dataset:
    """Opens a Zarr store lazily and returns it in the schema, validated.

    Args:
      path: local path or fsspec URL of a Zarr store (v2 or v3).
      variables: variables that must be present (default: none required).
      levels: pressure levels (hPa) or depths (m) every 3D variable must have.
      allow_gaps: accept gaps in the time axis (samplers never cross them); duplicated or
        unordered times are refused regardless.
      check_values: "sample" reads a few time steps to check for NaNs and implausible
        values (wrong units), "full" scans everything out of core with dask, "none" skips it.
      chunks: dask chunks for ``xarray.open_zarr`` (default: the store's own).

    Returns:
      The dataset, lazily loaded, in the schema.

    Raises:
      SchemaError: the store does not meet the schema; the message says what and where.
      FileNotFoundError: there is no store at ``path``.
    """
    from tellus.data import conventions

    source = str(path)
    try:
        with warnings.catch_warnings():
            # Stores written without consolidated metadata are fine, just slower to open.
            warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated")
            ds = xr.open_zarr(source, chunks=chunks if chunks is not None else _chunks(source))
    except (FileNotFoundError, KeyError) as e:
        raise FileNotFoundError(f"no Zarr store at {source}: {e}") from e
    ds = conventions.canonicalize(ds, source=source)
    return validate(
        ds,
        source=source,
        variables=variables,
        levels=levels,
        allow_gaps=allow_gaps,
        check_values=check_values,
    )


def validate(
    ds: xr.Dataset,
    *,
    source: str = "<dataset>",
    variables: Sequence[str] | None = None,
    levels: Sequence[float] | None = None,
    allow_gaps: bool = False,
    check_values: ValueCheck = "sample",
) -> xr.Dataset:
    """Checks a dataset already in schema layout; returns it unchanged if it passes.

    Args: as :func:`open_dataset`, with ``source`` naming the dataset in messages.

    Returns:
      ``ds``.

    Raises:
      SchemaError: naming the variable, dim or coordinate at fault.
    """
    check_variables(ds, variables or (), source)
    check_levels(ds, levels, source)
    check_grid(ds, source)
    check_units(ds, source)
    if schema.TIME in ds.dims:
        check_time(ds[schema.TIME].values, source, allow_gaps=allow_gaps)
    if check_values != "none":
        check_values_of(ds, source, full=check_values == "full")
    return ds


def check_variables(ds: xr.Dataset, required: Sequence[str], source: str) -> None:
    """Raises if a required variable is missing or a schema variable has the wrong dims."""
    missing = [v for v in required if v not in ds.data_vars]
    if missing:
        raise SchemaError(
            f"{source}: missing variable(s) {missing}; the store has {sorted(ds.data_vars)}"
        )
    for name, var in ds.data_vars.items():
        spec = schema.VARIABLES.get(name)
        if spec is None:
            continue
        core = tuple(d for d in var.dims if d in spec.dims)
        if core != spec.dims:
            raise SchemaError(
                f"{source}: variable '{name}' has dims {var.dims}; expected {spec.dims} "
                "(extra leading dims such as 'realization' are allowed)"
            )


def check_levels(ds: xr.Dataset, levels: Sequence[float] | None, source: str) -> None:
    """Raises if a level (or depth) that the caller needs is missing."""
    if levels is None:
        return
    dim = schema.LEVEL if schema.LEVEL in ds.dims else schema.DEPTH
    if dim not in ds.dims:
        raise SchemaError(
            f"{source}: levels {list(levels)} requested but the store has no "
            f"'{schema.LEVEL}' or '{schema.DEPTH}' dim"
        )
    have = np.asarray(ds[dim].values, dtype=np.float64)
    missing = [lv for lv in levels if not np.any(np.isclose(have, lv))]
    if missing:
        unit = "hPa" if dim == schema.LEVEL else "m"
        raise SchemaError(
            f"{source}: missing {dim}(s) {missing} {unit}; the store has {have.tolist()}"
        )


def check_grid(ds: xr.Dataset, source: str) -> None:
    """Raises unless latitude ascends within [-90, 90] and longitude ascends within [0, 360)."""
    for dim in schema.SPATIAL_DIMS:
        if dim not in ds.dims:
            raise SchemaError(f"{source}: no '{dim}' dim; dims are {tuple(ds.dims)}")
    lat = np.asarray(ds[schema.LATITUDE].values, dtype=np.float64)
    lon = np.asarray(ds[schema.LONGITUDE].values, dtype=np.float64)
    if lat.size > 1 and not np.all(np.diff(lat) > 0):
        raise SchemaError(
            f"{source}: latitude must be strictly ascending (south to north); "
            f"got {lat[:3].tolist()}..."
        )
    if lat.min() < -90 or lat.max() > 90:
        raise SchemaError(f"{source}: latitude outside [-90, 90]: {lat.min()}..{lat.max()}")
    steps = np.diff(lon)
    # A regional box across 0 deg keeps its columns contiguous (see tellus.data.conventions):
    # one wrap 359.x -> 0 is allowed when the ACDD bounds say the box crosses the meridian.
    crosses = ds.attrs.get("geospatial_lon_min", 0) > ds.attrs.get("geospatial_lon_max", 360)
    wraps = int(np.sum(steps <= 0))
    if lon.size > 1 and wraps and not (crosses and wraps == 1 and np.sum(steps < 0) == 1):
        raise SchemaError(
            f"{source}: longitude must be strictly ascending; got {lon[:3].tolist()}..."
        )
    if lon.min() < 0 or lon.max() >= 360:
        raise SchemaError(f"{source}: longitude outside [0, 360): {lon.min()}..{lon.max()}")


def check_units(ds: xr.Dataset, source: str) -> None:
    """Raises if a schema variable lacks units or has units other than the schema's."""
    for name, var in ds.data_vars.items():
        spec = schema.VARIABLES.get(name)
        if spec is None:
            continue
        units = var.attrs.get("units")
        if units is None:
            raise SchemaError(
                f"{source}: variable '{name}' has no 'units' attribute; expected '{spec.units}'"
            )
        units = schema.canonical_units(str(units))
        if units == spec.units:
            continue
        hint = ""
        if name == "geopotential" or name == "geopotential_at_surface":
            if units in ("m", "gpm"):
                hint = (
                    " (this looks like geopotential height: multiply by standard gravity "
                    "9.80665 m s-2, or ingest it as 'geopotential_height')"
                )
        elif (units, spec.units) in schema.UNIT_CONVERSIONS:
            hint = (
                f" (convertible: run it through `tellus data ingest` to convert {units}->"
                f"{spec.units})"
            )
        raise SchemaError(
            f"{source}: variable '{name}' has units '{units}'; expected '{spec.units}'{hint}"
        )


def time_step(times: np.ndarray) -> pd.Timedelta:
    """The regular step of a time axis: the most common difference between neighbours."""
    diffs = np.diff(np.asarray(times).astype("datetime64[ns]")).astype(np.int64)
    if diffs.size == 0:
        raise SchemaError("cannot infer a time step from fewer than 2 times")
    values, counts = np.unique(diffs, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


def _is_monthly(times: np.ndarray) -> bool:
    idx = pd.DatetimeIndex(times)
    return (
        len(idx) > 1
        and bool(np.all(idx.day == idx[0].day))
        and bool(np.all(idx.hour == idx[0].hour))
        and (idx[1] - idx[0]) >= pd.Timedelta("28D")
    )


def check_time(times: np.ndarray, source: str, *, allow_gaps: bool = False) -> None:
    """Raises on a duplicated, unordered or (unless allowed) gappy time axis.

    Monthly axes (same day of month at every step) count calendar months, not days.
    """
    idx = pd.DatetimeIndex(times)
    if len(idx) < 2:
        return
    dup = idx[idx.duplicated()]
    if len(dup):
        raise SchemaError(
            f"{source}: dim 'time' has duplicated values, first {dup[0]} ({len(dup)} duplicates)"
        )
    diffs = np.diff(idx.values.astype("datetime64[ns]").astype(np.int64))
    if np.any(diffs < 0):
        i = int(np.argmax(diffs < 0))
        raise SchemaError(
            f"{source}: dim 'time' is not monotonic increasing: {idx[i]} is "
            f"followed by {idx[i + 1]}"
        )
    if allow_gaps:
        return
    if _is_monthly(idx):
        months = idx.year * 12 + idx.month
        gaps = np.flatnonzero(np.diff(months) != 1)
        step_text = "1 month"
    else:
        step = time_step(idx.values)
        gaps = np.flatnonzero(diffs != step // pd.Timedelta(1, unit="ns"))
        step_text = str(step)
    if gaps.size:
        i = int(gaps[0])
        raise SchemaError(
            f"{source}: dim 'time' has {gaps.size} gap(s) in a {step_text} axis, first between "
            f"{idx[i]} and {idx[i + 1]}; pass allow_gaps=True to read it with gap-aware samplers"
        )


def _sample_times(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, _SAMPLE_STEPS)).round().astype(int))


def check_values_of(ds: xr.Dataset, source: str, *, full: bool = False) -> None:
    """Raises on NaNs outside the declared mask, or values outside the plausible range.

    Variables of the ocean (the ``ocean_*`` kinds and ``SEA_VARIABLES``) may be NaN where
    ``ocean_mask`` is 0; nothing else may be NaN. A mask with a ``depth`` dim (land that
    widens with depth) is read level by level, and by its top level for surface fields.

    Args:
      ds: the dataset.
      source: its name in messages.
      full: scan every time step out of core (dask) instead of a sample of them.
    """
    mask = None
    for m in MASK_VARIABLES:
        if m in ds.data_vars:
            mask = ds[m] > 0.5
    if not full and schema.TIME in ds.dims:
        ds = ds.isel({schema.TIME: _sample_times(ds.sizes[schema.TIME])})
    for name, var in ds.data_vars.items():
        if not np.issubdtype(var.dtype, np.floating):
            continue
        spec = schema.VARIABLES.get(name)
        sea = spec is not None and (spec.kind.startswith("ocean") or name in SEA_VARIABLES)
        masked = sea and mask is not None
        where_sea = mask
        if masked and schema.DEPTH in mask.dims and schema.DEPTH not in var.dims:
            # A surface field against a mask by depth: the mask of the top level.
            where_sea = mask.isel({schema.DEPTH: int(np.argmin(mask[schema.DEPTH].values))})
        bad = var.isnull() & where_sea if masked else var.isnull()
        # One pass over the data for the count and the range.
        n_bad, vmin, vmax = (float(x) for x in dask.compute(bad.sum(), var.min(), var.max()))
        n_bad = int(n_bad)
        if n_bad:
            first = {
                d: str(bad[d].values[i]) if d in bad.coords else int(i)
                for d, i in zip(
                    bad.dims, np.unravel_index(int(bad.values.argmax()), bad.shape), strict=True
                )
            }
            where = "inside the declared ocean_mask" if masked else "(no mask declared)"
            raise SchemaError(
                f"{source}: variable '{name}' has {n_bad} NaN value(s) {where}; first at {first}"
            )
        if spec is not None and spec.plausible is not None:
            lo, hi = spec.plausible
            if vmin < lo or vmax > hi:
                raise SchemaError(
                    f"{source}: variable '{name}' ranges {vmin:.4g}..{vmax:.4g}, outside the "
                    f"plausible {lo:.4g}..{hi:.4g} for units '{spec.units}'; check its units"
                )


def check_same_grid(a: xr.Dataset, b: xr.Dataset, *, names: tuple[str, str] = ("a", "b")) -> None:
    """Raises unless ``a`` and ``b`` share latitude and longitude (to 1e-6 deg).

    Args:
      a, b: datasets in the schema.
      names: how to call them in the message (store paths, usually).
    """
    for dim in schema.SPATIAL_DIMS:
        x, y = np.asarray(a[dim].values), np.asarray(b[dim].values)
        if x.shape != y.shape or not np.allclose(x, y, atol=1e-6):

            def describe(v):
                return f"{v.size} points {v.min():.4g}..{v.max():.4g}" if v.size else "empty"

            raise SchemaError(
                f"grids differ in '{dim}': {names[0]} has {describe(x)}, {names[1]} has "
                f"{describe(y)}; regrid one of them first"
            )
