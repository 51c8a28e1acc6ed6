"""``tellus.load``: any checkpoint by its kind, forecasting from a Dataset for every domain.

The models are the committed version-0 fixtures (tests/fixtures/legacy_v0), so the loads go
through the migrations too; the run and ensemble layouts are made of copies of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import tellus.load
from tellus.atmosphere import forecast as atmos_forecast
from tellus.atmosphere import forecaster as fc
from tellus.data import schema, stacking
from tellus.enso import forecast as enso_forecast
from tellus.enso import train as enso_train
from tellus.enso import world
from tellus.training import checkpoint as ckpt_lib
from tellus.training import domains

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_v0"


def _copy(name: str, to: Path) -> Path:
    shutil.copytree(FIXTURES / name, to, ignore=shutil.ignore_patterns("forecast.npz"))
    return to


@pytest.fixture(scope="module")
def atmosphere(tmp_path_factory):
    """An atmosphere run of one lead model (``lead_6h``), loaded by ``tellus.load``."""
    run = tmp_path_factory.mktemp("atmosphere")
    _copy("atmosphere", run / "lead_6h")
    return run, tellus.load(run)


@pytest.fixture(scope="module")
def enso(tmp_path_factory):
    """An ENSO ensemble of two members (``member_{k}/finetune``), loaded by ``tellus.load``."""
    run = tmp_path_factory.mktemp("enso")
    for k in (0, 1):
        _copy("enso", run / f"member_{k}" / "finetune")
    return run, tellus.load(run)


def _analysis(x: np.ndarray, static: np.ndarray, cfg: fc.ForecasterConfig, t0: str):
    """The stacked states ``x [N, H, W, C]`` and statics as a Dataset in the schema."""
    upper = [
        stacking.VariableChannels(v, schema.LEVEL, schema.PRESSURE_LEVELS_13)
        for v in fc.UPPER_VARIABLES
    ]
    layout = stacking.ChannelLayout(
        (*upper, *(stacking.VariableChannels(v) for v in fc.SURFACE_VARIABLES))
    )
    coords = {
        schema.TIME: pd.date_range(t0, periods=len(x), freq="6h"),
        schema.LATITUDE: np.asarray(cfg.latitude),
        schema.LONGITUDE: np.arange(cfg.model.lon) * 360.0 / cfg.model.lon,
    }
    ds = stacking.stacked_to_dataset(x, layout, leading_dims=(schema.TIME,), coords=coords)
    statics = stacking.ChannelLayout(
        tuple(stacking.VariableChannels(v) for v in fc.STATIC_VARIABLES)
    )
    return ds.merge(stacking.stacked_to_dataset(static, statics, coords=coords))


def test_an_atmosphere_run_forecasts_from_a_dataset_as_its_model(atmosphere):
    run, model = atmosphere
    assert isinstance(model, atmos_forecast.Predictor) and model.leads == (6,)
    assert isinstance(model, domains.Predictor)
    ref = np.load(FIXTURES / "atmosphere" / "forecast.npz")
    lead_model = model.system.models[6]
    ds = _analysis(ref["x"], ref["static"][0], lead_model.config, "2000-10-28T00")
    out = model.forecast(ds)  # the lead model's own lead: one call
    assert out["temperature"].dims == (
        schema.TIME,
        atmos_forecast.LEAD_DIM,
        schema.LEVEL,
        schema.LATITUDE,
        schema.LONGITUDE,
    )
    assert list(out[atmos_forecast.LEAD_DIM].values) == [pd.Timedelta("6h")]
    y = np.array(lead_model(jnp.asarray(ref["x"]), jnp.asarray(ref["static"][0])))
    q = list(fc.nonnegative_channels(lead_model.config.model))
    y[..., q] = np.maximum(y[..., q], 0.0)  # every forecast step clips humidity at zero
    layout = stacking.ChannelLayout.from_dataset(
        out, fc.UPPER_VARIABLES + fc.SURFACE_VARIABLES, schema.PRESSURE_LEVELS_13
    )
    got = stacking.dataset_to_stacked(out.isel({atmos_forecast.LEAD_DIM: 0}), layout)
    scale = np.asarray(lead_model.config.std)
    np.testing.assert_allclose(got / scale, y / scale, atol=1e-5)
    then = np.array(ref["y"])  # what the fixture's model gave when it was written
    then[..., q] = np.maximum(then[..., q], 0.0)
    np.testing.assert_allclose(got / scale, then / scale, atol=1e-4)
    # two steps of the 6 h model, from a state whose time is a scalar coordinate
    two = model.forecast(ds.isel(time=0), lead="12h")
    assert list(two[atmos_forecast.LEAD_DIM].values) == [pd.Timedelta(h, "h") for h in (6, 12)]
    with pytest.raises(KeyError, match="not in the dataset"):
        model.forecast(ds, init_time="1999-01-01")
    with pytest.raises(ValueError, match="grid"):
        model.forecast(ds.isel(latitude=slice(0, 4)))
    # the lead folder itself is a checkpoint of that kind too
    assert domains.for_checkpoint(run / "lead_6h").name == "atmosphere"


def _maps(x: np.ndarray, last_month: str) -> xr.Dataset:
    """Monthly SST and heat-content anomaly maps ``x [time, 2, lat, lon]`` ending at
    ``last_month``."""
    times = pd.date_range(end=pd.Timestamp(last_month), periods=len(x), freq="MS")
    dims = (schema.TIME, *schema.SPATIAL_DIMS)
    return xr.Dataset(
        {world.SST: (dims, x[:, 0]), world.HEAT: (dims, x[:, 1])},
        coords={
            schema.TIME: times,
            schema.LATITUDE: np.linspace(-20, 20, x.shape[2]),
            schema.LONGITUDE: np.linspace(0, 360, x.shape[3], endpoint=False),
        },
    )


def test_an_enso_ensemble_forecasts_nino34_by_lead_as_its_members(enso):
    run, model = enso
    assert isinstance(model, enso_forecast.Predictor) and len(model.models) == 2
    ref = np.load(FIXTURES / "enso" / "forecast.npz")
    members = enso_train.load_ensemble(run)
    for i, month in enumerate(ref["month"]):
        ds = _maps(ref["x"][i], f"2001-{int(month):02d}")
        out = model.forecast(ds)  # from its last month
        assert out[enso_forecast.NINO34].dims == (enso_forecast.INIT_TIME, enso_forecast.LEAD)
        assert set(out.dims) == {enso_forecast.INIT_TIME, enso_forecast.LEAD, "member"}
        assert out.sizes[enso_forecast.LEAD] == 24 and out.sizes[enso_forecast.MEMBER] == 2
        y = enso_train.predict(members, ref["x"][i : i + 1], ref["month"][i : i + 1])
        np.testing.assert_allclose(out[enso_forecast.NINO34].values, y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[enso_forecast.NINO34].values[0], ref["y"][i], atol=1e-5)
        valid = out[enso_forecast.VALID_TIME].values[0]
        assert pd.Timestamp(valid[0]) == ds.time.values[-1] + pd.offsets.MonthBegin(1)
    # a longer record: every init with three months of maps, and the ones without refused
    ds = _maps(np.concatenate(ref["x"]), "2001-12")
    out = model.forecast(ds, init_time=["2001-06", "2001-12"])
    assert [str(t)[:7] for t in out[enso_forecast.INIT_TIME].values] == ["2001-06", "2001-12"]
    with pytest.raises(KeyError, match=r"init months \['2002-01'\] are not in"):
        model.forecast(ds, init_time="2002-01")
    with pytest.raises(ValueError, match="init month 2001-05 needs the 2 months before it"):
        model.forecast(ds, init_time="2001-05")


def test_a_folder_that_is_not_a_checkpoint_or_of_an_unknown_kind_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no model here\n")
    with pytest.raises(FileNotFoundError, match="is not a Tellus checkpoint"):
        tellus.load(tmp_path / "notes")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tellus.load(tmp_path / "nowhere")
    moon = _copy("enso", tmp_path / "moon")
    (config,) = moon.glob("checkpoints/*/config/metadata")
    cfg = json.loads(config.read_text())
    config.write_text(json.dumps(dict(cfg, kind="moon.model", version=1)))
    with pytest.raises(ckpt_lib.CheckpointKindError, match=r"'moon\.model' checkpoint") as e:
        tellus.load(moon)
    assert "atmosphere ('atmosphere.forecaster'), enso ('enso.resonet')" in str(e.value)
    from tellus.load import load

    assert load is not tellus.load and callable(tellus.load)
