"""Reading and writing observation tables: a table in CSV or NetCDF, and Argo profile files.

* :func:`read_table` / :func:`write_table`: the table of :mod:`tellus.data.profiles` as CSV
  (one column each) or NetCDF (one ``obs`` dim, one variable per column, CF ``units``).
  Units: NetCDF columns carry a ``units`` attribute, CSV may carry a ``units`` column (the
  value's units, per row). Latitude must be in degrees north, longitude in degrees east,
  depth in metres (a pressure in dbar is refused: convert it, or use :func:`read_argo`),
  value in the schema's units of its variable or one converted exactly (K -> degC).
  A missing ``profile`` column is made from the distinct (time, latitude, longitude); a
  missing ``variable`` column from ``variable=``.
* :func:`read_argo`: an Argo core profile file (N_PROF x N_LEVELS; ``JULD`` in days since
  1950-01-01, ``LATITUDE``, ``LONGITUDE``, ``PRES`` in dbar, ``TEMP``, ``PSAL``, their
  ``*_ADJUSTED`` versions and ``*_QC`` flags; ``JULD_QC``, ``POSITION_QC``, ``DATA_MODE``).

Argo quality control, as applied here:

* a profile uses the adjusted values of a parameter where its ``DATA_MODE`` is ``A`` or
  ``D`` (without ``DATA_MODE``: where the profile has any adjusted value of it), the
  adjusted QC flags with them, and the raw values otherwise; raw and adjusted values are
  never mixed within one profile (in delayed mode a missing adjusted value means bad data);
* only QC flags ``1`` (good) and ``2`` (probably good) are kept: a profile whose
  ``JULD_QC`` or ``POSITION_QC`` is anything else is dropped, and so is every level whose
  pressure or value (or, for potential temperature, salinity) flag is anything else (``0``
  no QC, ``3``/``4`` bad, ``5`` changed, ``8`` estimated, ``9``/blank missing) or whose
  value is missing;
* depth = ``-gsw.z_from_p(p, lat)`` (TEOS-10; 1 000 dbar at 45 N is 989.5 m);
* ``TEMP`` is the in-situ temperature: for ``sea_water_potential_temperature`` it becomes
  the potential temperature referenced to the surface, ``gsw.pt_from_t(SA, t, p, 0)`` with
  ``SA = gsw.SA_from_SP(PSAL, p, lon, lat)``; with ``potential=False`` it is taken as it is
  (within about 0.2 degC of it above 2 000 m).

The counts dropped by each rule are in ``table.attrs["dropped"]``.
"""

from __future__ import annotations

import pathlib

import gsw
import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import profiles, schema
from tellus.data.errors import SchemaError

GOOD_QC = (b"1", b"2")
ARGO_EPOCH = pd.Timestamp("1950-01-01")
_NETCDF = (".nc", ".nc4", ".netcdf", ".cdf")
_COORD_UNITS = {
    schema.LATITUDE: ("degrees_north", "degree_north", "degrees_n", "degree_n", "degrees"),
    schema.LONGITUDE: ("degrees_east", "degree_east", "degrees_e", "degree_e", "degrees"),
}
_PRESSURE_UNITS = ("dbar", "decibar", "decibars", "db", "hpa", "pa", "bar")


def _value_factor(units: str, variable: str, where: str) -> tuple[float, float]:
    """(scale, offset) taking ``units`` to the schema's units of ``variable``."""
    target = schema.VARIABLES[variable].units
    got = schema.canonical_units(str(units))
    if got == target:
        return 1.0, 0.0
    if (got, target) in schema.UNIT_CONVERSIONS:
        return schema.UNIT_CONVERSIONS[(got, target)]
    raise SchemaError(f"{where}: value units '{units}' are not '{target}' ({variable})")


def _check_units(name: str, units: str | None, where: str) -> None:
    if units is None:
        return
    u = str(units).strip().lower()
    if name in _COORD_UNITS and u not in _COORD_UNITS[name]:
        raise SchemaError(f"{where}: column '{name}' has units '{units}', expected degrees")
    if name == schema.DEPTH:
        if u in _PRESSURE_UNITS:
            raise SchemaError(
                f"{where}: column 'depth' has units '{units}', a pressure: give depth in m "
                "(gsw.z_from_p) or read an Argo file with read_argo"
            )
        if schema.canonical_units(str(units)) != "m":
            raise SchemaError(f"{where}: column 'depth' has units '{units}', expected 'm'")


