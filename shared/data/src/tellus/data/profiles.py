"""Ocean observations as a table: Argo-like sampling from a store, and the guidance/check split.

The table
---------
A :class:`pandas.DataFrame`, one row per observation (one value of one variable at one
depth of one profile), with the columns of :data:`COLUMNS`:

==========  ===============  ==============================================================
column      dtype            meaning
==========  ===============  ==============================================================
profile     int64            profile id (one cast: one time and position, many depths)
time        datetime64[ns]   time of the profile
latitude    float64          degrees north, in [-90, 90]
longitude   float64          degrees east, in [0, 360) (the schema's convention)
depth       float64          metres, positive down
value       float64          the observed value, in the schema's units of ``variable``
variable    str              the schema's (CF) name, e.g. ``sea_water_potential_temperature``
==========  ===============  ==============================================================

Other columns (a float's platform number, the grid indices a sampler knew) pass through.
A DataFrame rather than an ``xarray.Dataset``: the rows are ragged (profiles of different
lengths at scattered positions and times), which is what a table is for; selecting whole
profiles is a ``groupby``/``isin`` on one column; and CSV, the commonest exchange format
for in-situ data, reads and writes without a layout of its own. NetCDF goes through
``xarray`` with one ``obs`` dim (:mod:`tellus.data.profile_io`).

Coverage
--------
:func:`sample_profiles` draws, at each time, whole profiles at random ocean columns.
Its ``coverage`` is the share of the *sampled levels'* ocean points that are observed at
that time:

    coverage = (observed (cell, depth) points) / (ocean (cell, depth) points at the levels
               from the surface down to the profile bottom level)

where the profile bottom level is the deepest level whose depth is at most ``max_depth``
(2 000 m, Argo's parking/profiling depth; the deepest level of the grid if the grid is
shallower, the top level if even it is deeper), and a point is ocean where ``ocean_mask``
(if the store has one, per depth if it has a ``depth`` dim) is 1 and the value is finite.
Levels below the profile bottom never hold an observation and do not count: on a grid
deeper than 2 000 m the share of *all* ocean points observed is smaller. A profile runs
from the surface down its column while the cells are ocean (it stops at the sea floor).
Columns are taken in a random order until the count is nearest to ``coverage`` times the
ocean points, so the achieved share is within half a (longest) profile of the target, and
exact where every column is equally deep and the target is a whole number of profiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import schema
from tellus.data.errors import SchemaError

PROFILE = "profile"
VALUE = "value"
VARIABLE = "variable"
COLUMNS = (
    PROFILE,
    schema.TIME,
    schema.LATITUDE,
    schema.LONGITUDE,
    schema.DEPTH,
    VALUE,
    VARIABLE,
)
MASK = "ocean_mask"
ARGO_MAX_DEPTH = 2000.0


def empty_table() -> pd.DataFrame:
    """A table with the columns and dtypes of :data:`COLUMNS` and no rows."""
    return pd.DataFrame(
        {
            PROFILE: pd.Series([], dtype="int64"),
            schema.TIME: pd.Series([], dtype="datetime64[ns]"),
            schema.LATITUDE: pd.Series([], dtype="float64"),
            schema.LONGITUDE: pd.Series([], dtype="float64"),
            schema.DEPTH: pd.Series([], dtype="float64"),
            VALUE: pd.Series([], dtype="float64"),
            VARIABLE: pd.Series([], dtype="object"),
        }
    )


def validate_table(table: pd.DataFrame, *, source: str = "table") -> pd.DataFrame:
    """Checks ``table`` against the format above and returns it in canonical form.

    Canonical: the columns of :data:`COLUMNS` first, with their dtypes; longitude wrapped
    into [0, 360); variable names resolved to the schema's (``thetao`` ->
    ``sea_water_potential_temperature``).

    Raises:
      SchemaError: one line naming the missing column, or the first row with a latitude
        outside [-90, 90], a negative or non-finite depth, a non-finite value or position,
        or a variable the schema does not know (or that is not an ocean variable).
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing column(s) {missing}; an observation table has {list(COLUMNS)}"
        )
    out = table.copy()
    out[PROFILE] = out[PROFILE].astype("int64")
    try:
        time = out[schema.TIME]
        if not pd.api.types.is_datetime64_any_dtype(time):
            time = pd.to_datetime(time, format="ISO8601")
        out[schema.TIME] = time.astype("datetime64[ns]")
    except (ValueError, TypeError) as e:
        raise SchemaError(f"{source}: column 'time' is not ISO 8601 times: {e}") from None
    for c in (schema.LATITUDE, schema.LONGITUDE, schema.DEPTH, VALUE):
        out[c] = out[c].astype("float64")
    names = {}
    for name in pd.unique(out[VARIABLE]):
        spec = schema.lookup(str(name))
        if spec is None or spec.kind not in ("ocean_3d",):
            raise SchemaError(
                f"{source}: variable '{name}' is not a 3D ocean variable of the schema "
                f"(e.g. {schema.OCEAN[0]!r})"
            )
        names[name] = spec.name
    out[VARIABLE] = out[VARIABLE].map(names).astype("object")
    out[schema.LONGITUDE] = np.mod(out[schema.LONGITUDE], 360.0)
    out.loc[out[schema.LONGITUDE] >= 360.0, schema.LONGITUDE] = 0.0  # -1e-17 % 360 == 360
    checks = (
        (~np.isfinite(out[schema.LATITUDE]) | (out[schema.LATITUDE].abs() > 90), "latitude"),
        (~np.isfinite(out[schema.LONGITUDE]), "longitude"),
        (~np.isfinite(out[schema.DEPTH]) | (out[schema.DEPTH] < 0), "depth (m, positive down)"),
        (~np.isfinite(out[VALUE]), "value"),
        (out[schema.TIME].isna(), "time"),
    )
    for bad, what in checks:
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise SchemaError(f"{source}: row {i} has an invalid {what}: {describe_row(out, i)}")
    extra = [c for c in out.columns if c not in COLUMNS]
    return out[[*COLUMNS, *extra]].reset_index(drop=True)


