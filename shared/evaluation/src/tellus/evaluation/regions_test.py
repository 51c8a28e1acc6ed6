"""Regions: masks on small grids, boxes across 0 deg, and area fractions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tellus.evaluation import metrics, regions

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


def test_box_without_wrap_and_europe():
    box = regions.Box("y", 0.0, 10.0, 100.0, 120.0)
    mask = box.mask(np.array([5.0]), LON)
    np.testing.assert_array_equal(LON[mask.values[0] == 1], [100.0, 110.0, 120.0])
    europe = regions.REGIONS["europe"].mask(np.array([50.0]), LON)
    inside = LON[europe.values[0] == 1]
    np.testing.assert_array_equal(inside, [0.0, 10.0, 20.0, 30.0, 40.0, 350.0])


def _area_fraction(region):
    # 0.25 deg cell centres, no row on +-20, so that the band edges fall on cell bounds.
    lat = np.linspace(-89.875, 89.875, 720)
    w = metrics.spatial_weights(lat, LON, region)
    full = metrics.spatial_weights(lat, LON, "global")
    return float(w.sum() / full.sum())


def test_tropics_area_fraction():
    # The band |lat| <= 20 holds sin(20 deg) of the sphere's area.
    assert _area_fraction("tropics") == pytest.approx(np.sin(np.deg2rad(20)), rel=1e-9)
    assert _area_fraction("extratropics") == pytest.approx(1 - np.sin(np.deg2rad(20)))
    north = _area_fraction("northern_extratropics")
    south = _area_fraction("southern_extratropics")
    assert north == pytest.approx(south)
    assert north + south == pytest.approx(_area_fraction("extratropics"))
    assert _area_fraction("global") == 1.0


def test_tropics_weights_by_hand():
    lat = np.array([-60.0, -10.0, 10.0, 60.0])
    mask = regions.REGIONS["tropics"].mask(lat, LON[:3])
    np.testing.assert_array_equal(mask.values.sum(axis=1), [0, 3, 3, 0])


def test_registry_and_lookup():
    assert {
        "global",
        "tropics",
        "extratropics",
        "northern_extratropics",
        "southern_extratropics",
        "europe",
        "north_america",
        "east_asia",
    } <= set(regions.REGIONS)
    assert regions.get_region(None).name == "global"
    box = regions.Box("z", 0, 1, 0, 1)
    assert regions.get_region(box) is box
    with pytest.raises(KeyError, match="unknown region"):
        regions.get_region("atlantis")
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.lat_min = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        regions.LatBand("bad", 10.0, -10.0)
