"""The ocean's training on small synthetic stores (the tiny veros build has two months, too
few for six leads): the split, a few steps of both phases, the resume, loading through the
Domain registry and forecasting from a Dataset."""

from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import schema, sources, validation
from tellus.ocean import domain, evaluate, forecast, train
from tellus.ocean import forecaster as fc
from tellus.ocean import model as model_lib
from tellus.training import domains

LAT, LON, DEPTHS, THICKNESS = 7, 12, (5.0, 50.0), (10.0, 80.0)
SPLIT = train.ObservedSplit(finetune_years=1, test_years=2)  # of 4 observed years: gap 12
BUDGET = train.Budget(pretrain_steps=1, finetune_steps=1, batch_size=2)
# The surface variables only, one encoder stage: the smallest network to compile.
VARIABLES = ("sea_surface_temperature", "sea_surface_height")


def ocean_mask() -> np.ndarray:
    ocean = np.ones((LAT, LON), bool)
    ocean[:3, :4] = False
    return ocean


def make_store(path, months: int, seed: int = 0) -> str:
    """``months`` of every forecaster variable on a 7 x 12 grid with a land box (NaN over
    it): an annual cycle plus AR(1) anomalies."""
    times = pd.date_range("2001-01-01", periods=months, freq="MS")
    rng = np.random.default_rng(seed)
    ocean = ocean_mask()
    lat = np.linspace(-60.0, 60.0, LAT)
    lon = np.arange(LON) * 30.0
    season = np.cos(2 * np.pi * (times.month.to_numpy() - 1) / 12)

    def field(base, spread, depth=False):
        shape = (months, len(DEPTHS), LAT, LON) if depth else (months, LAT, LON)
        noise = rng.standard_normal(shape)
        for t in range(1, months):
            noise[t] = 0.8 * noise[t - 1] + 0.6 * noise[t]
        x = base + spread * (season.reshape(-1, *[1] * (len(shape) - 1)) + 0.5 * noise)
        return np.where(ocean, x, np.nan).astype(np.float32)

    data = {
        "sea_water_potential_temperature": field(10.0, 2.0, True),
        "sea_water_salinity": field(35.0, 0.2, True),
        "eastward_sea_water_velocity": field(0.0, 0.05, True),
        "northward_sea_water_velocity": field(0.0, 0.05, True),
        "sea_surface_temperature": field(290.0, 2.0),
        "sea_surface_height": field(0.0, 0.1),
        "surface_downward_eastward_stress": field(0.0, 0.1),
        "surface_downward_northward_stress": field(0.0, 0.1),
    }
    ds = xr.Dataset(
        {
            name: (schema.VARIABLES[name].dims, v, {"units": schema.VARIABLES[name].units})
            for name, v in data.items()
        }
        | {
            "ocean_mask": (schema.SPATIAL_DIMS, ocean.astype(np.float32), {"units": "1"}),
            domain.THICKNESS: ((schema.DEPTH,), np.array(THICKNESS), {"units": "m"}),
        },
        coords={"time": times, "depth": list(DEPTHS), "latitude": lat, "longitude": lon},
    )
    ds["depth"].attrs.update(units="m", positive="down")
    ds.to_zarr(str(path), zarr_format=3, consolidated=False)
    return str(path)


