"""Bring foreign datasets into the Tellus schema, lazily.

:func:`canonicalize` renames, reorders and converts a dataset from ERA5 GRIB (cfgrib), CMIP
or NEMO NetCDF, or another Zarr store into the layout of :mod:`tellus.data.schema`. It only
touches coordinates and builds lazy (dask) operations on the data: it never loads a data
variable, so it is safe on a terabyte store opened with ``chunks``.

Choices, in the order they are applied:

* **Time.** cfgrib returns ``time`` (the forecast reference time), ``step`` and
  ``valid_time``. The schema's ``time`` is the *valid* time: for analyses and single-lead
  forecasts ``valid_time`` becomes ``time`` and the reference time and step are dropped. A
  ``step`` dimension of size > 1 is a forecast with several leads: ``time`` stays the
  initialisation time and ``step`` becomes ``prediction_timedelta`` (WeatherBench2's forecast
  layout).
* **Names.** Dims and coords are renamed from :data:`schema.DIM_ALIASES`, variables from
  :data:`schema.VARIABLE_ALIASES`. A 1-D coordinate along a differently named dim (``lat(y)``)
  becomes that dim; a 2-D one (curvilinear ``nav_lat(y, x)``) is an error: regrid first
  (:mod:`tellus.data.regrid`, which :mod:`tellus.data.ingest` applies to such sources).
* **Ensembles.** An ensemble ``number`` (or ``member``) dim of size 1 is dropped; of size > 1
  it becomes ``realization`` (WeatherBench2's name, and the CF standard name cfgrib gives
  ``number``), for truth data with members too.
* **Scalar coords.** Other 0-d coords (GRIB's ``surface``, ``meanSea``, ``heightAboveGround``,
  a scalar ``number`` or ``step``) describe the whole file and are dropped; a scalar ``time``,
  ``level`` or ``depth`` becomes a dimension of length 1 on the variables that have it.
* **Pressure levels** become hPa, ascending (50 ... 1000 as in WeatherBench2), int64 when
  every level is whole. Pa or hPa is read from the coord's ``units`` attr, else from its
  GRIB name (``isobaricInPa`` / ``isobaricInhPa``); they must agree. Without either, a level
  set whose maximum exceeds 1100 is Pa (no pressure level lies below 1100 hPa), one whose
  maximum lies in [100, 1100] is hPa (in Pa it would all lie above 11 hPa), and anything
  else is ambiguous and an error. A ``lev``/``level`` coord in metres is an ocean ``depth``.
* **Latitude** ascending; **longitude** in [0, 360). A global grid starts at its westernmost
  point >= 0 and ascends. A *regional* box keeps its points contiguous from its western to
  its eastern edge: a box that crosses 0 deg, such as 10W-40E, becomes 350, ..., 359.75, 0,
  ..., 40. WeatherBench2 and anemoi sort longitudes, which would split such a box into two
  pieces with a 310 deg jump in the middle of the array, so that neighbouring columns are no
  longer neighbours for a convolution or a patch embedding; we keep the box whole instead,
  at the cost of one wrap (359.75 -> 0) in an otherwise ascending coordinate. The box
  bounds go in the ACDD attrs ``geospatial_lat_min/max`` and ``geospatial_lon_min/max``; as
  ACDD prescribes, ``geospatial_lon_min > geospatial_lon_max`` means the box crosses 0 deg.
  Points are only moved (roll or permutation), never interpolated.
* **Units.** Spellings are mapped with :func:`schema.canonical_units` and exact conversions
  from :data:`schema.UNIT_CONVERSIONS` applied (hPa -> Pa, degC -> K, ...). Geopotential
  height (``gh``, ``geopotential_height``, ``zg``) in metres becomes ``geopotential`` times
  :data:`STANDARD_GRAVITY`. Nothing ambiguous is converted: a ``geopotential`` in "m" is
  left as it is for :mod:`tellus.data.validation` to reject.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import xarray as xr

from tellus.data import schema
from tellus.data.constants import GRAVITY as STANDARD_GRAVITY  # 9.80665 m s-2, WMO/CGPM
from tellus.data.errors import SchemaError

REALIZATION = "realization"
PREDICTION_TIMEDELTA = "prediction_timedelta"

# Names an ensemble-member dimension goes by.
ENSEMBLE_ALIASES = ("number", "member")
# Names of geopotential height (metres), converted to geopotential.
GEOPOTENTIAL_HEIGHT_NAMES = ("gh", "geopotential_height", "zg")
_METRE_SPELLINGS = ("m", "gpm")

# Multiply by this to get Pa, for each spelling of a pressure unit a level coord may carry.
_PRESSURE_TO_PA = {
    "Pa": 1.0,
    "hPa": 100.0,
    "mbar": 100.0,
    "millibar": 100.0,
    "millibars": 100.0,
    "mb": 100.0,
    "hectopascal": 100.0,
    "hectopascals": 100.0,
    "kPa": 1000.0,
}
_LENGTH_UNITS = ("m", "cm")
# No pressure level on Earth lies below (in hPa, i.e. beyond) this.
_MAX_PRESSURE_HPA = 1100.0
# GRIB level-type names that say the unit of their values.
_LEVEL_NAME_UNITS = {"isobaricInhPa": "hPa", "isobaricInPa": "Pa"}

# Output dim order: these first, then any unknown dims, then the vertical and the grid.
_LEADING_DIMS = (schema.TIME, REALIZATION, PREDICTION_TIMEDELTA)
_TRAILING_DIMS = (schema.LEVEL, schema.DEPTH, schema.LATITUDE, schema.LONGITUDE)


def canonicalize(ds: xr.Dataset, *, source: str = "<dataset>") -> xr.Dataset:
    """Brings ``ds`` into the Tellus schema without loading any data.

    See the module docstring for every rule applied.

    Args:
      ds: any dataset on a regular latitude-longitude grid (numpy or dask backed).
      source: what to call ``ds`` in error messages (a file name).

    Returns:
      The dataset with schema dim and variable names, level in hPa ascending, latitude
      ascending, longitude in [0, 360), units converted where exact, dims ordered
      ``time, [realization,] [prediction_timedelta,] level|depth, latitude, longitude`` and the
      grid bounds in the ``geospatial_*`` attrs. Data variables stay lazy if they were.

    Raises:
      SchemaError: a name is ambiguous (two coords alias the same dim, two variables the same
        name), the level units cannot be decided, the grid is curvilinear, or a coordinate has
        duplicate or non-finite values. The message names ``source`` and the coord.
    """
    ds = _resolve_time(ds)
    ds, level_name = _rename_dims(ds, source)
    ds = _resolve_ensemble(ds, source)
    ds = ds.drop_vars([n for n, c in ds.coords.items() if c.ndim == 0 and n not in _SCALAR_KEPT])
    if schema.LEVEL in ds.coords:
        ds = _normalize_level(ds, level_name, source)
    if schema.DEPTH in ds.coords:
        ds = _sort_coord(ds, schema.DEPTH, source)
    ds = _rename_variables(ds, source)
    ds = _convert_units(ds)
    if schema.TIME in ds.dims:
        ds = _sort_coord(ds, schema.TIME, source)
    if schema.LATITUDE in ds.dims:
        ds = _normalize_latitude(ds, source)
    if schema.LONGITUDE in ds.dims:
        ds = _normalize_longitude(ds, source)
    for name in _SCALAR_KEPT:
        if name in ds.coords and ds[name].ndim == 0:
            ds = _expand_scalar(ds, name)
    ds = ds.transpose(*_LEADING_DIMS, ..., *_TRAILING_DIMS, missing_dims="ignore")
    return _drop_layout_attrs(ds).assign_attrs(grid_bounds(ds))


def grid_bounds(ds: xr.Dataset) -> dict[str, float | str]:
    """The ACDD bounds of a canonical grid (see the module docstring for boxes across 0 deg).

    Args:
      ds: a dataset with canonical ``latitude`` and ``longitude`` coords.

    Returns:
      ``geospatial_lat_min/max`` and ``geospatial_lon_min/max`` in degrees, with their units;
      empty if ``ds`` has no grid. ``geospatial_lon_min`` is the western edge (the first
      longitude) and ``geospatial_lon_max`` the eastern edge (the last).
    """
    attrs: dict[str, float | str] = {}
    if schema.LATITUDE in ds.coords and ds[schema.LATITUDE].size:
        lat = np.asarray(ds[schema.LATITUDE].values, dtype=np.float64).ravel()
        attrs.update(
            geospatial_lat_min=float(lat.min()),
            geospatial_lat_max=float(lat.max()),
            geospatial_lat_units="degrees_north",
        )
    if schema.LONGITUDE in ds.coords and ds[schema.LONGITUDE].size:
        lon = np.asarray(ds[schema.LONGITUDE].values, dtype=np.float64).ravel()
        attrs.update(
            geospatial_lon_min=float(lon[0]),
            geospatial_lon_max=float(lon[-1]),
            geospatial_lon_units="degrees_east",
        )
    return attrs


# Scalar coords that become length-1 dims instead of being dropped.
_SCALAR_KEPT = (schema.TIME, schema.LEVEL, schema.DEPTH)


def _resolve_time(ds: xr.Dataset) -> xr.Dataset:
    """Makes ``time`` the valid time (or the init time of a multi-lead forecast)."""
    if "step" in ds.dims and ds.sizes["step"] == 1:
        ds = ds.isel(step=0)
    if "step" in ds.dims:
        # A forecast with several leads: WeatherBench2's (time=init, prediction_timedelta).
        drop = [n for n in ("valid_time",) if n in ds.variables]
        return ds.drop_vars(drop).rename({"step": PREDICTION_TIMEDELTA})
    if (
        "valid_time" not in ds.variables
        and "step" in ds.coords
        and "time" in ds.coords
        and np.issubdtype(ds["step"].dtype, np.timedelta64)
    ):
        ds = ds.assign_coords(valid_time=ds["time"] + ds["step"])
    if "valid_time" in ds.variables and "time" in ds.variables:
        valid = ds["valid_time"]
        if valid.ndim == 1 and "time" in ds.dims and valid.dims == ("time",):
            ds = ds.swap_dims({"time": "valid_time"})
        if "time" in ds.dims:
            raise SchemaError(
                f"valid_time has dims {valid.dims}; expected it along 'time' or scalar"
            )
        ds = ds.drop_vars("time").rename({"valid_time": schema.TIME})
    return ds.drop_vars([n for n in ("step",) if n in ds.coords])


def _rename_dims(ds: xr.Dataset, source: str) -> tuple[xr.Dataset, Hashable | None]:
    """Renames aliased dims/coords to schema names; returns the original level name."""
    targets: dict[str, list[Hashable]] = {}
    for name in [*ds.dims, *ds.coords]:
        target = name if name in _SCHEMA_DIMS else schema.DIM_ALIASES.get(str(name))
        if target is not None and name not in targets.get(target, []):
            targets.setdefault(target, []).append(name)
    level_name = None
    for target, names in targets.items():
        if len(names) > 1:
            raise SchemaError(
                f"{source}: coords {names} all mean {target!r}; expected only one of them"
            )
        name = names[0]
        if target == schema.LEVEL:
            level_name = name
            if _is_length(ds, name):
                target = schema.DEPTH
        if name in ds.coords and ds[name].ndim == 2:
            raise SchemaError(
                f"{source}: coord {name!r} has dims {ds[name].dims}: a curvilinear grid; "
                "expected a 1-D coordinate (regrid to a regular latitude-longitude grid first)"
            )
        if name in ds.coords and ds[name].ndim == 1 and ds[name].dims[0] != name:
            ds = ds.swap_dims({ds[name].dims[0]: name})
        if name != target:
            if target in ds.variables or target in ds.dims:
                raise SchemaError(f"{source}: cannot rename {name!r} to {target!r}: it exists")
            ds = ds.rename({name: target})
    for dim in (schema.TIME, schema.LEVEL, schema.DEPTH, schema.LATITUDE, schema.LONGITUDE):
        if dim in ds.dims and dim not in ds.coords:
            raise SchemaError(f"{source}: dimension {dim!r} has no coordinate values")
    return ds, level_name


_SCHEMA_DIMS = (schema.TIME, schema.LEVEL, schema.DEPTH, schema.LATITUDE, schema.LONGITUDE)


def _is_length(ds: xr.Dataset, name: Hashable) -> bool:
    """Whether the (aliased) level coord ``name`` is in metres, i.e. an ocean depth."""
    if name not in ds.coords or name in _LEVEL_NAME_UNITS:
        return False
    units = ds[name].attrs.get("units")
    return units is not None and schema.canonical_units(str(units)) in _LENGTH_UNITS


def _resolve_ensemble(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Drops a size-1 ensemble dim; renames a larger one to ``realization``."""
    for name in ENSEMBLE_ALIASES:
        if name not in ds.dims:
            continue
        if ds.sizes[name] == 1:
            ds = ds.isel({name: 0}).drop_vars([name], errors="ignore")
        elif REALIZATION in ds.dims:
            raise SchemaError(
                f"{source}: both {name!r} and {REALIZATION!r} are ensemble dims; expected one"
            )
        else:
            ds = ds.rename({name: REALIZATION})
    return ds


