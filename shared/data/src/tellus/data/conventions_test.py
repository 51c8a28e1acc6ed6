"""Tests of conventions.canonicalize on small hand-built datasets with hand-computed answers."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import conventions, mock
from tellus.data.errors import SchemaError

TIMES = pd.date_range("2020-01-01", periods=2, freq="6h")


def _field(lat, lon, *, name="t", units="K", level=None, level_name="plev", level_attrs=None):
    """A (time, [level,] lat, lon) field whose value encodes its position: 1000*i_lat + lon."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    grid = 1000.0 * np.arange(lat.size)[:, None] + lon[None, :]
    coords = {"time": TIMES, "lat": lat, "lon": lon}
    dims = ("time", "lat", "lon")
    values = np.broadcast_to(grid, (len(TIMES), *grid.shape))
    if level is not None:
        coords[level_name] = xr.Variable(level_name, np.asarray(level), level_attrs or {})
        dims = ("time", level_name, "lat", "lon")
        values = values[:, None] + 1e6 * np.arange(len(level))[None, :, None, None]
    da = xr.DataArray(values.astype(np.float32), coords=coords, dims=dims, attrs={"units": units})
    return da.to_dataset(name=name)


def _raising_scheduler(dsk, keys, **kwargs):
    raise AssertionError("canonicalize computed a dask graph")


def test_plev_in_pa_becomes_level_in_hpa_ascending():
    ds = _field([0.0], [0.0], level=[85000.0, 50000.0], level_attrs={"units": "Pa"})
    out = conventions.canonicalize(ds)
    assert out["level"].values.tolist() == [500, 850]
    assert out["level"].dtype == np.int64
    assert out["level"].attrs["units"] == "hPa"
    # The input's second level (50000 Pa) carried the +1e6 offset; it is now first.
    assert out["temperature"].sel(level=500).values[0, 0, 0] == 1e6
    assert out["temperature"].sel(level=850).values[0, 0, 0] == 0.0


@pytest.mark.parametrize(
    ("name", "values", "attrs", "expected"),
    [
        ("plev", [50000.0, 85000.0], {}, [500, 850]),  # > 1100: Pa by magnitude
        ("pressure_level", [500, 850], {}, [500, 850]),  # in [100, 1100]: hPa by magnitude
        ("isobaricInPa", [10.0, 1.0], {}, [0.01, 0.1]),  # the GRIB name says Pa
        ("isobaricInhPa", [1.0], {}, [1]),  # the GRIB name says hPa
        ("lev", [5.0, 10.0], {"units": "millibars"}, [5, 10]),
        ("plev", [500.0, 1000.0], {"units": "Pa"}, [5, 10]),  # the attr beats magnitude
    ],
)
def test_level_units_from_attr_name_or_magnitude(name, values, attrs, expected):
    ds = _field([0.0], [0.0], level=values, level_name=name, level_attrs=attrs)
    out = conventions.canonicalize(ds)
    assert out["level"].values.tolist() == expected
    assert out["level"].attrs["units"] == "hPa"


def test_ambiguous_or_contradictory_level_units_are_errors():
    ambiguous = _field([0.0], [0.0], level=[1.0, 10.0], level_name="plev")
    with pytest.raises(SchemaError, match=r"level coord 'plev'.*could be hPa or Pa"):
        conventions.canonicalize(ambiguous, source="x.nc")
    contradictory = _field(
        [0.0], [0.0], level=[10.0], level_name="isobaricInPa", level_attrs={"units": "hPa"}
    )
    with pytest.raises(SchemaError, match=r"says Pa by its name but has units 'hPa'"):
        conventions.canonicalize(contradictory)
    not_pressure = _field([0.0], [0.0], level=[1, 2], level_name="lev", level_attrs={"units": "1"})
    with pytest.raises(SchemaError, match=r"level coord 'lev' has units '1'; expected a pressure"):
        conventions.canonicalize(not_pressure)


