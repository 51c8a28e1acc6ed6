"""The demo's own logic: where it finds the ocean, the baselines' alignment with the Earth
task's starts, and its report (its training runs are the commands tested elsewhere:
pretraining, fine-tuning, warm starts; the whole story's time is in the README)."""

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest

from tellus.pipelines import demo, demo_report, fm_tasks


def test_the_default_ocean_is_used_where_it_is_built(tmp_path, monkeypatch):
    from tellus.data import writing

    monkeypatch.setenv("TELLUS_DATA", str(tmp_path))
    assert demo.ocean_folder("demo") == (tmp_path / "ocean-demo", "demo")
    assert demo.ocean_folder("default") == (tmp_path / "ocean", "default")
    # Both default stores complete: the demo takes them, whatever its preset.
    monkeypatch.setattr(writing, "is_complete", lambda p: True)
    for run in ("model", "observed"):
        (tmp_path / "ocean" / f"{run}.zarr").mkdir(parents=True)
    assert demo.ocean_folder("demo") == (tmp_path / "ocean", "default")


@pytest.fixture(scope="module")
def enso_stores(tmp_path_factory):
    from tellus.enso import skill, world

    d = tmp_path_factory.mktemp("enso")
    world.build_world("observed", 12, path=d / "observed.zarr", progress=False)
    world.build_world(
        "observed", 30, seed=skill.LONG_TEST_SEED, path=d / "draw.zarr", progress=False
    )
    return {"enso_observed": str(d / "observed.zarr"), "enso_long": str(d / "draw.zarr")}


def test_the_baselines_forecast_the_earth_tasks_starts(enso_stores):
    """The ENSO package's baselines come from its own arrays; at every start the Earth model
    is scored on, they verify against the same Nino3.4 (to float precision), and persistence
    holds the 3-month mean ending at the start, which is the lead-1 target of the start two
    months before."""
    data = dataclasses.replace(
        fm_tasks.task_data("enso", enso_stores),
        store=enso_stores["enso_long"],
        start=None,
        stop=None,
    )
    windows = demo.IndexWindows(data, None, batch=50)
    assert windows.truth.shape == (len(windows.times), fm_tasks.ENSO_LEADS)
    fc, truth, months, kept = demo.baselines(enso_stores, "1859-12-01", windows.times)
    # Only the first two starts lack the baselines' 3 months of history.
    assert not kept[:2].any() and kept[2:].all()
    np.testing.assert_allclose(truth, windows.truth[kept], atol=1e-5)
    assert (months == windows.times[kept].month).all()
    assert set(fc) == {"persistence", "damped_persistence", "lim"}
    where = {t: i for i, t in enumerate(windows.times)}
    for row, t in enumerate(windows.times[kept]):
        before = where[t - pd.DateOffset(months=2)]
        np.testing.assert_allclose(fc["persistence"][row], windows.truth[before, 0], atol=1e-5)
    assert all(v.shape == truth.shape for v in fc.values())


def summary(leads=demo_report.SUMMARY_LEADS):
    corr = {
        "finetuned_full": dict.fromkeys(leads, 0.8),
        "scratch": dict.fromkeys(leads, 0.7),
        "persistence": dict.fromkeys(leads, 0.25),
    }
    return {
        "test_years": 300,
        "n_starts": 3564,
        "correlation": corr,
        "mean_correlation": {"finetuned_full": 0.812, "scratch": 0.7, "persistence": 0.3},
        "optimal_correlation": dict.fromkeys(leads, 0.9),
        "finetuned_minus_scratch": {
            "mean_correlation_diff": 0.112,
            "interval_90pct": [0.1, 0.125],
            "better_beyond_interval": True,
        },
    }


def test_the_scorecard(tmp_path):
    text = demo_report.scorecard_markdown(summary())
    lines = text.splitlines()
    assert lines[0].startswith("Nino3.4 correlation on 300 independent years")
    rows = [ln for ln in lines if ln.startswith("| ") and "mo |" not in ln]
    # The fine-tune first, then from scratch, then the baselines, then the optimum.
    assert [r.split(" | ")[0] for r in rows] == [
        "| fine-tuned (everything)",
        "| from scratch",
        "| persistence",
        "| optimum of the world",
    ]
    assert rows[0].endswith("| 0.80 | 0.812 |") and rows[1].count("| 0.70 ") == 7
    assert "+0.112, 90 % block-bootstrap interval [+0.100, +0.125] (better beyond it)" in text
    assert demo_report.plot_scorecard(summary(), tmp_path / "s.png").stat().st_size > 0


def test_the_plots(tmp_path):
    lat, lon = np.linspace(-60, 60, 6), np.arange(0, 360, 30.0)
    field = np.outer(np.cos(np.deg2rad(lat)), np.ones(12))
    maps = [
        {
            "task": "ocean",
            "variable": "sea_water_potential_temperature",
            "level": 31.5,
            "level_units": "m",
            "lead_hours": 730.5,
            "latitude": lat,
            "longitude": lon,
            "now": field,
            "truth": field + 0.1,
            "forecast": np.where(lat[:, None] > 50, np.nan, field),
            "rmse": 0.1,
            "rmse_persistence": 0.1,
        }
    ]
    losses = {"finetuned_full": [(s, 1.0 / (s + 1)) for s in range(40)], "scratch": []}
    curves = {"finetuned_full": [(20, 0.4), (40, 0.5)], "scratch": [(40, 0.45)]}
    for path in (
        demo_report.plot_maps(maps, tmp_path / "maps.png"),
        demo_report.plot_finetuning_curve(losses, curves, tmp_path / "curve.png"),
        demo_report.plot_pretraining_losses(
            {"atmosphere": losses["finetuned_full"]}, tmp_path / "pre.png"
        ),
    ):
        assert path.stat().st_size > 0
    # The running mean of the loss curves: a window of 2 over 40 steps.
    np.testing.assert_allclose(demo_report._smooth([1.0, 3.0, 5.0], 2), [2.0, 4.0])


def test_the_phases_are_timed_in_order(capsys):
    phases = demo.Phases()
    with phases("data", "building"):
        time.sleep(0.01)
    with phases("report", "writing"):
        pass
    out = capsys.readouterr().out
    assert "== 1/5 data: building" in out and "== 5/5 report: writing" in out
    assert list(phases.seconds) == ["data", "report"] and phases.seconds["data"] >= 0.01
