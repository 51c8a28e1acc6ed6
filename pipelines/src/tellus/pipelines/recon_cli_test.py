"""``tellus train|evaluate ocean_recon`` on their success path, with the library's training and
evaluation replaced by recorders: what the commands hand the library, what they print, and
that an evaluation finds the phase folders a training writes (the glue the error tests in
tests/cli_errors_test.py do not reach)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tellus.ocean import recon, recon_evaluate
from tellus.pipelines import ocean_cli
from tellus.pipelines.cli import app

runner = CliRunner()


def test_train_then_evaluate_through_the_commands(monkeypatch, tmp_path):
    calls = {}
    monkeypatch.setattr(ocean_cli, "check_run", lambda folder, run, param: folder / f"{run}.zarr")
    monkeypatch.setattr(recon, "finetune_months", lambda store, years: None)

    def fake_train(workdir, model_store, observed, *, recipe, mesh, rules):
        calls["train"] = (model_store.name, observed.name, recipe.steps, recipe.finetune_steps)
        (workdir / recon.FINETUNE / "checkpoints").mkdir(parents=True)
        (workdir / recon.RUN_INFO).write_text(json.dumps({"recipe": {}}))
        return {"histories": {recon.PRETRAIN: [(0, 0.5)], recon.FINETUNE: [(0, 0.25)]}}

    def fake_run(workdir, observed, report, *, settings):
        calls["evaluate"] = (observed.name, settings.coverages, settings.steps)
        return {
            "guidance_scale": {"scale": 4.0, "spread": True},
            "mse": {"0.05": {"reconstruction": {"mse_withheld": 0.01}}},
            "bar": {
                "beats_gp_withheld_at_5_percent": True,
                "beats_climatology_withheld": {"0.05": True},
                "pass": True,
            },
        }

    monkeypatch.setattr(recon, "train_recon", fake_train)
    monkeypatch.setattr(recon_evaluate, "run", fake_run)
    run, data = tmp_path / "run", tmp_path / "data"
    data.mkdir()
    args = ["--workdir", run, "--data", data]
    result = runner.invoke(
        app, ["train", "ocean_recon", *map(str, args), "--steps", "800", "--mesh", "data=1"]
    )
    assert result.exit_code == 0, result.output
    assert calls["train"] == ("model.zarr", "observed.zarr", 800, 250)
    assert "mesh data=1" in result.output and "finetune: final loss 0.2500" in result.output
    result = runner.invoke(app, ["evaluate", "recon", *map(str, args), "--coverage", "5"])
    assert result.exit_code == 0, result.output
    assert calls["evaluate"] == ("observed.zarr", (0.05,), 50)
    assert "guidance scale 4, spread True" in result.output and "-> pass" in result.output
