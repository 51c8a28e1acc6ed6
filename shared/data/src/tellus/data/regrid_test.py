"""Tests of regridding a curvilinear grid made here (tellus.data.mock.rotated_grid: a sheared
grid whose pole is moved to 40 N, 70 E, longitudes 73..433 as ORCA's), against an analytic
field, an independent brute-force nearest-neighbour search and pyinterp's own IDW.

The field is ``s = a . x`` (``x`` the point on the unit sphere), for which a tolerance can be
derived instead of guessed: IDW returns a convex combination of its neighbours' values, so
its error at a target ``x`` is at most ``max_n |s(x_n) - s(x)| <= |a| * max_n |x_n - x|``,
``|a|`` times the chord to the farthest neighbour it used. Every target cell is checked
against its own bound, and the errors must shrink when the source grid is refined.
"""

from __future__ import annotations

import dask.array
import numpy as np
import pyinterp
import pyinterp.rtree
import pytest
import scipy.spatial
import xarray as xr
from pyinterp.geometry.geographic import Spheroid

from tellus.data import mock, regrid
from tellus.data.errors import SchemaError

A = np.linalg.norm(mock.CURVILINEAR_SIGNAL)


def _source(step: float = 5.0, *, land: bool = False, relabel=None) -> xr.Dataset:
    """``zos`` = the signal on the rotated grid (NaN over the mock's land if ``land``), its
    longitudes ``relabel(lon)`` (the same meridians, another convention) if given."""
    lat, lon = mock.rotated_grid(step)
    s = mock.curvilinear_signal(lat, lon)
    if land:
        s = np.where(mock.curvilinear_land(lat, lon), np.nan, s)
    return xr.Dataset(
        {"zos": (("j", "i"), s, {"units": "m", "coordinates": "lat lon"})},
        coords={"lat": (("j", "i"), lat), "lon": (("j", "i"), relabel(lon) if relabel else lon)},
    )


def _unit(lat, lon) -> np.ndarray:
    return regrid._unit_vectors(np.asarray(lat, float), np.asarray(lon, float))


