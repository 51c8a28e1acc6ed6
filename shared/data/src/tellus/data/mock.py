"""Mock datasets in the Tellus schema, for tests (as weatherbench2's ``schema.mock_truth_data``).

The values are not physics, but they are in plausible ranges and units so that validation
passes, and each field carries a known signal (a smooth function of time and position plus
seeded noise) so that tests of statistics and samplers can check numbers by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import schema


def regular_grid(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray]:
    """Equiangular latitudes (ascending, poles included) and longitudes in [0, 360).

    Args:
      n_lat: number of latitudes, from -90 to 90 inclusive (WeatherBench2 "with poles").
      n_lon: number of longitudes starting at 0.

    Returns:
      (latitude, longitude) in degrees.
    """
    lat = np.linspace(-90.0, 90.0, n_lat)
    lon = np.arange(n_lon) * (360.0 / n_lon)
    return lat, lon


def _base_value(var: schema.Variable, level: np.ndarray | None, lat: np.ndarray) -> np.ndarray:
    """A plausible climatological value of ``var`` by level and latitude."""
    coslat = np.cos(np.deg2rad(lat))
    if var.name == "geopotential":
        # Isothermal-ish atmosphere: z = R T0 ln(p0/p), with R T0 = 287 * 250.
        return 287.0 * 250.0 * np.log(1013.25 / level)[:, None] + 0 * lat[None, :]
    if var.name == "temperature":
        return (200.0 + 88.0 * (level / 1000.0))[:, None] + 20.0 * coslat[None, :]
    if var.name in ("u_component_of_wind", "10m_u_component_of_wind"):
        jet = 20.0 * np.exp(-(((np.abs(lat) - 40.0) / 15.0) ** 2))
        return jet if level is None else (level[:, None] / 1000.0) ** 0 * jet[None, :]
    if var.name == "specific_humidity":
        return 0.015 * (level / 1000.0)[:, None] ** 3 * coslat[None, :] ** 2
    if var.kind == "upper_air":
        return np.zeros((len(level), len(lat)))
    lo, hi = var.plausible or (0.0, 1.0)
    return np.full(lat.shape, 0.5 * (lo + hi))


def mock_era5(
    *,
    times: pd.DatetimeIndex | None = None,
    levels: Sequence[int] = (500, 850),
    n_lat: int = 8,
    n_lon: int = 16,
    upper_air: Sequence[str] = ("geopotential", "temperature"),
    surface: Sequence[str] = ("2m_temperature", "mean_sea_level_pressure"),
    static: Sequence[str] = ("land_sea_mask", "geopotential_at_surface"),
    noise: float = 0.01,
    seed: int = 0,
) -> xr.Dataset:
    """A small ERA5-like dataset in the schema.

    Each time-varying field is ``base(level, lat) * (1 + noise * eps)`` plus a diurnal/seasonal
    wave, with ``eps`` standard normal from ``seed``.

    Args:
      times: time coordinate; default 2020-01-01 six-hourly for 4 days.
      levels: pressure levels in hPa.
      n_lat, n_lon: grid size (see :func:`regular_grid`).
      upper_air, surface, static: variable names from :mod:`tellus.data.schema`.
      noise: relative amplitude of the random part.
      seed: random seed.

    Returns:
      An ``xarray.Dataset`` with CF ``units`` on every variable.
    """
    if times is None:
        times = pd.date_range("2020-01-01", periods=16, freq="6h")
    rng = np.random.default_rng(seed)
    lat, lon = regular_grid(n_lat, n_lon)
    level = np.asarray(levels, dtype=np.int64)
    t_frac = np.asarray((times - times[0]) / pd.Timedelta("1D"), dtype=np.float64)
    wave = np.sin(2 * np.pi * t_frac)[:, None, None] * np.cos(np.deg2rad(lon))[None, None, :]

    data_vars = {}
    for name in upper_air:
        var = schema.VARIABLES[name]
        base = _base_value(var, level.astype(float), lat)  # (level, lat)
        eps = rng.standard_normal((len(times), len(level), n_lat, n_lon))
        scale = np.abs(base).mean() + 1.0
        values = base[None, :, :, None] + scale * noise * (eps + wave[:, None])
        data_vars[name] = (schema.VARIABLES[name].dims, values.astype(np.float32))
    for name in surface:
        var = schema.VARIABLES[name]
        base = _base_value(var, None, lat)
        eps = rng.standard_normal((len(times), n_lat, n_lon))
        scale = np.abs(base).mean() + 1.0
        values = base[None, :, None] + scale * noise * (eps + wave)
        data_vars[name] = (var.dims, values.astype(np.float32))
    for name in static:
        var = schema.VARIABLES[name]
        lo, hi = var.plausible or (0.0, 1.0)
        values = lo + (hi - lo) * 0.1 * (
            1 + np.cos(np.deg2rad(lon))[None, :] * np.cos(np.deg2rad(lat))[:, None]
        )
        if name == "land_sea_mask":
            values = (values > lo + 0.15 * (hi - lo)).astype(np.float32)
        data_vars[name] = (var.dims, values.astype(np.float32))

    ds = xr.Dataset(
        data_vars,
        coords={
            schema.TIME: times,
            schema.LEVEL: level,
            schema.LATITUDE: lat,
            schema.LONGITUDE: lon,
        },
    )
    for name in ds.data_vars:
        ds[name].attrs.update(
            units=schema.VARIABLES[name].units, long_name=schema.VARIABLES[name].long_name
        )
    ds[schema.LEVEL].attrs.update(units="hPa", long_name="pressure level")
    ds[schema.LATITUDE].attrs.update(units="degrees_north")
    ds[schema.LONGITUDE].attrs.update(units="degrees_east")
    return ds


def mock_ocean(
    *,
    times: pd.DatetimeIndex | None = None,
    depths: Sequence[float] = (5.0, 50.0, 200.0),
    n_lat: int = 8,
    n_lon: int = 16,
    seed: int = 0,
) -> xr.Dataset:
    """A small monthly ocean dataset in the schema, with land masked as NaN.

    The ``ocean_mask`` static field declares where the ocean is; 3D and surface fields are NaN
    over land (the first two longitudes, a "continent").
    """
    if times is None:
        times = pd.date_range("2000-01-01", periods=24, freq="MS")
    rng = np.random.default_rng(seed)
    lat, lon = regular_grid(n_lat, n_lon)
    depth = np.asarray(depths, dtype=np.float64)
    mask = np.ones((n_lat, n_lon), np.float32)
    mask[:, :2] = 0.0
    shape3 = (len(times), len(depth), n_lat, n_lon)
    shape2 = (len(times), n_lat, n_lon)
    theta = (
        25.0
        * np.cos(np.deg2rad(lat))[None, None, :, None]
        * np.exp(-depth / 500.0)[None, :, None, None]
        + 2.0
        + rng.standard_normal(shape3) * 0.1
    )
    salt = 35.0 + rng.standard_normal(shape3) * 0.1
    ssh = 0.1 * rng.standard_normal(shape2)
    land3 = np.broadcast_to(mask == 0, shape3)
    land2 = np.broadcast_to(mask == 0, shape2)
    ds = xr.Dataset(
        {
            "sea_water_potential_temperature": (
                schema.VARIABLES["sea_water_potential_temperature"].dims,
                np.where(land3, np.nan, theta).astype(np.float32),
            ),
            "sea_water_salinity": (
                schema.VARIABLES["sea_water_salinity"].dims,
                np.where(land3, np.nan, salt).astype(np.float32),
            ),
            "sea_surface_height": (
                schema.VARIABLES["sea_surface_height"].dims,
                np.where(land2, np.nan, ssh).astype(np.float32),
            ),
            "ocean_mask": (schema.VARIABLES["ocean_mask"].dims, mask),
        },
        coords={
            schema.TIME: times,
            schema.DEPTH: depth,
            schema.LATITUDE: lat,
            schema.LONGITUDE: lon,
        },
    )
    for name in ds.data_vars:
        ds[name].attrs["units"] = schema.VARIABLES[name].units
    ds[schema.DEPTH].attrs.update(units="m", positive="down")
    return ds


def write_store(ds: xr.Dataset, path: str, *, step: str) -> str:
    """Writes a mock dataset as a Zarr store with its statistics beside it (as a built store
    has), for tests of code that reads stores; returns ``path``."""
    from tellus.data import statistics, validation

    ds.to_zarr(path, zarr_format=3, consolidated=False)
    statistics.write_statistics(validation.open_dataset(path), path, step=step, climatology=False)
    return path
