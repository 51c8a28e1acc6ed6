"""The plots write PNG files with something in them."""

from __future__ import annotations

import pandas as pd

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