def describe_row(table: pd.DataFrame, i: int) -> str:
    """One row, for an error message: its profile, time, position and depth."""
    r = table.iloc[i]
    return (
        f"profile {r[PROFILE]}, time {r[schema.TIME]}, lat {r[schema.LATITUDE]:.4g}, "
        f"lon {r[schema.LONGITUDE]:.4g}, depth {r[schema.DEPTH]:.5g} m, value {r[VALUE]:.5g}"
    )


def ocean_points(ds: xr.Dataset, variable: str) -> xr.DataArray:
    """Boolean [time, depth, latitude, longitude]: ocean (``ocean_mask`` 1, where the store
    has one, per depth if it has a depth dim) and a finite value of ``variable``."""
    da = ds[variable]
    expected = schema.VARIABLES[variable].dims if variable in schema.VARIABLES else None
    if expected is not None and tuple(da.dims) != expected:
        raise SchemaError(f"variable '{variable}' has dims {da.dims}, expected {expected}")
    ocean = da.notnull()
    if MASK in ds.data_vars:
        ocean = ocean & (ds[MASK] > 0.5)
    return ocean.transpose(*da.dims)


def bottom_level(depth: np.ndarray, max_depth: float = ARGO_MAX_DEPTH) -> int:
    """Index of the deepest level whose depth is at most ``max_depth`` (0 if none is)."""
    depth = np.asarray(depth, dtype=float)
    return max(int(np.searchsorted(depth, max_depth, side="right")) - 1, 0)


