"""ENSO and Indian Ocean Dipole indices from SST fields in the Tellus schema.

Regions are :class:`tellus.data.regions.Box` objects, the same as the metrics use; every
index is the cos(latitude) weighted mean of an SST (or SST anomaly) field over a box, turned
into anomalies from a monthly climatology over an optional base period, by the functions of
:mod:`tellus.data.derived` (the same that derive Nino3.4 as a training target in
:class:`tellus.data.sources.WindowSource`). Box edges are inclusive and given in degrees east
in [0, 360) as the schema's longitudes. Region definitions follow NOAA CPC:

* Nino3.4, Nino3, Nino4, Nino1+2: the data layer's boxes (:data:`tellus.data.regions.NINO34`,
  ...); ONI: the 3-month running mean of the Nino3.4 anomaly;
* DMI (Saji et al. 1999, Nature 401, 360-363): the western Indian Ocean (10S-10N, 50E-70E)
  minus the south-eastern Indian Ocean (10S-0, 90E-110E).

The functions keep every dim other than latitude and longitude (``time``, and e.g.
``realization``); climatologies are per calendar month over ``time`` only.
"""

from __future__ import annotations

import xarray as xr

# The box means, climatologies and running means are the data layer's (one implementation:
# the same that derives Nino3.4 as a training target); re-exported here for the indices' users.
from tellus.data.derived import box_index, box_mean, box_weights, monthly_anomalies, running_mean
from tellus.data.regions import NINO3, NINO4, NINO12, NINO34, Box

SST_VARIABLES = ("sea_surface_temperature_anomaly", "sea_surface_temperature")

IOD_WEST = Box("iod_west", -10.0, 10.0, 50.0, 70.0)
IOD_EAST = Box("iod_east", -10.0, 0.0, 90.0, 110.0)


def sst_field(ds: xr.Dataset) -> xr.DataArray:
    """The SST-like field of a dataset: the SST anomaly if present, else the SST."""
    for name in SST_VARIABLES:
        if name in ds.data_vars:
            return ds[name]
    raise KeyError(f"the dataset has none of {SST_VARIABLES}; it has {sorted(ds.data_vars)}")


def _anomaly_index(
    ds: xr.Dataset, box: Box, base_period: tuple[str, str] | None, weighted: bool
) -> xr.DataArray:
    return box_index(sst_field(ds), box, base_period, weighted=weighted)


def nino34(
    ds: xr.Dataset, base_period: tuple[str, str] | None = None, *, weighted: bool = True
) -> xr.DataArray:
    """Nino3.4 SST anomaly (K)."""
    return _anomaly_index(ds, NINO34, base_period, weighted)


def nino3(
    ds: xr.Dataset, base_period: tuple[str, str] | None = None, *, weighted: bool = True
) -> xr.DataArray:
    """Nino3 SST anomaly (K)."""
    return _anomaly_index(ds, NINO3, base_period, weighted)


def nino4(
    ds: xr.Dataset, base_period: tuple[str, str] | None = None, *, weighted: bool = True
) -> xr.DataArray:
    """Nino4 SST anomaly (K)."""
    return _anomaly_index(ds, NINO4, base_period, weighted)


def nino12(
    ds: xr.Dataset, base_period: tuple[str, str] | None = None, *, weighted: bool = True
) -> xr.DataArray:
    """Nino1+2 SST anomaly (K)."""
    return _anomaly_index(ds, NINO12, base_period, weighted)


def oni(
    ds: xr.Dataset, base_period: tuple[str, str] | None = None, *, weighted: bool = True
) -> xr.DataArray:
    """Oceanic Nino Index: centred 3-month running mean of the Nino3.4 anomaly (K)."""
    return running_mean(nino34(ds, base_period, weighted=weighted)).rename("oni")


def dmi(
    ds: xr.Dataset, base_period: tuple[str, str] | None = None, *, weighted: bool = True
) -> xr.DataArray:
    """Dipole Mode Index: western minus south-eastern Indian Ocean SST anomaly (K)."""
    west = _anomaly_index(ds, IOD_WEST, base_period, weighted)
    east = _anomaly_index(ds, IOD_EAST, base_period, weighted)
    return (west - east).rename("dmi")


def all_indices(ds: xr.Dataset, base_period: tuple[str, str] | None = None) -> xr.Dataset:
    """Every index above as one Dataset (variables nino34, nino3, nino4, nino12, oni, dmi)."""
    out = {f.__name__: f(ds, base_period) for f in (nino34, nino3, nino4, nino12, oni, dmi)}
    for name, da in out.items():
        da.attrs.update(units="K")
        out[name] = da.rename(name)
    return xr.Dataset(out)


__all__ = [
    "IOD_EAST",
    "IOD_WEST",
    "NINO3",
    "NINO4",
    "NINO12",
    "NINO34",
    "SST_VARIABLES",
    "Box",
    "all_indices",
    "box_mean",
    "box_weights",
    "dmi",
    "monthly_anomalies",
    "nino3",
    "nino4",
    "nino12",
    "nino34",
    "oni",
    "running_mean",
    "sst_field",
]
