"""The one Tellus data schema: the WeatherBench2 ERA5 layout, extended to the ocean.

Every store that Tellus reads or writes follows this layout:

* dims ``time, level, latitude, longitude`` for the atmosphere (``level`` in hPa),
  ``time, depth, latitude, longitude`` for the ocean (``depth`` in metres, positive down);
* latitude ascending (south to north, as WeatherBench2's 1.5/0.25 deg zarrs on
  ``gs://weatherbench2`` since v2), longitude in ``[0, 360)`` ascending;
* variables named as in WeatherBench2 (``geopotential``, ``2m_temperature``) or, for the ocean,
  by their CF standard names (``sea_water_potential_temperature``);
* units in the CF ``units`` attribute, spelled as below.

This module only *describes* the schema. :mod:`tellus.data.conventions` brings foreign data
into it and :mod:`tellus.data.validation` checks a dataset against it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

# Dimension names.
TIME = "time"
LEVEL = "level"
DEPTH = "depth"
LATITUDE = "latitude"
LONGITUDE = "longitude"
SPATIAL_DIMS = (LATITUDE, LONGITUDE)

# The 13 pressure levels of WeatherBench2 and Pangu-Weather, hPa, top to bottom.
PRESSURE_LEVELS_13: tuple[int, ...] = (
    50,
    100,
    150,
    200,
    250,
    300,
    400,
    500,
    600,
    700,
    850,
    925,
    1000,
)

Kind = Literal["upper_air", "surface", "static", "ocean_3d", "ocean_surface", "climate"]


@dataclasses.dataclass(frozen=True)
class Variable:
    """One variable of the schema.

    Attributes:
      name: the name in a Tellus store.
      units: canonical CF units string.
      kind: which dims it has: ``upper_air`` (time, level, lat, lon), ``surface`` (time, lat,
        lon), ``static`` (lat, lon), ``ocean_3d`` (time, depth, lat, lon), ``ocean_surface``
        (time, lat, lon), ``climate`` (time, lat, lon; monthly anomalies).
      long_name: human-readable description.
      aliases: names the variable goes by elsewhere (ERA5 GRIB short names, CMIP names).
      plausible: (min, max) any real value must lie in, used to catch wrong units.
    """

    name: str
    units: str
    kind: Kind
    long_name: str
    aliases: tuple[str, ...] = ()
    plausible: tuple[float, float] | None = None

    @property
    def dims(self) -> tuple[str, ...]:
        return {
            "upper_air": (TIME, LEVEL, LATITUDE, LONGITUDE),
            "surface": (TIME, LATITUDE, LONGITUDE),
            "static": (LATITUDE, LONGITUDE),
            "ocean_3d": (TIME, DEPTH, LATITUDE, LONGITUDE),
            "ocean_surface": (TIME, LATITUDE, LONGITUDE),
            "climate": (TIME, LATITUDE, LONGITUDE),
        }[self.kind]


_VARIABLES = (
    # Upper air (ERA5 pressure-level short names as aliases).
    Variable("geopotential", "m2 s-2", "upper_air", "Geopotential", ("z",), (-1.0e4, 3.5e5)),
    Variable("temperature", "K", "upper_air", "Air temperature", ("t",), (150.0, 350.0)),
    Variable("u_component_of_wind", "m s-1", "upper_air", "Eastward wind", ("u",), (-250.0, 250.0)),
    Variable(
        "v_component_of_wind", "m s-1", "upper_air", "Northward wind", ("v",), (-250.0, 250.0)
    ),
    Variable(
        "specific_humidity", "kg kg-1", "upper_air", "Specific humidity", ("q",), (-1e-3, 0.1)
    ),
    Variable(
        "vertical_velocity", "Pa s-1", "upper_air", "Pressure velocity", ("w",), (-50.0, 50.0)
    ),
    # Surface.
    Variable(
        "mean_sea_level_pressure",
        "Pa",
        "surface",
        "Mean sea level pressure",
        ("msl", "prmsl", "mslp"),
        (8.0e4, 1.15e5),
    ),
    Variable("surface_pressure", "Pa", "surface", "Surface pressure", ("sp",), (3.0e4, 1.15e5)),
    Variable(
        "2m_temperature", "K", "surface", "2 m air temperature", ("t2m", "2t"), (150.0, 350.0)
    ),
    Variable(
        "10m_u_component_of_wind",
        "m s-1",
        "surface",
        "10 m eastward wind",
        ("u10", "10u"),
        (-150.0, 150.0),
    ),
    Variable(
        "10m_v_component_of_wind",
        "m s-1",
        "surface",
        "10 m northward wind",
        ("v10", "10v"),
        (-150.0, 150.0),
    ),
    Variable(
        "total_precipitation_6hr",
        "m",
        "surface",
        "6-hourly accumulated precipitation",
        ("tp6",),
        (-1e-3, 1.0),
    ),
    # Static fields.
    Variable("land_sea_mask", "1", "static", "Land fraction", ("lsm",), (0.0, 1.0)),
    Variable(
        "geopotential_at_surface",
        "m2 s-2",
        "static",
        "Surface geopotential (orography x g)",
        ("z_surface", "orography_geopotential"),
        (-1.0e4, 1.0e5),
    ),
    Variable("soil_type", "1", "static", "Soil type (category index)", ("slt",), (0.0, 10.0)),
    # Ocean (CF standard names).
    Variable(
        "sea_water_potential_temperature",
        "degC",
        "ocean_3d",
        "Potential temperature",
        ("thetao", "pot_temp", "temp"),
        (-3.0, 40.0),
    ),
    Variable(
        "sea_water_salinity", "1e-3", "ocean_3d", "Salinity (PSU)", ("so", "salt"), (0.0, 45.0)
    ),
    Variable(
        "eastward_sea_water_velocity",
        "m s-1",
        "ocean_3d",
        "Eastward current",
        ("uo",),
        (-5.0, 5.0),
    ),
    Variable(
        "northward_sea_water_velocity",
        "m s-1",
        "ocean_3d",
        "Northward current",
        ("vo",),
        (-5.0, 5.0),
    ),
    Variable(
        "sea_surface_height",
        "m",
        "ocean_surface",
        "Sea surface height above geoid",
        ("zos", "ssh"),
        (-5.0, 5.0),
    ),
    Variable(
        "surface_downward_eastward_stress",
        "N m-2",
        "ocean_surface",
        "Eastward wind stress",
        ("tauu", "taux"),
        (-5.0, 5.0),
    ),
    Variable(
        "surface_downward_northward_stress",
        "N m-2",
        "ocean_surface",
        "Northward wind stress",
        ("tauv", "tauy"),
        (-5.0, 5.0),
    ),
    Variable(
        "ocean_mask",
        "1",
        "static",
        "1 over ocean, 0 over land",
        ("mask", "tmask"),
        (0.0, 1.0),
    ),
    # Monthly climate anomalies.
    Variable(
        "sea_surface_temperature_anomaly",
        "K",
        "climate",
        "SST anomaly",
        ("ssta",),
        (-15.0, 15.0),
    ),
    Variable(
        "ocean_heat_content_anomaly",
        "K",
        "climate",
        "Upper-ocean (0-300 m) mean temperature anomaly",
        ("hca", "t300a"),
        (-15.0, 15.0),
    ),
    Variable("sea_surface_temperature", "K", "climate", "SST", ("sst", "tos"), (260.0, 320.0)),
)

VARIABLES: Mapping[str, Variable] = {v.name: v for v in _VARIABLES}
UPPER_AIR = tuple(v.name for v in _VARIABLES if v.kind == "upper_air")
SURFACE = tuple(v.name for v in _VARIABLES if v.kind == "surface")
STATIC = tuple(v.name for v in _VARIABLES if v.kind == "static")
OCEAN = tuple(v.name for v in _VARIABLES if v.kind in ("ocean_3d", "ocean_surface"))

# Names other datasets give to the variables above.
VARIABLE_ALIASES: Mapping[str, str] = {a: v.name for v in _VARIABLES for a in v.aliases}

# Names other datasets give to the dims. Level units (hPa or Pa) are resolved by
# `tellus.data.conventions`, not here.
DIM_ALIASES: Mapping[str, str] = {
    "lat": LATITUDE,
    "nav_lat": LATITUDE,
    "y_lat": LATITUDE,
    "lon": LONGITUDE,
    "nav_lon": LONGITUDE,
    "x_lon": LONGITUDE,
    "plev": LEVEL,
    "isobaricInhPa": LEVEL,
    "isobaricInPa": LEVEL,
    "pressure_level": LEVEL,
    "pressure": LEVEL,
    "lev": LEVEL,
    "valid_time": TIME,
    "time_counter": TIME,
    "date": TIME,
    "deptht": DEPTH,
    "depthu": DEPTH,
    "depthv": DEPTH,
    "olevel": DEPTH,
}

# Spellings of the same unit, mapped to the schema's spelling.
UNIT_SPELLINGS: Mapping[str, str] = {
    "m**2 s**-2": "m2 s-2",
    "m^2/s^2": "m2 s-2",
    "m2/s2": "m2 s-2",
    "m**2/s**2": "m2 s-2",
    "kelvin": "K",
    "K": "K",
    "m/s": "m s-1",
    "m s**-1": "m s-1",
    "m.s-1": "m s-1",
    "ms-1": "m s-1",
    "kg/kg": "kg kg-1",
    "kg kg**-1": "kg kg-1",
    "Pa": "Pa",
    "pa": "Pa",
    "pascal": "Pa",
    "Pa s**-1": "Pa s-1",
    "Pa/s": "Pa s-1",
    "(0 - 1)": "1",
    "0-1": "1",
    "fraction": "1",
    "dimensionless": "1",
    "~": "1",
    "degree_Celsius": "degC",
    "degrees_Celsius": "degC",
    "celsius": "degC",
    "C": "degC",
    "psu": "1e-3",
    "PSU": "1e-3",
    "0.001": "1e-3",
    "N/m2": "N m-2",
    "N m**-2": "N m-2",
    "N/m^2": "N m-2",
    "metres": "m",
    "meters": "m",
    "meter": "m",
}

# Exact conversions between units that measure the same quantity: (from, to) -> (scale, offset).
UNIT_CONVERSIONS: Mapping[tuple[str, str], tuple[float, float]] = {
    ("hPa", "Pa"): (100.0, 0.0),
    ("mbar", "Pa"): (100.0, 0.0),
    ("kPa", "Pa"): (1000.0, 0.0),
    ("degC", "K"): (1.0, 273.15),
    ("K", "degC"): (1.0, -273.15),
    ("g kg-1", "kg kg-1"): (1e-3, 0.0),
    ("cm", "m"): (1e-2, 0.0),
    ("mm", "m"): (1e-3, 0.0),
    ("cm s-1", "m s-1"): (1e-2, 0.0),
}


def canonical_units(units: str) -> str:
    """Returns the schema's spelling of ``units`` (unknown spellings pass through)."""
    stripped = units.strip()
    return UNIT_SPELLINGS.get(stripped, UNIT_SPELLINGS.get(stripped.lower(), stripped))


def lookup(name: str) -> Variable | None:
    """Returns the schema variable called ``name`` or aliased to it, or None."""
    if name in VARIABLES:
        return VARIABLES[name]
    alias = VARIABLE_ALIASES.get(name)
    return VARIABLES[alias] if alias else None