def sample_profiles(
    ds: xr.Dataset,
    variable: str,
    coverage: float,
    *,
    seed: int,
    times: Sequence | np.ndarray | None = None,
    max_depth: float = ARGO_MAX_DEPTH,
) -> pd.DataFrame:
    """Argo-like observations of ``ds[variable]``: whole profiles at random ocean columns.

    At each time, columns are drawn without replacement among those that are ocean at the
    surface, and each gives one profile: the store's values from the top level down to the
    profile bottom level (:func:`bottom_level` of ``max_depth``), stopping at the first
    non-ocean cell, at the cell centre's latitude/longitude and the level's depth. See the
    module docstring for exactly what ``coverage`` counts.

    Args:
      ds: a store in the schema (dims time, depth, latitude, longitude; NaN over land).
      variable: the variable to observe, e.g. ``sea_water_potential_temperature``.
      coverage: the share of the sampled levels' ocean points to observe, in (0, 1];
        Argo-like is 0.01-0.10.
      seed: seeds the draw (the same seed, store and times give the same table).
      times: the times to sample (each in ``ds.time``); all of them if None.
      max_depth: the deepest depth a profile reaches (m).

    Returns:
      The observation table, ordered by time, profile and depth; profile ids count from 0
      across all times. Extra int columns ``time_index``, ``depth_index``, ``lat_index``,
      ``lon_index`` give each row's cell in ``ds`` (``time_index`` into ``ds.time``).
      ``table.attrs`` holds ``coverage`` (requested) and ``achieved_coverage`` (per time).
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage {coverage} is not in (0, 1]")
    all_times = ds[schema.TIME].to_numpy()
    if times is not None:
        ds = ds.sel({schema.TIME: np.asarray(times, dtype=all_times.dtype)})
    time_index = np.searchsorted(all_times, ds[schema.TIME].to_numpy())
    ocean = ocean_points(ds, variable)
    depth = ds[schema.DEPTH].to_numpy().astype("float64")
    kmax = bottom_level(depth, max_depth)
    lat, lon = ds[schema.LATITUDE].to_numpy(), ds[schema.LONGITUDE].to_numpy()
    rng = np.random.default_rng(seed)
    frames, achieved, next_id = [], [], 0
    for t in range(ds.sizes[schema.TIME]):
        ocean_t = ocean.isel({schema.TIME: t}).to_numpy()[: kmax + 1]  # [level, lat, lon]
        total = int(ocean_t.sum())
        # A column's profile: the levels from the surface down while every cell is ocean.
        reach = np.cumprod(ocean_t, axis=0).astype(bool).reshape(kmax + 1, -1)
        lengths = reach.sum(axis=0)
        columns = rng.permutation(np.flatnonzero(lengths > 0))
        cum = np.concatenate([[0], np.cumsum(lengths[columns])])
        n = int(np.argmin(np.abs(cum - coverage * total)))  # nearest count of whole profiles
        chosen = columns[:n]
        achieved.append(float(cum[n]) / total if total else 0.0)
        if not n:
            continue
        p, k = np.nonzero(reach[:, chosen].T)  # ordered by profile, then depth
        jj, ii = np.unravel_index(chosen[p], ocean_t.shape[1:])
        field = ds[variable].isel({schema.TIME: t}).to_numpy()
        frames.append(
            pd.DataFrame(
                {
                    PROFILE: next_id + p,
                    schema.TIME: np.repeat(ds[schema.TIME].to_numpy()[t], len(p)),
                    schema.LATITUDE: lat[jj].astype("float64"),
                    schema.LONGITUDE: lon[ii].astype("float64"),
                    schema.DEPTH: depth[k],
                    VALUE: field[k, jj, ii].astype("float64"),
                    VARIABLE: variable,
                    "time_index": np.full(len(p), time_index[t]),
                    "depth_index": k,
                    "lat_index": jj,
                    "lon_index": ii,
                }
            )
        )
        next_id += n
    table = pd.concat(frames, ignore_index=True) if frames else empty_table()
    table = validate_table(table, source=f"profiles of {variable}")
    table.attrs = {
        "coverage": float(coverage),
        "achieved_coverage": achieved,
        "max_depth": float(max_depth),
        "seed": int(seed),
    }
    return table


def split(
    table: pd.DataFrame, withheld_fraction: float, *, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Splits ``table`` by whole profile into guidance and withheld check points.

    At each time, ``round(withheld_fraction * n)`` of its ``n`` profiles are withheld
    (drawn at random), so every time keeps both kinds where it has enough profiles; a
    profile is never split between the two. The share of *points* withheld equals the
    fraction only where the profiles are equally long.

    Args:
      table: an observation table.
      withheld_fraction: the share of each time's profiles to withhold, in [0, 1].
      seed: seeds the draw.

    Returns:
      ``(guidance, withheld)``: two tables with the rows of ``table``, in its order.
    """
    if not 0.0 <= withheld_fraction <= 1.0:
        raise ValueError(f"withheld_fraction {withheld_fraction} is not in [0, 1]")
    rng = np.random.default_rng(seed)
    withheld_ids = []
    for _, group in table.groupby(schema.TIME, sort=True):
        ids = np.unique(group[PROFILE].to_numpy())
        n = round(withheld_fraction * len(ids))
        withheld_ids.append(rng.choice(ids, size=n, replace=False))
    ids = np.concatenate(withheld_ids) if withheld_ids else np.array([], dtype="int64")
    out = table[PROFILE].isin(ids).to_numpy()
    guidance, withheld = table[~out].copy(), table[out].copy()
    guidance.attrs, withheld.attrs = dict(table.attrs), dict(table.attrs)
    return guidance, withheld
