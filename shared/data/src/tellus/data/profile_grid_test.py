"""Tests of mapping observations to the grid, each cell worked out by hand on a 10-degree,
22.5-degree grid whose cell centres are listed in the comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import profile_grid
from tellus.data.errors import SchemaError

THETA = "sea_water_potential_temperature"
LAT = -55.0 + 10.0 * np.arange(12)  # -55, -45, ..., 55
LON = 11.25 + 22.5 * np.arange(16)  # 11.25, 33.75, ..., 348.75 (global: 16 x 22.5 = 360)
DEPTH = np.array([5.0, 50.0, 500.0, 1500.0, 2500.0, 4000.0])


def _grid(*, mask: bool = True, freq: str = "MS") -> xr.Dataset:
    ocean = np.ones((len(DEPTH), len(LAT), len(LON)))
    ocean[:, 0, 0] = 0.0  # land at (-55, 11.25)
    ocean[3:, 5, 5] = 0.0  # the sea floor between 500 m and 1 500 m at (-5, 123.75)
    time = pd.date_range("2000-01-01", periods=3, freq=freq)
    v = np.where(ocean[None] > 0, 10.0, np.nan) * np.ones((3, 1, 1, 1))
    data = {THETA: (("time", "depth", "latitude", "longitude"), v)}
    if mask:
        data["ocean_mask"] = (("depth", "latitude", "longitude"), ocean)
    return xr.Dataset(
        data, coords={"time": time, "depth": DEPTH, "latitude": LAT, "longitude": LON}
    )


def _table(rows) -> pd.DataFrame:
    """Rows of (time, lat, lon, depth, value), one profile each."""
    t, y, x, z, v = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "profile": np.arange(len(rows)),
            "time": pd.to_datetime(list(t)),
            "latitude": y,
            "longitude": x,
            "depth": z,
            "value": v,
            "variable": THETA,
        }
    )


def test_nearest_cells_by_hand():
    rows = [
        ("2000-01-15", 1.0, 100.0, 0.0, 1.0),  # lat 5 (j 6); lon 101.25 (i 4); depth 5 (k 0)
        ("2000-01-31", 0.0, 0.1, 27.5, 2.0),  # lat midway -5/5 -> -5 (j 5); lon 0.1 -> 11.25
        ("2000-02-01", -60.0, 359.9, 27.6, 3.0),  # half a cell south of -55 (j 0); 348.75
        ("2000-03-20", 59.9, 0.0, 4750.0, 4.0),  # j 11; 0 is midway -> west (i 15); k 5
        ("2000-02-10", 40.0, -11.25, 1000.0, 5.0),  # lon -11.25 = 348.75 (i 15); 1000 m ->
    ]  # midway 500 / 1 500 -> 500 (k 2)
    g = profile_grid.to_grid(_table(rows), _grid())
    np.testing.assert_array_equal(g.lat_index, [6, 5, 0, 11, 9])
    np.testing.assert_array_equal(g.lon_index, [4, 0, 15, 15, 15])
    np.testing.assert_array_equal(g.depth_index, [0, 0, 1, 5, 2])
    np.testing.assert_array_equal(g.time_index, [0, 0, 1, 2, 1])  # by calendar month
    assert g.values.shape == (3, 6, 12, 16) and g.n_points == 5
    assert g.values[1, 2, 9, 15] == 5.0 and g.mask[1, 2, 9, 15]
    assert np.isnan(g.values[0, 0, 0, 1]) and not g.mask[0, 0, 0, 1]


def test_the_meridian_is_not_a_seam():
    # 359.5 and 0.5 are a degree apart: on this grid both are nearest to a cell next to 0.
    idx = profile_grid.nearest_longitude(LON, np.array([359.5, 0.5, 360.0, -0.5, 720.4]))
    np.testing.assert_array_equal(idx, [15, 0, 15, 15, 0])


def test_several_rows_in_one_cell_are_averaged():
    rows = [("2000-01-10", 1.0, 100.0, 0.0, 1.0), ("2000-01-20", 2.0, 99.0, 4.0, 2.0)]
    g = profile_grid.to_grid(_table(rows), _grid())
    assert g.count[0, 0, 6, 4] == 2 and g.values[0, 0, 6, 4] == 1.5 and g.n_points == 1
    ds = g.to_dataset()
    assert float(ds.value.sel(latitude=5.0, longitude=101.25, depth=5.0).isel(time=0)) == 1.5


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("2000-01-15", -55.0, 10.0, 5.0, 1.0), r"row 0 \(profile 0.*lat -55, lon 10.*on land"),
        (("2000-01-15", -5.0, 124.0, 1500.0, 1.0), r"depth 1500 m.*is on land"),  # the floor
        (("2000-01-15", -60.01, 50.0, 5.0, 1.0), r"lat -60.01.*outside the grid's latitudes"),
        (("2000-01-15", 10.0, 50.0, 4750.1, 1.0), r"depth 4750.1 m.*below the deepest level"),
        (("2000-04-02", 10.0, 50.0, 5.0, 1.0), r"outside the grid's times"),
    ],
)
def test_errors_name_the_row_and_its_point(row, message):
    table = _table([("2000-01-15", 10.0, 50.0, 5.0, 1.0), row])
    table.loc[1, "profile"] = 0
    with pytest.raises(SchemaError, match=message.replace("row 0", "row 1")):
        profile_grid.to_grid(table, _grid())
    g = profile_grid.to_grid(table, _grid(), on_invalid="drop")
    np.testing.assert_array_equal(g.valid, [True, False])
    assert g.lat_index[1] == -1 and g.n_points == 1


def test_without_a_mask_land_is_where_the_variable_is_nan():
    table = _table([("2000-01-15", -55.0, 10.0, 5.0, 1.0)])
    with pytest.raises(SchemaError, match="on land"):
        profile_grid.to_grid(table, _grid(mask=False))


def test_a_daily_grid_takes_the_nearest_time():
    table = _table(
        [("2000-01-01T11:00", 10.0, 50.0, 5.0, 1.0), ("2000-01-01T13:00", 10.0, 50.0, 5.0, 2.0)]
    )
    g = profile_grid.to_grid(table, _grid(freq="D"))
    np.testing.assert_array_equal(g.time_index, [0, 1])
    late = _table([("2000-01-03T12:01", 10.0, 50.0, 5.0, 1.0)])  # over half a day after the last
    with pytest.raises(SchemaError, match="outside the grid's times"):
        profile_grid.to_grid(late, _grid(freq="D"))
