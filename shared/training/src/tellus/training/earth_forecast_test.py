"""The Earth model's forecasts from a Dataset against the same model run by the pretraining
task on the store (an independent path: windows from the store, the task's own
normalization), in physical units, NaN over land, with the lead of the task."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from flax import nnx

from tellus.data import mock
from tellus.kernels import earth_model as em
from tellus.training import earth_forecast
from tellus.training import pretraining as pt

OCEAN = ("sea_water_potential_temperature", "sea_surface_height")


@pytest.fixture(scope="module")
def ocean(tmp_path_factory):
    ds = mock.mock_ocean(times=pd.date_range("2000-01-01", periods=6, freq="MS"), n_lat=6)
    path = tmp_path_factory.mktemp("earth_forecast") / "ocean.zarr"
    ds.to_zarr(path, zarr_format=3, consolidated=False)
    (task,) = pt.open_tasks([pt.StoreData("ocean", "ocean", str(path), OCEAN, lead=2)])
    cfg = em.preset("tiny")
    cfg = dataclasses.replace(cfg, trunk=dataclasses.replace(cfg.trunk, depths=(1, 0, 0, 1)))
    model = em.make_earth_model(task.model_config(cfg))
    config = pt.PretrainConfig(
        model.config.to_dict(), (dataclasses.asdict(task.data),), {"ocean": task.norm}
    ).to_dict()
    return xr.open_zarr(path, consolidated=False).load(), task, model, config


def test_a_forecast_is_the_tasks_own_forward_in_physical_units_nan_over_land(ocean):
    ds, task, model, config = ocean
    assert config["norms"]["ocean"]["time_step"] == "MS"  # saved for forecasts from a Dataset
    predictor = earth_forecast.EarthPredictor(model, config, source="fresh")
    inits = ["2000-02-01", "2000-03-01"]
    fc = predictor.forecast(ds, init_time=inits)
    # The store's windows starting at those months, through the task (its own grid, levels,
    # valid cells and normalization), then un-normalized by hand.
    batch = {k: np.stack([task.source[i][k] for i in (1, 2)]) for k in (pt.INPUTS, pt.TARGETS)}
    pred, _ = nnx.jit(lambda m, b: task(m, b))(model, batch)
    slices = task.layout.slices()
    theta, ssh = OCEAN
    t = (
        np.asarray(pred[theta]) * task.std[slices[theta]][:, None, None]
        + task.mean[slices[theta]][:, None, None]
    )
    s = np.asarray(pred[ssh]) * task.std[slices[ssh]][0] + task.mean[slices[ssh]][0]
    land = np.isnan(ds[ssh].values[0])
    assert land.any() and not land.all()
    t = np.where(land, np.nan, t)
    s = np.where(land, np.nan, s)
    assert fc[theta].dims == ("init_time", "depth", "latitude", "longitude")
    np.testing.assert_allclose(fc[theta].values, t, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fc[ssh].values, s, rtol=1e-5, atol=1e-6)
    assert np.array_equal(np.isnan(fc[ssh].values[0]), land)
    assert list(fc["init_time"].values.astype("datetime64[D]").astype(str)) == inits
    np.testing.assert_array_equal(fc["depth"].values, ds["depth"].values)
    assert fc["lead_time"].values == np.timedelta64(int(2 * pt.HOURS_PER_MONTH * 3600), "s")
    assert fc[theta].attrs["units"] == ds[theta].attrs["units"]


def test_what_a_forecast_refuses(ocean):
    ds, _, model, config = ocean
    predictor = earth_forecast.EarthPredictor(model, config)
    with pytest.raises(ValueError, match="task 'atmos' is not one of the model's: ocean"):
        predictor.forecast(ds, task="atmos")
    with pytest.raises(ValueError, match=r"lacks \['sea_surface_height'\] of task 'ocean'"):
        predictor.forecast(ds.drop_vars("sea_surface_height"))
    with pytest.raises(ValueError, match=r"init_time \['1999-01-01'\] is not in the Dataset"):
        predictor.forecast(ds, init_time="1999-01-01")
    with pytest.raises(ValueError, match="trained on 4 channels; the Dataset gives 3"):
        predictor.forecast(ds.isel(depth=[0, 1]), init_time="2000-02-01")


def test_a_rollout_chains_forecasts_each_from_the_one_before(ocean):
    """Step 2 of the rollout is the forecast started from step 1's forecast, by hand; the
    layout is WeatherBench2's, leads in whole months for the monthly ocean."""
    ds, _, model, config = ocean
    predictor = earth_forecast.EarthPredictor(model, config)
    ro = predictor.rollout(ds, init_time=["2000-01-01", "2000-02-01"], steps=3)
    theta, ssh = OCEAN
    assert ro[theta].dims == ("time", "prediction_timedelta", "depth", "latitude", "longitude")
    assert list(ro["prediction_timedelta"].values) == [2, 4, 6]  # the task's lead is 2 months
    assert ro["prediction_timedelta"].attrs["units"] == "months"
    first = predictor.forecast(ds, init_time=["2000-01-01", "2000-02-01"])
    np.testing.assert_array_equal(ro[ssh].isel(prediction_timedelta=0).values, first[ssh].values)
    # Step 1's forecast as the states of a Dataset at the months it is valid for.
    again = first.drop_vars("lead_time").rename(init_time="time")
    again = again.assign_coords(time=pd.DatetimeIndex(["2000-03-01", "2000-04-01"]))
    second = predictor.forecast(again)
    for v in OCEAN:
        np.testing.assert_allclose(
            ro[v].isel(prediction_timedelta=1).values, second[v].values, rtol=1e-6, atol=1e-6
        )
    land = np.isnan(ds[ssh].values[0])
    assert np.array_equal(np.isnan(ro[ssh].values), np.broadcast_to(land, ro[ssh].shape))
    assert len(predictor._compiled) == 1  # the chained steps reuse the first's program
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        predictor.rollout(ds, steps=0)