def tiny_net() -> model_lib.NetConfig:
    return model_lib.NetConfig(
        n_lat=LAT,
        n_lon=LON,
        channels=(1, 1),
        trunk=model_lib.fusion_trunk((4, 4), 16, 2, (1, 1), 6),
        dim=8,
        depths=(1,),
        heads=(2,),
        window=(2, 2),
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("ocean-train")
    return make_store(root / "model.zarr", 24), make_store(root / "observed.zarr", 48, seed=1)


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    info = train.train_ocean(
        workdir,
        *stores,
        net=tiny_net(),
        variables=VARIABLES,
        budget=BUDGET,
        split=SPLIT,
        show_progress=False,
    )
    return workdir, info


def test_the_split_has_no_leakage_and_a_gap_beyond_the_longest_lead():
    split = train.ObservedSplit()  # the embedded ocean's 8 observed years
    times = pd.date_range("2000-01-01", periods=96, freq="MS")
    assert split.check(96, train.LONGEST_LEAD) == 12 >= train.LONGEST_LEAD > max(fc.LEADS)
    ranges = split.date_ranges(times)
    ft, test = split.finetune_months(times), split.test_months(times)
    assert (len(ft), len(test)) == (48, 36) and ft[-1] == pd.Timestamp("2003-12-01")
    assert test[0] == pd.Timestamp("2005-01-01")
    # A window lies in its range with every month it reads (input and six leads): the
    # fine-tuning windows read nothing from 2004 on, the test windows nothing before 2005,
    # and the 12 months between are longer than the longest lead trained.
    assert (
        ranges[train.FINETUNE].stop
        == pd.Timestamp("2004-01-01")
        == ft[-1] + pd.DateOffset(months=1)
    )
    assert ranges["test"].start == test[0] and ranges["test"].stop > times[-1]
    sources.check_disjoint(ranges)
    gap = pd.date_range(
        ranges[train.FINETUNE].stop, ranges["test"].start, freq="MS", inclusive="left"
    )
    assert len(gap) == 12 > max(fc.LEADS)
    with pytest.raises(ValueError, match="gap of 0 months"):
        train.ObservedSplit(finetune_years=5).check(96, 12)
    with pytest.raises(ValueError, match="need at least 13"):
        split.check(96, 13)


def test_window_ranges_of_the_split_hold_no_test_month(stores):
    _, observed = stores
    times = train.store_times(observed)
    ranges = SPLIT.date_ranges(times)
    cfg = domain.make_config(observed, tiny_net(), ("2001-01", "2001-12"), variables=VARIABLES)
    ft = domain.samples(observed, cfg, ranges[train.FINETUNE])
    test = domain.samples(observed, cfg, ranges["test"])
    assert len(ft) == 12 - 6 and len(test) == 24 - 6
    ft_last = ft.windows.init_times[-1] + pd.DateOffset(months=6)
    assert ft_last < SPLIT.test_months(times)[0] - pd.DateOffset(months=12)
    assert test.windows.init_times[0] == SPLIT.test_months(times)[0]


def test_training_resumes_loads_and_forecasts(trained, stores):
    workdir, info = trained
    assert [s for s, _ in info["histories"]["pretrain"]] == [0]
    assert [s for s, _ in info["histories"]["finetune"]] == [0]
    assert all(np.isfinite(loss) for _, loss in info["histories"]["finetune"])
    saved = json.loads((workdir / train.RUN_INFO).read_text())
    assert saved["gap_months"] == 12 and saved["n_finetune"] == 6 and saved["n_pretrain"] == 18
    envelope = domains.read_envelopes(workdir / train.FINETUNE)
    (cfg,) = envelope.values()
    assert (cfg["kind"], cfg["version"]) == ("ocean.forecaster", 1)
    assert cfg["task"]["lead_steps"] == list(fc.LEADS)
    # A second run finds both phases done: nothing is trained again.
    again = train.train_ocean(
        workdir,
        *stores,
        net=tiny_net(),
        variables=VARIABLES,
        budget=BUDGET,
        split=SPLIT,
        show_progress=False,
    )
    assert again["histories"] == {"pretrain": [], "finetune": []}

    assert domains.for_checkpoint(workdir).name == "ocean"
    predictor = domain.DOMAIN.load(workdir)
    ds = validation.open_dataset(stores[1], check_values="none")
    inits = ["2004-01-01", "2004-02-01"]
    out = predictor.forecast(ds, init_time=inits, months=7)
    sst = out["sea_surface_temperature"]
    assert sst.dims == ("time", "prediction_timedelta", "latitude", "longitude")
    assert set(out.data_vars) == set(VARIABLES)
    np.testing.assert_array_equal(out["prediction_timedelta"].values, np.arange(1, 8))
    assert str(out["valid_time"].values[1, 6])[:10] == "2004-09-01"
    land = ~ocean_mask()
    np.testing.assert_array_equal(np.isnan(sst.values), np.broadcast_to(land, sst.shape))
    # Leads 1-6 are one call of the forecaster from the data's state and the initial
    # month's wind stress; lead 7 restarts from lead 6's forecast.
    x = ds.sel(time=inits)
    state = np.nan_to_num(np.stack([x[v].values for v in VARIABLES], -1))
    wind = np.nan_to_num(np.stack([x[v].values for v in fc.FORCINGS], -1))
    months = np.array([1, 2], np.int32)
    model, ocean = predictor.model, ocean_mask()[None]
    direct = fc.rollout(model, state, wind, months, ocean, 6)  # compiled: one block
    stacked = np.stack([out[v].values for v in VARIABLES], -1)
    np.testing.assert_allclose(stacked[:, :6], direct, rtol=1e-5, atol=1e-5)
    restart = fc._forecast_block(
        model, direct[:, -1], wind, months, ocean, np.arange(7, 13), jnp.int32(6)
    )
    np.testing.assert_allclose(stacked[:, 6:], np.asarray(restart)[:, :1], rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="1999-01"):
        predictor.forecast(ds, init_time=["1999-01-01"])


def test_the_base_and_its_wind_response_are_checked(stores, tmp_path):
    with pytest.raises(ValueError, match="base must be one of"):
        train.train_ocean(tmp_path, *stores, net=tiny_net(), base="mean")
    with pytest.raises(ValueError, match="the 'state' base has none"):
        train.train_ocean(tmp_path, *stores, net=tiny_net(), base="state", forcing_modes=2)
    with pytest.raises(ValueError, match="with observed_forcing use 0"):
        train.train_ocean(tmp_path, *stores, net=tiny_net(), observed_forcing=True)
    assert train.BASES["state"] == (False, False)  # ORCA-DL's: the state itself
    assert not any(tmp_path.iterdir())


def test_a_store_too_short_for_the_split_is_refused(stores, tmp_path):
    with pytest.raises(ValueError, match="gap of"):
        train.train_ocean(
            tmp_path,
            stores[0],
            stores[0],
            net=tiny_net(),
            variables=VARIABLES,
            budget=BUDGET,
            split=SPLIT,
        )
    assert not (tmp_path / train.PRETRAIN).exists()


def test_the_evaluation_of_the_tiny_run(trained, stores, tmp_path):
    workdir, _ = trained
    summary = evaluate.run(workdir, stores[1], tmp_path, rollout_years=1)
    # The test years' 12 init months with 12 leads in them (2003-01 .. 2003-12); the
    # climatology of the fine-tuning year only.
    assert summary["n_inits"] == 12 and summary["test_months"] == ["2003-01", "2004-12"]
    assert summary["climatology_months"] == ["2001-01", "2001-12"]
    ssh = summary["rmse"]["sea_surface_height"]
    assert set(ssh) == set(evaluate.SYSTEMS) and all(len(v) == 12 for v in ssh.values())
    assert all(np.isfinite(v).all() for v in ssh.values())
    assert "climatology" not in summary["acc"]["sea_surface_height"]  # a zero anomaly
    assert len(summary["scorecard"]["sea_surface_height"]["beats"]) == 12
    assert set(summary["nino34"]) == set(evaluate.SYSTEMS)
    assert summary["indices"]["nino34"] == summary["nino34"]
    assert set(summary["indices"]) <= {box.name for box in evaluate.INDICES}
    roll = summary["rollout"]
    assert roll["months"] == 12 and roll["finite"] and "nino34_box_std" in roll
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["scorecard"] == summary["scorecard"]
    for png in summary["plots"]:
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert "nino34_box_std_initial_forcing" in roll
    # A forecaster of each lead's observed wind (the same weights read it per lead, its
    # wind response off): its rollout is driven month by month, with no initial-forcing run.
    model = train.load_forecaster(train.find_phase(workdir))
    model.config = dataclasses.replace(model.config, observed_forcing=True, forcing_modes=0)
    observed = validation.open_dataset(str(stores[1]), check_values="none").load()
    roll = evaluate.rollout_check(forecast.Predictor(model), observed, years=1)
    assert roll["finite"] and "nino34_box_std" in roll
    assert "nino34_box_std_initial_forcing" not in roll
