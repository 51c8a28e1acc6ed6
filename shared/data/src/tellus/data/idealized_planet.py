"""The idealised planet under the Held-Suarez dataset: continents, mountains, and moisture.

Held & Suarez (1994) prescribe a dry, flat, featureless planet. The embedded dataset adds:

* idealised continents (a land-sea mask and ERA5-style soil categories, both stand-ins that
  do not act on the dynamics) and smooth Gaussian mountain ranges on them, which do: they
  give surface pressure its orographic imprint and the flow stationary waves;
* a passive humidity tracer, relaxed towards the Manabe & Wetherald (1967, JAS 24, 241)
  relative-humidity profile ``RH_s (sigma - 0.02) / 0.98`` of saturation (Bolton 1980), with
  faster removal of supersaturation, so that specific humidity has a realistic structure
  advected by real eddies. It does not feed back on the dynamics.

The surface fields are analytic functions of latitude and longitude in degrees, so they can be
sampled on the model grid and on the output grid alike. The model sees the orography through
its spectral truncation, which leaves ripples of some tens of metres over the sea.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from dinosaur import (
    coordinate_systems,
    held_suarez,
    primitive_equations,
    scales,
    time_integration,
)

from tellus.data import constants

_UNITS = scales.units
HUMIDITY = "specific_humidity"  # the tracer's key in the model state

# Continents as (centre longitude, half width in longitude, south edge, north edge), degrees.
_CONTINENTS = (
    (255.0, 35.0, 15.0, 70.0),
    (70.0, 60.0, 10.0, 70.0),
    (20.0, 20.0, -35.0, 10.0),
    (300.0, 20.0, -50.0, 10.0),
)
# Mountains as (longitude, latitude, e-folding half widths in lon and lat, relative height).
_MOUNTAINS = (
    (245.0, 45.0, 8.0, 14.0, 1.0),
    (85.0, 35.0, 14.0, 8.0, 1.0),
    (290.0, -25.0, 8.0, 14.0, 0.75),
)
_COAST_WIDTH = 2.0  # degrees: the continent fraction is 3/4 this far inland, 1/4 offshore


def _dlon(lon: np.ndarray, centre: float) -> np.ndarray:
    return (np.asarray(lon) - centre + 180.0) % 360.0 - 180.0


def continent_fraction(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Smooth indicator in [0, 1] of the idealised continents at (lat, lon) in degrees."""
    edge = lambda d: 1.0 / (1.0 + np.exp(-d * np.log(3.0) / _COAST_WIDTH))  # noqa: E731
    fraction = np.zeros(np.broadcast_shapes(np.shape(lat), np.shape(lon)))
    for centre, half_width, south, north in _CONTINENTS:
        box = edge(half_width - np.abs(_dlon(lon, centre))) * edge(lat - south) * edge(north - lat)
        fraction = np.maximum(fraction, box)
    return fraction


def land_sea_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """1 over the idealised continents, 0 over the sea."""
    return (continent_fraction(lat, lon) > 0.5).astype(np.float32)


def orography(lat: np.ndarray, lon: np.ndarray, max_height_m: float) -> np.ndarray:
    """Height of the idealised mountains in m: Gaussian ranges, zero over the sea."""
    height = np.zeros(np.broadcast_shapes(np.shape(lat), np.shape(lon)))
    for lon0, lat0, width_lon, width_lat, scale in _MOUNTAINS:
        height += scale * np.exp(
            -((_dlon(lon, lon0) / width_lon) ** 2) - ((np.asarray(lat) - lat0) / width_lat) ** 2
        )
    return max_height_m * height * continent_fraction(lat, lon)


