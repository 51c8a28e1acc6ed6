"""``tellus bench``'s bookkeeping against hand-made figures (the measurements are the
libraries' benchmarking helpers, tested in tellus.training)."""

import json

import pytest
from typer.testing import CliRunner

from tellus.pipelines import bench
from tellus.pipelines.cli import app


def result(scale: float = 1.0) -> dict:
    return {
        "device": "cpu",
        "seconds": 60.0,
        "matmul_flops_per_s": 100e9 * scale,
        "enso": {"train": {"samples_per_s": 50.0 * scale}, "infer": {"samples_per_s": 900.0}},
        "earth": {"atmosphere": {"samples_per_s": 47.0}},
        "loader": {"loader_samples_per_s": 30.0},
    }


def test_the_headline_names_each_part_and_the_previous_run_is_kept(tmp_path, monkeypatch):
    h = bench.headline(result())
    assert h == {
        "matmul GFLOP/s": pytest.approx(100.0),
        "enso train samples/s": 50.0,
        "enso infer samples/s": 900.0,
        "earth atmosphere train samples/s": 47.0,
        "loader samples/s": 30.0,
    }
    runs = iter([result(1.0), result(2.0)])
    monkeypatch.setattr(bench, "run", lambda parts: next(runs))
    for _ in range(2):
        out = CliRunner().invoke(app, ["bench", "--out", str(tmp_path), "--parts", "enso"])
        assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "previous.json").read_text())["matmul_flops_per_s"] == 100e9
    assert json.loads((tmp_path / "bench.json").read_text())["matmul_flops_per_s"] == 200e9
    # The second run printed twice the first's matmul rate and training rate.
    lines = [ln for ln in out.output.splitlines() if "matmul" in ln or "enso train" in ln]
    assert len(lines) == 2 and all("2.00" in ln for ln in lines)


def test_the_reference_shape_has_the_token_count_counted_by_hand():
    from tellus.atmosphere import bench as atmosphere_bench

    cfg = atmosphere_bench.REFERENCE
    assert (cfg.lat, cfg.lon, cfg.dim, cfg.depths, cfg.heads, cfg.window) == (
        64,
        128,
        96,
        (2, 6, 6, 2),
        (3, 6, 6, 3),
        (2, 6, 12),
    )
    # ceil(13 / 2) level patches + the surface, 64 / 4 x 128 / 4 patches.
    assert atmosphere_bench.gemm_rates(cfg, repeats=1)["tokens"] == (7 + 1) * 16 * 32


def test_the_pruning_part_runs_only_when_named_and_heads_its_speedups(tmp_path, monkeypatch):
    asked = []

    def run(parts):
        asked.append(parts)
        return {
            **result(),
            "pruning": {
                "cpu preset": {"removed": [1, 2, 4], "blocks": 8, "share": 0.43, "speedup": 1.16}
            },
        }

    monkeypatch.setattr(bench, "run", run)
    h = bench.headline(run(()))
    assert h["cpu preset: attention share of the step"] == 0.43
    assert h["cpu preset: 3 of 8 attention layers removed, train speedup"] == 1.16
    asked.clear()
    for argv in ([], ["--parts", "pruning"]):
        out = CliRunner().invoke(app, ["bench", "--out", str(tmp_path), *argv])
        assert out.exit_code == 0, out.output
    assert "pruning" not in asked[0] and asked[1] == ("pruning",)
    bad = CliRunner().invoke(app, ["bench", "--out", str(tmp_path), "--parts", "prune"])
    assert bad.exit_code == 2 and "choose from" in bad.output and "pruning" in bad.output
