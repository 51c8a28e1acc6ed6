import dataclasses
import io
import json

import pytest
from rich.console import Console

from tellus.training import plan as plan_lib
from tellus.training import roofline as roofline_lib
from tellus.training import targets

MiB = 2**20
# A made-up chip with round numbers: 100 TFLOP/s, 1 TB/s, 1 GiB.
ROUND = roofline_lib.Accelerator("round", 100e12, 1e12, 2**30, "test")


def _result(**overrides) -> plan_lib.PlanResult:
    """A hand-made plan: 8 devices (data=4, fsdp=2), 100 MiB state, 300 MiB temporaries."""
    base = dict(
        target="toy",
        description="hand-made",
        batch=32,
        mesh={"data": 4, "fsdp": 2, "tensor": 1, "spatial": 1},
        devices=8,
        compute_dtype="bfloat16",
        remat=False,
        params_total=1000,
        params_per_device=500,
        state_bytes_per_device=100 * MiB,
        batch_bytes_per_device=4 * MiB,
        flops_per_device=2e12,
        bytes_accessed_per_device=1e10,
        memory={
            "argument_size_in_bytes": 104 * MiB,
            "output_size_in_bytes": 100 * MiB,
            "alias_size_in_bytes": 100 * MiB,
            "temp_size_in_bytes": 300 * MiB,
        },
        compile_seconds=1.0,
    )
    return plan_lib.PlanResult(**{**base, **overrides})


@pytest.fixture(scope="module")
def toy_plan() -> plan_lib.PlanResult:
    return plan_lib.plan("toy", 8, "data=4,fsdp=2", dtype="f32")


# --- arithmetic, by hand ---------------------------------------------------------------


def test_roofline_by_hand():
    # 2e12 FLOP / 100e12 FLOP/s = 20 ms; 1e10 B / 1e12 B/s = 10 ms -> compute bound.
    compute, memory, step, bound = roofline_lib.roofline(2e12, 1e10, ROUND)
    assert (compute, memory, step, bound) == pytest.approx((0.02, 0.01, 0.02, "compute"))
    compute, memory, step, bound = roofline_lib.roofline(1e12, 5e10, ROUND)
    assert (step, bound) == (pytest.approx(0.05), "memory")
    # The table's own numbers: one second of v5e peak, one second of H100 bandwidth.
    v5e, h100 = roofline_lib.ACCELERATORS["tpu-v5e"], roofline_lib.ACCELERATORS["h100-sxm"]
    assert roofline_lib.roofline(197e12, 0, v5e)[2] == pytest.approx(1)
    assert roofline_lib.roofline(0, 3.35e12, h100)[2] == pytest.approx(1)


def test_accelerator_table_has_sources():
    for accel in roofline_lib.ACCELERATORS.values():
        assert "https://" in accel.source
    assert roofline_lib.ACCELERATORS["tpu-v5p"].memory_bytes == 95 * 2**30


def test_peak_is_arguments_plus_undonated_outputs_plus_temporaries():
    assert _result().peak_bytes_per_device == (104 + 100 - 100 + 300) * MiB
    assert _result().batch_per_device == 4


def test_estimate_fits_with_headroom():
    # Peak 404 MiB; 1 GiB with 10% headroom leaves 921.6 MiB; with 70% only 307.2 MiB.
    (e,) = roofline_lib.estimate(_result(), [ROUND])
    assert e.fits and e.budget_bytes == int(2**30 * 0.9) and e.suggestion == ""
    (e,) = roofline_lib.estimate(_result(), [ROUND], headroom=0.7)
    assert not e.fits
    with pytest.raises(roofline_lib.PlanDoesNotFit, match="round: needs 404 MiB"):
        roofline_lib.check_fits([e])


def test_suggests_fsdp_when_state_dominates():
    r = _result(
        state_bytes_per_device=900 * MiB,
        memory={"argument_size_in_bytes": 904 * MiB, "temp_size_in_bytes": 50 * MiB},
    )
    # Other buffers: 954 - 900 = 54 MiB; budget 400 MiB leaves 346 for the state: x4.
    text = roofline_lib.suggest(r, 400 * MiB)
    assert "grow fsdp x4 (fsdp=8)" in text and "--mesh fsdp=8" in text


