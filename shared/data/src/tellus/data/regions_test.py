"""Region masks on small grids: boxes across 0 deg, bands, unions, and the Nino boxes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tellus.data import regions

LON = np.arange(36) * 10.0  # 0..350


def test_box_across_greenwich():
    box = regions.Box("x", -10.0, 10.0, -20.0, 20.0)
    lat = np.array([-20.0, 0.0, 20.0])
    mask = box.mask(lat, LON)
    assert mask.dims == ("latitude", "longitude")
    inside = LON[mask.sel(latitude=0.0).values == 1]
    np.testing.assert_array_equal(inside, [0.0, 10.0, 20.0, 340.0, 350.0])
    assert mask.sel(latitude=20.0).sum() == 0
    assert mask.sel(latitude=-20.0).sum() == 0


def test_box_without_wrap():
    box = regions.Box("y", 0.0, 10.0, 100.0, 120.0)
    mask = box.mask(np.array([5.0]), LON)
    np.testing.assert_array_equal(LON[mask.values[0] == 1], [100.0, 110.0, 120.0])


def test_band_union_and_global():
    lat = np.array([-60.0, -10.0, 10.0, 60.0])
    band = regions.LatBand("tropics", -20.0, 20.0).mask(lat, LON[:3])
    np.testing.assert_array_equal(band.values.sum(axis=1), [0, 3, 3, 0])
    north, south = regions.LatBand("n", 20.0, 90.0), regions.LatBand("s", -90.0, -20.0)
    both = regions.Union("extratropics", (north, south)).mask(lat, LON[:3])
    np.testing.assert_array_equal(both.values.sum(axis=1), [3, 0, 0, 3])
    assert float(regions.Global().mask(lat, LON).sum()) == lat.size * LON.size


def test_nino_boxes():
    # Nino3.4: 5S-5N, 170W-120W; on a 5 deg grid 3 rows x 11 columns (190..240 E).
    lat = np.arange(-20.0, 21.0, 5.0)
    lon = np.arange(0.0, 360.0, 5.0)
    m = regions.NINO34.mask(lat, lon)
    assert float(m.sum()) == 3 * 11
    np.testing.assert_array_equal(lon[m.sel(latitude=0.0).values == 1][[0, -1]], [190.0, 240.0])
    assert float(regions.NINO12.mask(lat, lon).sum()) == 3 * 3  # 10S-0, 90W-80W
    for box in (regions.NINO3, regions.NINO4):
        assert (box.lat_min, box.lat_max) == (-5.0, 5.0)
    assert [b.name for b in (regions.NINO34, regions.NINO3, regions.NINO4, regions.NINO12)] == [
        "nino34",
        "nino3",
        "nino4",
        "nino12",
    ]


def test_frozen_and_invalid():
    box = regions.Box("z", 0, 1, 0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.lat_min = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        regions.LatBand("bad", 10.0, -10.0)
    with pytest.raises(ValueError):
        regions.Box("bad", 10.0, -10.0, 0.0, 1.0)
