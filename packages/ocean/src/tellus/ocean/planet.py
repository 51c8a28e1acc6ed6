"""The analytic ocean planet that veros runs: grid, continents, forcing and parameters.

Everything the embedded ocean needs is defined here in closed form, so that no input file is
downloaded: the grid, box continents, the zonal wind stress with its seasonal cycle, the
wind-stress anomaly modes with memory, and the surface temperature and salinity that the
surface fluxes restore towards. This module is plain numpy and never imports veros (which
switches the whole process to 64-bit floats): :mod:`tellus.ocean.veros_setup` turns these
functions into a veros setup inside the subprocess that runs the model, and
:mod:`tellus.ocean.world` reads the grid and the mask from here to lay out the stores.

Conventions:

* the grid is regular, ``Grid.resolution`` degrees; cell *centres* (veros's T points) at
  longitudes ``resolution / 2, 3 resolution / 2, ...`` (ascending in [0, 360)) and latitudes
  from ``-lat_edge + resolution / 2`` to ``lat_edge - resolution / 2``, walls at
  ``+-lat_edge``, cyclic in longitude;
* depth in metres, positive down, top to bottom; ``Grid.thickness`` are the layer thicknesses,
  ``Grid.depth`` the depths of veros's T points (the store's ``depth`` coordinate), which
  lie near but not always at the layer centres (see ``Grid.depth``);
* the bottom is flat: every ocean column has every level, so the 2D ``ocean_mask`` is the
  land-sea mask of every depth;
* time is the model's, in seconds from the start of the spin-up, on a 360-day calendar of
  twelve 30-day months; ``season`` is the fraction of the year elapsed (0 = 1 January);
* wind stress in N m-2 (positive east / north), temperature in degC; salinity here is
  practical salinity (1e-3), which veros (TEOS-10) carries as absolute salinity, times
  ``ABSOLUTE_PER_PRACTICAL``.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

DAY = 86400.0
MONTH_DAYS = 30
YEAR_DAYS = 360
MONTH = MONTH_DAYS * DAY
YEAR = YEAR_DAYS * DAY

# The layer thicknesses (m) of the default grid, top to bottom: veros's global_4deg levels
# scaled by 0.9, 15 levels from 45 m to 621 m (4680 m in all). Their thickness grows by
# nearly the same amount from level to level, which keeps veros's T points (see
# `Grid.depth`) close to the layer centres.
THICKNESS_15 = (
    45.0,
    63.0,
    90.0,
    126.0,
    171.0,
    216.0,
    261.0,
    306.0,
    351.0,
    396.0,
    441.0,
    486.0,
    531.0,
    576.0,
    621.0,
)

# Absolute salinity (g kg-1, TEOS-10, what veros's salinity is) per unit of practical
# salinity for seawater of reference composition: 35.16504 / 35 (Millero et al. 2008).
ABSOLUTE_PER_PRACTICAL = 35.16504 / 35.0

# Box continents: (west, east, south, north) edges in degrees; a cell whose centre lies in a
# box is land. The edges are multiples of 4 so that at 4 deg every box covers whole cells.
# "Americas" ends at 58S, leaving Drake Passage open from the southern wall (70S) to 58S;
# the Pacific spans 124E-280E, wide enough for the Nino3.4 box (170W-120W, 5S-5N).
CONTINENTS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "americas": ((280.0, 312.0, -58.0, 90.0),),
    "afro_eurasia": ((8.0, 44.0, -36.0, 90.0), (44.0, 124.0, 20.0, 90.0)),
    "indo_australia": ((104.0, 124.0, -8.0, 20.0), (112.0, 152.0, -40.0, -8.0)),
}


@dataclasses.dataclass(frozen=True)
class Grid:
    """The model grid.

    Attributes:
      resolution: grid spacing in degrees, in both directions; must divide 360 and
        ``2 * lat_edge``.
      lat_edge: latitude of the northern and southern walls (degrees).
      thickness: layer thicknesses (m), top to bottom.
    """

    resolution: float = 4.0
    lat_edge: float = 70.0
    thickness: tuple[float, ...] = THICKNESS_15

    def __post_init__(self):
        for span in (360.0, 2 * self.lat_edge):
            n = span / self.resolution
            if abs(n - round(n)) > 1e-9:
                raise ValueError(f"resolution {self.resolution} does not divide {span} deg")

    @property
    def nx(self) -> int:
        return round(360.0 / self.resolution)

    @property
    def ny(self) -> int:
        return round(2 * self.lat_edge / self.resolution)

    @property
    def nz(self) -> int:
        return len(self.thickness)

    @property
    def longitude(self) -> np.ndarray:
        """Cell-centre longitudes (deg E), ascending in [0, 360)."""
        return self.resolution * (np.arange(self.nx) + 0.5)

    @property
    def latitude(self) -> np.ndarray:
        """Cell-centre latitudes (deg N), ascending."""
        return -self.lat_edge + self.resolution * (np.arange(self.ny) + 0.5)

    @property
    def depth(self) -> np.ndarray:
        """Depths of veros's T points (m, positive down), top to bottom.

        veros places the T point of the bottom layer at its centre and every T point above
        by reflecting the one below through the face between them, so that each face lies
        midway between its two T points. For layers of equal thickness these are the layer
        centres; where the thickness changes by ``d`` from layer to layer, every second T
        point lies ``d / 2`` from its layer's centre.
        """
        dz = np.asarray(self.thickness, dtype=np.float64)[::-1]  # bottom first
        faces = np.cumsum(dz)[:-1]  # heights above the bottom of the faces between layers
        z = np.empty(len(dz))
        z[0] = dz[0] / 2
        for k in range(1, len(dz)):
            z[k] = 2 * faces[k - 1] - z[k - 1]
        return (dz.sum() - z)[::-1]

    @property
    def bottom(self) -> float:
        """Depth of the flat bottom (m)."""
        return float(np.sum(self.thickness))

    @property
    def x_origin(self) -> float:
        """veros's ``x_origin``: the first U face (east edge of the first cell), not its centre."""
        return self.resolution

    @property
    def y_origin(self) -> float:
        """veros's ``y_origin``: the first V face (north edge of the first row of cells)."""
        return -self.lat_edge + self.resolution


