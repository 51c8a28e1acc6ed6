"""Tests of the point baselines: the climatology's fitting months, the sphere (0 and 360 deg
meet), GP optimal interpolation against nearest neighbour on a smooth analytic field, and
the full-field layout (NaN over land, climatology where nothing is observed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.evaluation import point_baselines as pb

DIMS = ("time", "depth", "latitude", "longitude")


def _grid(lat, lon, times, depth=(10.0,)) -> dict:
    return {
        "time": pd.DatetimeIndex(times).values,
        "depth": list(depth),
        "latitude": lat,
        "longitude": lon,
    }


def _obs(values: np.ndarray, mask: np.ndarray, coords: dict) -> xr.Dataset:
    return xr.Dataset(
        {"value": (DIMS, np.where(mask, values, np.nan)), "mask": (DIMS, mask)}, coords=coords
    )


def test_climatology_uses_only_the_fitting_months():
    times = pd.date_range("2000-01-01", periods=24, freq="MS")
    coords = _grid([0.0], [0.0, 180.0], times)
    values = np.arange(24.0)[:, None, None, None] * np.ones((24, 1, 1, 2))
    values[12:] = 1e6  # the second year must not reach a climatology of the first
    truth = xr.DataArray(values, dims=DIMS, coords=coords)
    clim = pb.fit_climatology(truth, times[:12])
    np.testing.assert_array_equal(clim.month, np.arange(1, 13))
    np.testing.assert_array_equal(clim.isel(depth=0, latitude=0, longitude=1), np.arange(12.0))
    field = pb.climatology_field(clim, times[12:15])
    np.testing.assert_array_equal(field.isel(depth=0, latitude=0, longitude=0), [0.0, 1.0, 2.0])
    assert field.dims == DIMS and list(field.time.values) == list(times[12:15].values)
    # Two Januaries and one February fitted: the means of what was given, nothing else.
    clim = pb.fit_climatology(truth.where(truth < 1e5, 100.0), times[[0, 1, 12]])
    np.testing.assert_array_equal(clim.isel(depth=0, latitude=0, longitude=0), [50.0, 1.0])
    with pytest.raises(ValueError, match=r"calendar month\(s\) \[3\] were not among"):
        pb.climatology_field(clim, times[2:3])


def test_the_sphere_kernel_joins_0_and_360():
    k = pb.sphere_kernel()
    origin = pb.unit_vectors([0.0], [0.0])
    west, east, far = (pb.unit_vectors([0.0], [x]) for x in (359.5, 0.5, 3.0))
    assert k(origin, west)[0, 0] == pytest.approx(k(origin, east)[0, 0])
    assert k(origin, west)[0, 0] > k(origin, far)[0, 0]
    # The chord between points half a degree apart is 2 sin(0.25 deg).
    assert np.linalg.norm(origin - west) == pytest.approx(2 * np.sin(np.radians(0.25)))


def test_interpolators_reach_across_the_meridian():
    lat, lon = np.array([-2.0, 0.0, 2.0]), np.arange(1.0, 360.0, 2.0)  # 1, 3, ..., 359
    coords = _grid(lat, lon, ["2001-01-01"])
    mask = np.zeros((1, 1, 3, 180), bool)
    values = np.zeros((1, 1, 3, 180))
    mask[0, 0, 1, 179], values[0, 0, 1, 179] = True, 1.0  # lon 359
    mask[0, 0, 1, 89], values[0, 0, 1, 89] = True, -1.0  # lon 179
    obs = _obs(values, mask, coords)
    background = xr.DataArray(np.zeros((1, 1, 3, 180)), dims=DIMS, coords=coords)
    nn = pb.nearest_neighbour(obs, background).isel(time=0, depth=0)
    assert float(nn.sel(latitude=0.0, longitude=1.0)) == 1.0  # 2 deg east of lon 359
    assert float(nn.sel(latitude=0.0, longitude=91.0)) == -1.0
    kernels = pb.GPKernels((pb.sphere_kernel(1.0, 0.1),), np.array([10.0]), ())
    gp = pb.gp_interpolation(obs, background, kernels).isel(time=0, depth=0).sel(latitude=0.0)
    # Symmetric about lon 359: lon 1 is as close to it as lon 357.
    assert float(gp.sel(longitude=1.0)) == pytest.approx(float(gp.sel(longitude=357.0)))
    assert float(gp.sel(longitude=1.0)) > 0.5


def _smooth(lat, lon, a, b):
    """``a . x + (b . x)^2`` on the unit sphere: smooth everywhere, 0 and 360 included."""
    x = pb.unit_vectors(*np.meshgrid(lat, lon, indexing="ij"))
    return x @ a + (x @ b) ** 2


def test_gp_recovers_a_smooth_field_better_than_nearest_neighbour():
    rng = np.random.default_rng(0)
    lat, lon = -57.0 + 6.0 * np.arange(20), 4.5 + 9.0 * np.arange(40)
    coords = _grid(lat, lon, ["2002-01-01", "2002-02-01"])
    land = np.zeros((20, 40), bool)
    land[5:12, 10:14] = True
    fields = np.stack([_smooth(lat, lon, rng.normal(size=3), rng.normal(size=3)) for _ in range(2)])
    fields = np.where(land, np.nan, fields)[:, None]  # [time, depth, lat, lon]
    # Hyperparameters from month 0 (the "fitting month"), interpolation on month 1.
    fit = xr.DataArray(fields[:1], dims=DIMS, coords={**coords, "time": coords["time"][:1]})
    kernels = pb.fit_gp_kernels(fit, seed=0, max_points=200)
    test = {**coords, "time": coords["time"][1:]}
    mask = (rng.random((1, 1, 20, 40)) < 0.2) & ~land
    obs = _obs(fields[1:], mask, test)
    background = xr.DataArray(np.where(land, np.nan, 0.0)[None, None], dims=DIMS, coords=test)
    truth = fields[1:]
    unseen = ~mask & ~land
    mse = {}
    for name, f in (
        ("nn", pb.nearest_neighbour(obs, background)),
        ("gp", pb.gp_interpolation(obs, background, kernels)),
    ):
        assert f.dims == DIMS and np.isnan(f.values[0, 0][land]).all()
        assert np.isfinite(f.values[0, 0][~land]).all()
        mse[name] = float(np.mean((f.values - truth)[unseen] ** 2))
    assert mse["gp"] < 0.1 * mse["nn"]


def test_levels_without_observations_are_the_climatology():
    lat, lon = np.array([0.0, 10.0]), np.array([0.0, 90.0, 180.0, 270.0])
    coords = _grid(lat, lon, ["2003-01-01"], depth=(10.0, 3000.0))
    background = xr.DataArray(np.arange(16.0).reshape(1, 2, 2, 4), dims=DIMS, coords=coords).where(
        lambda x: x != 5.0
    )  # one land cell at the top level
    mask = np.zeros((1, 2, 2, 4), bool)
    mask[0, 0, 0, 0] = True
    obs = _obs(np.full((1, 2, 2, 4), 3.0), mask, coords)  # anomaly +3 at (0, 0)
    kernels = pb.GPKernels((pb.sphere_kernel(),) * 2, np.array([10.0, 3000.0]), ())
    for f in (pb.nearest_neighbour(obs, background), pb.gp_interpolation(obs, background, kernels)):
        np.testing.assert_array_equal(f.isel(depth=1), background.isel(depth=1))
        assert np.isnan(float(f[0, 0, 1, 1]))
    np.testing.assert_array_equal(
        pb.nearest_neighbour(obs, background).isel(depth=0).fillna(-1),
        (background.isel(depth=0) + 3.0).fillna(-1),
    )