def test_level_in_metres_is_an_ocean_depth():
    ds = _field(
        [0.0],
        [0.0],
        name="thetao",
        units="degC",
        level=[50.0, 5.0],
        level_name="lev",
        level_attrs={"units": "m"},
    )
    out = conventions.canonicalize(ds)
    assert "level" not in out.dims
    assert out["depth"].values.tolist() == [5.0, 50.0]
    assert out["sea_water_potential_temperature"].dims == ("time", "depth", "latitude", "longitude")


def test_global_longitudes_from_minus_180_are_rolled_to_0_360():
    ds = _field([0.0], [-180.0, -90.0, 0.0, 90.0])
    out = conventions.canonicalize(ds)
    assert out["longitude"].values.tolist() == [0.0, 90.0, 180.0, 270.0]
    # Each value (= its original longitude) moved with its meridian: 180E was -180.
    assert out["temperature"].values[0, 0].tolist() == [0.0, 90.0, -180.0, -90.0]
    assert out.attrs["geospatial_lon_min"] == 0.0
    assert out.attrs["geospatial_lon_max"] == 270.0


def test_regional_box_across_0_stays_contiguous_west_to_east():
    ds = _field([30.0, 40.0], [-10.0, 0.0, 10.0, 20.0])
    out = conventions.canonicalize(ds)
    assert out["longitude"].values.tolist() == [350.0, 0.0, 10.0, 20.0]
    assert out["temperature"].values[0, 0].tolist() == [-10.0, 0.0, 10.0, 20.0]
    assert out.attrs["geospatial_lon_min"] == 350.0
    assert out.attrs["geospatial_lon_max"] == 20.0
    assert (out.attrs["geospatial_lat_min"], out.attrs["geospatial_lat_max"]) == (30.0, 40.0)


def test_regional_box_split_by_sorting_is_put_back_together():
    ds = _field([0.0], [0.0, 10.0, 20.0, 350.0])  # 10W-20E, sorted WeatherBench-style
    out = conventions.canonicalize(ds)
    assert out["longitude"].values.tolist() == [350.0, 0.0, 10.0, 20.0]
    assert out["temperature"].values[0, 0].tolist() == [350.0, 0.0, 10.0, 20.0]


@pytest.mark.parametrize(
    ("lon", "expected"),
    [([10.0, 20.0, 30.0], [10.0, 20.0, 30.0]), ([-40.0, -30.0], [320.0, 330.0])],
)
def test_regional_box_not_crossing_0_ascends(lon, expected):
    out = conventions.canonicalize(_field([0.0], lon))
    assert out["longitude"].values.tolist() == expected
    assert out.attrs["geospatial_lon_min"] < out.attrs["geospatial_lon_max"]


def test_cyclic_duplicate_longitude_is_an_error():
    with pytest.raises(SchemaError, match=r"x.nc: longitude has points that coincide modulo 360"):
        conventions.canonicalize(_field([0.0], [0.0, 120.0, 240.0, 360.0]), source="x.nc")


def test_latitude_descending_becomes_ascending_with_values():
    out = conventions.canonicalize(_field([90.0, 0.0, -90.0], [0.0]))
    assert out["latitude"].values.tolist() == [-90.0, 0.0, 90.0]
    # Value 1000 * (original row index): the south pole was row 2.
    assert out["temperature"].values[0, :, 0].tolist() == [2000.0, 1000.0, 0.0]


def test_unit_conversions_are_exact_and_spellings_mapped():
    ds = xr.merge(
        [
            _field([0.0], [0.0], name="msl", units="hPa"),
            _field([0.0], [0.0], name="t2m", units="degC"),
            _field([0.0], [0.0], name="u10", units="m/s"),
            _field([0.0], [0.0], name="z", units="m**2 s**-2", level=[500]),
        ],
        join="exact",
        compat="no_conflicts",
    )
    ds = ds.assign(msl=ds["msl"] * 0 + 1013.25, t2m=ds["t2m"] * 0 + 15.0)
    ds["msl"].attrs["units"] = "hPa"
    ds["t2m"].attrs["units"] = "degC"
    out = conventions.canonicalize(ds)
    assert out["mean_sea_level_pressure"].attrs["units"] == "Pa"
    assert out["mean_sea_level_pressure"].values.ravel()[0] == np.float32(101325.0)
    assert out["2m_temperature"].attrs["units"] == "K"
    assert out["2m_temperature"].values.ravel()[0] == np.float32(288.15)
    assert out["10m_u_component_of_wind"].attrs["units"] == "m s-1"
    assert out["geopotential"].attrs["units"] == "m2 s-2"