def read_table(path: str | pathlib.Path, *, variable: str | None = None) -> pd.DataFrame:
    """Reads an observation table from CSV or NetCDF (by the file's suffix).

    Args:
      path: a ``.csv`` or ``.nc`` file with the columns of :data:`profiles.COLUMNS`
        (``profile`` and ``variable`` optional, see the module docstring).
      variable: the variable of every row, for a file without a ``variable`` column.

    Raises:
      SchemaError: one line naming the file and the missing column, the bad unit or the
        first bad row.
    """
    path = pathlib.Path(path)
    where = str(path)
    if path.suffix.lower() in _NETCDF:
        with xr.open_dataset(path) as ds:
            frame = ds.load().to_dataframe().reset_index(drop=True)
            units = {k: ds[k].attrs.get("units") for k in ds.variables}
    elif path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
        units = {}
    else:
        raise SchemaError(f"{where}: not a CSV (.csv) or NetCDF (.nc) table")
    frame.columns = [str(c).strip() for c in frame.columns]
    if profiles.VARIABLE not in frame.columns:
        if variable is None:
            raise SchemaError(f"{where}: missing column 'variable'; pass variable= to read_table")
        frame[profiles.VARIABLE] = variable
    required = [c for c in profiles.COLUMNS if c != profiles.PROFILE]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {missing}; a table has {required}")
    for name in (schema.LATITUDE, schema.LONGITUDE, schema.DEPTH):
        _check_units(name, units.get(name), where)
    frame[profiles.VARIABLE] = [
        (schema.lookup(str(v)).name if schema.lookup(str(v)) else str(v))
        for v in frame[profiles.VARIABLE]
    ]
    value_units = frame.pop("units") if "units" in frame.columns else None
    if value_units is None and units.get(profiles.VALUE) is not None:
        value_units = pd.Series(units[profiles.VALUE], index=frame.index)
    frame[profiles.VALUE] = frame[profiles.VALUE].astype("float64")
    if value_units is not None:
        for (u, v), rows in frame.groupby(
            [value_units.astype(str), profiles.VARIABLE]
        ).groups.items():
            if schema.lookup(v) is None:
                continue  # validate_table names it
            scale, offset = _value_factor(u, v, where)
            frame.loc[rows, profiles.VALUE] = frame.loc[rows, profiles.VALUE] * scale + offset
    if profiles.PROFILE not in frame.columns:
        keys = [schema.TIME, schema.LATITUDE, schema.LONGITUDE]
        frame[profiles.PROFILE] = frame.groupby(keys, sort=False).ngroup()
    return profiles.validate_table(frame, source=where)


def write_table(table: pd.DataFrame, path: str | pathlib.Path) -> None:
    """Writes ``table`` as CSV or NetCDF (by the suffix), readable by :func:`read_table`."""
    path = pathlib.Path(path)
    table = profiles.validate_table(table)
    if path.suffix.lower() == ".csv":
        table.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        return
    if path.suffix.lower() not in _NETCDF:
        raise SchemaError(f"{path}: not a CSV (.csv) or NetCDF (.nc) table")
    ds = xr.Dataset({c: ("obs", table[c].to_numpy()) for c in table.columns})
    ds[profiles.VARIABLE] = ds[profiles.VARIABLE].astype(str)
    ds[schema.LATITUDE].attrs["units"] = "degrees_north"
    ds[schema.LONGITUDE].attrs["units"] = "degrees_east"
    ds[schema.DEPTH].attrs.update(units="m", positive="down")
    names = pd.unique(table[profiles.VARIABLE])
    if len(names) == 1:
        ds[profiles.VALUE].attrs["units"] = schema.VARIABLES[names[0]].units
    ds.to_netcdf(path)


def _read(nc: netCDF4.Dataset, name: str) -> np.ndarray | None:
    """A variable as float64 with NaN for fill values, or None if the file lacks it."""
    if name not in nc.variables:
        return None
    return np.ma.filled(np.ma.asarray(nc.variables[name][:], dtype="float64"), np.nan)