def _pressure_unit(ds: xr.Dataset, name: Hashable | None, source: str) -> float:
    """Factor from the level coord's values to Pa (see the module docstring)."""
    level = ds[schema.LEVEL]
    attr = level.attrs.get("units")
    from_attr = None
    if attr is not None:
        spelled = schema.canonical_units(str(attr))
        from_attr = next((u for u in _PRESSURE_TO_PA if u.lower() == spelled.lower()), None)
        if from_attr is None:
            raise SchemaError(
                f"{source}: level coord {name!r} has units {attr!r}; expected a pressure "
                f"unit, one of {sorted(_PRESSURE_TO_PA)}"
            )
    from_name = _LEVEL_NAME_UNITS.get(str(name))
    if from_attr and from_name and _PRESSURE_TO_PA[from_attr] != _PRESSURE_TO_PA[from_name]:
        raise SchemaError(
            f"{source}: level coord {name!r} says {from_name} by its name but has units "
            f"{attr!r}; expected them to agree"
        )
    unit = from_attr or from_name
    if unit is None:
        values = np.asarray(level.values, dtype=np.float64)
        top = float(np.max(values)) if values.size else 0.0
        if top > _MAX_PRESSURE_HPA:
            unit = "Pa"
        elif top >= 100.0:
            unit = "hPa"
        else:
            raise SchemaError(
                f"{source}: level coord {name!r} has no units attr and values up to {top:g}, "
                "which could be hPa or Pa; expected a units attr ('hPa' or 'Pa')"
            )
    return _PRESSURE_TO_PA[unit]


