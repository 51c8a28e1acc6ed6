"""The training commands on a device mesh: ``tellus train atmosphere`` and ``tellus train
enso`` with ``--mesh data=4,fsdp=2`` on 8 simulated CPU devices train to the same per-step
losses as with ``--mesh data=1`` on one device.

Each run is the ``tellus`` command in its own process (the device count is fixed when JAX
starts); the two runs of a domain start together and each domain compiles once per device
count, with XLA's backend optimization level 0 (half the compile time; see
docs/performance.md). The losses are read from the runs' TensorBoard event files.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tellus.pipelines.cli import app

MESHES = {1: "data=1", 8: "data=4,fsdp=2"}
TIMEOUT_S = 600
# Both runs of a comparison compile with it.
FAST_COMPILE = "--xla_backend_optimization_level=0"


def _env(devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TELLUS_COORDINATOR"}  # one process
    flags = f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
    return env


def _tellus_on_1_and_8_devices(args: dict[int, list[str]]) -> dict[int, str]:
    """Runs ``tellus ARGS[n] --mesh MESHES[n]`` on n = 1 and 8 devices at once; their
    stdout."""
    procs = {
        n: subprocess.Popen(
            [sys.executable, "-m", "tellus.pipelines.cli", *args[n], "--mesh", MESHES[n]],
            env=_env(n),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in MESHES
    }
    out = {}
    try:
        for n, p in procs.items():
            stdout, stderr = p.communicate(timeout=TIMEOUT_S)
            assert p.returncode == 0, (n, stdout, stderr[-3000:])
            out[n] = stdout
    finally:
        for p in procs.values():
            p.kill()
    return out


def _losses(tensorboard: Path, tag: str = "train/loss") -> list[tuple[int, float]]:
    """``(step, value)`` of ``tag`` in the event files of a TensorBoard folder (TFRecords:
    length, its CRC, an Event proto, its CRC)."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(tensorboard.glob("events*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            out += [(event.step, v.simple_value) for v in event.summary.value if v.tag == tag]
    return out


@pytest.fixture(scope="module")
def atmosphere_runs(tmp_path_factory) -> dict[int, tuple[str, Path]]:
    """A 2-step training of the tiny preset's 6 h model, batch 8, on a mock 16 x 32 store
    with the Pangu variables."""
    from tellus.atmosphere import forecaster as fc
    from tellus.data import mock, schema

    root = tmp_path_factory.mktemp("mesh_atmosphere")
    ds = mock.mock_era5(
        times=pd.date_range("2000-01-01", periods=32, freq="6h"),
        levels=schema.PRESSURE_LEVELS_13,
        n_lat=16,
        n_lon=32,
        upper_air=fc.UPPER_VARIABLES,
        surface=fc.SURFACE_VARIABLES,
        static=fc.STATIC_VARIABLES,
        noise=0.02,
    )
    ds["specific_humidity"] = ds["specific_humidity"].clip(0.0, 0.02)
    store = mock.write_store(ds, str(root / "mock.zarr"), step="6h")
    common = ["train", "atmosphere", "--store", store, "--preset", "tiny", "--leads", "6"]
    common += ["--steps", "2", "--batch", "8", "--finetune", ""]
    args = {n: [*common, "--workdir", str(root / f"run{n}")] for n in MESHES}
    out = _tellus_on_1_and_8_devices(args)
    return {n: (out[n], root / f"run{n}") for n in MESHES}


@pytest.mark.slow
def test_train_atmosphere_on_8_devices_matches_1_device(atmosphere_runs):
    (out1, run1), (out8, run8) = atmosphere_runs[1], atmosphere_runs[8]
    assert "mesh data=1 on 1 cpu device(s); remat off; compute float32" in out1
    assert "mesh data=4,fsdp=2 on 8 cpu device(s); remat off; compute float32" in out8
    one, eight = (_losses(r / "lead_6h" / "tensorboard") for r in (run1, run8))
    assert [s for s, _ in one] == [s for s, _ in eight] == [0, 1]  # step 1: after an update
    np.testing.assert_allclose([v for _, v in eight], [v for _, v in one], rtol=1e-4)


@pytest.fixture(scope="module")
def enso_runs(tmp_path_factory) -> dict[int, tuple[str, Path]]:
    """One tiny member, 3 pretraining and 2 fine-tuning steps of 8, on 60-year worlds."""
    from tellus.pipelines import enso_cli

    root = tmp_path_factory.mktemp("mesh_enso")
    worlds = root / "worlds"
    enso_cli.build_worlds(worlds, 60, 60)  # once, before the two runs open it
    common = ["train", "enso", "--worlds", str(worlds), "--preset", "tiny", "--seeds", "1"]
    common += ["--pretrain-steps", "3", "--finetune-steps", "2", "--batch", "8"]
    common += ["--model-years", "60", "--observed-years", "60"]
    common += ["--finetune-years", "30", "--test-years", "20"]
    args = {n: [*common, "--workdir", str(root / f"run{n}")] for n in MESHES}
    out = _tellus_on_1_and_8_devices(args)
    return {n: (out[n], root / f"run{n}") for n in MESHES}


