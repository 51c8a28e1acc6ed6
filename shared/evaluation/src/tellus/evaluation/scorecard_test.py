"""evaluate() and the scorecard table on a tiny mock ERA5."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import mock
from tellus.evaluation import baselines, metrics, scorecard

LEADS = pd.to_timedelta(["6h", "12h", "24h"])


def truth_and_climatology():
    truth = mock.mock_era5(
        times=pd.date_range("2020-01-01", periods=12, freq="6h"),
        n_lat=5,
        n_lon=8,
        surface=("2m_temperature", "10m_u_component_of_wind"),
        static=(),
    )
    mean = truth.mean("time")
    clim = mean.expand_dims(dayofyear=np.arange(1, 367), hour=[0, 6, 12, 18])
    return truth, clim


def model_forecast(truth, inits, seed=0, members=None):
    fc = metrics.align(baselines.persistence(truth, inits, LEADS), truth).drop_vars("valid_time")
    rng = np.random.default_rng(seed)
    if members:
        fc = fc.expand_dims(realization=members)
    out = {}
    for name, da in fc.data_vars.items():
        scale = float(truth[name].std())
        out[name] = da + 0.1 * scale * rng.standard_normal(da.shape)
    return xr.Dataset(out)


def test_evaluate_rows_and_skips():
    truth, clim = truth_and_climatology()
    inits = metrics.complete_init_times(truth.time.values, LEADS)
    assert len(inits) == 8
    forecasts = scorecard.add_baselines(
        {"model": model_forecast(truth, inits), "ens": model_forecast(truth, inits, members=3)},
        truth,
        clim,
    )
    assert list(forecasts) == ["model", "ens", "persistence", "climatology"]
    df = scorecard.evaluate(
        forecasts,
        truth,
        clim,
        regions=("global", "tropics"),
        metrics=("rmse", "acc", "crps", "spread_skill"),
    )
    assert list(df.columns) == list(scorecard.COLUMNS)
    assert set(df["variable"]) == {
        "geopotential",
        "temperature",
        "2m_temperature",
        "10m_u_component_of_wind",
    }
    levels = df.groupby("variable")["level"].first()
    assert levels["geopotential"] == 500 and levels["temperature"] == 850
    assert pd.isna(levels["2m_temperature"])
    # spread_skill only for the ensemble; acc and crps for all.
    assert set(df[df.metric == "spread_skill"]["model"]) == {"ens"}
    assert set(df[df.metric == "acc"]["model"]) == {"model", "ens", "persistence", "climatology"}
    n = {"rmse": 4, "acc": 4, "crps": 4, "spread_skill": 1}
    assert len(df) == sum(n.values()) * 4 * 2 * len(LEADS)
    # The same metric code scores a model and a baseline the same way.
    row = df[
        (df.model == "model")
        & (df.metric == "rmse")
        & (df.variable == "2m_temperature")
        & (df.region == "global")
        & (df.lead == LEADS[0])
    ]
    expected = metrics.rmse(forecasts["model"][["2m_temperature"]], truth)
    assert float(row["value"].iloc[0]) == pytest.approx(
        float(expected["2m_temperature"].sel(prediction_timedelta=LEADS[0]))
    )
    # The climatology forecast has no anomaly, so no ACC.
    assert df[(df.model == "climatology") & (df.metric == "acc")]["value"].isna().all()


def test_scorecard_writes_markdown_and_csv(tmp_path):
    truth, clim = truth_and_climatology()
    inits = metrics.complete_init_times(truth.time.values, LEADS)
    forecasts = scorecard.add_baselines({"model": model_forecast(truth, inits)}, truth, clim)
    df = scorecard.evaluate(forecasts, truth, clim, metrics=("rmse",))
    table = scorecard.scorecard_table(
        df, metric="rmse", reference="persistence", path=tmp_path / "card.md"
    )
    assert list(table.columns) == ["block", "variable", "6h", "12h", "24h"]
    blocks = list(dict.fromkeys(table["block"]))
    assert blocks == [
        "model",
        "persistence",
        "climatology",
        "model vs persistence (%)",
        "climatology vs persistence (%)",
    ]
    assert list(table[table.block == "model"]["variable"]) == list(scorecard.HEADLINE_VARIABLES)
    csv = pd.read_csv(tmp_path / "card.csv")
    assert len(csv) == 5 * 4
    md = (tmp_path / "card.md").read_text()
    assert "| block | variable | 6h | 12h | 24h |" in md
    assert "geopotential@500" in md and "model vs persistence (%)" in md
    # Relative skill is 100 * (model - ref) / ref.
    m = table[(table.block == "model") & (table.variable == "temperature@850")]["24h"].iloc[0]
    r = table[(table.block == "persistence") & (table.variable == "temperature@850")]["24h"].iloc[0]
    rel = table[
        (table.block == "model vs persistence (%)") & (table.variable == "temperature@850")
    ]["24h"].iloc[0]
    assert rel == pytest.approx(100 * (m - r) / r)


def test_helpers():
    assert scorecard.parse_selection("geopotential@500") == ("geopotential", 500)
    assert scorecard.parse_selection("2m_temperature") == ("2m_temperature", None)
    assert scorecard.label("temperature", 850) == "temperature@850"
    assert scorecard.label("2m_temperature", pd.NA) == "2m_temperature"
    assert [scorecard.lead_label(pd.Timedelta(h, "h")) for h in (6, 36, 60, 72, 84, 240)] == [
        "6h",
        "36h",
        "60h",
        "3d",
        "3.5d",
        "10d",
    ]
    assert scorecard.lead_label(pd.Timedelta("240h"), "h") == "240h"
    assert scorecard.headline_variables() == scorecard.HEADLINE_VARIABLES
    with pytest.raises(ValueError):
        scorecard.scorecard_table(pd.DataFrame(columns=list(scorecard.COLUMNS)))


def test_acc_skips_variables_the_climatology_lacks():
    truth, clim = truth_and_climatology()
    inits = metrics.complete_init_times(truth.time.values, LEADS)
    clim = clim.drop_vars("10m_u_component_of_wind")
    df = scorecard.evaluate(
        {"model": model_forecast(truth, inits)}, truth, clim, metrics=("acc", "rmse")
    )
    acc = df[df.metric == "acc"]
    assert set(acc["variable"]) == {"geopotential", "temperature", "2m_temperature"}
    assert acc["value"].between(-1, 1).all()
    assert (acc[acc.variable == "2m_temperature"]["value"] > 0.5).all()
    assert "10m_u_component_of_wind" in set(df[df.metric == "rmse"]["variable"])
