"""A human summary of a store: what ``tellus data describe PATH`` prints.

The summary is computed from metadata plus a few sampled time steps, so it is quick on a
store of any size: grid and resolution, time span and step, each variable with its units,
levels and sampled range, whether the build finished, and whether statistics exist.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import schema, statistics, writing
from tellus.data.errors import SchemaError

_SAMPLES = 4


@dataclasses.dataclass(frozen=True)
class VariableSummary:
    name: str
    dims: tuple[str, ...]
    units: str
    long_name: str
    minimum: float
    mean: float
    maximum: float


@dataclasses.dataclass(frozen=True)
class StoreSummary:
    path: str
    sizes: dict[str, int]
    time_start: str | None
    time_stop: str | None
    time_step: str | None
    latitude: tuple[float, float, float]  # first, last, spacing
    longitude: tuple[float, float, float]
    levels: tuple[float, ...]
    variables: tuple[VariableSummary, ...]
    complete: bool | None  # None: not a store built by tellus.data.writing
    has_statistics: bool
    attrs: dict[str, str]
    nbytes: int


def _spacing(x: np.ndarray) -> tuple[float, float, float]:
    x = np.asarray(x, dtype=np.float64)
    step = float(np.median(np.abs(np.diff(x)))) if x.size > 1 else float("nan")
    return float(x[0]), float(x[-1]), step


def summarize(path: str | os.PathLike) -> StoreSummary:
    """Summarizes the store at ``path`` from its metadata and a few sampled time steps.

    Args:
      path: a Zarr store in the schema (local path or fsspec URL).

    Returns:
      A :class:`StoreSummary`.
    """
    from tellus.data import validation

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated")
        ds = xr.open_zarr(str(path))
    sample = ds
    time_start = time_stop = step = None
    if schema.TIME in ds.dims:
        times = pd.DatetimeIndex(ds[schema.TIME].values)
        time_start, time_stop = str(times[0]), str(times[-1])
        if len(times) > 1:
            step = str(validation.time_step(times.values))
        pick = np.unique(np.linspace(0, len(times) - 1, min(len(times), _SAMPLES)).astype(int))
        sample = ds.isel({schema.TIME: pick})
    variables = []
    for name, var in sample.data_vars.items():
        values = np.asarray(var.values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        lo, mean, hi = (
            (float(finite.min()), float(finite.mean()), float(finite.max()))
            if finite.size
            else (np.nan, np.nan, np.nan)
        )
        variables.append(
            VariableSummary(
                name=str(name),
                dims=tuple(map(str, var.dims)),
                units=str(var.attrs.get("units", "?")),
                long_name=str(var.attrs.get("long_name", "")),
                minimum=lo,
                mean=mean,
                maximum=hi,
            )
        )
    levels: tuple[float, ...] = ()
    for dim in (schema.LEVEL, schema.DEPTH):
        if dim in ds.dims:
            levels = tuple(float(v) for v in ds[dim].values)
    try:
        writing.expected_chunks(path)
        complete: bool | None = writing.is_complete(path)
    except SchemaError:  # a store not built by tellus.data.writing has no build record
        complete = None
    stats_store = statistics.stats_path(path)
    has_stats = os.path.exists(stats_store) if "://" not in str(path) else False
    return StoreSummary(
        path=str(path),
        sizes={str(k): int(v) for k, v in ds.sizes.items()},
        time_start=time_start,
        time_stop=time_stop,
        time_step=step,
        latitude=_spacing(ds[schema.LATITUDE].values),
        longitude=_spacing(ds[schema.LONGITUDE].values),
        levels=levels,
        variables=tuple(variables),
        complete=complete,
        has_statistics=has_stats,
        attrs={k: str(v) for k, v in ds.attrs.items()},
        nbytes=int(ds.nbytes),
    )


def render(summary: StoreSummary) -> None:
    """Prints ``summary`` to the terminal with rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 120)
    status = {True: "complete", False: "INCOMPLETE (resume the build)", None: "external store"}
    console.print(
        f"[bold]{summary.path}[/bold]  ({summary.nbytes / 2**20:,.1f} MiB "
        f"uncompressed, {status[summary.complete]})"
    )
    dims = ", ".join(f"{k}={v}" for k, v in summary.sizes.items())
    console.print(f"dims: {dims}")
    if summary.time_start:
        console.print(
            f"time: {summary.time_start} .. {summary.time_stop}, step {summary.time_step}"
        )
    lat, lon = summary.latitude, summary.longitude
    console.print(
        f"grid: latitude {lat[0]:g}..{lat[1]:g} every {lat[2]:g} deg, longitude "
        f"{lon[0]:g}..{lon[1]:g} every {lon[2]:g} deg"
    )
    if summary.levels:
        console.print(f"levels: {', '.join(f'{v:g}' for v in summary.levels)}")
    table = Table(title="variables (range over sampled time steps)")
    for column in ("name", "dims", "units", "min", "mean", "max"):
        table.add_column(column, justify="right" if column in ("min", "mean", "max") else "left")
    for v in summary.variables:
        table.add_row(
            v.name,
            ",".join(v.dims),
            v.units,
            f"{v.minimum:.4g}",
            f"{v.mean:.4g}",
            f"{v.maximum:.4g}",
        )
    console.print(table)
    console.print(
        "normalization statistics: "
        + (statistics.stats_path(summary.path) if summary.has_statistics else "none")
    )
    for key in ("title", "source", "description", "history"):
        if key in summary.attrs:
            console.print(f"{key}: {summary.attrs[key]}")
