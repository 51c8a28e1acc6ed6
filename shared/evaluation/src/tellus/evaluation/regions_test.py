"""The region registry: WeatherBench2's named regions, lookup, and area fractions."""

from __future__ import annotations

import numpy as np
import pytest

from tellus.data.regions import Box
from tellus.evaluation import metrics, regions

LON = np.arange(36) * 10.0  # 0..350


def test_europe_crosses_greenwich():
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
    box = Box("z", 0, 1, 0, 1)
    assert regions.get_region(box) is box
    with pytest.raises(KeyError, match="unknown region"):
        regions.get_region("atlantis")