def test_an_index_task_forecasts_its_index_by_lead_in_its_own_units(tmp_path):
    from tellus.data import schema

    name = "sea_surface_temperature_anomaly"
    lat, lon = mock.regular_grid(7, 12)  # the equator and 210 E lie in the Nino3.4 box
    x = np.random.default_rng(0).standard_normal((12, 7, 12)).astype(np.float32)
    ds = xr.Dataset(
        {name: (schema.VARIABLES[name].dims, x, {"units": schema.VARIABLES[name].units})},
        coords={
            "time": pd.date_range("1900-01-01", periods=12, freq="MS"),
            "latitude": lat,
            "longitude": lon,
        },
    )
    ds.to_zarr(tmp_path / "enso.zarr", zarr_format=3, consolidated=False)
    data = pt.StoreData(
        "nino", "enso", str(tmp_path / "enso.zarr"), (name,), lead=3, index="nino34"
    )
    (task,) = pt.open_tasks([data])
    cfg = em.preset("tiny")
    cfg = dataclasses.replace(cfg, trunk=dataclasses.replace(cfg.trunk, depths=(1, 0, 0, 1)))
    model = em.make_earth_model(task.model_config(cfg))
    config = pt.PretrainConfig(
        model.config.to_dict(), (dataclasses.asdict(data),), {"nino": task.norm}
    )
    predictor = earth_forecast.EarthPredictor(model, config.to_dict())
    fc = predictor.forecast(ds, init_time=["1900-02-01"])
    assert fc["nino"].dims == ("init_time", "lead") and list(fc["lead"].values) == [1, 2, 3]
    window = task.source[1]  # the store's window from that month
    assert pd.Timestamp(task.source.init_times[1]) == pd.Timestamp("1900-02-01")
    batch = {k: window[k][None] for k in (pt.INPUTS, pt.DERIVED)}
    pred, _ = nnx.jit(lambda m, b: task(m, b))(model, batch)
    np.testing.assert_allclose(
        fc["nino"].values, np.asarray(pred["nino"]) * task.index_std, rtol=1e-5
    )
    ro = predictor.rollout(ds, init_time=["1900-02-01"])  # the same in the forecast layout
    assert ro["nino"].dims == ("time", "prediction_timedelta")
    assert list(ro["prediction_timedelta"].values) == [1, 2, 3]
    np.testing.assert_array_equal(ro["nino"].values, fc["nino"].values)
    with pytest.raises(ValueError, match=r"leads 1\.\.3 in one call; steps must be 1, got 2"):
        predictor.rollout(ds, steps=2)
