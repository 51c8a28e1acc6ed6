"""Time axes in model calendars (noleap, 360_day, ...) brought onto the Gregorian calendar.

CMIP6 models count time in their own CF calendars: ``noleap`` (365 days every year),
``360_day`` (twelve 30-day months), ``all_leap``, ``julian``. xarray decodes such an axis to
cftime dates, which a Tellus store cannot hold: its ``time`` is numpy ``datetime64[ns]`` in
the proleptic Gregorian calendar, and monthly stores are dated at month starts (as the
embedded ENSO world is). :func:`to_gregorian` converts every cftime-valued dimension
coordinate:

* **Monthly data** (the ``frequency`` attribute says ``mon``, or every step lies between 27
  and 32 days of the model calendar with at most one value per month) are dated at the first
  of their month, 00:00: a monthly mean stamped 2000-02-15 12:00 in ``noleap`` or 2000-02-16
  in ``360_day`` becomes 2000-02-01. The month of every value is kept, so a 360-day year
  still maps onto twelve Gregorian months and no month is dropped or repeated.
* **Anything finer** (daily, 6-hourly) keeps its labels: the same year, month, day and time
  of day in the Gregorian calendar, as xarray's ``convert_calendar(align_on="date")`` maps
  dates. A ``noleap`` axis therefore has no 29 February (a gap in leap years, which
  :func:`tellus.data.validation.check_time` reports unless gaps are allowed). A date that
  the Gregorian calendar does not have (30 February of a ``360_day`` axis, 29 February of a
  non-leap year in ``all_leap``) is a :class:`~tellus.data.errors.SchemaError` naming it:
  moving daily values to other days would silently change what a time step means, so no
  such mapping is made.

Other cftime-valued variables (time bounds, NEMO's ``time_centered``) describe the model
calendar's axis and are dropped. What was done is recorded in the attributes
(:data:`ATTRS`): the source calendar, the rule applied and the first and last source dates.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable

import cftime
import numpy as np
import xarray as xr

from tellus.data.errors import SchemaError

# The dataset attributes this module writes.
SOURCE_CALENDAR = "calendar_source"
CONVERSION = "calendar_conversion"
SOURCE_RANGE = "calendar_source_range"
ATTRS = (SOURCE_CALENDAR, CONVERSION, SOURCE_RANGE)

MONTHLY_RULE = (
    "monthly values dated at the first of their month, 00:00, in the proleptic Gregorian calendar"
)
DATE_RULE = "same year, month, day and time of day in the proleptic Gregorian calendar"

# Steps of a monthly axis, in days of any model calendar (28..31, and 30 in 360_day).
_MONTHLY_DAYS = (27.0, 32.0)
# The years a datetime64[ns] time coordinate can hold.
_NS_YEARS = (1678, 2261)


def is_cftime(values: np.ndarray) -> bool:
    """Whether ``values`` are cftime dates (how xarray decodes a non-Gregorian calendar)."""
    values = np.asarray(values)
    return (
        values.dtype == object and values.size > 0 and isinstance(values.flat[0], cftime.datetime)
    )


def is_monthly(dates: np.ndarray, frequency: str | None = None) -> bool:
    """Whether cftime ``dates`` are one value per month (see the module docstring)."""
    if frequency is not None and str(frequency).startswith("mon"):
        return True
    if len(dates) < 2:
        return False
    months = np.array([d.year * 12 + d.month for d in dates])
    days = np.array([(b - a).total_seconds() / 86400.0 for a, b in itertools.pairwise(dates)])
    lo, hi = _MONTHLY_DAYS
    return bool(np.all(np.diff(months) >= 1) and np.all((days > lo) & (days < hi)))


def to_gregorian(ds: xr.Dataset, *, source: str = "<dataset>") -> xr.Dataset:
    """``ds`` with every cftime dimension coordinate on the proleptic Gregorian calendar.

    Args:
      ds: a dataset as xarray opens it (a non-Gregorian time axis decoded to cftime dates).
      source: what to call ``ds`` in error messages.

    Returns:
      ``ds`` unchanged if it has no cftime coordinate; else with ``datetime64[ns]`` times,
      without its other cftime-valued variables, and with the attributes of :data:`ATTRS`.

    Raises:
      SchemaError: a sub-monthly date does not exist in the Gregorian calendar, dates mix
        calendars, or a year lies outside 1678..2261 (the range of nanosecond times).
    """
    dims = [d for d in ds.dims if d in ds.coords and is_cftime(ds[d].values)]
    if not dims:
        return ds
    if len(dims) > 1:
        raise SchemaError(f"{source}: dims {dims} all hold cftime dates; expected one time axis")
    dim = dims[0]
    dates = ds[dim].values
    calendars = sorted({d.calendar for d in dates})
    if len(calendars) > 1:
        raise SchemaError(f"{source}: coord {dim!r} mixes calendars {calendars}; expected one")
    calendar = calendars[0]
    years = [d.year for d in dates]
    if min(years) < _NS_YEARS[0] or max(years) > _NS_YEARS[1]:
        raise SchemaError(
            f"{source}: coord {dim!r} runs from year {min(years)} to {max(years)}; expected "
            f"years within {_NS_YEARS[0]}..{_NS_YEARS[1]} (the range of a store's nanosecond "
            "times): shift the model years before ingesting"
        )
    monthly = is_monthly(dates, ds.attrs.get("frequency"))
    times = _monthly(dates) if monthly else _by_date(dates, dim, calendar, source)
    drop: list[Hashable] = [
        n for n, v in ds.variables.items() if n != dim and v.dtype == object and is_cftime(v.values)
    ]
    attrs = {k: v for k, v in ds[dim].attrs.items() if k not in ("calendar", "bounds")}
    out = ds.drop_vars(drop).assign_coords({dim: (dim, times, attrs)})
    return out.assign_attrs(
        {
            SOURCE_CALENDAR: calendar,
            CONVERSION: MONTHLY_RULE if monthly else DATE_RULE,
            SOURCE_RANGE: f"{dates[0].isoformat(sep=' ')} .. {dates[-1].isoformat(sep=' ')}",
        }
    )


def _monthly(dates: np.ndarray) -> np.ndarray:
    """The first of each date's month, as datetime64[ns]."""
    months = [f"{d.year:04d}-{d.month:02d}" for d in dates]
    return np.array(months, dtype="datetime64[M]").astype("datetime64[ns]")


def _by_date(dates: np.ndarray, dim: Hashable, calendar: str, source: str) -> np.ndarray:
    """The same labels in the Gregorian calendar; an error names a date it does not have."""
    out = np.empty(len(dates), dtype="datetime64[ns]")
    for i, d in enumerate(dates):
        label = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
        try:
            day = np.datetime64(label, "D")
        except ValueError:
            day = None
        if day is None:
            raise SchemaError(
                f"{source}: coord {dim!r} has {label} ({calendar} calendar, steps shorter than "
                "a month), a date the Gregorian calendar does not have; expected monthly data "
                "(dated at month starts) or sub-monthly dates that exist in the Gregorian "
                "calendar (convert the calendar first, e.g. with xarray's convert_calendar "
                "and align_on='year')"
            )
        seconds = d.hour * 3600 + d.minute * 60 + d.second
        micro = np.timedelta64(seconds, "s") + np.timedelta64(d.microsecond, "us")
        out[i] = day.astype("datetime64[ns]") + micro
    return out
