"""Regions of the sphere as objects (after weatherbench2's ``regions.py``), and the Nino boxes.

A region is a frozen dataclass with a ``name`` and a :meth:`Region.mask` method that returns
a 0/1 ``float`` DataArray on ``(latitude, longitude)``: the evaluation metrics multiply the
latitude (area) weights by it (:mod:`tellus.evaluation.regions` keeps their registry of named
regions), the ENSO indices average SST over a :class:`Box`, and the data layer can derive an
index such as Nino3.4 as a target from the same box.

Latitudes are in degrees north; longitudes in ``[0, 360)`` (the Tellus schema). Box bounds may
be given in ``[-180, 180)`` and a box may cross 0 deg longitude (``lon_min > lon_max`` after
wrapping into ``[0, 360)``), e.g. Europe from 12.5 W to 42.5 E. All bounds are inclusive, as in
WeatherBench2's ``SliceRegion``.

The Nino boxes follow NOAA CPC: Nino3.4 5S-5N, 170W-120W; Nino3 5S-5N, 150W-90W; Nino4 5S-5N,
160E-150W; Nino1+2 10S-0, 90W-80W.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from tellus.data.schema import LATITUDE, LONGITUDE


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


NINO34 = Box("nino34", -5.0, 5.0, 190.0, 240.0)
NINO3 = Box("nino3", -5.0, 5.0, 210.0, 270.0)
NINO4 = Box("nino4", -5.0, 5.0, 160.0, 210.0)
NINO12 = Box("nino12", -10.0, 0.0, 270.0, 280.0)