def _normalize_level(ds: xr.Dataset, name: Hashable | None, source: str) -> xr.Dataset:
    """Pressure levels to hPa (int64 where whole), ascending, without duplicates."""
    to_pa = _pressure_unit(ds, name, source)
    level = ds[schema.LEVEL]
    hpa = np.asarray(level.values, dtype=np.float64) * (to_pa / 100.0)
    if not np.all(np.isfinite(hpa)) or np.any(hpa <= 0):
        raise SchemaError(
            f"{source}: level coord {name!r} has values {level.values.tolist()}; expected "
            "positive pressures"
        )
    if np.all(hpa == np.round(hpa)):
        hpa = hpa.astype(np.int64)
    attrs = {k: v for k, v in level.attrs.items() if k not in ("units", "stored_direction")}
    attrs.update(units="hPa", long_name="pressure level")
    ds = ds.assign_coords({schema.LEVEL: (level.dims, hpa, attrs)})
    if level.ndim == 1:
        ds = _sort_coord(ds, schema.LEVEL, source)
    return ds


def _sort_coord(ds: xr.Dataset, dim: str, source: str) -> xr.Dataset:
    """Puts ``dim`` in ascending order (by slicing when it is reversed); rejects duplicates."""
    values = ds[dim].values
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise SchemaError(f"{source}: coord {dim!r} has non-finite values")
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    if values.size > 1 and np.any(sorted_values[1:] == sorted_values[:-1]):
        dups = np.unique(sorted_values[1:][sorted_values[1:] == sorted_values[:-1]])
        raise SchemaError(
            f"{source}: coord {dim!r} has duplicate values {dups.tolist()[:5]}; expected "
            "unique values"
        )
    return _permute(ds, dim, order)


