"""Mock datasets in the Tellus schema, for tests (as weatherbench2's ``schema.mock_truth_data``).

The values are not physics, but they are in plausible ranges and units so that validation
passes, and each field carries a known signal (a smooth function of time and position plus
seeded noise) so that tests of statistics and samplers can check numbers by hand.
"""

from __future__ import annotations

import itertools
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


# The signal of mock_curvilinear_ocean: a linear function of the Earth-centred unit vector.
CURVILINEAR_SIGNAL = (0.6, -0.3, 0.8)


def curvilinear_signal(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``a . x(lat, lon)``, with ``a`` = :data:`CURVILINEAR_SIGNAL` and ``x`` the point on the
    unit sphere: smooth, and with ``|f(x) - f(y)| <= |a| * |x - y|`` for any two points."""
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    a = CURVILINEAR_SIGNAL
    return a[0] * np.cos(phi) * np.cos(lam) + a[1] * np.cos(phi) * np.sin(lam) + a[2] * np.sin(phi)


def rotated_grid(
    step: float = 5.0, *, pole: tuple[float, float] = (40.0, 70.0), west: float = 73.0
) -> tuple[np.ndarray, np.ndarray]:
    """A global curvilinear grid: a sheared regular grid whose north pole is moved to ``pole``.

    The grid lines of a ``step``-degree grid (cell centres) are sheared (longitude shifted by
    10 deg times the sine of latitude, so they no longer cross at right angles) and rotated
    so that the grid's pole lies at ``pole`` (latitude, longitude), as a tripolar grid moves
    its northern poles onto land. Longitudes are then put in ``[west, west + 360)`` (73..433
    as ORCA's).

    Returns:
      (latitude, longitude), each of shape ``(180 / step, 360 / step)`` (dims ``j, i``).
    """
    lat_r = -90.0 + step * (np.arange(round(180 / step)) + 0.5)
    lon_r = step * np.arange(round(360 / step))
    lon_r, lat_r = np.meshgrid(lon_r, lat_r)
    lon_r = lon_r + 10.0 * np.sin(np.deg2rad(lat_r))
    phi, lam = np.deg2rad(lat_r), np.deg2rad(lon_r)
    x = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)
    tilt, turn = np.deg2rad(90.0 - pole[0]), np.deg2rad(pole[1])
    about_y = np.array(
        [[np.cos(tilt), 0, np.sin(tilt)], [0, 1, 0], [-np.sin(tilt), 0, np.cos(tilt)]]
    )
    about_z = np.array(
        [[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]]
    )
    g = x @ (about_z @ about_y).T
    lat = np.rad2deg(np.arcsin(np.clip(g[..., 2], -1.0, 1.0)))
    lon = np.mod(np.rad2deg(np.arctan2(g[..., 1], g[..., 0])) - west, 360.0) + west
    return lat, lon


def curvilinear_land(lat: np.ndarray, lon: np.ndarray, *, extra: float = 0.0) -> np.ndarray:
    """Land of :func:`mock_curvilinear_ocean`: a round continent of radius ``30 + extra`` deg
    centred at 10 N, 100 E, and everything south of 70 S."""
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    c_phi, c_lam = np.deg2rad(10.0), np.deg2rad(100.0)
    cos_angle = np.sin(phi) * np.sin(c_phi) + np.cos(phi) * np.cos(c_phi) * np.cos(lam - c_lam)
    return (cos_angle > np.cos(np.deg2rad(30.0 + extra))) | (lat < -70.0)


def mock_curvilinear_ocean(
    *,
    months: int = 3,
    start: tuple[int, int] = (2000, 1),
    calendar: str = "noleap",
    step: float = 5.0,
    depths: Sequence[float] = (5.0, 100.0),
    deeper_land: float = 0.0,
) -> xr.Dataset:
    """CMIP6-style monthly ocean output on :func:`rotated_grid`, as xarray opens such a file.

    ``thetao(time, lev, j, i)`` in degC is ``15 + 10 s`` and ``zos(time, j, i)`` in m is
    ``0.5 s`` with ``s`` = :func:`curvilinear_signal` (plus 0.1 degC or 0.01 m per month), on
    2-D ``latitude(j, i)`` / ``longitude(j, i)``; NaN over :func:`curvilinear_land` (at depth
    the continent is ``deeper_land`` deg wider). Times are mid-month cftime dates of
    ``calendar`` with ``time_bnds``, and ``lev`` (m) has ``lev_bnds``, as CMIP6 writes them.
    """
    import cftime

    lat, lon = rotated_grid(step)
    s = curvilinear_signal(lat, lon)
    depth = np.asarray(depths, dtype=np.float64)
    year, month = start
    starts = [
        cftime.datetime(
            year + (month - 1 + m) // 12, (month - 1 + m) % 12 + 1, 1, calendar=calendar
        )
        for m in range(months + 1)
    ]
    times = [a + (b - a) / 2 for a, b in itertools.pairwise(starts)]
    ramp = np.arange(months, dtype=np.float64)
    land = np.stack(
        [curvilinear_land(lat, lon, extra=deeper_land if k else 0.0) for k in range(depth.size)]
    )
    theta = 15.0 + 10.0 * s[None, None] + 0.1 * ramp[:, None, None, None]
    theta = np.where(land[None], np.nan, theta + 0.0 * depth[None, :, None, None])
    zos = np.where(land[0][None], np.nan, 0.5 * s[None] + 0.01 * ramp[:, None, None])
    ds = xr.Dataset(
        {
            "thetao": (("time", "lev", "j", "i"), theta.astype(np.float32), {"units": "degC"}),
            "zos": (("time", "j", "i"), zos.astype(np.float32), {"units": "m"}),
            "time_bnds": (("time", "bnds"), np.array([starts[:-1], starts[1:]], dtype=object).T),
            "lev_bnds": (("lev", "bnds"), np.stack([depth * 0.5, depth * 1.5], 1)),
        },
        coords={
            "time": ("time", np.array(times, dtype=object), {"bounds": "time_bnds"}),
            "lev": ("lev", depth, {"units": "m", "positive": "down", "bounds": "lev_bnds"}),
            "latitude": (("j", "i"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "longitude": (("j", "i"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
        attrs={"frequency": "mon"},
    )
    ds["time"].encoding.update(units="days since 1850-01-01", calendar=calendar)
    return ds
