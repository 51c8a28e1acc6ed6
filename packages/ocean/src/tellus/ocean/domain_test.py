"""The ocean domain on a small synthetic store in the schema: its samples, the config the
store implies, and its loss on the loader's batches (shapes only: the loss's numbers are
tested in forecaster_test on the same layout)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from flax import nnx

from tellus.data import schema, sources
from tellus.ocean import domain
from tellus.ocean import forecaster as fc
from tellus.ocean import model as model_lib

LAT, LON, DEPTHS = 7, 12, (5.0, 50.0)
VARIABLES = ("sea_water_potential_temperature", "sea_surface_temperature")


def _store(path) -> str:
    """36 months on a 7 x 12 grid with a land box (NaN in every field)."""
    times = pd.date_range("2001-01-01", periods=36, freq="MS")
    rng = np.random.default_rng(0)
    ocean = np.ones((LAT, LON), bool)
    ocean[:3, :4] = False
    lat = np.linspace(-60.0, 60.0, LAT)
    lon = np.arange(LON) * 30.0

    def field(shape, base, spread):
        x = base + spread * rng.standard_normal(shape)
        return np.where(ocean, x, np.nan).astype(np.float32)

    n = len(times)
    data = {
        "sea_water_potential_temperature": ((n, 2, LAT, LON), 10.0, 2.0),
        "sea_surface_temperature": ((n, LAT, LON), 290.0, 2.0),
        "surface_downward_eastward_stress": ((n, LAT, LON), 0.0, 0.1),
        "surface_downward_northward_stress": ((n, LAT, LON), 0.0, 0.1),
    }
    ds = xr.Dataset(
        {
            name: (
                schema.VARIABLES[name].dims,
                field(*spec),
                {"units": schema.VARIABLES[name].units},
            )
            for name, spec in data.items()
        }
        | {
            "ocean_mask": (schema.SPATIAL_DIMS, ocean.astype(np.float32), {"units": "1"}),
            domain.THICKNESS: ((schema.DEPTH,), np.array([10.0, 80.0]), {"units": "m"}),
        },
        coords={"time": times, "depth": list(DEPTHS), "latitude": lat, "longitude": lon},
    )
    ds["depth"].attrs.update(units="m", positive="down")
    ds.to_zarr(str(path), zarr_format=3, consolidated=False)
    return str(path)


def _net() -> model_lib.NetConfig:
    return model_lib.NetConfig(
        n_lat=LAT,
        n_lon=LON,
        channels=(2, 1),
        trunk=model_lib.fusion_trunk((2, 2), 16, 2, (1, 1), 6),
        dim=8,
        depths=(1, 1),
        heads=(2, 2),
        window=(2, 2),
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("ocean") / "ocean.zarr")


@pytest.fixture(scope="module")
def config(store):
    return domain.make_config(
        store, _net(), ("2001-01", "2002-12"), variables=VARIABLES, leads=(1, 2, 3)
    )


def test_config_from_the_store(store, config):
    ds = xr.open_zarr(store, consolidated=False)
    assert config.depths == DEPTHS and config.thickness == (10.0, 80.0)
    np.testing.assert_allclose(config.latitude, ds.latitude.values)
    # March's mean of theta at 50 m over the ocean of the two training years (not the third).
    train = ds.sel(time=slice("2001-01", "2002-12"))
    march = (
        train["sea_water_potential_temperature"].isel(depth=1).sel(time=train.time.dt.month == 3)
    )
    np.testing.assert_allclose(config.mean[2][1], float(np.nanmean(march.values)), rtol=1e-5)
    sst = train["sea_surface_temperature"].sel(time=train.time.dt.month == 12).values
    np.testing.assert_allclose(config.std[11][2], float(np.nanstd(sst)), rtol=1e-5)
    assert len(config.forcing_mean) == 12 and len(config.forcing_mean[0]) == 2
    assert fc.ForecasterConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"for a 8 x 12 grid; .* is 7 x 12"):
        domain.make_config(store, dataclasses.replace(_net(), n_lat=8), ("2001", "2002"))


def test_samples_and_the_loss_on_their_batches(store, config):
    train = domain.samples(store, config, sources.DateRange("2001-01-01", "2003-01-01"))
    assert len(train) == 24 - 3  # every init whose three leads lie in the range
    s = train[4]  # initial month 2001-05
    assert int(s["month"]) == 5
    assert s["inputs"].shape == (1, LAT, LON, 3) and s["targets"].shape == (3, LAT, LON, 3)
    assert s["forcings"].shape == (4, LAT, LON, 2) and s["statics"].shape == (LAT, LON, 1)
    assert np.isnan(s["inputs"][0, 0, 0]).all() and np.isfinite(s["inputs"][0, -1, -1]).all()
    assert repr(train) == "Samples('ocean', n=21)"

    batch = next(iter(domain.batches(train, 2, seed=0)))
    assert set(batch) == set(domain.KEYS)
    model = nnx.eval_shape(lambda: domain.DOMAIN.build(config.to_dict(), None))
    loss = nnx.eval_shape(lambda m, b: domain.DOMAIN.loss_fn(m, b), model, batch)
    assert loss.shape == () and loss.dtype == np.float32
    assert domain.DOMAIN.trunk_config(config.to_dict()) == config.trunk_config
    assert domain.DOMAIN.kind.name == "ocean.forecaster"


def test_a_task_with_history_is_refused(store, config):
    task = dataclasses.replace(
        fc.task_for(config.depths, config.leads, config.variables), history_steps=2
    )
    with pytest.raises(ValueError, match="one input month"):
        domain.Samples(sources.WindowSource(store, task))


def test_anomaly_statistics_against_xarray(store, config):
    # The climatology by xarray's groupby and the lag regression by hand, on the channels
    # theta at 5 m, theta at 50 m, SST, over the two training years.
    task = fc.task_for(config.depths, config.leads, config.variables)
    clim, slopes = domain.anomaly_statistics(store, task, ("2001-01", "2002-12"))
    ds = xr.open_zarr(store, consolidated=False).sel(time=slice("2001-01", "2002-12"))
    fields = [
        ds["sea_water_potential_temperature"].isel(depth=0),
        ds["sea_water_potential_temperature"].isel(depth=1),
        ds["sea_surface_temperature"],
    ]
    assert clim.shape == (12, LAT, LON, 3) and slopes.shape == (fc.RESTART, 3)
    for c, da in enumerate(fields):
        monthly = da.groupby("time.month").mean("time")
        np.testing.assert_allclose(clim[..., c], monthly.values, rtol=1e-5, equal_nan=True)
        anomaly = (da.groupby("time.month") - monthly).fillna(0.0).values
        for k in (1, 4):
            a, b = anomaly[:-k].ravel(), anomaly[k:].ravel()
            np.testing.assert_allclose(slopes[k - 1, c], a @ b / (a @ a), rtol=1e-4)
    assert np.isnan(clim[:, 0, 0]).all()  # land
    # make_config starts the damping from these slopes.
    np.testing.assert_allclose(config.damping, slopes, rtol=1e-6)
    with pytest.raises(ValueError, match="every calendar month"):
        domain.anomaly_statistics(store, task, ("2001-01", "2001-06"))


def test_fit_response_recovers_a_linear_wind_response():
    # Anomalies made by damped persistence plus a known response to two forcing patterns:
    # the fit finds the patterns' span and the response of every span exactly.
    rng = np.random.default_rng(4)
    t, grid, spans = 60, (3, 4), 3
    patterns = np.linalg.qr(rng.normal(size=(grid[0] * grid[1] * 2, 2)))[0].T  # orthonormal
    p = rng.normal(size=(t, 2)) * np.array([3.0, 1.0])  # distinct singular values
    forcing = (p @ patterns).reshape(t, *grid, 2)
    slopes = np.array([[0.9, 0.5], [0.7, 0.3], [0.5, 0.1]])
    truth = rng.normal(size=(spans, 2, *grid, 2))
    anomaly = rng.normal(size=(t, *grid, 2))
    got_patterns, response = domain.fit_response(anomaly, forcing, slopes, 2)
    # orthonormal patterns of the same plane (a rotation of the made ones within it)
    got = got_patterns.reshape(2, -1)
    np.testing.assert_allclose(got @ got.T, np.eye(2), atol=1e-6)
    overlap = got @ patterns.T
    np.testing.assert_allclose(overlap @ overlap.T, np.eye(2), atol=1e-6)
    # the anomaly k months on, made exactly by the model, is fitted exactly for span k
    q = forcing.reshape(t, -1) @ got_patterns.reshape(2, -1).T
    for k in range(1, spans + 1):
        a = anomaly.copy()
        for i in range(k, t):  # made month by month from the month k before
            a[i] = slopes[k - 1] * a[i - k] + np.einsum("j,jyxc->yxc", q[i - k], truth[k - 1])
        _, r = domain.fit_response(a, forcing, slopes, 2)
        np.testing.assert_allclose(r[k - 1], truth[k - 1], atol=1e-4)
    assert response.shape == (spans, 2, *grid, 2)
    with pytest.raises(ValueError, match="needs more than"):
        domain.fit_response(anomaly[:4], forcing[:4], slopes, 2)
    # no forcing anomaly (or only rounding below the tolerance): no modes, no response
    for f, tol in ((0.0 * forcing, 0.0), (1e-9 * forcing, 1e-6)):
        got_patterns, response = domain.fit_response(anomaly, f, slopes, 2, tolerance=tol)
        assert not got_patterns.any() and not response.any()
    # one mode of forcing, two asked: the second is zero
    one = np.einsum("t,p->tp", p[:, 0], patterns[0]).reshape(forcing.shape)
    got_patterns, response = domain.fit_response(anomaly, one, slopes, 2)
    assert got_patterns[0].any() and not got_patterns[1].any() and not response[:, 1].any()


def test_forcing_response_of_the_store(store, config):
    """The store path: the forcing climatology by xarray (NaN over land), patterns of unit
    norm that are 0 over land, and the response's shape."""
    task = fc.task_for(config.depths, config.leads, config.variables)
    f_clim, patterns, response = domain.forcing_response(
        store, task, ("2001-01", "2002-12"), np.asarray(config.damping), 3
    )
    ds = xr.open_zarr(store, consolidated=False).sel(time=slice("2001-01", "2002-12"))
    monthly = ds["surface_downward_eastward_stress"].groupby("time.month").mean("time")
    np.testing.assert_allclose(f_clim[..., 0], monthly.values, rtol=1e-5, equal_nan=True)
    assert np.isnan(f_clim[:, 0, 0]).all() and np.abs(patterns[:, :3, :4]).max() < 1e-6
    np.testing.assert_allclose((patterns**2).sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    assert response.shape == (fc.RESTART, 3, LAT, LON, 3)