def _permute(ds: xr.Dataset, dim: str, order: np.ndarray) -> xr.Dataset:
    """``ds.isel({dim: order})``, as a slice or a roll where ``order`` is one (cheaper lazily)."""
    n = order.size
    if np.array_equal(order, np.arange(n)):
        return ds
    if np.array_equal(order, np.arange(n)[::-1]):
        return ds.isel({dim: slice(None, None, -1)})
    if np.array_equal(order, np.roll(np.arange(n), -int(order[0]))):
        return ds.roll({dim: -int(order[0])}, roll_coords=True)
    return ds.isel({dim: order})


def _normalize_latitude(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Latitude ascending, within [-90, 90]."""
    lat = np.asarray(ds[schema.LATITUDE].values, dtype=np.float64)
    if lat.size and (not np.all(np.isfinite(lat)) or np.abs(lat).max() > 90.0):
        raise SchemaError(
            f"{source}: latitude spans [{np.nanmin(lat)}, {np.nanmax(lat)}]; expected "
            "degrees within [-90, 90]"
        )
    ds = _sort_coord(ds, schema.LATITUDE, source)
    attrs = {k: v for k, v in ds[schema.LATITUDE].attrs.items() if k != "stored_direction"}
    attrs.update(units="degrees_north", standard_name="latitude")
    # A new coord rather than ds[...].attrs = ...: never mutate the caller's dataset.
    return ds.assign_coords({schema.LATITUDE: (schema.LATITUDE, ds[schema.LATITUDE].values, attrs)})


def _longitude_order(lon360: np.ndarray) -> np.ndarray:
    """Indices putting longitudes in [0, 360) in canonical order (see module docstring).

    Sorted ascending, then, for a regional box whose widest gap is not the one across 0 deg,
    rotated to start at the box's western edge (the point after the widest gap).
    """
    order = np.argsort(lon360, kind="stable")
    if lon360.size < 2:
        return order
    s = lon360[order]
    gaps = np.append(np.diff(s), s[0] + 360.0 - s[-1])
    tol = 1e-6 * max(float(np.max(gaps)), 1e-12)
    if gaps[-1] >= np.max(gaps) - tol:  # global, or a box that does not cross 0 deg
        return order
    return np.roll(order, -(int(np.argmax(gaps)) + 1))


def _normalize_longitude(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Longitude in [0, 360): global grids ascending, regional boxes contiguous."""
    lon = np.asarray(ds[schema.LONGITUDE].values, dtype=np.float64)
    if not np.all(np.isfinite(lon)):
        raise SchemaError(f"{source}: longitude has non-finite values")
    lon360 = np.mod(lon, 360.0)
    lon360[lon360 >= 360.0] = 0.0  # np.mod(-1e-14, 360) rounds to 360.0
    s = np.sort(lon360)
    if s.size > 1 and np.any(np.isclose(np.diff(s), 0.0, atol=1e-9)):
        dup = s[1:][np.isclose(np.diff(s), 0.0, atol=1e-9)]
        raise SchemaError(
            f"{source}: longitude has points that coincide modulo 360 (at {dup.tolist()[:5]} "
            "deg, e.g. both 0 and 360); expected each meridian once (drop the cyclic column)"
        )
    order = _longitude_order(lon360)
    attrs = dict(ds[schema.LONGITUDE].attrs)
    attrs.update(units="degrees_east", standard_name="longitude")
    ds = _permute(ds, schema.LONGITUDE, order)
    return ds.assign_coords({schema.LONGITUDE: (schema.LONGITUDE, lon360[order], attrs)})


def _rename_variables(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Schema names for aliased variables; geopotential height in m to geopotential."""
    renames: dict[Hashable, str] = {}
    for name in ds.data_vars:
        if name in schema.VARIABLES:
            continue
        if name in GEOPOTENTIAL_HEIGHT_NAMES:
            units = ds[name].attrs.get("units")
            if units is not None and schema.canonical_units(str(units)) in _METRE_SPELLINGS:
                ds = ds.assign({name: _geopotential_from_height(ds[name])})
                renames[name] = "geopotential"
            continue
        target = schema.VARIABLE_ALIASES.get(str(name))
        if target is not None:
            renames[name] = target
    by_target: dict[str, list[Hashable]] = {}
    for name in ds.data_vars:
        by_target.setdefault(str(renames.get(name, name)), []).append(name)
    for target, names in by_target.items():
        if len(names) > 1:
            raise SchemaError(
                f"{source}: variables {names} would all be named {target!r}; expected one"
            )
    return ds.rename(renames)


def _geopotential_from_height(height: xr.DataArray) -> xr.DataArray:
    """Geopotential (m2 s-2) from geopotential height (m): z = g0 * gh, exactly."""
    out = height * STANDARD_GRAVITY
    out.attrs = {k: v for k, v in height.attrs.items() if not k.startswith("GRIB_")}
    out.attrs.update(
        units="m2 s-2",
        long_name="Geopotential",
        standard_name="geopotential",
        comment=f"geopotential height (m) times standard gravity {STANDARD_GRAVITY} m s-2",
    )
    return out


def _convert_units(ds: xr.Dataset) -> xr.Dataset:
    """Respells units and applies exact conversions to the schema's units; else no change."""
    converted = {}
    for name, da in ds.data_vars.items():
        var = schema.VARIABLES.get(str(name))
        units = da.attrs.get("units")
        if var is None or units is None:
            continue
        spelled = schema.canonical_units(str(units))
        if spelled == var.units:
            if units != var.units:
                converted[name] = da.assign_attrs(units=var.units)
            continue
        conversion = schema.UNIT_CONVERSIONS.get((spelled, var.units))
        if conversion is None:
            continue  # Not an exact conversion: leave it for validation to reject.
        scale, offset = conversion
        out = da * scale + offset if offset else da * scale
        out.attrs = dict(da.attrs, units=var.units)
        converted[name] = out
    return ds.assign(converted)


def _drop_layout_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Drops cfgrib's per-variable ``GRIB_*`` and ``stored_direction`` attrs.

    They describe the source's layout (first grid point, scanning order, GRIB units), which
    no longer holds once the grid is reordered and the units converted.
    """
    ds = ds.copy(deep=False)  # New Variable objects: the caller's dataset is not touched.
    for var in ds.variables.values():
        if any(k.startswith("GRIB_") or k == "stored_direction" for k in var.attrs):
            var.attrs = {
                k: v
                for k, v in var.attrs.items()
                if not (k.startswith("GRIB_") or k == "stored_direction")
            }
    return ds


def _expand_scalar(ds: xr.Dataset, dim: str) -> xr.Dataset:
    """A scalar ``dim`` coord becomes a length-1 dim of the variables that have ``dim``.

    Variables the schema gives no ``dim`` (a static field next to a single time) lose the
    coord instead; unknown variables get the dim.
    """
    has_dim, lacks_dim = [], []
    for name in ds.data_vars:
        var = schema.VARIABLES.get(str(name))
        (lacks_dim if var is not None and dim not in var.dims else has_dim).append(name)
    out = ds[has_dim].expand_dims(dim)
    for name in lacks_dim:
        out[name] = ds[name].drop_vars(dim)
    return out.assign_attrs(ds.attrs)
