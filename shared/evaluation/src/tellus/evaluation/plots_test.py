"""The plots write PNG files with something in them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from tellus.evaluation import metrics, plots, scorecard
from tellus.evaluation.scorecard_test import LEADS, model_forecast, truth_and_climatology

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        head = f.read(8)
    return head == PNG_MAGIC


def test_plot_metric_vs_lead(tmp_path):
    truth, clim = truth_and_climatology()
    inits = metrics.complete_init_times(truth.time.values, LEADS)
    forecasts = scorecard.add_baselines({"model": model_forecast(truth, inits)}, truth, clim)
    df = scorecard.evaluate(forecasts, truth, clim, metrics=("rmse", "bias"))
    for metric in ("rmse", "bias"):
        out = plots.plot_metric_vs_lead(df, metric, None, tmp_path / f"{metric}.png")
        assert _is_png(out)
        assert (tmp_path / f"{metric}.png").stat().st_size > 10_000


def test_plot_maps(tmp_path):
    truth, _ = truth_and_climatology()
    inits = metrics.complete_init_times(truth.time.values, LEADS)
    fc = model_forecast(truth, inits)
    out = plots.plot_maps(fc, truth, "temperature", 850, "12h", None, tmp_path / "t850.png")
    assert _is_png(out) and (tmp_path / "t850.png").stat().st_size > 10_000
    ens = model_forecast(truth, inits, members=2)
    out = plots.plot_maps(
        ens,
        truth,
        "2m_temperature",
        None,
        pd.Timedelta("6h"),
        inits[1],
        tmp_path / "sub" / "t2m.png",
        member=0,
    )
    assert _is_png(out)


def test_curves_sections_and_map_pairs_are_written(tmp_path):
    lat, lon, depth = np.linspace(-60, 60, 4), np.arange(6) * 60.0, [5.0, 50.0, 500.0]
    section = xr.DataArray(
        np.arange(12.0).reshape(3, 4),
        dims=("depth", "latitude"),
        coords={"depth": depth, "latitude": lat},
    )
    field = xr.DataArray(
        np.arange(24.0).reshape(4, 6),
        dims=("latitude", "longitude"),
        coords={"latitude": lat, "longitude": lon},
    )
    field[0, 0] = np.nan  # land
    written = [
        plots.plot_curves(
            {"ssh": {"model": [1.0, 2.0], "persistence": [2.0, 3.0]}}, [1, 2], tmp_path / "c.png"
        ),
        plots.plot_section(section, section + 1.0, tmp_path / "s.png", title="T"),
        plots.plot_map_pairs({"sst": (field + 1.0, field)}, tmp_path / "m.png"),
    ]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(4) == b"\x89PNG"