def soil_type(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Stand-in ERA5 soil categories over land by latitude, 0 over the sea.

    7 (tropical organic) within 15 degrees of the equator, 1 (coarse, deserts) to 35, 2
    (medium) to 55, 6 (organic) poleward of that.
    """
    abs_lat = np.abs(np.broadcast_to(lat, np.broadcast_shapes(np.shape(lat), np.shape(lon))))
    category = np.select([abs_lat < 15, abs_lat < 35, abs_lat < 55], [7.0, 1.0, 2.0], 6.0)
    return (category * land_sea_mask(lat, lon)).astype(np.float32)


def saturation_specific_humidity(temperature: jax.Array, pressure: jax.Array) -> jax.Array:
    """Saturation specific humidity over water (Bolton 1980), kg kg-1, from K and Pa."""
    e_s = constants.BOLTON_A * jnp.exp(
        constants.BOLTON_B
        * (temperature - constants.ZERO_CELSIUS)
        / (temperature - constants.BOLTON_C)
    )
    e_s = jnp.minimum(e_s, 0.5 * pressure)  # keeps q_sat finite where e_s would reach p
    return constants.EPSILON * e_s / (pressure - (1 - constants.EPSILON) * e_s)


def relative_humidity_target(sigma: np.ndarray, surface_value: float) -> np.ndarray:
    """Manabe & Wetherald (1967) relative humidity ``RH_s (sigma - 0.02) / 0.98``, >= 0."""
    return np.maximum(surface_value * (sigma - 0.02) / 0.98, 0.0)


class MoistHeldSuarezForcing(time_integration.ExplicitODE):
    """Held-Suarez forcing plus relaxation of a passive humidity tracer.

    ``dq/dt = -(q - RH(sigma) q_sat(T, p)) / tau_q - max(q - q_sat, 0) / tau_c``.
    """

    def __init__(
        self,
        coords: coordinate_systems.CoordinateSystem,
        specs: primitive_equations.PrimitiveEquationsSpecs,
        reference_temperature: np.ndarray,
        *,
        surface_relative_humidity: float,
        relaxation_days: float,
        condensation_hours: float,
    ):
        """Builds the forcing.

        Args:
          coords: the model's coordinates (sigma levels).
          specs: the model's nondimensional units.
          reference_temperature: the model's reference temperature per level, nondimensional.
          surface_relative_humidity: ``RH_s``, the target at sigma = 1.
          relaxation_days: ``tau_q``.
          condensation_hours: ``tau_c``.
        """
        self.dry = held_suarez.HeldSuarezForcingSigma(
            coords, specs, reference_temperature, p0=constants.REFERENCE_PRESSURE * _UNITS.pascal
        )
        self.coords = coords
        self.reference_temperature = reference_temperature
        sigma = coords.vertical.centers
        self.rh = relative_humidity_target(sigma, surface_relative_humidity)[:, None, None]
        self.sigma = sigma[:, None, None]
        self.kelvin = specs.dimensionalize(1.0, _UNITS.degK).magnitude
        self.pascal = specs.dimensionalize(1.0, _UNITS.pascal).magnitude
        self.k_relax = 1 / specs.nondimensionalize(relaxation_days * _UNITS.day)
        self.k_cond = 1 / specs.nondimensionalize(condensation_hours * _UNITS.hour)

    def saturation(self, state: primitive_equations.State) -> jax.Array:
        """Nodal q_sat of ``state`` on model levels."""
        grid = self.coords.horizontal
        temperature = (
            self.reference_temperature[:, None, None] + grid.to_nodal(state.temperature_variation)
        ) * self.kelvin
        pressure = self.sigma * jnp.exp(grid.to_nodal(state.log_surface_pressure)) * self.pascal
        return saturation_specific_humidity(temperature, pressure)

    def explicit_terms(self, state: primitive_equations.State) -> primitive_equations.State:
        tendency = self.dry.explicit_terms(state)
        grid = self.coords.horizontal
        q = grid.to_nodal(state.tracers[HUMIDITY])
        q_sat = self.saturation(state)
        dq = -self.k_relax * (q - self.rh * q_sat) - self.k_cond * jnp.maximum(q - q_sat, 0.0)
        return tendency.replace(tracers={HUMIDITY: grid.to_modal(dq)})
