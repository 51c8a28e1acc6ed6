"""The study's bookkeeping against hand-made numbers (its runs are the commands tested
elsewhere: pretraining, fine-tuning, the bootstrap)."""

from pathlib import Path

import numpy as np
import pytest

from tellus.pipelines import fm_study, fm_tasks

STORES = fm_tasks.study_stores(Path("/d"), 1200)


def test_shares_take_the_first_part_of_the_training_period():
    enso = fm_tasks.task_data("enso", STORES, 0.1)
    assert (enso.start, enso.stop) == ("1850-01-01", "1859-12-01")  # 120 of 1200 months
    assert enso.index == "nino34" and enso.lead == 24 and enso.store == "/d/enso/observed.zarr"
    assert fm_tasks.task_data("enso", STORES).stop == "1949-12-01"
    ocean = fm_tasks.task_data("ocean", STORES, 0.1)
    assert ocean.stop == "2000-05-01"  # 5 of 48 months
    atmos = fm_tasks.task_data("atmosphere_coarse", STORES, 0.3)
    assert atmos.stop == "2000-03-22" and atmos.lead == 4  # the 328th of 1093 six-hourly times
    with pytest.raises(ValueError, match="unknown study task"):
        fm_tasks.task_data("moon", STORES)
    assert [d.name for d in fm_tasks.pretraining_data(STORES)] == ["atmosphere", "ocean", "enso"]
    assert [d.name for d in fm_tasks.pretraining_data(STORES, "ocean")] == ["ocean"]


def test_comparisons_and_the_report():
    cfg = fm_study.StudyConfig(boot=200)
    blocks = np.repeat(np.arange(10), 4)
    rng = np.random.default_rng(0)
    good = {"sq_err": np.full((40, 2), 1.0), "blocks": blocks}
    bad = {"sq_err": np.full((40, 2), 4.0) + rng.random((40, 2)), "blocks": blocks}
    row = fm_study.compare(good, bad, cfg)
    assert row["score"] == pytest.approx(1.0) and row["better"] and row["high"] < 0
    truth = rng.standard_normal((40, 3))
    a = {"forecast": truth + 0.1 * rng.standard_normal((40, 3)), "truth": truth, "blocks": blocks}
    b = {"forecast": rng.standard_normal((40, 3)), "truth": truth, "blocks": blocks}
    row_a = fm_study.compare(a, b, cfg)
    assert row_a["better"] and row_a["score"] > 0.99 and row_a["low"] > 0
    results = {
        "tasks": {
            "enso": {
                "metric": "mean correlation, leads 1-24",
                "rows": [{"run": "lora", "share": 0.1, **row_a}],
            },
            "ocean": {
                "metric": "normalized RMSE",
                "rows": [{"run": "full", "share": 0.1, **row}],
                "persistence": 2.5,
            },
        },
        "bar": {"tasks_better_at_10pct": ["enso", "ocean"], "met": True},
    }
    text = fm_study.report(results)
    assert "| 10 % | lora | 0.99" in text and "Persistence: 2.500." in text
    assert "on >= 2 of 3 tasks): met (enso, ocean)." in text
    # The bar counts the full fine-tune only: enso's win here is a low-rank one.
    assert fm_study.bar(results) == {"tasks_better_at_10pct": ["ocean"], "met": False}