def land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """True where a cell centre (lat, lon in degrees, any broadcastable shapes) is land."""
    lat, lon = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lon, float) % 360.0)
    out = np.zeros(lat.shape, dtype=bool)
    for boxes in CONTINENTS.values():
        for west, east, south, north in boxes:
            out |= (lon >= west) & (lon < east) & (lat >= south) & (lat < north)
    return out


def ocean_mask(grid: Grid) -> np.ndarray:
    """[lat, lon] 1.0 over ocean, 0.0 over land (the same at every depth: flat bottom)."""
    lat, lon = np.meshgrid(grid.latitude, grid.longitude, indexing="ij")
    return (~land(lat, lon)).astype(np.float64)


def area_weights(grid: Grid) -> np.ndarray:
    """[lat, lon] cell areas relative to a cell's at the equator (cos latitude), 0 on land."""
    return np.cos(np.deg2rad(grid.latitude))[:, None] * ocean_mask(grid)


def volume_mean(grid: Grid, field: np.ndarray) -> np.ndarray:
    """Volume-weighted ocean mean of ``field`` [..., depth, lat, lon] (land ignored)."""
    w = area_weights(grid)[None] * np.asarray(grid.thickness, float)[:, None, None]
    return np.nansum(np.where(w > 0, field, 0.0) * w, axis=(-3, -2, -1)) / w.sum()


