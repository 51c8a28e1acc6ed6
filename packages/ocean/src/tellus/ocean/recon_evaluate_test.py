"""The reconstruction evaluation end to end on a tiny run: the three sets of months, the
summary with every system at every coverage, the PNGs, the climatology's withheld MSE
against a hand computation, and only ocean points counted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.ocean import recon, recon_evaluate
from tellus.ocean.recon_test import RECIPE, make_store, tiny_config

SETTINGS = recon_evaluate.Settings(
    coverages=(0.05, 0.1),
    fit_years=1,
    test_years=1,
    test_months=4,
    validation_months=2,
    steps=5,
    samples=2,
    scales=(0.5, 2.0, 8.0),
    spreads=((5, 1.0), None),
    batch=2,
)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("recon-eval")
    model = make_store(root / "model.zarr", months=12)
    observed = make_store(root / "observed.zarr", months=36, seed=1)
    workdir = root / "run"
    recon.train_recon(
        workdir,
        model,
        recipe=RECIPE,
        config=tiny_config(model),
        show_progress=False,
    )
    report = root / "report"
    summary = recon_evaluate.run(workdir, observed, report, settings=SETTINGS, show_progress=False)
    return observed, report, summary, workdir


def test_the_months_are_three_disjoint_sets():
    times = pd.date_range("2000-01-01", periods=96, freq="MS")
    m = recon_evaluate.Months.of(times, recon_evaluate.Settings())
    assert (len(m.fit), len(m.validation), len(m.test)) == (48, 2, 12)
    assert m.fit[-1] < m.validation[0] and m.validation[-1] < m.test[0]
    assert m.test[-1] == times[-1] and m.validation[-1] == pd.Timestamp("2004-12-01")
    with pytest.raises(ValueError, match="gap"):
        recon_evaluate.Months.of(times[:60], recon_evaluate.Settings())


def test_settings_are_checked():
    with pytest.raises(ValueError, match="coverages"):
        recon_evaluate.Settings(coverages=(0.0,)).check()
    with pytest.raises(ValueError, match="test_months"):
        recon_evaluate.Settings(test_months=40).check()
    with pytest.raises(ValueError, match="eta"):
        recon_evaluate.Settings(eta=1.5).check()
    recon_evaluate.Settings().check()


def test_the_summary_and_plots(evaluated):
    _, report, summary, _ = evaluated
    assert json.loads((report / "summary.json").read_text())["bar"] == summary["bar"]
    for name in ("mse_by_coverage.png", "maps.png", "section.png"):
        assert (report / name).stat().st_size > 1000, name
    assert summary["months"]["test"] == ["2003-09", "2003-12", 4]
    assert summary["months"]["validation"] == ["2002-11", "2002-12", 2]
    choice = summary["guidance_scale"]
    table = choice["mse_withheld"]  # {spread: {scale: MSE}}, both spreads tried
    assert set(table) == {"5x5 sigma 1", "none"} and all(len(v) == 3 for v in table.values())
    spread, scale = min(
        ((sp, sc) for sp, by in table.items() for sc in by), key=lambda k: table[k[0]][k[1]]
    )
    assert choice["scale"] == float(scale)
    assert choice["spread"] == (None if spread == "none" else [5, 1.0])
    for c in ("0.05", "0.1"):
        assert set(summary["mse"][c]) == set(recon_evaluate.SYSTEMS)
        for system, s in summary["mse"][c].items():
            for key in ("mse_guidance", "mse_withheld", "mse_field", "total"):
                assert np.isfinite(s[key]), (c, system, key)
            assert len(s["per_depth"]["mse_field"]) == 3
        spread = summary["spread_error"][c]
        assert spread["spread"] > 0 and np.isfinite(spread["ratio"])
    bar = summary["bar"]
    assert set(bar["beats_climatology_withheld"]) == {"0.05", "0.1"}
    assert isinstance(bar["pass"], bool)
    assert bar["pass"] == (
        bar["beats_gp_withheld_at_5_percent"] and all(bar["beats_climatology_withheld"].values())
    )


def test_climatology_scores_by_hand_and_only_ocean_points(evaluated):
    observed, _, summary, _ = evaluated
    ds = xr.open_zarr(observed).load()
    truth = ds["sea_water_potential_temperature"].transpose(
        "time", "depth", "latitude", "longitude"
    )
    ocean = ds["ocean_mask"].to_numpy() > 0.5
    months = recon_evaluate.Months.of(ds["time"].values, SETTINGS)
    # One fitting year: the climatology of a calendar month is that month of the first year.
    clim = truth.to_numpy()[:12][pd.DatetimeIndex(months.test).month.to_numpy() - 1]
    i = SETTINGS.coverages.index(0.05)
    _, held, _ = recon_evaluate.observe(ds, months.test, 0.05, SETTINGS, SETTINGS.seed + 101 * i)
    want = np.mean((clim[held.mask] - held.values[held.mask]) ** 2)
    got = summary["mse"]["0.05"]["climatology"]["mse_withheld"]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    n_ocean = summary["mse"]["0.05"]["reconstruction"]["n_ocean"]
    assert n_ocean == len(months.test) * int(ocean.sum())  # land never counted


def test_a_model_fine_tuned_on_validation_or_test_months_is_refused(evaluated, tmp_path):
    observed, _, _, workdir = evaluated
    info = json.loads((workdir / recon.RUN_INFO).read_text())
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    (tuned / recon.PRETRAIN).symlink_to(workdir / recon.PRETRAIN, target_is_directory=True)
    info["finetune_months"] = ["2001-01", "2002-11", 23]  # the first validation month
    (tuned / recon.RUN_INFO).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="fine-tuned on observed months up to 2002-11"):
        recon_evaluate.run(tuned, observed, tmp_path / "r", settings=SETTINGS)
