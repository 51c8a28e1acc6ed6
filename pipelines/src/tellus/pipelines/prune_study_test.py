"""The study's table from its records: ratios to the unpruned row and RMSE changes by hand."""

from tellus.pipelines import prune_study


def _row(fraction, pruned, train, infer, z500_1d, chosen_by="entropy", median=None):
    scores = {
        f"{v} {lead}": {"rmse": 1.0, "persistence": 2.0, "climatology": 2.0, "beats_both": True}
        for v in prune_study.VARIABLES
        for lead in prune_study.LEADS
    }
    scores["Z500 1d"] = {
        "rmse": z500_1d,
        "persistence": 2.0,
        "climatology": 1.5,
        "beats_both": z500_1d < 1.5,
    }
    row = {
        "fraction": fraction,
        "chosen_by": chosen_by,
        "pruned": pruned,
        "parameters": 1000,
        "train_samples_per_s": train,
        "infer_samples_per_s": infer,
        "train_memory_bytes": 3 * 2**20,
        "scores": scores,
    }
    if median is not None:
        row["train_median_samples_per_s"] = median
    return row


def test_the_table_compares_every_row_with_the_unpruned_one():
    study = {
        "atmosphere": [
            _row(0.0, [], 10.0, 40.0, 1.0, median=9.0),
            _row(0.4, [0, 1, 4], 13.0, 50.0, 1.6, median=10.8),
            _row(0.375, [3, 5, 6], 12.0, 44.0, 1.02, chosen_by="named"),
        ],
        "enso": [
            {
                "blocks_removed": 0,
                "pruned": [],
                "train_samples_per_s": 400.0,
                "train_memory_bytes": 2**21,
                "correlation": {"6": 0.7, "12": 0.44, "24": 0.27},
            },
            {
                "blocks_removed": 2,
                "pruned": [0, 1],
                "train_samples_per_s": 600.0,
                "train_memory_bytes": 2**20,
                "correlation": {"6": 0.69, "12": 0.44, "24": 0.27},
            },
        ],
    }
    lines = prune_study.table(study).splitlines()
    row40 = next(line for line in lines if line.startswith("| 40 % |"))
    assert "13.00 (1.30x; median 1.20x)" in row40 and "50.00 (1.25x)" in row40
    assert "1.6 (+60.0 %)" in row40 and "| 3 |" in row40  # MiB
    assert row40.endswith("| 5 / 6 |")  # Z500 1d no longer beats climatology
    named = next(line for line in lines if line.startswith("| 38 % (named) |"))
    assert "1.02 (+2.0 %)" in named and named.endswith("| 6 / 6 |")
    enso = next(line for line in lines if line.startswith("| 2 |"))
    assert enso == "| 2 | [0, 1] | 600 (1.50x) | 1 | 0.690 | 0.440 | 0.270 |"


def test_a_one_at_a_time_row_prunes_round_by_round_and_keeps_each_round(tmp_path, monkeypatch):
    """The row runs `prune_one_at_a_time` (not `prune_lead`) on the same plan, records its
    rounds, scores the verdict kept from an earlier run and is labelled in the table."""
    from tellus.atmosphere import prune

    calls = []
    rounds = [{"removed": [b], "ranking": [], "steps": 2, "source": "s"} for b in (1, 4, 2)]

    def fake(kind):
        def run(plan, show_progress=True):
            calls.append((kind, plan.spec.fraction, plan.steps, plan.out))
            record = {
                "removed": [1, 4, 2],
                "pruned": [1, 2, 4],
                "ranking": [],
                "parameters": 7,
                "max_difference_from_lambda_zero": 0.0,
            }
            return {**record, "rounds": rounds} if kind == "rounds" else record

        return run

    monkeypatch.setattr(prune, "prune_lead", fake("lead"))
    monkeypatch.setattr(prune, "prune_one_at_a_time", fake("rounds"))
    out = tmp_path / "row"
    (out / "report").mkdir(parents=True)
    lines = ["variable,lead,tellus-pangu,persistence,climatology,beats_all"]
    lines += [f"{v},{lead},1.0,2.0,3.0,True" for v in ("geopotential@500",) for lead in ("24h",)]
    lines += ["temperature@850,5d,4.0,3.0,5.0,False", "temperature@850,48h,9.0,9.0,9.0,False"]
    (out / "report" / "verdict.csv").write_text("\n".join(lines) + "\n")

    args = (tmp_path / "source", out, tmp_path / "store", 0.4, 6)
    row = prune_study.atmosphere_row(*args, one_at_a_time=True)
    assert calls == [("rounds", 0.4, 6, out)]
    assert row["one_at_a_time"] and row["rounds"] == rounds and row["removed"] == [1, 4, 2]
    assert row["scores"] == {
        "Z500 1d": {"rmse": 1.0, "persistence": 2.0, "climatology": 3.0, "beats_both": True},
        "T850 5d": {"rmse": 4.0, "persistence": 3.0, "climatology": 5.0, "beats_both": False},
    }
    all_at_once = prune_study.atmosphere_row(*args)
    assert calls[-1][0] == "lead" and not all_at_once["one_at_a_time"]

    base = _row(0.0, [], 10.0, 40.0, 1.0)
    lines = prune_study.table({"atmosphere": [base, {**base, **row, "fraction": 0.375}]})
    assert any(
        line.startswith("| 38 % (one at a time) | [1, 2, 4] |") for line in lines.split("\n")
    )