def test_geopotential_height_in_metres_becomes_geopotential():
    ds = _field([0.0], [0.0], name="gh", units="gpm", level=[500])
    ds = ds.assign(gh=ds["gh"] * 0 + 5500.0)
    ds["gh"].attrs["units"] = "gpm"
    out = conventions.canonicalize(ds)
    assert "gh" not in out
    assert out["geopotential"].attrs["units"] == "m2 s-2"
    np.testing.assert_allclose(out["geopotential"].values, 5500.0 * 9.80665, rtol=1e-7)


def test_geopotential_in_metres_is_left_for_validation():
    ds = _field([0.0], [0.0], name="z", units="m", level=[500])
    out = conventions.canonicalize(ds)
    assert out["geopotential"].attrs["units"] == "m"
    np.testing.assert_array_equal(out["geopotential"].values, ds["z"].values)


def test_two_names_for_one_variable_or_dim_are_errors():
    both = xr.merge(
        [_field([0.0], [0.0], name="z"), _field([0.0], [0.0], name="geopotential")],
        join="exact",
        compat="no_conflicts",
    )
    with pytest.raises(
        SchemaError,
        match=r"variables \['z', 'geopotential'\]|"
        r"variables \['geopotential', 'z'\]",
    ):
        conventions.canonicalize(both)
    ds = _field([0.0], [0.0]).assign_coords(latitude=("lat", [0.0]))
    with pytest.raises(SchemaError, match=r"coords \['lat', 'latitude'\] all mean 'latitude'"):
        conventions.canonicalize(ds)


def test_curvilinear_grid_is_an_error():
    ds = xr.Dataset(
        {"thetao": (("y", "x"), np.zeros((2, 3)))},
        coords={
            "nav_lat": (("y", "x"), np.zeros((2, 3))),
            "nav_lon": (("y", "x"), np.zeros((2, 3))),
        },
    )
    with pytest.raises(SchemaError, match=r"orca.nc: coord 'nav_lat' has dims \('y', 'x'\)"):
        conventions.canonicalize(ds, source="orca.nc")


def test_1d_coordinate_along_another_dim_becomes_the_dim():
    ds = xr.Dataset(
        {"t": (("y", "x"), np.arange(6.0).reshape(2, 3), {"units": "K"})},
        coords={"lat": ("y", [10.0, 0.0]), "lon": ("x", [0.0, 1.0, 2.0])},
    )
    out = conventions.canonicalize(ds)
    assert out["temperature"].dims == ("latitude", "longitude")
    assert out["temperature"].sel(latitude=10.0).values.tolist() == [0.0, 1.0, 2.0]


def test_cfgrib_time_step_and_ensemble_coords():
    # As cfgrib opens ERA5 ensemble members: (number, time, isobaricInhPa, lat, lon), with
    # time the forecast reference time and valid_time = time + step.
    values = np.arange(6.0).reshape(3, 2, 1, 1, 1)  # value = 2 * member + time index
    base = xr.Dataset(
        {
            "t": (
                ("number", "time", "isobaricInhPa", "latitude", "longitude"),
                values,
                {"units": "K"},
            )
        },
        coords={
            "number": [0, 1, 2],
            "time": TIMES,
            "step": np.timedelta64(6, "h"),
            "valid_time": ("time", TIMES + pd.Timedelta("6h")),
            "isobaricInhPa": [500.0],
            "latitude": [0.0],
            "longitude": [0.0],
            "surface": 0.0,
        },
    )
    out = conventions.canonicalize(base)
    assert out["temperature"].dims == ("time", "realization", "level", "latitude", "longitude")
    assert out["time"].values.tolist() == (TIMES + pd.Timedelta("6h")).values.tolist()
    assert set(out.coords) == {"time", "realization", "level", "latitude", "longitude"}
    assert out["temperature"].values[:, :, 0, 0, 0].tolist() == [[0, 2, 4], [1, 3, 5]]
    single = conventions.canonicalize(base.isel(number=[1]))
    assert "realization" not in single.dims and "number" not in single.coords


