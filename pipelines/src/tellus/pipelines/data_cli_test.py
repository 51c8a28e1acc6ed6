"""`tellus data build ocean`: bad options refused in one line with exit status 2 before veros
starts; a built ocean found cached and described. No case here runs veros."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from tellus.data import writing
from tellus.ocean import planet, world
from tellus.pipelines.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_veros(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("veros was started")

    monkeypatch.setattr(subprocess, "Popen", refuse)


def refused(args: list, *expected: str) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (args, result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("tellus: error: "), (args, result.stderr)
    for text in expected:
        assert text in lines[0], (args, text, lines[0])


def test_bad_ocean_options(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder\n")
    refused(["data", "build", "ocean", "--preset", "huge"], "--preset", "'huge'", "tiny")
    refused(["data", "build", "ocean", "--out", tmp_path / "file.txt"], "--out", "is a file")
    refused(["data", "build", "atmosphere", "--spinup"], "--spinup", "ocean")
    other = tmp_path / "other"
    other.mkdir()
    (other / "spinup.json").write_text('{"grid": {"resolution": 2.0}}')
    refused(
        ["data", "build", "ocean", "--preset", "tiny", "--out", other],
        "--out",
        "another configuration",
    )


def built_ocean(directory) -> None:
    """The tiny ocean's folder with stores written from made-up fields (no veros)."""
    config, g = world.TINY, world.TINY.grid
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spinup.json").write_text(config.spinup_json())
    world.spinup_path(directory).write_bytes(b"")
    for run in world.RUNS:
        store = world.store_path(directory, run)
        writing.create_store(store, world.template(config, run), time_chunk=config.chunk_months)
        times = world.template(config, run)["time"].values
        for c in range(len(times)):
            shape3, shape2 = (1, g.nz, g.ny, g.nx), (1, g.ny, g.nx)
            fields = {
                "temp": np.full(shape3, 10.0),
                "salt": np.full(shape3, 35.0 * planet.ABSOLUTE_PER_PRACTICAL),
                **{k: np.zeros(shape3) for k in ("u", "v")},
                **{k: np.zeros(shape2) for k in ("ssh", "taux", "tauy")},
            }
            writing.write_chunk(store, c, world.chunk_dataset(g, times[c : c + 1], fields))


def test_a_built_ocean_is_found_and_described(tmp_path):
    built_ocean(tmp_path / "ocean")
    result = runner.invoke(
        app, ["data", "build", "ocean", "--preset", "tiny", "--out", str(tmp_path / "ocean")]
    )
    assert result.exit_code == 0, result.output
    assert "ocean ready" in result.output and "observed.zarr" in result.output
    result = runner.invoke(app, ["data", "describe", str(tmp_path / "ocean" / "model.zarr")])
    assert result.exit_code == 0, result.output
    for name in (*world.FIELDS_3D, *world.FIELDS_2D, "ocean_mask"):
        assert name in result.output