@pytest.mark.slow
def test_train_enso_on_8_devices_matches_1_device(enso_runs):
    (out1, run1), (out8, run8) = enso_runs[1], enso_runs[8]
    assert "mesh data=1 on 1 cpu device(s); remat off; compute float32" in out1
    assert "mesh data=4,fsdp=2 on 8 cpu device(s); remat off; compute float32" in out8
    for phase, steps in (("pretrain", [0, 1, 2]), ("finetune", [0, 1])):
        one, eight = (_losses(r / "member_0" / phase / "tensorboard") for r in (run1, run8))
        assert [s for s, _ in one] == [s for s, _ in eight] == steps, phase
        np.testing.assert_allclose([v for _, v in eight], [v for _, v in one], rtol=1e-4)
    info = [json.loads((r / "ensemble.json").read_text()) for r in (run1, run8)]
    assert [i["mesh"] for i in info] == [
        {"data": 1, "fsdp": 1, "tensor": 1, "spatial": 1},
        {"data": 4, "fsdp": 2, "tensor": 1, "spatial": 1},
    ]


def test_remat_and_bf16_reach_the_training_configs(monkeypatch, tmp_path):
    """Without training: what each command hands its library for --remat --bf16 --mesh."""
    from tellus.atmosphere import train as atmosphere_train
    from tellus.data import mock
    from tellus.enso import train as enso_train
    from tellus.kernels import partitioning
    from tellus.pipelines import enso_cli

    seen = {}

    def train_models(plan, show_progress=True, *, mesh=None, rules=None):
        seen["atmosphere"] = plan, mesh, rules
        return {}

    def train_enso(workdir, model_ds, observed_ds, **kwargs):
        seen["enso"] = kwargs
        return {"histories": {}}

    monkeypatch.setattr(atmosphere_train, "train_models", train_models)
    monkeypatch.setattr(enso_train, "train_enso", train_enso)
    monkeypatch.setattr(enso_cli, "build_worlds", lambda *args: (None, None))
    store = str(tmp_path / "tiny.zarr")
    ds = mock.mock_era5(times=pd.date_range("2000-01-01", periods=24, freq="6h"), n_lat=4, n_lon=8)
    mock.write_store(ds, store, step="6h")
    flags = ["--mesh", "data=4,fsdp=2", "--remat", "--bf16"]
    runner = CliRunner()
    atmosphere = ["train", "atmosphere", "--store", store, "--workdir", str(tmp_path / "a")]
    atmosphere += ["--leads", "6", "--steps", "3", "--batch", "8", "--finetune", ""]
    result = runner.invoke(app, [*atmosphere, *flags])
    assert result.exit_code == 0, result.output
    assert "mesh data=4,fsdp=2 on 8 cpu device(s); remat per block; compute bfloat16" in (
        result.output
    )
    plan, mesh, rules = seen["atmosphere"]
    assert plan.model.remat_blocks and not plan.train.remat
    assert plan.train.compute_dtype == "bfloat16" and rules == partitioning.RULES
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1, "spatial": 1}
    enso = ["train", "enso", "--workdir", str(tmp_path / "e"), "--worlds", str(tmp_path / "w")]
    enso += ["--preset", "tiny", "--model-years", "60", "--observed-years", "60"]
    enso += ["--finetune-years", "30", "--test-years", "20", "--batch", "8"]
    result = runner.invoke(app, [*enso, *flags])
    assert result.exit_code == 0, result.output
    assert "remat whole loss; compute bfloat16" in result.output
    kwargs = seen["enso"]
    assert kwargs["budget"].remat and kwargs["budget"].compute_dtype == "bfloat16"
    assert dict(kwargs["mesh"].shape)["fsdp"] == 2 and kwargs["rules"] == partitioning.RULES


def test_meshes_the_devices_or_the_batch_cannot_take_are_refused_before_any_work(tmp_path):
    """One ``tellus: error:`` line naming --mesh or --batch, exit 2, nothing written (this
    process has 8 devices: the root conftest)."""
    runner = CliRunner()
    enso = ["train", "enso", "--workdir", str(tmp_path / "e"), "--worlds", str(tmp_path / "w")]
    for command in (["train", "atmosphere", "--workdir", str(tmp_path / "a")], enso):
        for flags, expected in [
            (["--mesh", "data4"], "--mesh: bad mesh entry 'data4'"),
            (["--mesh", "data=4,model=2"], "--mesh: unknown mesh axes ['model']"),
            (["--mesh", "data=0"], "--mesh: mesh axis sizes must be >= 1"),
            (["--mesh", "data=8,fsdp=2"], "--mesh: data=8,fsdp=2 needs 16 devices, but there"),
            (["--mesh", "data=4,fsdp=2", "--batch", "12"], "--batch: 12 is not a multiple of "),
            (["--batch", "12"], "--batch: 12 is not a multiple of data x fsdp = 8 (the default"),
        ]:
            result = runner.invoke(app, [*command, *flags])
            lines = result.stderr.strip().splitlines()
            assert result.exit_code == 2 and len(lines) == 1, (flags, result.output)
            assert lines[0].startswith("tellus: error: " + expected), (flags, lines)
            assert not result.stdout.strip(), (flags, result.stdout)
    assert not list(tmp_path.iterdir())
