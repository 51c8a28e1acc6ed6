"""Normalization statistics and climatologies, computed out of core with dask.

For every variable (and every level of the 3D ones) this computes, over a time range of a
store (normally the training split, so that nothing leaks from the test years):

* ``mean`` and ``std`` over time, latitude and longitude;
* ``diff_std``: the std of differences ``x(t + step) - x(t)`` at the model's step, which
  GraphCast uses to scale residual targets (differences never straddle a gap in time);
* ``climatology``: the mean by day of year and hour of day, smoothed with a circular window
  over the day of year (WeatherBench2 smooths its ERA5 climatology with a 61-day window), used
  for anomaly metrics such as ACC;
* by calendar month (:func:`compute_monthly_statistics`, for monthly models that normalize
  each month with its own statistics, as ORCA-DL does): ``mean`` and ``std`` of every
  time-varying variable over the times of that month, latitude and longitude.

Everything is accumulated in float64 with fixed dask chunking, so the same store gives the
same numbers on every run. The results go next to the store, ``era5.zarr`` ->
``era5.stats.zarr``, as a small Zarr store with one group per statistic.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.ndimage
import xarray as xr

from tellus.data import schema
from tellus.data.errors import SchemaError

GROUPS = ("mean", "std", "diff_std")
CLIMATOLOGY = "climatology"
MONTH = "month"


def stats_path(store: str | os.PathLike) -> str:
    """Where the statistics of ``store`` live: ``x.zarr`` -> ``x.stats.zarr``."""
    s = str(store).rstrip("/")
    return (s[: -len(".zarr")] if s.endswith(".zarr") else s) + ".stats.zarr"


def _select(
    ds: xr.Dataset, time_range: tuple[str, str] | None, variables: Sequence[str] | None
) -> xr.Dataset:
    if variables is not None:
        missing = sorted(set(variables) - set(ds.data_vars))
        if missing:
            raise SchemaError(f"cannot compute statistics of missing variable(s) {missing}")
        ds = ds[list(variables)]
    if time_range is not None and schema.TIME in ds.dims:
        ds = ds.sel({schema.TIME: slice(*time_range)})
        if ds.sizes[schema.TIME] < 2:
            raise SchemaError(
                f"time range {time_range} selects {ds.sizes[schema.TIME]} time "
                "step(s); statistics need at least 2"
            )
    return ds


def _reduce_dims(var: xr.DataArray) -> list[str]:
    return [d for d in var.dims if d in (schema.TIME, schema.LATITUDE, schema.LONGITUDE)]


def step_pairs(times: np.ndarray, step: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` with ``times[j] - times[i] == step`` exactly.

    Pairs are found by time value, not by position, so a gap in the axis never yields a
    difference over a longer interval.
    """
    t = pd.DatetimeIndex(times)
    pos = pd.Series(np.arange(len(t)), index=t)
    later = t + step
    found = later.isin(t)
    i = np.flatnonzero(found)
    j = pos.loc[later[found]].to_numpy()
    return i, j


def compute_statistics(
    ds: xr.Dataset,
    *,
    step: str | pd.Timedelta,
    time_range: tuple[str, str] | None = None,
    variables: Sequence[str] | None = None,
) -> dict[str, xr.Dataset]:
    """Mean, std and step-difference std of every variable, lazily reduced with dask.

    Args:
      ds: a dataset in the schema (dask-backed for out-of-core work).
      step: the model's time step, e.g. ``"6h"``; ``diff_std`` is the std of differences
        over exactly this interval.
      time_range: (start, stop) dates, inclusive, e.g. the training years.
      variables: which variables (default all floating-point ones).

    Returns:
      ``{"mean": ds, "std": ds, "diff_std": ds}``, each with the data variables reduced over
      time, latitude and longitude (keeping ``level`` or ``depth``). Static variables have a
      ``diff_std`` of NaN. Masked (NaN) points of ocean variables are skipped.
    """
    step = pd.Timedelta(step)
    ds = _select(ds, time_range, variables)
    floats = [n for n, v in ds.data_vars.items() if np.issubdtype(v.dtype, np.floating)]
    ds = ds[floats].astype(np.float64)
    out: dict[str, dict[str, xr.DataArray]] = {g: {} for g in GROUPS}
    if schema.TIME in ds.dims:
        i, j = step_pairs(ds[schema.TIME].values, step)
        if i.size == 0:
            raise SchemaError(
                f"no pairs of times {step} apart in the selected range; is the "
                f"step a multiple of the store's time step?"
            )
    for name, var in ds.data_vars.items():
        dims = _reduce_dims(var)
        out["mean"][name] = var.mean(dims, skipna=True)
        out["std"][name] = var.std(dims, skipna=True)
        if schema.TIME in var.dims:
            diff = var.isel({schema.TIME: j}).data - var.isel({schema.TIME: i}).data
            d = var.isel({schema.TIME: i}).copy(data=diff)
            out["diff_std"][name] = d.std(dims, skipna=True)
        else:
            out["diff_std"][name] = xr.full_like(out["std"][name], np.nan)
    result = {}
    for group, variables_ in out.items():
        stat = xr.Dataset(variables_)
        stat = stat.drop_vars([c for c in stat.coords if c not in stat.dims])
        stat.attrs.update(
            statistic=group, step=str(step), time_range=str(time_range) if time_range else "all"
        )
        result[group] = stat
    return result