def _target(out: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(out.latitude.values, out.longitude.values, indexing="ij")


def _neighbours(src: xr.Dataset, out: xr.Dataset, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Without pyinterp (scipy's k-d tree on the unit sphere): chords to the k nearest source
    points of each target cell, ascending, and their flat indices, shape [target, k]."""
    x = _unit(src.lat.values, src.lon.values).reshape(-1, 3)
    chord, index = scipy.spatial.cKDTree(x).query(_unit(*_target(out)).reshape(-1, 3), k=k)
    return chord.reshape(-1, k), index.reshape(-1, k)


def test_idw_is_within_the_analytic_bound_and_converges():
    errors = {}
    for step in (5.0, 2.5):
        src = _source(step)
        out = regrid.regrid(src, regrid.Regridding(resolution=5.0))
        assert out.zos.shape == (36, 72)
        truth = mock.curvilinear_signal(*_target(out))
        err = np.abs(out.zos.values - truth)
        chords, _ = _neighbours(src, out, 8)
        bound = A * chords[:, -1].reshape(err.shape)
        assert np.all(err <= bound + 1e-9), float(np.max(err - bound))
        errors[step] = float(err.max())
    # Measured: 0.027 on the 5-degree source, 0.013 on the 2.5-degree one (the signal spans
    # -1.04..1.04): first order in the source spacing, as IDW is.
    assert errors[5.0] < 0.04
    assert errors[2.5] < 0.65 * errors[5.0]


def test_idw_equals_pyinterps_inverse_distance_weighting():
    src = _source(5.0)
    out = regrid.regrid(src, regrid.Regridding(resolution=10.0, neighbours=6, power=2))
    tree = pyinterp.RTree3D(spheroid=Spheroid(regrid.EARTH_RADIUS_KM * 1e3, 0.0))
    lat, lon = src.lat.values.ravel(), src.lon.values.ravel()
    tree.packing(np.column_stack([lon, lat, 0 * lat]), src.zos.values.ravel())
    tlat, tlon = _target(out)
    theirs, counts = pyinterp.rtree.inverse_distance_weighting(
        tree, np.column_stack([tlon.ravel(), tlat.ravel(), 0 * tlat.ravel()]), k=6, p=2
    )
    assert np.all(counts == 6)
    np.testing.assert_allclose(out.zos.values.ravel(), theirs, rtol=0, atol=1e-12)


def test_nearest_is_the_value_of_the_nearest_source_point():
    src = _source(5.0)
    out = regrid.regrid(src, regrid.Regridding(method="nearest"))
    _, index = _neighbours(src, out, 1)
    np.testing.assert_array_equal(out.zos.values.ravel(), src.zos.values.ravel()[index[:, 0]])
    assert out.attrs["regrid_method"] == "nearest" and out.attrs["regrid_neighbours"] == 1
    assert "regrid_power" not in out.attrs


def test_land_never_bleeds_and_the_mask_follows_the_nearest_point():
    # An offset makes land visible: treating NaN as 0 would pull coastal values to 0.
    src = _source(5.0, land=True)
    src["zos"] = src.zos + 10.0
    out = regrid.regrid(src)
    land = np.isnan(src.zos.values).ravel()
    chords, index = _neighbours(src, out, 8)
    ocean = ~land[index[:, 0]]
    mask = out.ocean_mask.values.ravel()
    np.testing.assert_array_equal(mask, ocean.astype(np.float32))
    values = out.zos.values.ravel()
    assert np.all(np.isnan(values[~ocean])) and np.all(np.isfinite(values[ocean]))
    # Coastal cells (some of the 8 neighbours on land) are within the bound of their ocean
    # neighbours alone.
    used = np.where(land[index], 0.0, chords)
    truth = 10.0 + mock.curvilinear_signal(*_target(out)).ravel()
    coastal = ocean & land[index].any(axis=1)
    assert coastal.sum() > 20
    err = np.abs(values - truth)[ocean]
    assert np.all(err <= A * used.max(axis=1)[ocean] + 1e-9)
    # The continent's centre (10 N, 100 E) and the far south are land; the Pacific is ocean.
    cell = out.ocean_mask.sel(latitude=12.5, longitude=102.5)
    assert float(cell) == 0.0 and float(out.ocean_mask.sel(latitude=-87.5).max()) == 0.0
    assert float(out.ocean_mask.sel(latitude=2.5, longitude=202.5)) == 1.0
    assert out.ocean_mask.attrs["units"] == "1"


def test_each_depth_keeps_its_own_land():
    src = mock.mock_curvilinear_ocean(months=2, deeper_land=15.0)
    out = regrid.regrid(src)
    theta = out.thetao
    assert theta.dims == ("time", "lev", "latitude", "longitude")
    top, deep = np.isnan(theta.isel(time=0, lev=0)), np.isnan(theta.isel(time=0, lev=1))
    assert int(deep.sum()) > int(top.sum()) and bool((deep | ~top).all())
    # The mask is by level: the surface's ocean at the top, the narrower deep ocean below.
    assert out.ocean_mask.dims == ("lev", "latitude", "longitude")
    np.testing.assert_array_equal(out.ocean_mask.values[0], (~top).values.astype(np.float32))
    np.testing.assert_array_equal(out.ocean_mask.values[1], (~deep).values.astype(np.float32))
    # Land that does not widen with depth keeps the 2-D mask.
    assert regrid.regrid(mock.mock_curvilinear_ocean(months=1)).ocean_mask.dims == (
        "latitude",
        "longitude",
    )
    # The monthly ramp of 0.1 degC comes through each slice unchanged.
    np.testing.assert_allclose(
        (theta.isel(time=1, lev=1) - theta.isel(time=0, lev=1)).values[~deep.values],
        0.1,
        atol=1e-5,
    )
    assert theta.attrs["units"] == "degC" and "time_bnds" not in out and "lev_bnds" not in out


def test_longitude_conventions_give_the_same_grid_and_values():
    conventions = [
        None,  # 73..433, as ORCA's
        lambda lon: np.mod(lon + 180.0, 360.0) - 180.0,  # -180..180
        lambda lon: np.mod(lon, 360.0),  # 0..360
        lambda lon: lon - 720.0,  # -647..-287
    ]
    outs = [regrid.regrid(_source(5.0, land=True, relabel=f)) for f in conventions]
    lon = outs[0].longitude.values
    assert lon[0] == 2.5 and lon[-1] == 357.5 and np.all(np.diff(lon) > 0)
    assert np.all(np.diff(outs[0].latitude.values) > 0)
    for other in outs[1:]:
        np.testing.assert_allclose(other.zos.values, outs[0].zos.values, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(other.ocean_mask.values, outs[0].ocean_mask.values)


def test_lazy_input_stays_lazy_and_gives_the_same_values(monkeypatch):
    src = mock.mock_curvilinear_ocean(months=3)
    eager = regrid.regrid(src)
    lazy = regrid.regrid(src.chunk(time=1))
    assert isinstance(lazy.thetao.data, dask.array.Array)
    assert lazy.thetao.chunks[0] == (1, 1, 1)
    xr.testing.assert_identical(lazy.compute(), eager)
    monkeypatch.setattr(regrid, "_GROUP_VALUES", 1)  # one slice at a time
    xr.testing.assert_identical(regrid.regrid(src), eager)


def test_attributes_record_method_parameters_and_grids():
    out = regrid.regrid(_source(5.0), regrid.Regridding(resolution=10.0, radius_km=2000.0))
    assert out.attrs["regrid_method"] == "idw"
    assert out.attrs["regrid_neighbours"] == 8 and out.attrs["regrid_power"] == 2
    assert out.attrs["regrid_radius_km"] == 2000.0
    assert out.attrs["regrid_source_grid"].startswith("curvilinear 36x72 (dims j, i; coords lat")
    assert out.attrs["regrid_target_grid"].startswith("regular 10 deg, 18x36 cell centres")
    assert out.attrs["regrid_library"].startswith(f"pyinterp {pyinterp.__version__}")
    assert "coordinates" not in out.zos.attrs and out.zos.attrs["units"] == "m"
    assert set(regrid.ATTRS) == set(out.attrs)
    # The default resolution is the source's: 5 deg from a rotated 5-degree grid.
    assert regrid.default_resolution(regrid.find_curvilinear(_source(5.0))) == 5.0


def test_a_radius_leaves_cells_beyond_a_regional_source_empty():
    src = _source(5.0).isel(j=slice(20, None))  # the rotated grid's northern cap only
    out = regrid.regrid(src, regrid.Regridding(radius_km=400.0))
    chord, _ = _neighbours(src, out, 1)
    nearest_km = chord[:, 0] * regrid.EARTH_RADIUS_KM
    reached = out.ocean_mask.values.ravel() == 1.0
    assert reached.any() and not reached.all()
    assert np.all(nearest_km[reached] < 401.0) and np.all(nearest_km[~reached] > 399.0)


def test_nemo_names_are_found():
    lat, lon = mock.rotated_grid(10.0)
    ds = xr.Dataset(
        {"sst": (("time_counter", "y", "x"), np.ones((1, *lat.shape)))},
        coords={"nav_lat": (("y", "x"), lat), "nav_lon": (("y", "x"), lon)},
    )
    grid = regrid.find_curvilinear(ds)
    assert grid.dims == ("y", "x") and (grid.lat_name, grid.lon_name) == ("nav_lat", "nav_lon")
    assert regrid.regrid(ds).sst.dims == ("time_counter", "latitude", "longitude")
    assert regrid.find_curvilinear(mock.mock_ocean()) is None


def test_inconsistent_coordinates_are_errors():
    src = _source(10.0)
    lon = src.lon.values
    with pytest.raises(SchemaError, match=r"coords 'lat' \('j', 'i'\) \(18, 36\) and 'lon' "):
        regrid.find_curvilinear(src.assign_coords(lon=(("jj", "ii"), lon[:-1, :-1])))
    with pytest.raises(SchemaError, match=r"coord 'lat' is 2-D .* but the longitude \['lon'\]"):
        regrid.find_curvilinear(src.assign_coords(lon=("i", lon[0])))
    with pytest.raises(SchemaError, match=r"coord 'lat' spans .*; expected degrees within"):
        regrid.find_curvilinear(src.assign_coords(lat=src.lat * 2))
    bad = src.assign(row=("i", np.zeros(36)))
    with pytest.raises(SchemaError, match=r"variable 'row' has dims \('i',\): only 'i'"):
        regrid.regrid(bad)
    transposed = src.assign_coords(lon=(("i", "j"), lon.T))
    np.testing.assert_array_equal(regrid.regrid(transposed).zos, regrid.regrid(src).zos)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "spline"}, "regrid method 'spline' is unknown; expected one of idw, nearest"),
        ({"resolution": 0.0}, "grid resolution must be a positive number of degrees, got 0.0"),
        ({"resolution": -1.0}, "grid resolution must be a positive number of degrees"),
        ({"resolution": 0.7}, "grid resolution 0.7 deg does not divide 180 deg"),
        ({"neighbours": 0}, "neighbours must be a positive integer"),
        ({"radius_km": -5.0}, "radius_km must be a positive number of km"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        regrid.Regridding(**options)
