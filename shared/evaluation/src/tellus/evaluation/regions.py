"""Regions over which metrics are averaged, as objects (after weatherbench2's ``regions.py``).

A region is a frozen dataclass with a ``name`` and a :meth:`mask` method that returns a 0/1
``float`` DataArray on ``(latitude, longitude)``. Metrics multiply the latitude (area) weights
by this mask, so a region never changes the shape of the data, only which cells count.

Latitudes are in degrees north; longitudes in ``[0, 360)`` (the Tellus schema). Box bounds may
be given in ``[-180, 180)`` and a box may cross 0 deg longitude (``lon_min > lon_max`` after
wrapping into ``[0, 360)``), e.g. Europe from 12.5 W to 42.5 E. All bounds are inclusive, as in
WeatherBench2's ``SliceRegion``; the boundaries of the registry follow WeatherBench2's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import xarray as xr

LATITUDE = "latitude"
LONGITUDE = "longitude"


def _grid(
    lat: xr.DataArray | np.ndarray, lon: xr.DataArray | np.ndarray
) -> tuple[xr.DataArray, xr.DataArray]:
    lat = (
        lat
        if isinstance(lat, xr.DataArray)
        else xr.DataArray(np.asarray(lat), dims=[LATITUDE], coords={LATITUDE: np.asarray(lat)})
    )
    lon = (
        lon
        if isinstance(lon, xr.DataArray)
        else xr.DataArray(np.asarray(lon), dims=[LONGITUDE], coords={LONGITUDE: np.asarray(lon)})
    )
    return lat, lon


class Region:
    """Base class: a named subset of the sphere."""

    name: str

    def mask(self, lat: xr.DataArray | np.ndarray, lon: xr.DataArray | np.ndarray) -> xr.DataArray:
        """0/1 mask on the grid.

        Args:
          lat: latitudes in degrees north, dim ``latitude``.
          lon: longitudes in degrees east, dim ``longitude``.

        Returns:
          A float DataArray with dims ``(latitude, longitude)``, 1 inside the region.
        """
        lat, lon = _grid(lat, lon)
        inside = self._inside(lat, lon)
        return inside.astype(np.float64).broadcast_like(lat * lon).transpose(LATITUDE, LONGITUDE)

    def _inside(self, lat: xr.DataArray, lon: xr.DataArray) -> xr.DataArray:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Global(Region):
    """The whole sphere."""

    name: str = "global"

    def _inside(self, lat: xr.DataArray, lon: xr.DataArray) -> xr.DataArray:
        return (lat * 0 + lon * 0) == 0


@dataclasses.dataclass(frozen=True)
class LatBand(Region):
    """All longitudes with ``lat_min <= latitude <= lat_max``."""

    name: str
    lat_min: float
    lat_max: float

    def __post_init__(self):
        if self.lat_min > self.lat_max:
            raise ValueError(f"{self.name}: lat_min {self.lat_min} > lat_max {self.lat_max}")

    def _inside(self, lat: xr.DataArray, lon: xr.DataArray) -> xr.DataArray:
        return ((lat >= self.lat_min) & (lat <= self.lat_max)) & (lon == lon)


@dataclasses.dataclass(frozen=True)
class Box(Region):
    """A latitude-longitude box; crosses 0 deg longitude when wrapped ``lon_min > lon_max``.

    Attributes:
      name: registry name.
      lat_min, lat_max: degrees north, inclusive.
      lon_min, lon_max: degrees east, inclusive, in ``[-180, 360]``; wrapped into ``[0, 360)``.
        ``Box("europe", 35, 75, -12.5, 42.5)`` covers 347.5..360 and 0..42.5.
    """

    name: str
    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def __post_init__(self):
        if self.lat_min > self.lat_max:
            raise ValueError(f"{self.name}: lat_min {self.lat_min} > lat_max {self.lat_max}")

    def _inside(self, lat: xr.DataArray, lon: xr.DataArray) -> xr.DataArray:
        lo, hi = self.lon_min % 360.0, self.lon_max % 360.0
        lon = lon % 360.0
        if self.lon_max - self.lon_min >= 360.0:
            in_lon = lon == lon
        elif lo <= hi:
            in_lon = (lon >= lo) & (lon <= hi)
        else:  # Crosses 0 deg (the box wraps around the end of [0, 360)).
            in_lon = (lon >= lo) | (lon <= hi)
        return (lat >= self.lat_min) & (lat <= self.lat_max) & in_lon


@dataclasses.dataclass(frozen=True)
class Union(Region):
    """Cells in any of ``parts`` (e.g. both extra-tropical bands)."""

    name: str
    parts: tuple[Region, ...]

    def _inside(self, lat: xr.DataArray, lon: xr.DataArray) -> xr.DataArray:
        inside = self.parts[0]._inside(lat, lon)
        for part in self.parts[1:]:
            inside = inside | part._inside(lat, lon)
        return inside


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