def compute_monthly_statistics(
    ds: xr.Dataset,
    *,
    time_range: tuple[str, str] | None = None,
    variables: Sequence[str] | None = None,
) -> dict[str, xr.Dataset]:
    """Mean and std of every time-varying variable by calendar month.

    For month ``m`` the statistics run over every time of the range in that month and over
    latitude and longitude (keeping ``level`` or ``depth``), skipping NaN (land in ocean
    fields), with the population std as :func:`compute_statistics`.

    Args:
      ds: a dataset in the schema with a ``time`` dim (numpy or cftime dates).
      time_range: (start, stop) dates, inclusive, e.g. the training years.
      variables: which variables (default: the time-dependent floating-point ones).

    Returns:
      ``{"mean": ds, "std": ds}``, each variable with dims ``(month, [level | depth])``,
      ``month`` = 1 .. 12.

    Raises:
      SchemaError: for a missing variable, a range of fewer than 2 times, or one that does
        not hold every calendar month.
    """
    ds = _select(ds, time_range, variables)
    names = [
        n
        for n, v in ds.data_vars.items()
        if schema.TIME in v.dims and np.issubdtype(v.dtype, np.floating)
    ]
    ds = ds[names].astype(np.float64)
    month = ds[schema.TIME].dt.month.rename(MONTH)
    missing = sorted(set(range(1, 13)) - set(np.unique(month.values).tolist()))
    if missing:
        raise SchemaError(
            f"statistics by calendar month need every month in the range; months {missing} "
            f"have no time in {time_range or 'the store'}"
        )
    out: dict[str, dict[str, xr.DataArray]] = {"mean": {}, "std": {}}
    months = xr.DataArray(np.arange(1, 13), dims=[MONTH], name=MONTH)
    for name, var in ds.data_vars.items():
        dims = _reduce_dims(var)
        # One reduction per month rather than a groupby, which dask-backed stores do not
        # reduce over the group's dim and others at once.
        by_month = [
            var.isel({schema.TIME: np.flatnonzero(month.values == m)}) for m in range(1, 13)
        ]
        for group, reduce in (("mean", "mean"), ("std", "std")):
            parts = [getattr(part, reduce)(dims, skipna=True) for part in by_month]
            out[group][name] = xr.concat(parts, dim=months)
    result = {}
    for group, stat_vars in out.items():
        stat = xr.Dataset(stat_vars)
        stat = stat.drop_vars([c for c in stat.coords if c not in stat.dims])
        stat.attrs.update(
            statistic=f"{group} by calendar month",
            time_range=str(time_range) if time_range else "all",
        )
        result[group] = stat.transpose(MONTH, ...).compute()
    return result


