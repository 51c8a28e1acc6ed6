"""``tellus pretrain`` then ``tellus finetune`` from experiment files, end to end on mock
stores: the commands run the library (whose results are tested in
``tellus.training.pretraining_test``), resume, and print what they did."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr
from typer.testing import CliRunner

from tellus.data import mock, schema
from tellus.pipelines.cli import app

PRETRAIN = """
workdir = "{root}/pre"
[model]
drop_path = 0.0
depths = [1, 0, 0, 1]
[train]
steps = 2
batch = 2
mesh = "data=1"
[[tasks]]
name = "ocean"
domain = "ocean"
store = "{root}/ocean.zarr"
variables = ["sea_water_potential_temperature", "sea_surface_height"]
"""

FINETUNE = """
workdir = "{root}/ft"
[train]
steps = 2
batch = 2
mesh = "data=1"
[[tasks]]
name = "enso"
domain = "enso"
store = "{root}/enso.zarr"
variables = ["sea_surface_temperature_anomaly"]
[finetune]
pretrained = "{root}/pre"
mode = "heads"
"""


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_pretrain_then_finetune_from_files(tmp_path):
    ocean = mock.mock_ocean(times=pd.date_range("2000-01-01", periods=8, freq="MS"), n_lat=6)
    ocean.to_zarr(tmp_path / "ocean.zarr", zarr_format=3, consolidated=False)
    name = "sea_surface_temperature_anomaly"
    lat, lon = mock.regular_grid(6, 12)
    x = np.random.default_rng(0).standard_normal((8, 6, 12)).astype(np.float32)
    xr.Dataset(
        {name: (schema.VARIABLES[name].dims, x, {"units": schema.VARIABLES[name].units})},
        coords={
            "time": pd.date_range("1900-01-01", periods=8, freq="MS"),
            "latitude": lat,
            "longitude": lon,
        },
    ).to_zarr(tmp_path / "enso.zarr", zarr_format=3, consolidated=False)
    pre, ft = tmp_path / "pre.toml", tmp_path / "ft.toml"
    pre.write_text(PRETRAIN.format(root=tmp_path))
    ft.write_text(FINETUNE.format(root=tmp_path))

    out = _run("pretrain", "--config", str(pre))
    assert "mesh data=1 on 1 of 8 cpu device(s)" in out and "ocean: loss" in out
    assert "over 2 steps" in out and "pretrain done" in out
    assert "ocean: already trained" in _run("pretrain", "--config", str(pre))

    out = _run("finetune", "--config", str(ft))
    assert "(mode heads)" in out and "enso: loss" in out and "over 2 steps" in out
    assert f"trained arrays saved alone in {tmp_path / 'ft' / 'adapters.npz'}" in out
    assert not (tmp_path / "ft" / "checkpoints").exists()
    restored = json.loads((tmp_path / "ft" / "restored.json").read_text())
    assert restored["source"] == str(tmp_path / "pre") and restored["initialized"]
    assert all(name in k for k in restored["initialized"])
    assert "enso: already trained" in _run("finetune", "--config", str(ft))
