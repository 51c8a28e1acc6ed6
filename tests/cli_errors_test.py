"""Every mistake a user can make on the `tellus` command line: one line on stderr that names
the option or path and what was expected, exit status 2, and nothing run.

No case here builds, trains or compiles anything: each is refused before work starts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tellus.pipelines.cli import app

runner = CliRunner()


def refused(args: list[str], *expected: str) -> str:
    """Runs ``tellus ARGS``; checks exit 2 and one ``tellus: error:`` line naming each of
    ``expected``; returns that line."""
    result = runner.invoke(app, [str(a) for a in args])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (args, result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("tellus: error: "), (args, result.stderr)
    assert not result.stdout.strip(), (args, result.stdout)
    for text in expected:
        assert text in lines[0], (args, text, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    """A file, a folder that is not a store, a Zarr store outside the schema and a small
    store in the schema (mock data, no physics)."""
    import zarr

    from tellus.data import mock

    root = tmp_path_factory.mktemp("places")
    (root / "file.txt").write_text("not a store\n")
    (root / "folder").mkdir()
    zarr.open_group(root / "empty.zarr", mode="w")
    mock.mock_era5(n_lat=4, n_lon=8, static=()).to_zarr(root / "mock.zarr", zarr_format=3)
    mock.mock_era5(n_lat=4, n_lon=8, static=()).to_netcdf(root / "source.nc")
    return {
        "root": root,
        "missing": root / "missing.zarr",
        "file": root / "file.txt",
        "folder": root / "folder",
        "empty": root / "empty.zarr",
        "mock": root / "mock.zarr",
        "source": root / "source.nc",
    }


def test_usage_errors_are_one_line():
    refused(["nosuch"], "No such command 'nosuch'")
    refused(["forecast"], "--init")
    refused(["forecast", "enso"], "--init")
    for verb in ("train", "forecast", "evaluate"):  # the domains named from the registry
        refused(
            [verb, "moon"],
            "DOMAIN: 'moon' is not a registered domain (registered: atmosphere, enso, ocean",
            f"`tellus {verb}` serves atmosphere, enso",
        )
    refused(["forecast", "--init", "2000-01-01T00", "--bogus"], "--bogus")
    refused(["data", "build", "nope"], "'nope'", "atmosphere")
    refused(["plan", "--dtype", "f16"], "--dtype", "'f16'")


def test_data_commands(places):
    p = places
    refused(["data", "describe", p["missing"]], "PATH", str(p["missing"]), "does not exist")
    refused(["data", "describe", p["file"]], "PATH", "is a file", "expected a Zarr store")
    refused(["data", "describe", p["folder"]], "PATH", "without Zarr metadata")
    refused(["data", "describe", p["empty"]], "PATH", "latitude", "Tellus schema")
    refused(["data", "validate", p["missing"]], "STORE", "does not exist")
    refused(["data", "stats", p["missing"]], "STORE", "does not exist")
    refused(["data", "stats", p["empty"]], "cannot compute statistics", "latitude")
    refused(["data", "stats", p["mock"], "--step", "7x"], "--step: '7x' is not a duration")
    refused(["data", "stats", p["mock"], "--start", "junk"], "--start: 'junk'", "2000-03-01T00")
    refused(["data", "stats", p["mock"], "--start", "2100-01-01"], "--start", "after the store")
    refused(
        ["data", "stats", p["mock"], "--start", "2000-02-01", "--stop", "2000-01-01"],
        "--start 2000-02-01 is after --stop 2000-01-01",
    )
    refused(["data", "stats", p["mock"], "--step", "5h"], "--step 5h", "multiple of the store")
    for cmd in (
        ["data", "stats", p["mock"]],
        ["data", "ingest", p["source"], "--to", p["root"] / "n.zarr"],
    ):
        refused([*cmd, "--scheduler", "nowhere"], "--scheduler", "'nowhere' is not 'local'")
    refused(["data", "build", "atmosphere", "--preset", "huge"], "--preset", "'huge'", "tiny")
    refused(["data", "build", "atmosphere", "--out", p["file"]], "--out", "is a file")
    refused(["data", "build", "atmosphere", "--out", p["file"] / "a.zarr"], "--out", "is a file")
    to = ["--to", p["root"] / "new.zarr"]
    refused(["data", "ingest", p["missing"], *to], "ingest failed", str(p["missing"]))
    refused(["data", "ingest", p["file"], *to], "ingest failed", "unrecognized format")
    refused(["data", "ingest", p["source"], *to, "--time-chunk", "0"], "--time-chunk")
    refused(["data", "ingest", p["source"], "--to", p["mock"]], "--to", "pass --overwrite")
    refused(
        ["data", "ingest", p["source"], "--to", p["folder"], "--overwrite"],
        "--to",
        "not a Zarr store and would be replaced",
    )
    assert not (p["root"] / "new.zarr").exists() and p["folder"].is_dir()


def test_ingest_regrid_options_and_curvilinear_sources(places, tmp_path):
    import cftime

    from tellus.data import mock

    p, to = places, ["--to", tmp_path / "new.zarr"]
    refused(["data", "ingest", p["source"], *to, "--grid", "0"], "--grid", "positive number")
    refused(["data", "ingest", p["source"], *to, "--grid", "-1"], "--grid", "positive number")
    refused(["data", "ingest", p["source"], *to, "--grid", "0.7"], "--grid", "divide 180")
    refused(["data", "ingest", p["source"], *to, "--regrid-method", "spline"], "--regrid-method")
    refused(["data", "ingest", p["source"], *to, "--regrid-neighbours", "0"], "--regrid-neighbours")
    refused(["data", "ingest", p["source"], *to, "--regrid-radius", "0"], "--regrid-radius")
    refused(
        ["data", "ingest", p["source"], *to, "--grid", "1"],
        "ingest failed, nothing written",
        "no source is on a curvilinear grid",
    )
    ocean = mock.mock_curvilinear_ocean(months=1, step=10.0)
    skewed = tmp_path / "skewed.nc"
    ocean.assign_coords(longitude=(("jj", "ii"), ocean.longitude.values[:-1, :-1])).to_netcdf(
        skewed
    )
    refused(
        ["data", "ingest", skewed, *to],
        "ingest failed, nothing written",
        "coords 'latitude' ('j', 'i') (18, 36) and 'longitude' ('jj', 'ii') (17, 35)",
    )
    daily = tmp_path / "daily_360.nc"
    days = cftime.num2date([0, 1], "days since 2001-02-29", calendar="360_day")  # 29, 30 Feb
    ocean = mock.mock_curvilinear_ocean(months=2, step=10.0, calendar="360_day")
    ocean = ocean.drop_vars("time_bnds").assign_coords(time=("time", days))
    ocean.assign_attrs(frequency="day").to_netcdf(daily)
    refused(["data", "ingest", daily, *to], "2001-02-29 (360_day calendar")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["daily_360.nc", "skewed.nc"]


def test_atmosphere_commands(places, tmp_path):
    p = places
    store = ["--store", p["mock"]]  # 2020-01-01T00 .. 2020-01-04T18 every 6 h
    init = ["--init", "2020-01-01T00"]
    run = tmp_path / "run"
    refused(["forecast", *init, "--members", "0"], "--members", "greater than or equal to 1")
    refused(["forecast", *init, "--lead", "7x"], "--lead: '7x' is not a duration such as 6h, 5d")
    refused(["forecast", *init, "--every", "1.5h"], "--every: '1.5h'", "whole number of hours")
    refused(["forecast", *init, "--every", "12h", "--lead", "6h"], "--every 12h", "--lead 6h")
    refused(["forecast", "--init", "yesterday-ish"], "--init: 'yesterday-ish'")
    refused(["forecast", *init, "--perturbation", "foo"], "--perturbation", "'foo'", "perlin")
    refused(["forecast", *init, "--store", p["missing"]], "--store", "tellus data build")
    refused(["forecast", *init, "--store", p["empty"]], "--store", "not a store in the Tellus")
    refused(["forecast", "--init", "2001-01-01T00", *store], "--init: 2001-01-01T00 not in")
    refused(["forecast", *init, *store, "--workdir", run], "--workdir", "tellus train atmosphere")
    run.mkdir()
    refused(["forecast", *init, *store, "--workdir", run], "--workdir", "no trained lead models")
    (run / "lead_6h").mkdir()  # a training that never wrote a checkpoint
    refused(["forecast", *init, *store, "--workdir", run], "--workdir", "no complete checkpoint")
    refused(["forecast", *init, *store, "--out", p["folder"]], "--out", "would be replaced")
    # the same command with its domain named
    refused(["forecast", "atmosphere", *init, "--every", "12h", "--lead", "6h"], "--every 12h")
    refused(["evaluate", "atmosphere", *store, "--max-inits", "0"], "--max-inits")
    refused(["evaluate", *store, "--workdir", tmp_path / "none"], "--workdir", "does not exist")
    refused(["evaluate", *store, "--report", p["file"]], "--report", "is a file")
    refused(["evaluate", *store, "--init-every", "0h"], "--init-every: '0h'", "positive")
    refused(["evaluate", *store, "--max-inits", "0"], "--max-inits", "greater than or equal to 1")
    refused(["evaluate", "--store", p["folder"]], "--store", "without Zarr metadata")
    train = ["train", "atmosphere", "--workdir", tmp_path / "new"]
    refused([*train, "--store", p["missing"]], "--store", "does not exist")
    refused([*train, "--store", p["file"]], "--store", "is a file")
    refused([*train, *store, "--batch", "0"], "--batch", "greater than or equal to 1")
    refused([*train, *store, "--loss", "l3"], "--loss", "mae or mse")
    refused([*train, *store, "--leads", "6"], str(p["mock"]), "16 times", "need at least 24")
    refused(["train", "atmosphere", *store, "--workdir", p["file"]], "--workdir", "is a file")
    refused([*train, *store, "--profile-steps", "10"], "--profile-steps", "FIRST:STOP", "'10'")
    refused([*train, *store, "--profile-steps", "5:5"], "--profile-steps", "0 <= FIRST < STOP")
    assert not (tmp_path / "new").exists()


def test_enso_commands(places, tmp_path):
    p = places
    train = ["train", "enso", "--workdir", tmp_path / "enso", "--worlds", tmp_path / "worlds"]
    refused([*train, "--preset", "huge"], "--preset: 'huge' is not one of tiny, small, paper")
    refused([*train, "--lead-rank", "24"], "--lead-rank: 24 is not in [0, 24)")
    for option in ("--seeds", "--pretrain-steps", "--finetune-steps", "--batch"):
        refused([*train, option, "0"], option, "greater than or equal to 1")
    refused([*train, "--model-years", "1201"], "--model-years", "equal segments", "1200")
    refused([*train, "--model-years", "2"], "--model-years", "no sample")
    refused([*train, "--observed-years", "100"], "--finetune-years / --test-years", "gap")
    refused([*train, "--finetune-years", "2"], "--finetune-years", "no sample")
    refused([*train, "--batch", "5000"], "--batch: 5000 is more than the 1173 samples")
    refused(["train", "enso", "--workdir", p["file"]], "--workdir", "is a file")
    refused([*train, "--profile-steps", "a:b"], "--profile-steps", "FIRST:STOP", "'a:b'")
    refused(["train", "enso", "--worlds", p["file"]], "--worlds", "is a file")
    assert not (tmp_path / "enso").exists() and not (tmp_path / "worlds").exists()
    run = tmp_path / "run"
    refused(["evaluate-enso", "--workdir", run], "--workdir", "ensemble.json missing")  # old name
    evaluate = ["evaluate", "enso", "--workdir", run]
    refused(evaluate, "--workdir", "ensemble.json missing", "tellus train enso")
    run.mkdir()
    (run / "ensemble.json").write_text("{}")
    refused(evaluate, "--workdir", "no member_* folders")
    refused([*evaluate, "--worlds", tmp_path / "nowhere"], "--worlds", "does not exist")
    refused([*evaluate, "--worlds", p["folder"]], "--worlds", "model.zarr' does not exist")
    refused([*evaluate, "--long-test-years", "-3"], "--long-test-years", "greater than or equal")
    refused([*evaluate, "--long-test-years", "1"], "--long-test-years", "no sample")
    refused([*evaluate, "--long-test-years", "1201"], "--long-test-years", "equal segments")
    refused([*evaluate, "--report", p["file"]], "--report", "is a file")


def test_prune_commands(places, tmp_path):
    p = places
    atm = ["prune", "atmosphere", "--store", p["mock"], "--out", tmp_path / "out"]
    refused([*atm, "--source", p["missing"]], "--source", "does not exist", "tellus train")
    refused([*atm, "--source", p["folder"]], "--source", "not a lead-model folder")
    refused(
        [*atm, "--source", p["folder"], "--fraction", "1.5"],
        "--fraction",
        "less than or equal to 1",
    )
    refused([*atm, "--source", p["folder"], "--layers", "1,x"], "--layers", "'1,x'")
    refused([*atm, "--source", p["folder"], "--layers", "2,2"], "--layers", "distinct")
    refused([*atm, "--source", p["folder"], "--steps", "0"], "--steps")
    refused([*atm, "--source", p["folder"], "--anneal", "0"], "--anneal")
    refused(["prune", "atmosphere", "--out", p["file"]], "--out", "is a file")
    lead = tmp_path / "lead"
    lead.mkdir()
    (lead / "forecaster.json").write_text("{}")
    distilled = [*atm, "--source", lead, "--distill", "0.5", "--teacher"]
    refused([*distilled, p["missing"]], "--teacher", "does not exist")
    refused([*distilled, p["folder"]], "--teacher", "no forecaster.json")
    refused([*atm, "--source", lead, "--teacher", lead], "--teacher", "--distill weight above 0")
    refused([*atm, "--source", lead, "--distill", "1.5"], "--distill", "less than or equal to 1")
    refused(
        [*atm, "--source", lead, "--one-at-a-time", "--layers", "1,4"],
        "--one-at-a-time",
        "give --fraction, not --layers",
    )
    enso = ["prune", "enso", "--out", tmp_path / "enso"]
    refused([*enso, "--source", p["missing"]], "--source", "does not exist")
    refused([*enso, "--source", p["folder"]], "--source", "ensemble.json missing")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ensemble.json").write_text("{}")
    refused([*enso, "--source", tmp_path / "run", "--worlds", p["folder"]], "--worlds")
    study = ["study", "prune", "--out", tmp_path / "study"]
    refused([*study, "--fractions", "0,2"], "--fractions", "[0, 1]")
    refused([*study, "--fractions", "a"], "--fractions", "'a'")
    refused([*study, "--layer-sets", "3,5;1,x"], "--layer-sets", "'1,x'")
    refused([*study, "--fractions", "0.4", "--distill", "0.5"], "--fractions", "start with 0")
    refused([*study, "--atmosphere-source", p["missing"]], "--atmosphere-source", "does not exist")
    assert not (tmp_path / "out").exists() and not (tmp_path / "enso").exists()
    assert not (tmp_path / "study").exists()


def test_enso_forecast(places, tmp_path):
    import numpy as np
    import pandas as pd
    import xarray as xr

    from tellus.enso import world

    p = places
    maps = tmp_path / "maps.zarr"  # 2000-01 .. 2000-06, no model behind it
    dims = ("time", "latitude", "longitude")
    zeros = np.zeros((6, 4, 8), np.float32)
    xr.Dataset(
        {v: (dims, zeros, {"units": "K"}) for v in (world.SST, world.HEAT)},
        coords={
            "time": pd.date_range("2000-01", periods=6, freq="MS"),
            "latitude": np.linspace(-15, 15, 4),
            "longitude": np.arange(8) * 45.0,
        },
    ).to_zarr(maps, zarr_format=3, consolidated=False)
    forecast = ["forecast", "enso", "--init", "2000-06"]
    refused([*forecast, "--store", p["missing"]], "--store", "does not exist")
    refused([*forecast, "--store", p["folder"]], "--store", "without Zarr metadata")
    refused([*forecast, "--store", p["empty"]], "--store", "latitude")
    refused([*forecast, "--store", p["mock"]], "--store", "lacks", world.SST)
    refused([*forecast, "--store", maps, "--out", p["folder"]], "--out", "is a folder")
    refused([*forecast, "--store", maps, "--out", p["file"] / "f.nc"], "--out", "is a file")
    store = ["--store", maps]
    refused(["forecast", "enso", "--init", "1999-12", *store], "--init", "['1999-12'] are not in")
    refused(
        ["forecast", "enso", "--init", "2000-02", *store],
        "--init: init month 2000-02 needs the 2 months before it (1999-12, 2000-01)",
    )
    refused([*forecast, *store, "--workdir", tmp_path / "none"], "--workdir", "tellus train enso")
    refused([*forecast, *store, "--workdir", p["folder"]], "--workdir", "no ENSO model in")
    assert not (p["folder"] / "finetune").exists()  # nothing made where no model was


def test_ocean_commands(places, tmp_path):
    p = places
    data = ["--data", tmp_path / "nowhere"]
    train = ["train", "ocean", "--workdir", tmp_path / "ocean", "--mesh", "data=1"]
    refused([*train, *data], "--data", "does not exist; build it with `tellus data build ocean`")
    refused(
        [*train, "--data", p["folder"]],
        "--data",
        "model.zarr' does not exist; build it with `tellus data build ocean`",
    )
    refused([*train, "--data", p["file"]], "--data", "is a file")
    refused([*train, "--preset", "huge"], "--preset: 'huge' is not one of")
    for option in ("--pretrain-steps", "--finetune-steps", "--batch", "--test-years"):
        refused([*train, option, "0"], option, "greater than or equal to 1")
    refused([*train, "--pretrain-lr", "-1"], "--pretrain-lr")
    refused([*train, "--forcing-modes", "-1"], "--forcing-modes")
    refused([*train, "--base", "mean"], "--base: 'mean' is not one of")
    refused(
        [*train, "--base", "state", "--forcing-modes", "2"],
        "--forcing-modes",
        "the 'state' base takes 0",
    )
    refused(
        [*train, "--observed-forcing", "--forcing-modes", "2"],
        "--forcing-modes",
        "with --observed-forcing it takes 0",
    )
    refused([*train, "--mesh", "data=x"], "--mesh")
    refused([*train, "--mesh", "data=8", "--batch", "2"], "--batch", "multiple of data x fsdp")
    refused(["train", "ocean", "--workdir", p["file"]], "--workdir", "is a file")
    refused([*train, "--profile-steps", "3:1"], "--profile-steps", "0 <= FIRST < STOP")
    assert not (tmp_path / "ocean").exists()
    run = tmp_path / "run"
    evaluate = ["evaluate", "ocean", "--workdir", run]
    refused(evaluate, "--workdir", "does not exist; train the forecaster with `tellus train ocean`")
    run.mkdir()
    refused(evaluate, "--workdir", "ocean.json missing", "tellus train ocean")
    (run / "ocean.json").write_text("{}")
    refused(evaluate, "--workdir", "no ocean forecaster in", "tellus train ocean")
    refused([*evaluate, "--rollout-years", "-1"], "--rollout-years")
    refused([*evaluate, "--report", p["file"]], "--report", "is a file")
    forecast = ["forecast", "ocean", "--init", "2020-01-01"]
    refused(["forecast", "ocean"], "--init")
    refused(["forecast", "ocean", "--init", "2000-13"], "--init")
    refused([*forecast, "--store", p["missing"]], "--store", "does not exist")
    refused([*forecast, "--store", p["folder"]], "--store", "without Zarr metadata")
    refused([*forecast, "--store", p["mock"], "--months", "0"], "--months")
    refused(
        ["forecast", "ocean", "--init", "1900-01", "--store", p["mock"]],
        "--init",
        "1900-01-01 not in",
    )
    refused(
        [*forecast, "--store", p["mock"], "--workdir", tmp_path / "none"],
        "--workdir",
        "tellus train ocean",
    )
    refused(
        [*forecast, "--store", p["mock"], "--workdir", p["folder"]],
        "--workdir",
        "no ocean forecaster in",
    )
    refused([*forecast, "--store", p["mock"], "--out", p["file"]], "--out")
    assert not (p["folder"] / "finetune").exists()


def test_ocean_recon_commands(places, tmp_path):
    import dataclasses

    from tellus.ocean import recon
    from tellus.pipelines import recon_cli

    # The CLI's defaults are the library's CPU recipe.
    r = recon.Recipe()
    assert dataclasses.astuple(r) == dataclasses.astuple(
        recon.Recipe(
            steps=recon_cli.CPU_STEPS,
            batch_size=recon_cli.CPU_BATCH,
            learning_rate=recon_cli.CPU_LR,
            ema_decay=recon_cli.CPU_EMA,
            finetune_steps=recon_cli.CPU_FINETUNE,
            finetune_years=recon_cli.CPU_FINETUNE_YEARS,
            finetune_lr=recon_cli.CPU_FINETUNE_LR,
            preset=recon_cli.CPU_PRESET,
        )
    )
    p = places
    for verb in ("ocean_recon", "recon"):  # the alias refuses the same
        train = ["train", verb, "--workdir", tmp_path / "recon", "--mesh", "data=1"]
        refused(
            [*train, "--data", tmp_path / "nowhere"],
            "--data",
            "does not exist; build it with `tellus data build ocean`",
        )
        refused(
            [*train, "--data", p["folder"]],
            "--data",
            "model.zarr' does not exist; build it with `tellus data build ocean`",
        )
        refused([*train, "--preset", "huge"], "--preset: 'huge' is not one of")
        for option in ("--steps", "--batch"):
            refused([*train, option, "0"], option, "greater than or equal to 1")
        refused([*train, "--lr", "0"], "--lr", "learning rate > 0")
        refused([*train, "--finetune-lr", "0"], "--finetune-lr", "learning rate > 0")
        refused([*train, "--finetune-steps", "-1"], "--finetune-steps")
        refused([*train, "--finetune-years", "0"], "--finetune-years")
        refused([*train, "--ema-decay", "1.5"], "--ema-decay", "[0, 1)")
        refused([*train, "--ema-decay", "0.9999"], "--ema-decay", "initial weights")
        refused(["train", verb, "--workdir", p["file"]], "--workdir", "is a file")
    from tellus.ocean.recon_test import make_store

    runs = tmp_path / "runs"
    runs.mkdir()
    make_store(runs / "model.zarr", months=8)
    make_store(runs / "observed.zarr", months=24)
    train = [
        "train",
        "ocean_recon",
        "--workdir",
        tmp_path / "recon",
        "--data",
        runs,
        "--mesh",
        "data=1",
    ]
    refused([*train, "--finetune-years", "3"], "--finetune-years", "fewer than the 3 years")
    assert not (tmp_path / "recon").exists()
    run = tmp_path / "run"
    evaluate = ["evaluate", "ocean_recon", "--workdir", run]
    for bad in ("0", "abc", "5,120", ""):
        refused([*evaluate, "--coverage", bad], "--coverage", "percentages in (0, 100]")
    refused([*evaluate, "--samples", "1"], "--samples")
    refused([*evaluate, "--steps", "0"], "--steps")
    refused([*evaluate, "--mode", "dps"], "--mode: 'dps' is not one of")
    refused([*evaluate, "--spread", "yes"], "--spread: 'yes' is not one of")
    refused([*evaluate, "--eta", "2"], "--eta")
    refused([*evaluate, "--test-months", "40"], "--test-months", "exceeds the 3 test years")
    refused(
        evaluate,
        "--workdir",
        "does not exist; train the diffusion model with `tellus train ocean_recon`",
    )
    run.mkdir()
    refused(evaluate, "--workdir", "recon.json missing", "tellus train ocean_recon")
    (run / "recon.json").write_text("{}")
    refused(evaluate, "--workdir", "no checkpoints in", "tellus train ocean_recon")
    (run / "checkpoints").mkdir()
    refused([*evaluate, "--data", p["folder"]], "--data", "observed.zarr' does not exist")
    refused([*evaluate, "--report", p["file"]], "--report", "is a file")
    refused(["evaluate", "recon", "--workdir", tmp_path / "none"], "--workdir", "ocean_recon")


def test_plan(places, tmp_path):
    plan = ["plan", "--target", "toy", "--batch", "8"]
    refused([*plan, "--mesh", "data=4,bogus=2"], "--mesh", "unknown mesh axes ['bogus']")
    refused([*plan, "--mesh", "data=x"], "--mesh", "'data=x'", "AXIS=SIZE")
    refused([*plan, "--mesh", "data=-1"], "--mesh", "no -1")
    refused([*plan, "--mesh", "data=0"], "--mesh", ">= 1")
    refused([*plan, "--mesh", "data=4,data=2"], "--mesh", "given twice")
    refused(["plan", "--target", "nosuch", "--mesh", "data=8"], "--target: 'nosuch'", "toy")
    refused(["plan", "--target", "toy", "--batch", "0"], "--batch", "greater than or equal to 1")
    refused(
        ["plan", "--target", "toy", "--batch", "6", "--mesh", "data=4,fsdp=2"],
        "--batch: 6 is not a multiple of data x fsdp = 8",
    )
    mesh = ["--mesh", "data=8"]
    refused([*plan, *mesh, "--accelerator", "tpu-v9"], "--accelerator: 'tpu-v9'", "tpu-v5e")
    refused([*plan, *mesh, "--headroom", "1.5"], "--headroom: 1.5 is not in [0, 1)")
    refused([*plan, *mesh, "--json", tmp_path / "no" / "plan.json"], "--json", "does not exist")
    refused([*plan, *mesh, "--json", places["folder"]], "--json", "is a folder")


def test_bench():
    refused(["bench", "--parts", "atmosphere,moon"], "--parts", "'moon'", "earth, loader")


def test_demo(places):
    for option in ("--store", "--workdir", "--report"):
        refused(["demo", "atmosphere", option, places["file"]], option, "is a file")
        refused(["demo", "atmosphere", option, places["file"] / "sub"], option, "is a file")
    refused(["demo", "--out", places["file"]], "--out", "is a file")
    refused(["demo", "earth", "--test-years", "500"], "--test-years", "less than or equal to 400")
    refused(["demo", "moon"], "DOMAIN: 'moon'", "serves earth, atmosphere, enso")


def test_only_the_users_mistakes_become_one_line(places, monkeypatch):
    """Schema errors from the libraries: one line, exit 2; a store another process holds:
    one line, exit 1; anything else is a bug and keeps its traceback."""
    from tellus.data import describe
    from tellus.data.errors import LockedError, SchemaError

    def raising(error):
        def summarize(path):
            raise error

        return summarize

    args = ["data", "describe", str(places["mock"])]
    monkeypatch.setattr(describe, "summarize", raising(SchemaError("variable 'x'\nhas no units")))
    assert refused(args) == "tellus: error: variable 'x'; has no units"
    monkeypatch.setattr(describe, "summarize", raising(LockedError("in use by pid 1")))
    busy = runner.invoke(app, args)
    assert busy.exit_code == 1 and busy.stderr == "tellus: error: in use by pid 1\n"
    for bug in (RuntimeError("boom"), KeyError("latitude_bounds")):
        monkeypatch.setattr(describe, "summarize", raising(bug))
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and result.exception is bug


def test_validate_still_answers_invalid_with_exit_1(places):
    result = runner.invoke(app, ["data", "validate", str(places["empty"])])
    assert result.exit_code == 1 and result.stderr.strip().startswith("invalid: ")
    assert len(result.stderr.strip().splitlines()) == 1


def _tellus() -> list[str]:
    """The installed console script (what `uv run tellus` runs), without uv's own output."""
    script = Path(sys.executable).with_name("tellus")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from tellus.pipelines.cli import main; main()"]


def test_the_console_script_prints_one_line_and_no_warnings(tmp_path, places):
    missing = subprocess.run(
        [*_tellus(), "data", "describe", "missing.zarr"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.splitlines() == ["tellus: error: PATH: 'missing.zarr' does not exist"]
    # zarr warns of consolidated metadata on every Zarr 3 write; the command hides it
    ok = subprocess.run(
        [*_tellus(), "data", "ingest", str(places["source"]), "--to", str(tmp_path / "a.zarr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "Warning" not in ok.stderr and "warn" not in ok.stderr, ok.stderr
