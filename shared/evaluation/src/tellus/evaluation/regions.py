"""The registry of named regions over which metrics are averaged (WeatherBench2's boundaries).

The region classes (:class:`~tellus.data.regions.Region`, ``Global``, ``LatBand``, ``Box``,
``Union``) live in the data layer, :mod:`tellus.data.regions`: a region's :meth:`mask` is a 0/1
DataArray on ``(latitude, longitude)`` that the metrics multiply the latitude (area) weights
by, so a region never changes the shape of the data, only which cells count. This module
names the regions of WeatherBench2's evaluation configs and looks them up.
"""

from __future__ import annotations

from collections.abc import Mapping

from tellus.data.regions import Box, Global, LatBand, Region, Union

NORTHERN_EXTRATROPICS = LatBand("northern_extratropics", 20.0, 90.0)
SOUTHERN_EXTRATROPICS = LatBand("southern_extratropics", -90.0, -20.0)

# Boundaries from WeatherBench2's evaluation configs (regions.py / evaluation scripts).
_REGISTRY: tuple[Region, ...] = (
    Global(),
    LatBand("tropics", -20.0, 20.0),
    Union("extratropics", (NORTHERN_EXTRATROPICS, SOUTHERN_EXTRATROPICS)),
    NORTHERN_EXTRATROPICS,
    SOUTHERN_EXTRATROPICS,
    LatBand("arctic", 60.0, 90.0),
    LatBand("antarctic", -90.0, -60.0),
    Box("europe", 35.0, 75.0, -12.5, 42.5),
    Box("north_america", 25.0, 60.0, -120.0, -75.0),
    Box("north_atlantic", 25.0, 65.0, -70.0, -10.0),
    Box("north_pacific", 25.0, 60.0, 145.0, -130.0),
    Box("east_asia", 25.0, 60.0, 102.5, 150.0),
    Box("ausnz", -45.0, -12.5, 120.0, 175.0),
)

REGIONS: Mapping[str, Region] = {r.name: r for r in _REGISTRY}


def get_region(region: str | Region | None) -> Region:
    """The :class:`Region` for a registry name, a Region, or None (= global)."""
    if region is None:
        return REGIONS["global"]
    if isinstance(region, Region):
        return region
    try:
        return REGIONS[region]
    except KeyError:
        raise KeyError(f"unknown region {region!r}; known: {sorted(REGIONS)}") from None