def compute_climatology(
    ds: xr.Dataset,
    *,
    time_range: tuple[str, str] | None = None,
    variables: Sequence[str] | None = None,
    smooth_days: int = 31,
) -> xr.Dataset:
    """Mean by (day of year, hour), smoothed circularly over the day of year.

    Args:
      ds: a dataset in the schema with a ``time`` dim.
      time_range: (start, stop) dates, inclusive.
      variables: which variables (default: the time-dependent floating-point ones).
      smooth_days: width of the centred moving window over day of year (1 = no smoothing);
        each (day, hour) is the mean of all samples in the window, so days of year never seen
        in the data are filled wherever the window reaches data.

    Returns:
      A dataset with dims ``(dayofyear, hour, [level], latitude, longitude)``, dayofyear
      1..366.
    """
    ds = _select(ds, time_range, variables)
    names = [
        n
        for n, v in ds.data_vars.items()
        if schema.TIME in v.dims and np.issubdtype(v.dtype, np.floating)
    ]
    ds = ds[names].astype(np.float64)
    times = pd.DatetimeIndex(ds[schema.TIME].values)
    key = xr.DataArray(
        times.day_of_year * 100 + times.hour,
        dims=[schema.TIME],
        coords={schema.TIME: ds[schema.TIME]},
        name="doy_hour",
    )
    # Sums and counts per (day of year, hour), so that smoothing weighs days by their samples.
    sums = ds.groupby(key).sum(schema.TIME, skipna=True)
    counts = ds.notnull().astype(np.float64).groupby(key).sum(schema.TIME)
    hours = np.unique(sums["doy_hour"].values % 100)
    full = (np.arange(1, 367)[:, None] * 100 + hours[None, :]).ravel()

    def by_day(x: xr.Dataset) -> xr.Dataset:
        x = x.reindex(doy_hour=full, fill_value=0.0)
        x = x.assign_coords(dayofyear=("doy_hour", full // 100), hour=("doy_hour", full % 100))
        return (
            x.set_index(doy_hour=["dayofyear", "hour"]).unstack("doy_hour").chunk({"dayofyear": -1})
        )

    sums, counts = by_day(sums), by_day(counts)
    if smooth_days > 1:
        # A centred box window over the circular 366-day year.
        def smooth(x):
            return xr.apply_ufunc(
                scipy.ndimage.uniform_filter1d,
                x,
                input_core_dims=[["dayofyear"]],
                output_core_dims=[["dayofyear"]],
                dask="parallelized",
                kwargs={"size": smooth_days, "mode": "wrap"},
                output_dtypes=[np.float64],
            )

        sums, counts = smooth(sums), smooth(counts)
    clim = sums / counts.where(counts > 0)
    order = ["dayofyear", "hour"]
    clim = clim.transpose(*order, ...)
    clim.attrs.update(
        statistic=CLIMATOLOGY,
        smooth_days=smooth_days,
        time_range=str(time_range) if time_range else "all",
    )
    return clim


def write_statistics(
    ds: xr.Dataset,
    store: str | os.PathLike,
    *,
    step: str | pd.Timedelta,
    time_range: tuple[str, str] | None = None,
    climatology: bool = True,
    smooth_days: int = 31,
    path: str | os.PathLike | None = None,
) -> str:
    """Computes the statistics of ``ds`` and writes them next to ``store``.

    Args:
      ds: the opened store (see :func:`tellus.data.validation.open_dataset`).
      store: the store's path, to place the statistics beside it.
      step, time_range: as :func:`compute_statistics`.
      climatology: also compute and write the climatology.
      smooth_days: as :func:`compute_climatology`.
      path: write here instead of :func:`stats_path` (store).

    Returns:
      The path written.
    """
    out = str(path) if path is not None else stats_path(store)
    stats = compute_statistics(ds, step=step, time_range=time_range)
    for i, (group, stat) in enumerate(stats.items()):
        stat.attrs["source"] = str(store)
        stat.compute().to_zarr(
            out, group=group, mode="w" if i == 0 else "a", zarr_format=3, consolidated=False
        )
    if climatology:
        clim = compute_climatology(ds, time_range=time_range, smooth_days=smooth_days)
        clim.attrs["source"] = str(store)
        clim.chunk({"dayofyear": 61}).to_zarr(
            out, group=CLIMATOLOGY, mode="a", zarr_format=3, consolidated=False
        )
    return out


def read_statistics(path: str | os.PathLike) -> dict[str, xr.Dataset]:
    """Reads the ``mean``, ``std`` and ``diff_std`` groups written by :func:`write_statistics`.

    Args:
      path: the statistics store (see :func:`stats_path`).

    Returns:
      ``{"mean": ds, "std": ds, "diff_std": ds}``, loaded into memory.
    """
    try:
        return {g: xr.open_zarr(str(path), group=g, consolidated=False).load() for g in GROUPS}
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"no normalization statistics at {path}; run `tellus data stats STORE` first"
        ) from e


def read_climatology(path: str | os.PathLike) -> xr.Dataset:
    """Opens the climatology group written by :func:`write_statistics` (lazily)."""
    try:
        return xr.open_zarr(str(path), group=CLIMATOLOGY, consolidated=False)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"no climatology at {path}; run `tellus data stats STORE` (with climatology) first"
        ) from e
