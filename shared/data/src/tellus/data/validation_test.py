"""Every bad input the schema refuses, each with its error message asserted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import mock, validation
from tellus.data.errors import SchemaError


@pytest.fixture
def good() -> xr.Dataset:
    return mock.mock_era5(levels=(500, 850), n_lat=5, n_lon=8)


def test_good_dataset_passes_and_round_trips_through_zarr(good, tmp_path):
    validation.validate(good, check_values="full")
    good.to_zarr(tmp_path / "good.zarr")
    opened = validation.open_dataset(
        tmp_path / "good.zarr", variables=["temperature"], levels=[500, 850], check_values="full"
    )
    xr.testing.assert_allclose(opened.load(), good)


def test_missing_variable(good):
    with pytest.raises(
        SchemaError,
        match=r"missing variable\(s\) \['specific_humidity'\]; "
        r"the store has \[.*'temperature'",
    ):
        validation.validate(good, source="s.zarr", variables=["temperature", "specific_humidity"])


def test_missing_level(good):
    with pytest.raises(
        SchemaError,
        match=r"s.zarr: missing level\(s\) \[250\] hPa; the store "
        r"has \[500.0, 850.0\]",
    ):
        validation.validate(good, source="s.zarr", levels=[250, 500])


def test_geopotential_height_in_metres_is_refused(good):
    bad = good.copy()
    bad["geopotential"] = good["geopotential"] / 9.80665
    bad["geopotential"].attrs["units"] = "m"
    with pytest.raises(
        SchemaError,
        match=r"variable 'geopotential' has units 'm'; expected "
        r"'m2 s-2' \(this looks like geopotential height",
    ):
        validation.validate(bad)


def test_missing_units(good):
    bad = good.copy()
    bad["temperature"].attrs = {}
    with pytest.raises(SchemaError, match="'temperature' has no 'units' attribute; expected 'K'"):
        validation.validate(bad)


def test_unit_spellings_are_accepted(good):
    ok = good.copy()
    ok["geopotential"].attrs["units"] = "m**2 s**-2"
    validation.validate(ok)


def test_mislabelled_units_caught_by_plausible_range(good):
    bad = good.copy()
    bad["temperature"] = good["temperature"] - 273.15  # Celsius, still labelled K
    bad["temperature"].attrs["units"] = "K"
    with pytest.raises(
        SchemaError, match=r"'temperature' ranges .* outside the plausible 150\.\.350"
    ):
        validation.validate(bad)


def test_duplicated_time(good):
    bad = xr.concat(
        [good.isel(time=slice(0, 3)), good.isel(time=slice(2, 5))], dim="time", data_vars="minimal"
    )
    with pytest.raises(
        SchemaError,
        match=r"dim 'time' has duplicated values, first "
        r"2020-01-01 12:00:00 \(1 duplicates\)",
    ):
        validation.validate(bad)


def test_non_monotonic_time(good):
    bad = good.isel(time=[0, 2, 1, 3])
    with pytest.raises(
        SchemaError,
        match=r"dim 'time' is not monotonic increasing: "
        r"2020-01-01 12:00:00 is followed by 2020-01-01 06:00:00",
    ):
        validation.validate(bad)


def test_gap_in_time(good):
    bad = good.isel(time=[0, 1, 2, 5, 6, 7, 8])
    with pytest.raises(
        SchemaError,
        match=r"1 gap\(s\) in a 0 days 06:00:00 axis, first between "
        r"2020-01-01 12:00:00 and 2020-01-02 06:00:00",
    ):
        validation.validate(bad)
    validation.validate(bad, allow_gaps=True)


def test_monthly_axis_is_not_a_gap():
    ocean = mock.mock_ocean()  # month starts: 28 to 31 days apart
    validation.validate(ocean)
    with pytest.raises(
        SchemaError,
        match=r"1 gap\(s\) in a 1 month axis, first between "
        r"2000-03-01 00:00:00 and 2000-05-01",
    ):
        validation.validate(ocean.isel(time=[0, 1, 2, 4, 5]))


def test_nan_in_atmosphere(good):
    bad = good.copy(deep=True)
    bad["2m_temperature"][3, 2, 1] = np.nan
    with pytest.raises(
        SchemaError,
        match=r"'2m_temperature' has 1 NaN value\(s\) \(no mask "
        r"declared\); first at \{'time': '2020-01-01T18:00",
    ):
        validation.validate(bad, check_values="full")


def test_nan_outside_ocean_mask():
    ocean = mock.mock_ocean()
    validation.validate(ocean, check_values="full")  # NaNs on land are declared by the mask
    bad = ocean.copy(deep=True)
    bad["sea_water_salinity"][0, 1, 4, 10] = np.nan
    with pytest.raises(
        SchemaError,
        match=r"'sea_water_salinity' has 1 NaN value\(s\) inside "
        r"the declared ocean_mask",
    ):
        validation.validate(bad, check_values="full")


def test_sea_surface_temperature_nan_over_land_only():
    """SST is a monthly "climate" field, yet of the sea: NaN where ocean_mask is 0 passes,
    NaN over the ocean or with no mask declared does not."""
    ocean = mock.mock_ocean()
    land = ocean["ocean_mask"] == 0
    sst = (ocean["sea_water_potential_temperature"].isel(depth=0) + 273.15).where(~land)
    ocean["sea_surface_temperature"] = sst.assign_attrs(units="K")
    validation.validate(ocean, check_values="full")
    bad = ocean.copy(deep=True)
    bad["sea_surface_temperature"][2, 3, 5] = np.nan
    with pytest.raises(SchemaError, match=r"'sea_surface_temperature' has 1 NaN value\(s\) inside"):
        validation.validate(bad, check_values="full")
    with pytest.raises(
        SchemaError, match=r"'sea_surface_temperature' has \d+ NaN value\(s\) \(no mask"
    ):
        validation.validate(ocean[["sea_surface_temperature"]], check_values="full")


def test_descending_latitude_and_bad_longitude(good):
    with pytest.raises(SchemaError, match="latitude must be strictly ascending"):
        validation.validate(good.isel(latitude=slice(None, None, -1)))
    shifted = good.assign_coords(longitude=good.longitude - 180.0)
    with pytest.raises(SchemaError, match=r"longitude outside \[0, 360\): -180.0..135.0"):
        validation.validate(shifted)


def test_wrong_dims(good):
    bad = good.copy()
    bad["temperature"] = good["temperature"].transpose("time", "latitude", "level", "longitude")
    with pytest.raises(
        SchemaError,
        match=r"'temperature' has dims \('time', 'latitude', 'level', "
        r"'longitude'\); expected \('time', 'level', 'latitude', 'longitude'\)",
    ):
        validation.validate(bad)


def test_mismatched_grids(good):
    other = mock.mock_era5(n_lat=7, n_lon=8)
    with pytest.raises(
        SchemaError,
        match=r"grids differ in 'latitude': era5.zarr has 5 points "
        r"-90..90, ocean.zarr has 7 points",
    ):
        validation.check_same_grid(good, other, names=("era5.zarr", "ocean.zarr"))
    validation.check_same_grid(good, mock.mock_era5(n_lat=5, n_lon=8, seed=3))


def test_missing_store(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no Zarr store at .*nothing\.zarr"):
        validation.open_dataset(tmp_path / "nothing.zarr")


def test_time_step_is_the_mode():
    times = pd.date_range("2020", periods=5, freq="1h").append(pd.DatetimeIndex(["2020-01-02"]))
    assert validation.time_step(times.values) == pd.Timedelta("1h")


def test_regional_box_across_greenwich_may_wrap_once(good):
    box = good.isel(longitude=[6, 7, 0, 1, 2])  # 270, 315, 0, 45, 90
    with pytest.raises(SchemaError, match="longitude must be strictly ascending"):
        validation.validate(box)
    box.attrs.update(geospatial_lon_min=270.0, geospatial_lon_max=90.0)
    validation.validate(box)
    twice = good.isel(longitude=[6, 0, 7, 1])
    twice.attrs.update(geospatial_lon_min=270.0, geospatial_lon_max=45.0)
    with pytest.raises(SchemaError, match="longitude must be strictly ascending"):
        validation.validate(twice)


def test_open_through_an_fsspec_url(good):
    url = "memory://validation-test/era5.zarr"
    good.to_zarr(url, zarr_format=3, consolidated=False)
    opened = validation.open_dataset(url, variables=["geopotential"], levels=[500])
    np.testing.assert_array_equal(opened.temperature.values, good.temperature.values)