def test_forecast_with_several_steps_keeps_init_time():
    ds = xr.Dataset(
        {
            "t2m": (
                ("time", "step", "latitude", "longitude"),
                np.zeros((2, 3, 1, 1)),
                {"units": "K"},
            )
        },
        coords={
            "time": TIMES,
            "step": pd.to_timedelta([0, 6, 12], unit="h"),
            "valid_time": (("time", "step"), np.zeros((2, 3), "datetime64[ns]")),
            "latitude": [0.0],
            "longitude": [0.0],
        },
    )
    out = conventions.canonicalize(ds)
    assert out["2m_temperature"].dims == ("time", "prediction_timedelta", "latitude", "longitude")
    assert out["time"].values.tolist() == TIMES.values.tolist()


def test_scalar_time_becomes_a_dim_except_on_static_fields():
    ds = xr.Dataset(
        {
            "t2m": (("latitude", "longitude"), np.zeros((1, 2)), {"units": "K"}),
            "lsm": (("latitude", "longitude"), np.ones((1, 2)), {"units": "(0 - 1)"}),
        },
        coords={"time": TIMES[0], "latitude": [0.0], "longitude": [0.0, 180.0]},
    )
    out = conventions.canonicalize(ds)
    assert out["2m_temperature"].dims == ("time", "latitude", "longitude")
    assert out["land_sea_mask"].dims == ("latitude", "longitude")
    assert out["land_sea_mask"].attrs["units"] == "1"


def test_lazy_never_computes_and_does_not_touch_its_input():
    ds = _field([90.0, 0.0, -90.0], [-180.0, -90.0, 0.0, 90.0], name="msl", units="hPa")
    ds = ds.rename(time="valid_time").chunk({"valid_time": 1})
    before = ds.copy(deep=True)
    with dask.config.set(scheduler=_raising_scheduler):
        out = conventions.canonicalize(ds)
    assert isinstance(out["mean_sea_level_pressure"].data, dask.array.Array)
    xr.testing.assert_identical(ds, before)
    # And the lazy result equals the eager one.
    xr.testing.assert_identical(out.compute(), conventions.canonicalize(ds.compute()))


def test_canonical_data_is_unchanged_and_canonicalize_is_idempotent():
    truth = mock.mock_era5(n_lat=5, n_lon=8)
    out = conventions.canonicalize(truth)
    xr.testing.assert_equal(out, truth.transpose(*out["geopotential"].dims, missing_dims="ignore"))
    foreign = _field([30.0, 20.0], [-10.0, 0.0, 10.0], level=[85000.0, 50000.0])
    once = conventions.canonicalize(foreign)
    xr.testing.assert_identical(conventions.canonicalize(once), once)


def test_mock_with_every_alias_round_trips():
    truth = mock.mock_era5(n_lat=5, n_lon=8, static=())
    foreign = truth.rename(
        latitude="lat",
        longitude="lon",
        level="plev",
        time="valid_time",
        geopotential="z",
        temperature="t",
        mean_sea_level_pressure="msl",
        **{"2m_temperature": "t2m"},
    )
    foreign = foreign.assign_coords(plev=("plev", [50000, 85000], {"units": "Pa"}))
    foreign = foreign.isel(lat=slice(None, None, -1)).roll(lon=3, roll_coords=True)
    foreign = foreign.assign_coords(lon=((foreign["lon"] + 180.0) % 360.0) - 180.0)
    foreign["t2m"] = foreign["t2m"] - 273.15
    foreign["t2m"].attrs["units"] = "degC"
    out = conventions.canonicalize(foreign)
    expected = truth.transpose(*out["geopotential"].dims, missing_dims="ignore")
    xr.testing.assert_allclose(out[list(truth.data_vars)], expected, rtol=1e-6)
    assert out["longitude"].values.tolist() == truth["longitude"].values.tolist()
