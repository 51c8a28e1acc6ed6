"""Curvilinear (tripolar, rotated-pole) ocean grids regridded onto a regular lat-lon grid.

CMIP6 ocean output (``thetao(time, lev, j, i)`` with ``latitude(j, i)``, ``longitude(j, i)``)
and NEMO or ORAS5 files (``nav_lat(y, x)``, ``nav_lon(y, x)``) live on curvilinear grids: the
latitude and longitude of each point are 2-D arrays, longitudes may run past 360 (ORCA's
73..433) or lie in -180..180, and land points hold NaN (the ``_FillValue`` xarray decodes).
:func:`find_curvilinear` finds such a grid and :func:`regrid` interpolates every field that
lies on it, per time and depth slice, onto a regular grid (latitude ascending, longitude in
[0, 360), cell centres) without loading it: the result is as lazy (dask) as the input.

**Method.** Source points are placed in pyinterp's ``RTree3D`` (a maintained R*-tree that
converts longitude/latitude to Earth-centred coordinates, so every longitude convention and
the grid's seams are the same to it), on a sphere of the Earth's mean radius as ocean models
define their grids, and each target cell centre asks it for its ``neighbours`` nearest
source points within ``radius_km`` (distances are chords, which order points as great-circle
distances do):

* ``idw`` (the default): inverse distance weighting, weights ``1 / d**power`` over those
  neighbours (``power`` 2; a neighbour at distance 0 takes all the weight), as pyinterp's
  ``inverse_distance_weighting`` weighs the same neighbours. It is a convex combination of
  nearby ocean values, so it never overshoots and needs no parameter fitted to the field.
* ``nearest``: the value of the nearest source point.

pyinterp's radial basis functions over the same neighbours are not offered: without a
polynomial term they were less accurate than ``idw`` on a smooth field and overshoot where
the neighbours are few. Kriging needs a covariance model fitted to each field.

The weights depend on the grids alone, so the neighbour search runs once and every slice is
one sparse matrix product (scipy). pyinterp's own ``inverse_distance_weighting`` takes the
values together with the points: it would rebuild the tree and repeat the search for each of
the (time x depth) slices, and a tree holds one set of points, not the land of each slice.

**Land.** A source point whose value is NaN is land in that slice (so deeper levels have
more land). Land gets no weight (a coastal cell averages the ocean points among its
neighbours), and a target cell is land (NaN) where its *nearest* source point is land or
lies farther than ``radius_km``: land never bleeds into the ocean, and the coastline stays
where the source grid has it instead of creeping seaward or landward with the number of
neighbours. The static variable ``ocean_mask`` (1 ocean, 0 land) marks the
target cells whose nearest source point holds a value in the first time step at any depth.

**Defaults.** The target resolution is the median over source cells of their longer side
(degrees of arc), rounded on a log scale to the nearest of :data:`RESOLUTIONS` (a rotated
5-degree grid gives 5 deg: its cells' longer sides are 5 deg however the pole is turned).
The radius is twice the 99th percentile of the source cells' diagonals (a percentile, so
that a few bad coordinates do not widen it): a target cell inside the source's coverage
always finds its neighbours, one beyond the edge of a regional source does not. The target
grid is global; beyond a regional source it is land.

The method, its parameters and both grids are recorded in the dataset attributes
(:data:`ATTRS`).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Hashable

import numpy as np
import pyinterp
import pyinterp.rtree
import scipy.sparse
import xarray as xr
from pyinterp.geometry.geographic import Spheroid

from tellus.data import schema
from tellus.data.errors import SchemaError

METHODS: tuple[str, ...] = ("idw", "nearest")
# Default target resolutions (degrees); each divides 180.
RESOLUTIONS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
OCEAN_MASK = "ocean_mask"

# The dataset attributes this module writes.
ATTRS = (
    "regrid_method",
    "regrid_neighbours",
    "regrid_power",
    "regrid_radius_km",
    "regrid_source_grid",
    "regrid_target_grid",
    "regrid_library",
    "regrid_land",
)
LAND_RULE = (
    "source points that are NaN are land and get no weight; a target cell whose nearest "
    "source point is land, or farther than regrid_radius_km, is NaN (0 in ocean_mask)"
)
EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
# Source variable attributes that describe the source grid and no longer hold.
_GRID_ATTRS = ("coordinates", "cell_measures")


@dataclasses.dataclass(frozen=True)
class Regridding:
    """How to regrid a curvilinear source (see the module docstring).

    Attributes:
      method: ``idw`` or ``nearest``.
      resolution: target grid spacing in degrees (must divide 180); None derives it from
        the source grid.
      neighbours: source points each target cell weighs (``idw``); ``nearest`` uses 1.
      power: the exponent of the inverse distance (``idw``).
      radius_km: the farthest a source point may be from a target cell; None derives it
        from the source grid.
    """

    method: str = "idw"
    resolution: float | None = None
    neighbours: int = 8
    power: int = 2
    radius_km: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"regrid method {self.method!r} is unknown; expected one of {', '.join(METHODS)}"
            )
        if self.resolution is not None:
            check_resolution(self.resolution)
        if not isinstance(self.neighbours, int) or self.neighbours < 1:
            raise ValueError(f"neighbours must be a positive integer, got {self.neighbours!r}")
        if not isinstance(self.power, int) or self.power < 1:
            raise ValueError(f"power must be a positive integer, got {self.power!r}")
        if self.radius_km is not None and not (np.isfinite(self.radius_km) and self.radius_km > 0):
            raise ValueError(f"radius_km must be a positive number of km, got {self.radius_km!r}")


def check_resolution(resolution: float) -> float:
    """``resolution`` (degrees) if a regular global grid can have it; else a ValueError."""
    if not (np.isfinite(resolution) and resolution > 0):
        raise ValueError(f"grid resolution must be a positive number of degrees, got {resolution}")
    n = round(180.0 / resolution)
    if n < 1 or abs(n * resolution - 180.0) > 1e-6:
        raise ValueError(
            f"grid resolution {resolution:g} deg does not divide 180 deg; expected a spacing "
            "such as 0.25, 0.5, 1, 1.5 or 2"
        )
    return float(resolution)


@dataclasses.dataclass(frozen=True)
class CurvilinearGrid:
    """A source grid with 2-D latitude and longitude.

    Attributes:
      dims: the two horizontal dims, in the order of ``lat`` and ``lon`` (``("j", "i")``).
      lat_name, lon_name: the coordinate (or variable) names in the source.
      lat, lon: degrees, shape ``(n_j, n_i)``; NaN where the source gives no position.
    """

    dims: tuple[Hashable, Hashable]
    lat_name: Hashable
    lon_name: Hashable
    lat: np.ndarray
    lon: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.lat.shape  # type: ignore[return-value]

    def describe(self) -> str:
        """One line: shape, dims, coords and ranges (for the attributes and messages)."""
        lat, lon = self.lat[np.isfinite(self.lat)], self.lon[np.isfinite(self.lon)]
        return (
            f"curvilinear {self.shape[0]}x{self.shape[1]} (dims {', '.join(map(str, self.dims))};"
            f" coords {self.lat_name}, {self.lon_name}), latitude {lat.min():g}..{lat.max():g},"
            f" longitude {lon.min():g}..{lon.max():g}"
        )


def _is_coordinate(name: Hashable, var: xr.Variable, axis: str) -> bool:
    """Whether ``var`` is a latitude (``axis='latitude'``) or longitude coordinate."""
    return (
        name == axis
        or schema.DIM_ALIASES.get(str(name)) == axis
        or var.attrs.get("standard_name") == axis
    )


def find_curvilinear(ds: xr.Dataset, *, source: str = "<dataset>") -> CurvilinearGrid | None:
    """The curvilinear grid of ``ds``, or None if its latitude and longitude are not 2-D.

    Latitude and longitude are found by name (``lat``, ``latitude``, ``nav_lat``, ... as in
    :data:`tellus.data.schema.DIM_ALIASES`) or by their CF ``standard_name``, among the
    coordinates and data variables.

    Raises:
      SchemaError: a 2-D latitude without a 2-D longitude on the same dims (or the other way
        round), two candidates for one of them, or latitudes outside [-90, 90].
    """
    found: dict[str, list[Hashable]] = {}
    for axis in (schema.LATITUDE, schema.LONGITUDE):
        found[axis] = [
            n for n, v in ds.variables.items() if v.ndim == 2 and _is_coordinate(n, v, axis)
        ]
    lats, lons = found[schema.LATITUDE], found[schema.LONGITUDE]
    if not lats and not lons:
        return None
    for axis, names in found.items():
        if len(names) > 1:
            raise SchemaError(
                f"{source}: 2-D coords {[str(n) for n in names]} all mean {axis!r}; expected one"
            )
    if not lats or not lons:
        have, axis = (lats[0], schema.LONGITUDE) if lats else (lons[0], schema.LATITUDE)
        others = [str(n) for n, v in ds.variables.items() if _is_coordinate(n, v, axis)]
        raise SchemaError(
            f"{source}: coord {str(have)!r} is 2-D {ds[have].dims} but the {axis} "
            f"{others or 'coordinate'} is not; expected both 2-D on the same dims"
        )
    lat_name, lon_name = lats[0], lons[0]
    lat, lon = ds[lat_name], ds[lon_name]
    if set(lat.dims) != set(lon.dims):
        raise SchemaError(
            f"{source}: coords {str(lat_name)!r} {lat.dims} {lat.shape} and {str(lon_name)!r} "
            f"{lon.dims} {lon.shape} are on different dims; expected both on the same two dims"
        )
    lon = lon.transpose(*lat.dims)
    lat_values = np.asarray(lat.values, dtype=np.float64)
    lon_values = np.asarray(lon.values, dtype=np.float64)
    unknown = ~(np.isfinite(lat_values) & np.isfinite(lon_values))
    lat_values[unknown] = np.nan
    lon_values[unknown] = np.nan
    if unknown.all():
        raise SchemaError(f"{source}: coords {str(lat_name)!r} and {str(lon_name)!r} are all NaN")
    if np.nanmax(np.abs(lat_values)) > 90.0:
        raise SchemaError(
            f"{source}: coord {str(lat_name)!r} spans {np.nanmin(lat_values):g}.."
            f"{np.nanmax(lat_values):g}; expected degrees within [-90, 90]"
        )
    return CurvilinearGrid(
        dims=(lat.dims[0], lat.dims[1]),
        lat_name=lat_name,
        lon_name=lon_name,
        lat=lat_values,
        lon=lon_values,
    )


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the unit sphere, shape ``lat.shape + (3,)``."""
    phi, lam = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)


