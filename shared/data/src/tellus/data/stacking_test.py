"""Tests of stacking: channel order by hand, exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tellus.data import mock, stacking


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return mock.mock_era5(levels=(50, 500, 850), n_lat=4, n_lon=8)


def test_channel_order_by_hand(ds):
    layout = stacking.ChannelLayout.from_dataset(
        ds, ["temperature", "2m_temperature", "geopotential"], levels=(850, 50)
    )
    assert layout.channels == (
        ("temperature", 850),
        ("temperature", 50),
        ("2m_temperature", None),
        ("geopotential", 850),
        ("geopotential", 50),
    )
    assert layout.num_channels == len(layout) == 5
    assert layout.slices()["geopotential"] == slice(3, 5)
    assert layout.index("geopotential", 50) == 4
    stacked = stacking.dataset_to_stacked(ds, layout)
    assert stacked.shape == (16, 4, 8, 5)
    np.testing.assert_array_equal(stacked[3, :, :, 1], ds.temperature.values[3, 0])
    np.testing.assert_array_equal(stacked[3, :, :, 2], ds["2m_temperature"].values[3])
    np.testing.assert_array_equal(stacked[..., 3], ds.geopotential.values[:, 2])


def test_round_trip_is_exact(ds):
    names = ["geopotential", "temperature", "2m_temperature", "mean_sea_level_pressure"]
    layout = stacking.ChannelLayout.from_dataset(ds, names, levels=(50, 500, 850))
    stacked = stacking.dataset_to_stacked(ds, layout)
    back = stacking.stacked_to_dataset(stacked, layout, leading_dims=("time",), coords=ds.coords)
    expected = ds[names].copy()
    for name in names:
        expected[name].attrs = {}  # Channels carry no attributes; coordinates keep theirs.
    xr.testing.assert_identical(back, expected)
    assert back.level.dtype == ds.level.dtype


def test_statics_stack_without_leading_dims_and_broadcast_with_them(ds):
    static = stacking.ChannelLayout.from_dataset(ds, ["land_sea_mask", "geopotential_at_surface"])
    stacked = stacking.dataset_to_stacked(ds, static)
    assert stacked.shape == (4, 8, 2)
    back = stacking.stacked_to_dataset(stacked, static, coords=ds.coords)
    np.testing.assert_array_equal(back.land_sea_mask.values, ds.land_sea_mask.values)
    mixed = stacking.ChannelLayout.from_dataset(ds, ["2m_temperature", "land_sea_mask"])
    both = stacking.dataset_to_stacked(ds, mixed)
    assert both.shape == (16, 4, 8, 2)
    for t in (0, 15):  # The static field repeats at every time.
        np.testing.assert_array_equal(both[t, ..., 1], ds.land_sea_mask.values)


def test_ocean_depths_and_float_levels():
    ocean = mock.mock_ocean(depths=(5.0, 50.0, 200.0))
    layout = stacking.ChannelLayout.from_dataset(
        ocean, ["sea_water_salinity", "sea_surface_height"], levels=(50, 200.0000001)
    )
    assert layout.channels[:2] == (("sea_water_salinity", 50.0), ("sea_water_salinity", 200.0))
    assert layout["sea_water_salinity"].vertical_dim == "depth"
    stacked = stacking.dataset_to_stacked(ocean, layout)
    back = stacking.stacked_to_dataset(stacked, layout, leading_dims=("time",), coords=ocean.coords)
    np.testing.assert_array_equal(
        back.sea_water_salinity.values, ocean.sea_water_salinity.values[:, 1:]
    )  # NaNs included.
    np.testing.assert_array_equal(back.depth.values, [50.0, 200.0])


def test_errors(ds):
    with pytest.raises(KeyError, match=r"levels \[300\]"):
        stacking.ChannelLayout.from_dataset(ds, ["temperature"], levels=(300,))
    with pytest.raises(KeyError, match="not in the dataset"):
        stacking.ChannelLayout.from_dataset(ds, ["specific_humidity"], levels=(500,))
    with pytest.raises(ValueError, match="no levels"):
        stacking.ChannelLayout.from_dataset(ds, ["temperature"])
    layout = stacking.ChannelLayout.from_dataset(ds, ["2m_temperature"])
    with pytest.raises(ValueError, match="channels"):
        stacking.stacked_to_dataset(np.zeros((4, 8, 3)), layout)
    with pytest.raises(ValueError, match="leading dim names"):
        stacking.stacked_to_dataset(np.zeros((2, 4, 8, 1)), layout)
