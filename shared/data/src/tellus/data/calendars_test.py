"""Tests of bringing model calendars onto the Gregorian calendar, on axes made with cftime."""

from __future__ import annotations

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import calendars, mock, validation
from tellus.data.errors import SchemaError


def _monthly(calendar: str, months: int, *, day: int = 16, year: int = 2000) -> list:
    return [
        cftime.datetime(year + m // 12, m % 12 + 1, day, 12, calendar=calendar)
        for m in range(months)
    ]


def _daily(calendar: str, start: tuple[int, int, int], days: int) -> np.ndarray:
    return cftime.num2date(
        np.arange(days), f"days since {start[0]}-{start[1]:02d}-{start[2]:02d}", calendar=calendar
    )


def _series(times, **attrs) -> xr.Dataset:
    return xr.Dataset(
        {"zos": ("time", np.arange(len(times), dtype=np.float64))},
        coords={"time": ("time", np.asarray(times, dtype=object))},
        attrs=attrs,
    )


@pytest.mark.parametrize("calendar", ["noleap", "360_day", "all_leap", "julian"])
def test_monthly_data_are_dated_at_month_starts(calendar):
    # Two years of mid-month stamps (2000-02-16 exists in every calendar here).
    out = calendars.to_gregorian(_series(_monthly(calendar, 24)))
    expected = pd.date_range("2000-01-01", periods=24, freq="MS").values
    np.testing.assert_array_equal(out.time.values, expected)
    assert out.time.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(out.zos.values, np.arange(24))
    assert out.attrs["calendar_source"] == calendar
    assert out.attrs["calendar_conversion"] == calendars.MONTHLY_RULE
    assert out.attrs["calendar_source_range"] == "2000-01-16 12:00:00 .. 2001-12-16 12:00:00"
    validation.check_time(out.time.values, "monthly")  # one month apart, no gaps


def test_a_360_day_year_keeps_its_twelve_months():
    # 30-day steps from 2000-01-15: every date of a 360-day year, none moved to another month.
    times = cftime.num2date(15 + 30 * np.arange(12), "days since 2000-01-01", calendar="360_day")
    out = calendars.to_gregorian(_series(times))
    assert pd.DatetimeIndex(out.time.values).month.tolist() == list(range(1, 13))


def test_a_single_month_is_monthly_by_its_frequency_attribute():
    one = _series(_monthly("noleap", 1, day=15), frequency="mon")
    out = calendars.to_gregorian(one)
    assert out.time.values[0] == np.datetime64("2000-01-01")
    assert "frequency" in out.attrs
    # Without the attribute a single value keeps its date.
    out = calendars.to_gregorian(_series(_monthly("noleap", 1, day=15)))
    assert out.time.values[0] == np.datetime64("2000-01-15T12:00")


def test_daily_noleap_keeps_its_dates_and_skips_29_february():
    times = _daily("noleap", (2000, 2, 27), 4)  # 27 Feb, 28 Feb, 1 Mar, 2 Mar
    out = calendars.to_gregorian(_series(times))
    expected = np.array(["2000-02-27", "2000-02-28", "2000-03-01", "2000-03-02"], "M8[ns]")
    np.testing.assert_array_equal(out.time.values, expected)
    assert out.attrs["calendar_conversion"] == calendars.DATE_RULE
    with pytest.raises(SchemaError, match=r"1 gap\(s\) in a 1 days .*first between 2000-02-28"):
        validation.check_time(out.time.values, "daily")


def test_daily_360_day_with_30_february_is_an_error():
    times = _daily("360_day", (2001, 2, 25), 10)
    with pytest.raises(
        SchemaError,
        match=r"era.nc: coord 'time' has 2001-02-29 \(360_day calendar, steps shorter than a "
        r"month\), a date the Gregorian calendar does not have",
    ):
        calendars.to_gregorian(_series(times), source="era.nc")
    # A 360-day stretch whose dates all exist maps by date (March 31 is simply absent).
    out = calendars.to_gregorian(_series(_daily("360_day", (2001, 3, 29), 3)))
    expected = np.array(["2001-03-29", "2001-03-30", "2001-04-01"], "M8[ns]")
    np.testing.assert_array_equal(out.time.values, expected)


def test_sub_daily_steps_keep_their_time_of_day():
    times = cftime.num2date(np.arange(3) * 6, "hours since 2001-01-01", calendar="noleap")
    out = calendars.to_gregorian(_series(times))
    expected = np.array(["2001-01-01T00", "2001-01-01T06", "2001-01-01T12"], "M8[ns]")
    np.testing.assert_array_equal(out.time.values, expected)


def test_gregorian_axes_and_other_coords_are_left_alone():
    ds = mock.mock_ocean()
    assert calendars.to_gregorian(ds) is ds


def test_cftime_bounds_are_dropped():
    ds = mock.mock_curvilinear_ocean(months=2)
    out = calendars.to_gregorian(ds)
    assert "time_bnds" not in out and "lev_bnds" in out
    expected = pd.date_range("2000-01", periods=2, freq="MS").values
    np.testing.assert_array_equal(out.time.values, expected)


def test_years_outside_nanosecond_times_are_an_error():
    with pytest.raises(SchemaError, match=r"runs from year 1 to 1; expected years within 1678"):
        calendars.to_gregorian(_series(_monthly("noleap", 3, year=1)))