def test_suggests_data_or_remat_when_temporaries_dominate():
    # 300 MiB of temporaries + 4 MiB batch against 250 - 100 = 150 MiB of room: x4.
    text = roofline_lib.suggest(_result(), 250 * MiB)
    assert "activations/temporaries" in text and "grow data x4 (data=16" in text
    assert "--remat" in text
    # One sample per device: only the grid split (and remat) are left.
    text = roofline_lib.suggest(_result(batch=8, remat=True), 250 * MiB)
    assert "grow spatial x4 (spatial=4)" in text and "remat" not in text


def test_bad_arguments_fail_before_compiling():
    with pytest.raises(plan_lib.PlanError, match="multiple of data x fsdp = 8"):
        plan_lib.plan("toy", 6, "data=4,fsdp=2")
    with pytest.raises(plan_lib.PlanError, match="unknown mesh axes"):
        plan_lib.plan("toy", 8, "rows=8")
    with pytest.raises(plan_lib.PlanError, match="unknown accelerator"):
        roofline_lib.estimate(_result(), ["tpu-v9"])


def test_targets_registry():
    assert "toy" in targets.names()
    with pytest.raises(KeyError, match="choose from"):
        targets.get("nope")
    batch = targets.get("toy").abstract_batch(4)
    assert batch["x"].shape == (4, *targets.TOY_GRID, 64)


# --- the real compile in a subprocess ---------------------------------------------------


def test_params_per_device_follow_fsdp_sharding(toy_plan):
    # Toy 64 -> 256 -> 64 -> 64: kernels carry "embed" (-> fsdp=2), biases are replicated.
    kernels = 64 * 256 + 256 * 64 + 64 * 64
    biases = 256 + 64 + 64
    assert toy_plan.devices == 8 and toy_plan.mesh["fsdp"] == 2
    assert toy_plan.params_total == kernels + biases
    assert toy_plan.params_per_device == kernels // 2 + biases
    # Params, Adam mu and nu and the EMA (the paper preset keeps one), float32, + step/rng.
    assert toy_plan.state_bytes_per_device == pytest.approx(
        4 * 4 * toy_plan.params_per_device, abs=64
    )
    # x [8, 32, 64, 64] and y: float32, 1 sample per device.
    assert toy_plan.batch_bytes_per_device == 2 * 32 * 64 * 64 * 4
    assert toy_plan.memory["temp_size_in_bytes"] > 0


def test_cost_analysis_is_per_device(toy_plan):
    single = plan_lib.plan("toy", 8, "data=1", dtype="f32")
    assert single.params_per_device == single.params_total
    # The same step split 8 ways: each device does ~1/8 of the FLOPs.
    assert single.flops_per_device / toy_plan.flops_per_device == pytest.approx(8, rel=0.05)
    # Lower bound: forward matmuls, 2 * B * H * W * (64*256 + 256*64 + 64*64) FLOPs.
    assert single.flops_per_device > 2 * 8 * 32 * 64 * (64 * 256 * 2 + 64 * 64)
    assert toy_plan.flops_total == pytest.approx(8 * toy_plan.flops_per_device)


def test_run_plan_refuses_when_memory_is_tiny(toy_plan, monkeypatch, tmp_path):
    tiny = roofline_lib.Accelerator("Tiny", 1e12, 1e11, 4 * MiB, "test")
    monkeypatch.setitem(roofline_lib.ACCELERATORS, "tiny", tiny)
    monkeypatch.setattr(plan_lib, "plan", lambda *a, **k: toy_plan)
    out = io.StringIO()
    console = Console(file=out, width=120)
    path = tmp_path / "plan.json"
    code = plan_lib.run_plan(
        "toy",
        8,
        "data=4,fsdp=2",
        accelerators=["tiny", "h100-sxm"],
        json_path=path,
        console=console,
    )
    text = out.getvalue()
    assert code == 1
    assert "refused" in text and "tiny: needs" in text and "H100 SXM" in text
    saved = json.loads(path.read_text())
    assert [e["fits"] for e in saved["estimates"]] == [False, True]
    assert saved["plan"] == dataclasses.asdict(toy_plan)
    # The same plan on the real chips alone is accepted.
    real = ["tpu-v5e", "tpu-v5p", "h100-sxm"]
    assert plan_lib.run_plan("toy", 8, "data=4,fsdp=2", accelerators=real, console=console) == 0


def test_run_plan_reports_bad_arguments():
    out = io.StringIO()
    assert plan_lib.run_plan("toy", 7, "data=4,fsdp=2", console=Console(file=out)) == 2
    assert "multiple of data x fsdp" in out.getvalue()
