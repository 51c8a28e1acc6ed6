"""``tellus pretrain`` then ``tellus finetune`` from experiment files, end to end on mock
stores: the commands run the library (whose results are tested in
``tellus.training.pretraining_test``), resume, and print what they did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from flax import nnx
from typer.testing import CliRunner

from tellus.data import mock, schema
from tellus.pipelines.cli import app
from tellus.training import pretraining, step

PRETRAIN = """
workdir = "{root}/{pre}"
[model]
drop_path = 0.0
depths = [1, 0, 0, 1]
[train]
steps = 2
batch = 2
mesh = "{mesh}"
profile_steps = [1, 2]
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
    """``tellus pretrain`` and ``tellus finetune`` in this process; meanwhile ``tellus launch
    local`` runs the same pretraining in 2 processes (jax.distributed, one CPU device each, a
    data=2 mesh), each reading its half of every global batch: the losses and the model are
    the one-process run's."""
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
    pre, ft, two = tmp_path / "pre.toml", tmp_path / "ft.toml", tmp_path / "two.toml"
    pre.write_text(PRETRAIN.format(root=tmp_path, pre="pre", mesh="data=1"))
    ft.write_text(FINETUNE.format(root=tmp_path))
    two.write_text(PRETRAIN.format(root=tmp_path, pre="two", mesh="data=2"))
    launched = subprocess.Popen(  # tellus launch local: the TELLUS_* start-up, 2 processes
        [str(Path(sys.executable).parent / "tellus"), "launch", "local", "--config", str(two)],
        env={**os.environ, "TELLUS_DISTRIBUTED": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    out = _run("pretrain", "--config", str(pre))
    assert "mesh data=1 on 1 of 8 cpu device(s)" in out and "ocean: loss" in out
    assert "over 2 steps" in out and "pretrain done" in out
    # train.profile_steps reached the loop: step 1 traced into the run's profile folder
    assert list((tmp_path / "pre" / "profile").glob("plugins/profile/*/*.xplane.pb"))
    assert "ocean: already trained" in _run("pretrain", "--config", str(pre))

    out = _run("finetune", "--config", str(ft))
    assert "(mode heads)" in out and "enso: loss" in out and "over 2 steps" in out
    assert f"trained arrays saved alone in {tmp_path / 'ft' / 'adapters.npz'}" in out
    assert not (tmp_path / "ft" / "checkpoints").exists()
    restored = json.loads((tmp_path / "ft" / "restored.json").read_text())
    assert restored["source"] == str(tmp_path / "pre") and restored["initialized"]
    assert all(name in k for k in restored["initialized"])
    assert "enso: already trained" in _run("finetune", "--config", str(ft))

    # tellus.load reads both: the pretraining's checkpoint and the fine-tune's adapters.
    import tellus.load

    pretrained = tellus.load(tmp_path / "pre")
    states = xr.open_zarr(tmp_path / "ocean.zarr", consolidated=False)
    fc = pretrained.forecast(states, init_time="2000-03-01")
    ssh = fc["sea_surface_height"].values[0]
    assert fc["sea_water_potential_temperature"].dims == (
        "init_time",
        "depth",
        "latitude",
        "longitude",
    )
    assert np.array_equal(np.isnan(ssh), np.isnan(states["sea_surface_height"].values[0]))
    tuned = tellus.load(tmp_path / "ft")
    assert sorted(tuned.tasks) == ["enso"] and tuned.source == str(tmp_path / "ft")
    sst = tuned.forecast(xr.open_zarr(tmp_path / "enso.zarr", consolidated=False))[name]
    assert sst.shape == (8, 6, 12) and np.isfinite(sst.values).all()

    # tellus forecast earth: the same forecast chained, written in the forecast layout.
    out = _run(
        "forecast", "earth", "--workdir", str(tmp_path / "pre"), "--store",
        str(tmp_path / "ocean.zarr"), "--init", "2000-03-01", "--steps", "2", "--out",
        str(tmp_path / "fc.zarr"),
    )  # fmt: skip
    assert "task 'ocean', 2 variable(s) from 1 init(s) at 2 lead(s), 1 months .. 2 months" in out
    written = xr.open_zarr(tmp_path / "fc.zarr", consolidated=False)
    assert written["sea_surface_height"].dims == (
        "time",
        "prediction_timedelta",
        "latitude",
        "longitude",
    )
    np.testing.assert_array_equal(written["sea_surface_height"].values[:, 0], ssh[None])
    assert list(written["prediction_timedelta"].values) == [1, 2]
    (tmp_path / "empty").mkdir()
    for args, param, expected in (
        (["--workdir", str(tmp_path / "empty")], "--workdir", "holds no Earth model"),
        (["--init", "1999-01-01"], "--init", "1999-01-01 not in"),
        (["--task", "atmos"], "--task", "task 'atmos' is not one of"),
        (["--store", str(tmp_path / "enso.zarr")], "--store", "the Dataset lacks"),
    ):
        base = {"--workdir": str(tmp_path / "pre"), "--store": str(tmp_path / "ocean.zarr")}
        base.update(dict(zip(args[::2], args[1::2], strict=True)))
        argv = [x for kv in base.items() for x in kv]
        result = CliRunner().invoke(app, ["forecast", "earth", *argv, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2, result.output
        (line,) = [x for x in result.output.splitlines() if x.strip()]
        assert line.startswith(f"tellus: error: {param}: ") and expected in line, line
    assert not (tmp_path / "x").exists()

    output = launched.communicate(timeout=300)[0]
    assert launched.returncode == 0, output
    assert "2 processes done" in output
    outs = [
        "\n".join(x for x in output.splitlines() if x.startswith(f"[process {pid}]"))
        for pid in range(2)
    ]
    for pid, out in enumerate(outs):
        assert "mesh data=2 on 2 cpu device(s) in 2 processes" in out
        assert (
            f"process {pid} of 2 reads positions {pid}, {pid + 2}, ... of each global batch (1 of 2)"
            in out
        )

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / pretraining.LOSSES).read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines]

    assert len(losses("two")) == 2
    np.testing.assert_allclose(losses("two"), losses("pre"), rtol=1e-5)
    a, _ = pretraining.load(tmp_path / "pre")
    b, _ = pretraining.load(tmp_path / "two")
    pa = step.flat_params(nnx.to_pure_dict(nnx.state(a, nnx.Param)))
    pb = step.flat_params(nnx.to_pure_dict(nnx.state(b, nnx.Param)))
    for p in pa:
        np.testing.assert_allclose(pb[p], pa[p], atol=2e-4, err_msg=p)


def test_launch_scripts_for_slurm_and_tpu(tmp_path):
    ocean = tmp_path / "ocean.zarr"
    ocean.mkdir()
    cfg = tmp_path / "pod.toml"
    text = PRETRAIN.format(root=tmp_path, pre="pod", mesh="data=-1,fsdp=2")
    cfg.write_text(text.replace("batch = 2", "batch = 8"))
    script = _run("launch", "slurm", "--config", str(cfg), "--nodes", "2", "--gpus-per-node", "4")
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=4\n#SBATCH --gpus-per-node=4" in script
    assert f"srun --kill-on-bad-exit=1 uv run --frozen tellus pretrain --config {cfg}" in script
    assert f"#SBATCH --output={tmp_path / 'pod'}/slurm-%j.out" in script
    assert (tmp_path / "pod").is_dir()  # SLURM opens its log there before the script runs
    path = tmp_path / "job.sbatch"
    _run(
        "launch",
        "slurm",
        "--config",
        str(cfg),
        "--nodes",
        "2",
        "--gpus-per-node",
        "4",
        "--out",
        str(path),
    )
    assert path.read_text() == script
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    tpu = _run(
        "launch", "tpu", "--config", str(cfg), "--name", "v5e", "--zone", "z1", "--chips", "8"
    )
    assert tpu.startswith(
        "gcloud compute tpus tpu-vm ssh v5e --zone=z1 --worker=all '--command=cd ~/tellus && "
    )
    assert f"TELLUS_DISTRIBUTED=on uv run --frozen tellus pretrain --config {cfg}" in tpu
    # 12 devices split the batch of 8 twelve ways; 3 chips cannot fill data=-1,fsdp=2.
    for args, expected in (
        (["slurm", "--nodes", "1", "--gpus-per-node", "12"], "train.batch 8 is not a multiple"),
        (["tpu", "--name", "v", "--zone", "z", "--chips", "3"], "cannot fill 'data' on 3"),
    ):
        result = CliRunner().invoke(app, ["launch", *args, "--config", str(cfg)])
        assert result.exit_code == 2, result.output
        (line,) = [x for x in result.output.splitlines() if x.strip()]
        assert line.startswith("tellus: error: --config: ") and expected in line, line