@dataclasses.dataclass(frozen=True)
class OceanParams:
    """The physics and forcing of one run; the "observed" run perturbs some of them.

    Attributes:
      wind_amplitude: factor on the whole climatological wind stress.
      westerly_south, westerly_north: peak zonal stress of the westerlies (N m-2) at 50S
        and 45N.
      trades: peak easterly stress of the trade winds (N m-2, given positive) at 10S/10N.
      meridional: peak equatorward stress of the trades (N m-2).
      seasonal_shift: northward shift of the wind and SST patterns in northern summer
        (degrees; the annual cycle of the shift is a sine peaking mid-July).
      seasonal_strength: relative strengthening of each hemisphere's westerlies in its
        winter.
      anomaly_std: standard deviation of each wind-stress anomaly mode's amplitude (N m-2
        at the mode's peak), times ``anomaly_scale`` of the mode.
      anomaly_memory_months: e-folding memory of the AR(1) anomaly modes (months).
      seed: seed of the anomaly modes' noise.
      heat_restoring: surface heat flux per K of SST departure from its target (W m-2 K-1).
      salt_restoring_days: restoring time of the top layer's salinity (days); the flux is
        made zero-mean over the ocean at every step, so it neither adds nor removes salt.
      kappa_h_min, kappa_m_min: floor of vertical diffusivity and viscosity (m2 s-1), TKE.
      k_iso: isopycnal diffusivity (m2 s-1).
      viscosity_factor: factor on the lateral viscosity of veros's global_4deg, (resolution
        in m)^3 x 2e-11 s-1, which keeps the Munk boundary layer about one cell wide.
      bottom_friction: linear bottom friction rate (s-1); with a flat bottom it (with lateral
        friction) is what limits the circumpolar current.
      dt_mom, dt_tracer: momentum and tracer time steps (s); dt_tracer / dt_mom is the
        tracer acceleration (48 by default).
    """

    wind_amplitude: float = 1.0
    westerly_south: float = 0.15
    westerly_north: float = 0.09
    trades: float = 0.06
    meridional: float = 0.015
    seasonal_shift: float = 5.0
    seasonal_strength: float = 0.2
    anomaly_std: float = 0.02
    anomaly_memory_months: float = 4.0
    seed: int = 0
    heat_restoring: float = 40.0
    salt_restoring_days: float = 60.0
    kappa_h_min: float = 2e-5
    kappa_m_min: float = 2e-4
    k_iso: float = 1000.0
    viscosity_factor: float = 1.0
    bottom_friction: float = 1e-5
    dt_mom: float = 1800.0
    dt_tracer: float = DAY

    def __post_init__(self):
        steps = MONTH / self.dt_tracer
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError(f"dt_tracer {self.dt_tracer} s does not divide a 30-day month")

    @property
    def steps_per_month(self) -> int:
        return round(MONTH / self.dt_tracer)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OceanParams:
        return cls(**json.loads(text))


# --- Seasonal cycle ---------------------------------------------------------------------


def season(time: float) -> float:
    """The fraction of the 360-day year elapsed at model time ``time`` (s)."""
    return (time % YEAR) / YEAR


def _shift(params: OceanParams, s: float) -> float:
    """Northward shift (deg) of the patterns at season ``s``: 0 on 15 April, peak 15 July."""
    return params.seasonal_shift * math.sin(2 * math.pi * (s - 3.5 / 12))


def zonal_stress(lat: np.ndarray, s: float, params: OceanParams) -> np.ndarray:
    """Climatological eastward stress (N m-2) at latitudes ``lat`` and season ``s``."""
    p = params
    phi = np.asarray(lat, float) - _shift(p, s)
    winter_north = math.cos(2 * math.pi * (s - 0.5 / 12))  # +1 mid-January
    westerlies = p.westerly_south * (1 - p.seasonal_strength * winter_north) * np.exp(
        -(((phi + 50.0) / 11.0) ** 2)
    ) + p.westerly_north * (1 + p.seasonal_strength * winter_north) * np.exp(
        -(((phi - 45.0) / 11.0) ** 2)
    )
    trades = p.trades * (
        np.exp(-(((phi - 10.0) / 12.0) ** 2)) + np.exp(-(((phi + 10.0) / 12.0) ** 2))
    )
    return p.wind_amplitude * (westerlies - trades)


def meridional_stress(lat: np.ndarray, s: float, params: OceanParams) -> np.ndarray:
    """Climatological northward stress (N m-2): the trades' equatorward component."""
    phi = np.asarray(lat, float) - _shift(params, s)
    return (
        -params.wind_amplitude
        * params.meridional
        * np.tanh(phi / 5.0)
        * np.exp(-((phi / 20.0) ** 2))
    )


def surface_temperature(lat: np.ndarray, s: float, params: OceanParams) -> np.ndarray:
    """The SST the heat flux restores to (degC): 27.5 at the (moving) thermal equator,
    -1.5 at 74 deg from it."""
    phi = np.asarray(lat, float) - _shift(params, s)
    return -1.5 + 29.0 * np.clip(np.cos(np.pi * phi / 148.0), 0.0, None) ** 1.5