def _chars(nc: netCDF4.Dataset, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """A char variable (QC flags, DATA_MODE) as an S1 array of ``shape``, or None."""
    if name not in nc.variables:
        return None
    a = np.ma.filled(nc.variables[name][:], b" ")
    return np.asarray(a, dtype="S1").reshape(shape)


def _param(nc, name, n_prof, n_lev, mode):
    """(values, good) of an Argo parameter [N_PROF, N_LEVELS], per the rules above."""
    raw = _read(nc, name)
    if raw is None:
        return None, None
    raw_qc = _chars(nc, f"{name}_QC", (n_prof, n_lev))
    adj = _read(nc, f"{name}_ADJUSTED")
    adj_qc = _chars(nc, f"{name}_ADJUSTED_QC", (n_prof, n_lev))
    if raw_qc is None:
        raise SchemaError(f"Argo file has {name} but no {name}_QC flags")
    use_adj = np.zeros(n_prof, dtype=bool)
    if adj is not None and adj_qc is not None:
        has_adj = np.isfinite(adj).any(axis=1)
        use_adj = np.isin(mode, [b"A", b"D"]) if mode is not None else has_adj
    values = np.where(use_adj[:, None], adj, raw) if adj is not None else raw
    qc = np.where(use_adj[:, None], adj_qc, raw_qc) if adj_qc is not None else raw_qc
    return values, np.isin(qc, GOOD_QC) & np.isfinite(values)


def is_argo(path: str | pathlib.Path) -> bool:
    """Whether ``path`` is a NetCDF file with Argo's ``N_PROF`` dimension (False for a CSV or
    a file NetCDF cannot open)."""
    path = pathlib.Path(path)
    if path.suffix.lower() == ".csv":
        return False
    try:
        with netCDF4.Dataset(path) as nc:
            return "N_PROF" in nc.dimensions
    except OSError:
        return False


def read_argo(
    path: str | pathlib.Path,
    *,
    variable: str = "sea_water_potential_temperature",
    potential: bool = True,
) -> pd.DataFrame:
    """Reads an Argo core profile NetCDF into an observation table (see the module docstring).

    Args:
      path: the file.
      variable: ``sea_water_potential_temperature`` (from TEMP) or ``sea_water_salinity``
        (PSAL, practical salinity).
      potential: convert TEMP (in-situ) to potential temperature with PSAL; False takes
        TEMP as it is.

    Returns:
      The table; ``profile`` is the index along N_PROF, ``platform`` the float's
      PLATFORM_NUMBER where the file has it; ``attrs["dropped"]`` counts what was dropped.
    """
    where = str(path)
    wanted = {"sea_water_potential_temperature": "TEMP", "sea_water_salinity": "PSAL"}
    if variable not in wanted:
        raise SchemaError(f"{where}: read_argo reads {list(wanted)}, not '{variable}'")
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_chartostring(False)
        for name in ("JULD", "LATITUDE", "LONGITUDE", "PRES", wanted[variable]):
            if name not in nc.variables:
                raise SchemaError(f"{where}: not an Argo profile file: no variable '{name}'")
        n_prof, n_lev = nc.variables["PRES"].shape
        units = getattr(nc.variables["JULD"], "units", "")
        if not units.replace("T", " ").startswith("days since 1950-01-01"):
            raise SchemaError(f"{where}: JULD units '{units}', expected days since 1950-01-01")
        pres_units = getattr(nc.variables["PRES"], "units", "decibar").strip().lower()
        if pres_units not in ("decibar", "dbar", "decibars"):
            raise SchemaError(f"{where}: PRES units '{pres_units}', expected decibar")
        juld, lat, lon = (_read(nc, n) for n in ("JULD", "LATITUDE", "LONGITUDE"))
        mode = _chars(nc, "DATA_MODE", (n_prof,))
        ok = np.ones(n_prof, dtype=bool)
        dropped = {}
        for name in ("JULD_QC", "POSITION_QC"):
            flags = _chars(nc, name, (n_prof,))
            if flags is not None:
                bad = ~np.isin(flags, GOOD_QC) & ok
                dropped[f"profiles: {name} not 1 or 2"] = int(bad.sum())
                ok &= ~bad
        bad = ~(np.isfinite(juld) & np.isfinite(lat) & np.isfinite(lon)) & ok
        dropped["profiles: no time or position"] = int(bad.sum())
        ok &= ~bad
        p, p_good = _param(nc, "PRES", n_prof, n_lev, mode)
        x, x_good = _param(nc, wanted[variable], n_prof, n_lev, mode)
        good = p_good & x_good & ok[:, None]
        dropped["levels: PRES or value flag not 1 or 2, or missing"] = int(
            (ok[:, None] & ~(p_good & x_good)).sum()
        )
        if variable == "sea_water_potential_temperature" and potential:
            sp, sp_good = _param(nc, "PSAL", n_prof, n_lev, mode)
            if sp is None:
                raise SchemaError(
                    f"{where}: potential temperature needs PSAL; pass potential=False to "
                    "take the in-situ TEMP as it is"
                )
            dropped["levels: PSAL flag not 1 or 2 (needed for potential temperature)"] = int(
                (good & ~sp_good).sum()
            )
            good &= sp_good
        platform = None
        if "PLATFORM_NUMBER" in nc.variables:
            platform = np.asarray(np.ma.filled(nc.variables["PLATFORM_NUMBER"][:], b" "), "S1")
    prof, lev = np.nonzero(good)
    pr, la, lo = p[prof, lev], lat[prof], lon[prof]
    value = x[prof, lev]
    if variable == "sea_water_potential_temperature" and potential:
        sa = gsw.SA_from_SP(sp[prof, lev], pr, lo, la)
        value = gsw.pt_from_t(sa, value, pr, 0.0)
    table = pd.DataFrame(
        {
            profiles.PROFILE: prof.astype("int64"),
            schema.TIME: ARGO_EPOCH + pd.to_timedelta(juld[prof], unit="D"),
            schema.LATITUDE: la,
            schema.LONGITUDE: lo,
            schema.DEPTH: -gsw.z_from_p(pr, la),
            profiles.VALUE: np.asarray(value, dtype="float64"),
            profiles.VARIABLE: variable,
        }
    )
    if platform is not None:
        names = [
            b"".join(r).decode("ascii", "replace").strip() for r in platform.reshape(n_prof, -1)
        ]
        table["platform"] = np.asarray(names, dtype=object)[prof]
    table = profiles.validate_table(table, source=where)
    table.attrs = {"dropped": dropped, "source": where}
    return table