def _arc_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle angle between unit vectors ``a`` and ``b`` (degrees)."""
    chord = np.linalg.norm(a - b, axis=-1)
    return np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)))


def _cell_sides(grid: CurvilinearGrid) -> tuple[np.ndarray, np.ndarray]:
    """Longer side and longer diagonal of each source cell (degrees of arc; NaN if unknown)."""
    x = _unit_vectors(grid.lat, grid.lon)
    if min(grid.shape) < 2:
        raise SchemaError(
            f"curvilinear grid {grid.describe()} has fewer than 2 points along a dim; expected "
            "a 2-D grid"
        )
    c00, c01, c10, c11 = x[:-1, :-1], x[:-1, 1:], x[1:, :-1], x[1:, 1:]
    sides = np.fmax(
        np.fmax(_arc_degrees(c00, c01), _arc_degrees(c10, c11)),
        np.fmax(_arc_degrees(c00, c10), _arc_degrees(c01, c11)),
    )
    diagonals = np.fmax(_arc_degrees(c00, c11), _arc_degrees(c01, c10))
    return sides, diagonals


def default_resolution(grid: CurvilinearGrid) -> float:
    """The target resolution derived from the source grid (see the module docstring)."""
    sides, _ = _cell_sides(grid)
    typical = float(np.nanmedian(sides))
    return min(RESOLUTIONS, key=lambda r: abs(np.log(r / typical)))


def default_radius_km(grid: CurvilinearGrid) -> float:
    """Twice the 99th percentile of the source cells' diagonals, in km."""
    _, diagonals = _cell_sides(grid)
    return float(2.0 * np.nanpercentile(diagonals, 99.0) * np.pi / 180.0 * EARTH_RADIUS_KM)