def surface_salinity(lat: np.ndarray) -> np.ndarray:
    """The SSS the salt flux restores to (1e-3): salty subtropics, fresher equator and poles."""
    a = np.abs(np.asarray(lat, float))
    return (
        34.6
        + 1.1 * np.exp(-(((a - 22.0) / 10.0) ** 2))
        - 0.4 * np.exp(-((a / 6.0) ** 2))
        - 1.2 * (a / 70.0) ** 3
    )


def initial_state(lat: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Temperature and salinity [depth, lat] at rest to start the spin-up from: the annual
    mean surface targets decaying with depth to 1.5 degC and 34.7."""
    lat = np.asarray(lat, float)[None, :]
    z = np.asarray(depth, float)[:, None]
    sst = np.mean([surface_temperature(lat, m / 12, OceanParams()) for m in range(12)], axis=0)
    temp = 1.5 + (sst - 1.5) * np.exp(-z / 700.0)
    salt = 34.7 + (surface_salinity(lat) - 34.7) * np.exp(-z / 500.0)
    return temp, salt


# --- Wind-stress anomaly modes ----------------------------------------------------------

# (name, component, lat0, lon0, lat_width, lon_width, scale): Gaussian patterns of unit peak
# (times ``scale``); lon0 None makes a zonally uniform band. The first is the equatorial
# Pacific westerly anomaly that drives ENSO-like Kelvin waves.
MODES: tuple[tuple[str, str, float, float | None, float, float, float], ...] = (
    ("equatorial_pacific_x", "x", 0.0, 190.0, 8.0, 35.0, 1.0),
    ("southern_westerlies_x", "x", -50.0, None, 10.0, 0.0, 1.0),
    ("northern_westerlies_x", "x", 45.0, None, 10.0, 0.0, 0.8),
    ("equatorial_atlantic_x", "x", 0.0, 340.0, 8.0, 20.0, 0.6),
    ("north_pacific_y", "y", 35.0, 200.0, 12.0, 30.0, 0.6),
    ("indian_y", "y", -5.0, 80.0, 10.0, 20.0, 0.6),
)


def anomaly_patterns(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The modes' eastward and northward stress patterns, [mode, *shape] each (unit peak,
    times the mode's scale), at points (lat, lon) of any broadcastable shapes."""
    lat, lon = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lon, float))
    px = np.zeros((len(MODES), *lat.shape))
    py = np.zeros_like(px)
    for k, (_, comp, lat0, lon0, wlat, wlon, scale) in enumerate(MODES):
        g = np.exp(-(((lat - lat0) / wlat) ** 2))
        if lon0 is not None:
            dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
            g = g * np.exp(-((dlon / wlon) ** 2))
        (px if comp == "x" else py)[k] = scale * g
    return px, py


def anomaly_series(params: OceanParams, n_months: int, *, stream: int = 0) -> np.ndarray:
    """The modes' amplitudes [n_months + 1, mode] (N m-2) at the middle of each month.

    An AR(1) process per mode with lag-1 correlation ``exp(-1 / anomaly_memory_months)``,
    started from its stationary distribution, seeded by ``(params.seed, stream)``: the same
    seed gives the same series, so a resumed run is forced exactly as an uninterrupted one.
    """
    rng = np.random.default_rng([params.seed, stream])
    phi = math.exp(-1.0 / params.anomaly_memory_months)
    noise = rng.standard_normal((n_months + 1, len(MODES)))
    out = np.empty_like(noise)
    out[0] = noise[0]
    innovation = math.sqrt(1 - phi**2)
    for m in range(1, n_months + 1):
        out[m] = phi * out[m - 1] + innovation * noise[m]
    return params.anomaly_std * out


def anomaly_amplitudes(series: np.ndarray, months_elapsed: float) -> np.ndarray:
    """The modes' amplitudes at ``months_elapsed`` months after the start of ``series``:
    linear in time between mid-month values (constant before the first mid-month)."""
    x = min(max(months_elapsed - 0.5, 0.0), len(series) - 1.0)
    i = min(int(x), len(series) - 2)
    f = x - i
    return (1 - f) * series[i] + f * series[i + 1]
