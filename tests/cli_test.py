"""End to end through the `tellus` command: build, describe, validate, stats, ingest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from tellus.data import held_suarez, statistics
from tellus.enso import train as enso_train
from tellus.enso import world
from tellus.pipelines.cli import app

SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "era5-samples"
runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "atmosphere-tiny.zarr"
    _run("data", "build", "atmosphere", "--preset", "tiny", "--out", str(out))
    return out


def test_build_writes_a_valid_store_with_statistics(tiny_store):
    ds = xr.open_zarr(tiny_store)
    assert ds.sizes["time"] == held_suarez.TINY.n_times
    assert list(ds.level.values) == list(held_suarez.TINY.pressure_levels)
    stats = statistics.read_statistics(statistics.stats_path(tiny_store))
    # The stats file holds the numbers of the store itself.
    np.testing.assert_allclose(
        stats["mean"]["temperature"].values,
        ds.temperature.mean(("time", "latitude", "longitude")).values,
        rtol=1e-5,
    )
    assert "valid" in _run("data", "validate", str(tiny_store), "--full")


def test_build_again_is_cached(tiny_store):
    before = {p: p.stat().st_mtime_ns for p in tiny_store.rglob("*") if p.is_file()}
    _run("data", "build", "atmosphere", "--preset", "tiny", "--out", str(tiny_store))
    after = {p: p.stat().st_mtime_ns for p in tiny_store.rglob("*") if p.is_file()}
    assert before == after


def test_describe_prints_the_summary(tiny_store):
    out = _run("data", "describe", str(tiny_store))
    assert "complete" in out and "geopotential" in out and "m2 s-2" in out
    assert "step 0 days 06:00:00" in out


def test_validate_reports_a_bad_store(tmp_path):
    from tellus.data import mock

    bad = mock.mock_era5(n_lat=4, n_lon=8)
    bad["geopotential"].attrs["units"] = "m"
    bad.to_zarr(tmp_path / "bad.zarr")
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "bad.zarr")])
    assert result.exit_code == 1
    assert "variable 'geopotential' has units 'm'" in result.output


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"ERA5 samples not found at {SAMPLES}")
def test_ingest_real_grib_then_validate(tmp_path):
    store = tmp_path / "era5.zarr"
    out = _run("data", "ingest", str(SAMPLES / "era5-levels-members.grib"), "--to", str(store))
    assert "geopotential" in out
    assert "valid" in _run("data", "validate", str(store), "--full")
    result = runner.invoke(
        app,
        [
            "data",
            "ingest",
            str(SAMPLES / "era5-levels-corrupted.grib"),
            "--to",
            str(tmp_path / "bad.zarr"),
        ],
    )
    assert result.exit_code == 2 and not (tmp_path / "bad.zarr").exists()  # a bad input
    (line,) = result.stderr.splitlines()
    assert line.startswith("tellus: error: ingest failed, nothing written")
    assert "corrupt or truncated" in line


def test_ingest_a_curvilinear_noleap_file_then_validate(tmp_path):
    from tellus.data import mock

    src, store = tmp_path / "thetao_Omon.nc", tmp_path / "ocean.zarr"
    mock.mock_curvilinear_ocean(months=2).to_netcdf(src)
    args = ["--grid", "10", "--regrid-method", "nearest", "--regrid-radius", "2000"]
    out = _run("data", "ingest", str(src), "--to", str(store), *args)
    assert "'latitude': 18, 'longitude': 36" in out and "ocean_mask" in out
    assert "valid" in _run("data", "validate", str(store), "--full")
    attrs = xr.open_zarr(store).attrs
    assert (attrs["regrid_method"], attrs["regrid_radius_km"]) == ("nearest", 2000.0)
    assert attrs["calendar_source"] == "noleap"


def _flat(output: str) -> str:
    """The text of a (rich-boxed, wrapped) error message on one line."""
    return " ".join(output.replace("│", " ").split())


def test_atmosphere_commands_reject_bad_options_clearly(tiny_store, tmp_path):
    for option, value, expected in [
        ("--rollout", "24x2", "24:2"),
        ("--finetune", "24:4", "24:4:100"),
        ("--steps", "6=250", "6:250,24:450"),
        ("--finetune", "24:0:100", "rollout >= 1"),
        ("--preset", "huge", "choose from"),
        ("--leads", "5", "multiple of the store's 6 h"),
    ]:
        bad = runner.invoke(
            app,
            [
                "train",
                "atmosphere",
                "--store",
                str(tiny_store),
                option,
                value,
                "--workdir",
                str(tmp_path / "run"),
            ],
        )
        assert bad.exit_code == 2 and expected in _flat(bad.output), (option, value)
    missing = runner.invoke(
        app,
        [
            "forecast",
            "--init",
            "2000-01-01T00",
            "--store",
            str(tiny_store),
            "--workdir",
            str(tmp_path / "none"),
        ],
    )
    assert missing.exit_code == 2 and "tellus train atmosphere" in _flat(missing.output)
    missing = runner.invoke(app, ["evaluate", "--store", str(tmp_path / "nowhere.zarr")])
    assert missing.exit_code == 2 and "tellus data build atmosphere" in _flat(missing.output)


def test_plan_refuses_a_batch_the_mesh_cannot_split():
    result = runner.invoke(
        app, ["plan", "--target", "toy", "--batch", "6", "--mesh", "data=4,fsdp=2"]
    )
    assert result.exit_code == 2 and "multiple of data x fsdp = 8" in _flat(result.output)


def test_enso_train_and_evaluate_end_to_end(tmp_path):
    """Short worlds, one tiny member: the commands wire the library together and write the
    report; the skill numbers themselves are tested in tellus.enso."""
    worlds, run, report = tmp_path / "worlds", tmp_path / "enso", tmp_path / "report"
    bad = runner.invoke(app, ["evaluate-enso", "--workdir", str(run), "--worlds", str(worlds)])
    assert bad.exit_code == 2 and "tellus train enso" in _flat(bad.output)
    bad = runner.invoke(app, ["train", "enso", "--workdir", str(run), "--lead-rank", "24"])
    assert bad.exit_code == 2 and "--lead-rank: 24 is not in [0, 24)" in _flat(bad.output)
    out = _run(
        "train",
        "enso",
        "--worlds",
        str(worlds),
        "--workdir",
        str(run),
        "--preset",
        "tiny",
        "--lead-rank",
        "0",
        "--seeds",
        "1",
        "--pretrain-steps",
        "3",
        "--finetune-steps",
        "2",
        "--batch",
        "8",
        "--mesh",
        "data=1",  # one device: tests/cli_mesh_test.py covers the 8-device mesh
        "--model-years",
        "60",
        "--observed-years",
        "60",
        "--finetune-years",
        "30",
        "--test-years",
        "20",
    )
    assert "member 0: final losses" in out
    again = _run(
        "train",
        "enso",
        "--worlds",
        str(worlds),
        "--workdir",
        str(run),
        "--preset",
        "tiny",
        "--lead-rank",
        "0",
        "--seeds",
        "1",
        "--pretrain-steps",
        "3",
        "--finetune-steps",
        "2",
        "--batch",
        "8",
        "--mesh",
        "data=1",  # one device: tests/cli_mesh_test.py covers the 8-device mesh
        "--model-years",
        "60",
        "--observed-years",
        "60",
        "--finetune-years",
        "30",
        "--test-years",
        "20",
    )
    assert "member 0: already trained" in again
    assert (worlds / "model.zarr").exists() and (run / "ensemble.json").exists()
    assert json.loads((run / "ensemble.json").read_text())["model_overrides"] == {"lead_rank": None}
    members = enso_train.load_ensemble(run)
    assert members[0].config.lead_rank is None  # a full-rank head
    # forecast enso: Nino3.4 by lead from init months of the observed world (1850 .. 1909)
    observed = ["--store", str(worlds / "observed.zarr"), "--workdir", str(run)]
    bad = runner.invoke(app, ["forecast", "enso", "--init", "1850-02", *observed])
    assert bad.exit_code == 2 and "needs the 2 months before it" in _flat(bad.output)
    out = _run(
        "forecast",
        "enso",
        "--init",
        "1900-12",
        "--init",
        "1901-01",
        *observed,
        "--out",
        str(tmp_path / "nino.nc"),
    )
    assert "Nino3.4 from 2 init month(s) at leads 1-24 months, 1 member(s)" in out
    with xr.open_dataset(tmp_path / "nino.nc") as fc, xr.open_zarr(worlds / "observed.zarr") as w:
        assert fc["nino34"].dims == ("init_time", "lead") and fc.sizes["lead"] == 24
        i = int(np.flatnonzero(w.time.values == np.datetime64("1900-12-01"))[0])
        x = np.stack([w[v].values[i - 2 : i + 1] for v in (world.SST, world.HEAT)], axis=1)
        y = enso_train.predict(members, x[None], np.array([12]))[0]
        np.testing.assert_allclose(fc["nino34"].values[0], y, rtol=1e-5, atol=1e-6)
    # evaluate enso opens the 60-year worlds it was trained on, not the 1200-year default
    out = _run(
        "evaluate",
        "enso",
        "--workdir",
        str(run),
        "--worlds",
        str(worlds),
        "--report",
        str(report),
        "--long-test-years",
        "30",
        "--explain-steps",
        "2",  # the attributions' quality is tested in tellus.enso.explain_test
    )
    assert "resonet beats persistence" in out and "30 independent observed-world years" in out
    summary = json.loads((report / "summary.json").read_text())
    assert summary["n_test"] > 100 and summary["members"] == 1
    assert summary["explanation"]["steps"] == 2
    assert set(summary["correlation"]) >= {"resonet", "persistence", "damped_persistence", "lim"}
    # every month of 30 years but the first 2 and the last 25
    assert summary["long_test"]["n_starts"] == 360 - 2 - 25
    for name in (
        "skill_by_lead.png",
        "skill_by_season.png",
        "explanations.png",
        "skill_by_lead_long_test.png",
    ):
        assert (report / name).stat().st_size > 1000


_HOLD = (
    "import sys\n"
    "from tellus.data import locking\n"
    "with locking.store_lock(sys.argv[1], 'another build'):\n"
    "    print('ready', flush=True)\n"
    "    sys.stdin.readline()\n"
)


def test_a_second_build_or_ingest_of_a_store_refuses_with_one_line(tmp_path):
    import subprocess
    import sys

    from tellus.data import mock

    store, src = tmp_path / "busy.zarr", tmp_path / "src.nc"
    mock.mock_era5(n_lat=4, n_lon=8, static=()).to_netcdf(src)
    partial = tmp_path / ".busy.zarr.partial"  # what the first one is writing
    partial.mkdir()
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as first:
        assert first.stdout.readline() == "ready\n"
        for args, prefix in [
            (["data", "build", "atmosphere", "--preset", "tiny", "--out", str(store)], "build"),
            (["data", "ingest", str(src), "--to", str(store)], "ingest"),
        ]:
            result = runner.invoke(app, args)
            assert result.exit_code == 1, result.output
            (line,) = result.output.splitlines()
            assert line.startswith(prefix) and f"{store} is in use by pid {first.pid} " in line
            assert "(another build, since " in line and line.endswith("wait for it or stop it")
        first.stdin.close()
        assert first.wait(timeout=30) == 0
    assert not store.exists() and partial.is_dir()  # nothing of the first one's touched
    assert not (tmp_path / "busy.sim-state").exists()