def target_axes(resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes (ascending) and longitudes (in [0, 360)) of a global grid."""
    n = round(180.0 / check_resolution(resolution))
    lat = np.round(-90.0 + resolution * (np.arange(n) + 0.5), 10)
    lon = np.round(resolution * (np.arange(2 * n) + 0.5), 10)
    return lat, lon


def _tree(lat: np.ndarray, lon: np.ndarray, values: np.ndarray) -> pyinterp.RTree3D:
    """pyinterp's R*-tree of points on the Earth's sphere holding ``values``."""
    tree = pyinterp.RTree3D(spheroid=Spheroid(EARTH_RADIUS_KM * 1e3, 0.0))
    tree.packing(np.column_stack([lon, lat, np.zeros_like(lat)]), values)
    return tree


class _Regridder:
    """The interpolation from one source grid to one target grid (any number of slices)."""

    def __init__(
        self, grid: CurvilinearGrid, lat: np.ndarray, lon: np.ndarray, options: Regridding
    ):
        self.grid = grid
        self.options = options
        self._token = uuid.uuid4().hex
        self.radius_km = options.radius_km or default_radius_km(grid)
        self.target_shape = (lat.size, lon.size)
        tlon, tlat = np.meshgrid(lon, lat)
        self.targets = np.column_stack([tlon.ravel(), tlat.ravel(), np.zeros(tlat.size)])
        self.known = np.flatnonzero(np.isfinite(grid.lat.ravel()))  # points with a position
        self.src_lat = grid.lat.ravel()[self.known]
        self.src_lon = grid.lon.ravel()[self.known]
        k = 1 if options.method == "nearest" else options.neighbours
        k = min(k, self.known.size)
        tree = _tree(self.src_lat, self.src_lon, np.arange(self.known.size, dtype=np.float64))
        distance, index = pyinterp.rtree.query(tree, self.targets, k=k, radius=self.radius_km * 1e3)
        order = np.argsort(distance, axis=1, kind="stable")  # nearest first, NaN (none) last
        distance = np.take_along_axis(distance, order, 1)
        index = np.take_along_axis(index, order, 1)
        found = np.isfinite(distance)
        self.reach = found[:, 0]  # the nearest source point lies within the radius
        self.nearest = np.where(self.reach, index[:, 0], 0).astype(np.int64)
        if options.method == "nearest":
            weights = found.astype(np.float64)
        else:
            with np.errstate(divide="ignore"):
                weights = np.where(found, 1.0 / np.where(found, distance, 1.0) ** options.power, 0)
            exact = found[:, 0] & (distance[:, 0] == 0.0)
            weights[exact] = 0.0
            weights[exact, 0] = 1.0
        rows = np.repeat(np.arange(distance.shape[0]), k).reshape(-1, k)
        self.weights = scipy.sparse.csr_array(
            (weights[found], (rows[found], index[found].astype(np.int64))),
            shape=(distance.shape[0], self.known.size),
        )

    def __dask_tokenize__(self) -> str:
        """A name for dask's graph, instead of hashing the weights."""
        return self._token

    def ocean(self, source_ocean: np.ndarray) -> np.ndarray:
        """Target cells whose nearest source point is ocean (``source_ocean`` on the grid)."""
        ocean = source_ocean.ravel()[self.known][self.nearest] & self.reach
        return ocean.reshape(self.target_shape)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """``block[..., n_j, n_i]`` -> ``[..., n_lat, n_lon]``, every leading index a slice.

        Slices go through in groups of at most :data:`_GROUP_VALUES` source values, so that
        a block of many depths on a fine grid needs a bounded amount of memory.
        """
        lead = block.shape[:-2]
        flat = block.reshape(-1, block.shape[-2] * block.shape[-1])
        dtype = block.dtype if np.issubdtype(block.dtype, np.floating) else np.dtype(np.float64)
        out = np.empty((flat.shape[0], self.weights.shape[0]), dtype=dtype)
        group = max(1, _GROUP_VALUES // max(self.known.size, 1))
        for start in range(0, flat.shape[0], group):
            values = flat[start : start + group, self.known].astype(np.float64).T  # [point, slice]
            valid = np.isfinite(values)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = (self.weights @ np.where(valid, values, 0.0)) / (
                    self.weights @ valid.astype(np.float64)
                )
            keep = valid[self.nearest] & self.reach[:, None]
            out[start : start + group] = np.where(keep, mean, np.nan).T
        return out.reshape(*lead, *self.target_shape)


# Source values regridded at once (float64: 256 MB, and as much again for the weights' sums).
_GROUP_VALUES = 2**25


def _bounds_names(ds: xr.Dataset) -> set[Hashable]:
    """Variables that CF ``bounds`` attributes name (cell vertices, time bounds)."""
    names = set()
    for var in ds.variables.values():
        for where in (var.attrs, var.encoding):
            if isinstance(where.get("bounds"), str):
                names.add(where["bounds"])
    return names & set(ds.variables)


def regrid(
    ds: xr.Dataset, options: Regridding | None = None, *, source: str = "<dataset>"
) -> xr.Dataset:
    """``ds`` on a regular global grid, lazily (see the module docstring).

    Args:
      ds: a dataset on a curvilinear grid (see :func:`find_curvilinear`); variables on the
        grid may have any leading dims (time, depth, member) and be dask-backed.
      options: method, resolution, neighbours, radius (default :class:`Regridding`).
      source: what to call ``ds`` in error messages and in the attributes.

    Returns:
      The variables on the grid with ``(latitude, longitude)`` in place of the source's two
      dims, variables off the grid unchanged, a static ``ocean_mask`` (with the vertical dim
      where the land at depth is wider than at the surface), and the attributes of
      :data:`ATTRS`. The source's positions, cell bounds and any mask variable are dropped.

    Raises:
      SchemaError: ``ds`` is not on a curvilinear grid (or its coords are inconsistent, see
        :func:`find_curvilinear`), or a variable has only one of the grid's two dims.
    """
    options = options or Regridding()
    grid = find_curvilinear(ds, source=source)
    if grid is None:
        raise SchemaError(f"{source}: no 2-D latitude and longitude; expected a curvilinear grid")
    resolution = options.resolution or default_resolution(grid)
    lat, lon = target_axes(resolution)
    regridder = _Regridder(grid, lat, lon, options)
    mask_names = {OCEAN_MASK, *schema.VARIABLES[OCEAN_MASK].aliases}
    drop = {grid.lat_name, grid.lon_name, *_bounds_names(ds), *mask_names}
    on_grid, source_ocean = {}, np.zeros(grid.shape, dtype=bool)
    by_level: dict[str, tuple[xr.DataArray, np.ndarray]] = {}  # vertical dim: (coord, points)
    for name, da in ds.data_vars.items():
        if name in drop:
            continue
        has = [d for d in grid.dims if d in da.dims]
        if len(has) == 1:
            raise SchemaError(
                f"{source}: variable {str(name)!r} has dims {da.dims}: only {has[0]!r} of the "
                f"grid's {grid.dims}; expected both or neither"
            )
        if has:
            on_grid[name] = _regrid_variable(da, grid, regridder, lat, lon)
            source_ocean |= _ocean_points(da, grid)
            level = _ocean_points_by_level(da, grid)
            if level is not None:
                dim, points = level
                if dim in by_level and by_level[dim][1].shape == points.shape:
                    points = points | by_level[dim][1]
                by_level[dim] = (da[dim] if dim in da.coords else None, points)
    if not on_grid:
        raise SchemaError(f"{source}: no variable lies on the grid {grid.describe()}")
    off_grid = [
        n for n, v in ds.variables.items() if n not in drop and not set(grid.dims) & set(v.dims)
    ]
    out = ds[[n for n in off_grid if n in ds.data_vars]].assign(on_grid)
    out = out.assign_coords({n: ds[n] for n in off_grid if n in ds.coords})
    mask_attrs = {"units": "1", "long_name": schema.VARIABLES[OCEAN_MASK].long_name}
    out[OCEAN_MASK] = xr.DataArray(
        regridder.ocean(source_ocean).astype(np.float32), dims=schema.SPATIAL_DIMS, attrs=mask_attrs
    )
    if len(by_level) == 1:  # One vertical axis: land that grows with depth gets a 3-D mask.
        ((dim, (coord, points)),) = by_level.items()
        levels = np.stack([regridder.ocean(p) for p in points]).astype(np.float32)
        if (levels != levels[:1]).any():
            out[OCEAN_MASK] = xr.DataArray(
                levels,
                dims=(dim, *schema.SPATIAL_DIMS),
                coords=None if coord is None else {dim: coord},
                attrs=mask_attrs | {"comment": f"per {dim}: the sea floor rises above deep levels"},
            )
    out = out.assign_coords(
        {
            schema.LATITUDE: (schema.LATITUDE, lat, {"units": "degrees_north"}),
            schema.LONGITUDE: (schema.LONGITUDE, lon, {"units": "degrees_east"}),
        }
    )
    attrs = {
        "regrid_method": options.method,
        "regrid_neighbours": 1 if options.method == "nearest" else options.neighbours,
        "regrid_radius_km": round(regridder.radius_km, 3),
        "regrid_source_grid": grid.describe(),
        "regrid_target_grid": (
            f"regular {resolution:g} deg, {lat.size}x{lon.size} cell centres, latitude "
            f"{lat[0]:g}..{lat[-1]:g}, longitude {lon[0]:g}..{lon[-1]:g}"
        ),
        "regrid_library": (
            f"pyinterp {pyinterp.__version__} (RTree3D on a sphere of radius {EARTH_RADIUS_KM} km)"
        ),
        "regrid_land": LAND_RULE,
    }
    if options.method == "idw":
        attrs["regrid_power"] = options.power
    return out.assign_attrs(attrs)


def _regrid_variable(
    da: xr.DataArray,
    grid: CurvilinearGrid,
    regridder: _Regridder,
    lat: np.ndarray,
    lon: np.ndarray,
) -> xr.DataArray:
    """One variable through ``regridder``, lazily if it is dask-backed."""
    da = da.drop_vars([c for c in da.coords if set(grid.dims) & set(da[c].dims)])
    if da.chunks is not None:
        da = da.chunk(dict.fromkeys(grid.dims, -1))
    dtype = da.dtype if np.issubdtype(da.dtype, np.floating) else np.dtype(np.float64)
    out = xr.apply_ufunc(
        regridder,
        da,
        input_core_dims=[list(grid.dims)],
        output_core_dims=[list(schema.SPATIAL_DIMS)],
        exclude_dims=set(grid.dims),
        dask="parallelized",
        output_dtypes=[dtype],
        dask_gufunc_kwargs={
            "output_sizes": {schema.LATITUDE: lat.size, schema.LONGITUDE: lon.size}
        },
        keep_attrs=True,
    )
    out.attrs = {k: v for k, v in da.attrs.items() if k not in _GRID_ATTRS}
    return out


def _ocean_points(da: xr.DataArray, grid: CurvilinearGrid) -> np.ndarray:
    """Source points where ``da`` holds a value in its first time step, at any depth."""
    first = da.isel({d: 0 for d in da.dims if d in _TIME_DIMS})
    finite = first.notnull()
    lead = [d for d in finite.dims if d not in grid.dims]
    if lead:
        finite = finite.any(lead)
    return np.asarray(finite.transpose(*grid.dims).values, dtype=bool)


def _ocean_points_by_level(
    da: xr.DataArray, grid: CurvilinearGrid
) -> tuple[str, np.ndarray] | None:
    """``(vertical dim, [level, n_j, n_i])`` source points where ``da`` holds a value in its
    first time step, level by level; None for a variable with no single vertical dim."""
    first = da.isel({d: 0 for d in da.dims if d in _TIME_DIMS})
    lead = [d for d in first.dims if d not in grid.dims]
    if len(lead) != 1:
        return None
    finite = first.notnull().transpose(lead[0], *grid.dims)
    return lead[0], np.asarray(finite.values, dtype=bool)


_TIME_DIMS = {schema.TIME} | {k for k, v in schema.DIM_ALIASES.items() if v == schema.TIME}
