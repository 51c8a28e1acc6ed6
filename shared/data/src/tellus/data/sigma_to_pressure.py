"""From a sigma-coordinate model column to pressure levels and surface diagnostics.

A sigma-coordinate model (like dinosaur's Held-Suarez runs) knows temperature, winds and
tracers at layer centres ``p_k = sigma_k * p_s`` and the surface geopotential ``phi_s``. This
module derives what a WeatherBench2-style store holds, with one consistent column model:

* between model levels, every field is linear in ``ln p``, and geopotential is the exact
  hypsometric integral of that temperature (the trapezoidal rule in ``ln p``, the same
  discretisation dinosaur uses for its own geopotential);
* between the lowest model level and the surface, and below the surface (pressure levels
  "underground", e.g. 1000 hPa over a 2 km plateau), the air is a constant-lapse-rate
  atmosphere (``constants.STANDARD_LAPSE_RATE``) anchored at the lowest model level:
  ``T(p) = T_K (p / p_K) ** (R Gamma / g)`` and ``phi(p) = phi_K + g (T_K - T(p)) / Gamma``;
  winds and tracers keep their lowest-level values;
* above the top model level the air is isothermal at the top temperature;
* mean-sea-level pressure is the pressure at which that lapse-rate column reaches
  ``phi = 0``, i.e. the hypsometric reduction ``p_msl = p_s (T_0 / T_s) ** (g / (R Gamma))``
  with ``T_s`` the lowest-level temperature brought down to the surface and
  ``T_0 = T_s + Gamma z_s``.

So ``phi(p_s) == phi_s`` and ``phi(p_msl) == 0`` hold exactly, and over flat ground at sea level
``p_msl == p_s``. No correction for very high or cold terrain (as ECMWF applies above 290.5 K
or over Tibet) is made: the idealised orography this is used with is at most a few km.

All functions take numpy arrays with the level axis third from last, ``(..., level, lat,
lon)`` (any two trailing horizontal axes), ordered from the model top to the surface
(``sigma`` ascending), in SI units. They are post-processing at the edge of the model, in
numpy: a chunk of samples takes milliseconds, where compiling them with XLA took seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tellus.data import constants

Array = np.ndarray

# Exponent R Gamma / g of a constant-lapse-rate atmosphere, T ~ p ** exponent.
_R = constants.DRY_AIR_GAS_CONSTANT
_G = constants.GRAVITY


def _lapse_exponent(lapse_rate: float) -> float:
    return _R * lapse_rate / _G


def surface_air_temperature(
    lowest_temperature: Array,
    lowest_sigma: float,
    lapse_rate: float = constants.STANDARD_LAPSE_RATE,
) -> Array:
    """Temperature at the surface, extrapolated from the lowest model level.

    Args:
      lowest_temperature: ``T_K`` at the lowest model level, K, shape ``(..., lat, lon)``.
      lowest_sigma: sigma of that level (``p_K / p_s``).
      lapse_rate: K m-1 of the assumed constant-lapse-rate layer below it.

    Returns:
      ``T_s = T_K * sigma_K ** (-R Gamma / g)``, K, same shape.
    """
    return lowest_temperature * lowest_sigma ** (-_lapse_exponent(lapse_rate))


def geopotential_on_sigma(
    temperature: Array,
    surface_geopotential: Array,
    sigma: Sequence[float] | np.ndarray,
    lapse_rate: float = constants.STANDARD_LAPSE_RATE,
) -> Array:
    """Geopotential at the model levels, integrated up from the surface.

    Args:
      temperature: K, shape ``(..., level, lat, lon)``, level from top to bottom.
      surface_geopotential: ``phi_s``, m2 s-2, shape ``(lat, lon)`` or broadcastable.
      sigma: the model's layer-centre sigma values, ascending, length ``level``.
      lapse_rate: K m-1 of the layer between the lowest level and the surface.

    Returns:
      Geopotential, m2 s-2, same shape as ``temperature``; increases upward.
    """
    log_sigma = np.log(np.asarray(sigma, dtype=np.float64))
    t_low = temperature[..., -1, :, :]
    t_surface = surface_air_temperature(t_low, float(sigma[-1]), lapse_rate)
    phi_low = surface_geopotential + (_G / lapse_rate) * (t_surface - t_low)
    # Trapezoid in ln p between neighbouring levels: exact for T linear in ln p.
    thickness = (
        (_R / 2)
        * (temperature[..., :-1, :, :] + temperature[..., 1:, :, :])
        * (np.diff(log_sigma)[:, None, None])
    )
    above = np.flip(np.cumsum(np.flip(thickness, axis=-3), axis=-3), axis=-3)
    return np.concatenate([phi_low[..., None, :, :] + above, phi_low[..., None, :, :]], axis=-3)


def _take_level(x: Array, index: Array) -> Array:
    """``x[..., index, :, :]`` with a per-column level index of shape ``(..., lat, lon)``."""
    return np.take_along_axis(x, index[..., None, :, :], axis=-3)[..., 0, :, :]


def interpolate_to_pressure(
    fields: Mapping[str, Array],
    temperature: Array,
    geopotential: Array,
    surface_pressure: Array,
    sigma: Sequence[float] | np.ndarray,
    pressure: Sequence[float],
    lapse_rate: float = constants.STANDARD_LAPSE_RATE,
) -> tuple[Array, Array, dict[str, Array]]:
    """Interpolates a sigma-level column to pressure levels (see the module docstring).

    Args:
      fields: other fields on model levels (winds, tracers), shape ``(..., level, lat, lon)``;
        linear in ``ln p``, held constant beyond the top and bottom model levels.
      temperature: K on model levels.
      geopotential: m2 s-2 on model levels, as from :func:`geopotential_on_sigma`.
      surface_pressure: Pa, shape ``(..., lat, lon)``.
      sigma: layer-centre sigma values, ascending.
      pressure: target pressures in Pa, any order; the output keeps it.
      lapse_rate: K m-1 below the lowest model level.

    Returns:
      ``(temperature, geopotential, fields)`` on the target levels, each
      ``(..., len(pressure), lat, lon)``.
    """
    log_sigma = np.log(np.asarray(sigma, dtype=np.float64))
    n = len(log_sigma)
    exponent = _lapse_exponent(lapse_rate)
    log_ps = np.log(surface_pressure)
    t_top, phi_top = temperature[..., 0, :, :], geopotential[..., 0, :, :]
    t_low, phi_low = temperature[..., -1, :, :], geopotential[..., -1, :, :]

    out_t, out_phi = [], []
    out_fields: dict[str, list[Array]] = {name: [] for name in fields}
    for p in pressure:
        x = np.log(p) - log_ps  # ln(p / p_s), per column
        # Levels lo (above) and hi = lo + 1 (below) bracket x; clipped at the column ends.
        lo = np.clip(np.searchsorted(log_sigma, x, side="right") - 1, 0, n - 2)
        hi = lo + 1
        x_lo, x_hi = log_sigma[lo], log_sigma[hi]
        w = np.clip((x - x_lo) / (x_hi - x_lo), 0.0, 1.0)

        def lerp(f, lo=lo, hi=hi, w=w):
            a, b = _take_level(f, lo), _take_level(f, hi)
            return a + w * (b - a)

        t_between = lerp(temperature)
        phi_between = _take_level(geopotential, hi) + (_R / 2) * (
            _take_level(temperature, hi) + t_between
        ) * (x_hi - x)
        t_below = t_low * np.exp(exponent * (x - log_sigma[-1]))
        phi_below = phi_low + (_G / lapse_rate) * (t_low - t_below)
        phi_above = phi_top + _R * t_top * (log_sigma[0] - x)
        below, above = x > log_sigma[-1], x < log_sigma[0]
        out_t.append(np.where(below, t_below, t_between))
        out_phi.append(np.where(below, phi_below, np.where(above, phi_above, phi_between)))
        for name, f in fields.items():
            out_fields[name].append(lerp(f))

    stack = lambda xs: np.stack(xs, axis=-3)  # noqa: E731
    return stack(out_t), stack(out_phi), {k: stack(v) for k, v in out_fields.items()}


def mean_sea_level_pressure(
    surface_pressure: Array,
    surface_geopotential: Array,
    lowest_temperature: Array,
    lowest_sigma: float,
    lapse_rate: float = constants.STANDARD_LAPSE_RATE,
) -> Array:
    """Surface pressure reduced to sea level through a constant-lapse-rate column.

    Args:
      surface_pressure: ``p_s``, Pa, shape ``(..., lat, lon)``.
      surface_geopotential: ``phi_s = g z_s``, m2 s-2, broadcastable to it.
      lowest_temperature: temperature at the lowest model level, K.
      lowest_sigma: sigma of that level.
      lapse_rate: K m-1.

    Returns:
      ``p_msl = p_s * (T_0 / T_s) ** (g / (R Gamma))``, Pa, where ``T_s`` is the surface air
      temperature of :func:`surface_air_temperature` and ``T_0 = T_s + Gamma phi_s / g``.
    """
    t_surface = surface_air_temperature(lowest_temperature, lowest_sigma, lapse_rate)
    t_sea_level = t_surface + lapse_rate * surface_geopotential / _G
    return surface_pressure * (t_sea_level / t_surface) ** (1.0 / _lapse_exponent(lapse_rate))
