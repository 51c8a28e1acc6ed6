"""The start-up's choice of multi-process runtime from the environment alone (the run
itself in 2 local processes is ``tests/cli_pretrain_test.py``)."""

import jax
import pytest

from tellus.training import distributed

SLURM = {  # srun task 2 of 8 on two nodes
    "SLURM_JOB_ID": "4242",
    "SLURM_NTASKS": "8",
    "SLURM_PROCID": "2",
    "SLURM_LOCALID": "2",
    "SLURM_STEP_NODELIST": "gpu[017-018]",
    "SLURM_STEP_NUM_NODES": "2",
}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({**SLURM, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}, None),  # one task: one process
        (SLURM, distributed.Cluster("slurm", 8, 2)),
        (
            {"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3"},
            distributed.Cluster("ompi", 4, 3),
        ),
        (
            {"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3", "TPU_WORKER_ID": "1"},
            distributed.Cluster("tpu", 4, 1),
        ),
        ({"TPU_WORKER_HOSTNAMES": "localhost", "TPU_WORKER_ID": "0"}, None),  # one host
        (
            {
                **SLURM,
                "TELLUS_COORDINATOR": "h:1",
                "TELLUS_NUM_PROCESSES": "2",
                "TELLUS_PROCESS_ID": "1",
            },
            distributed.Cluster("explicit", 2, 1, "h:1"),  # the explicit variables win
        ),
        ({**SLURM, "TELLUS_DISTRIBUTED": "off"}, None),
        ({"TELLUS_DISTRIBUTED": "on"}, distributed.Cluster("jax", 0, 0)),  # a TPU VM slice
    ],
)
def test_the_environment_picks_the_runtime(env, expected):
    assert distributed.detect(env) == expected


def test_a_bad_environment_is_named():
    with pytest.raises(ValueError, match="TELLUS_PROCESS_ID is not"):
        distributed.detect({"TELLUS_COORDINATOR": "h:1", "TELLUS_NUM_PROCESSES": "2"})
    with pytest.raises(ValueError, match="SLURM_PROCID='x' is not an integer"):
        distributed.detect({**SLURM, "SLURM_PROCID": "x"})


def test_slurm_start_up_leaves_the_rest_to_jax(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(jax.config, "update", lambda *a: None)  # no gloo in this process
    cluster = distributed.initialize_from_env(SLURM)
    assert cluster.describe() == "slurm: process 2 of 8"
    assert calls == [((), {})]  # JAX's own SLURM detection finds coordinator and devices
    calls.clear()
    explicit = {"TELLUS_COORDINATOR": "h:7", "TELLUS_NUM_PROCESSES": "2", "TELLUS_PROCESS_ID": "0"}
    distributed.initialize_from_env(explicit)
    assert calls == [((), {"coordinator_address": "h:7", "num_processes": 2, "process_id": 0})]
    calls.clear()
    assert distributed.initialize_from_env({}) is None and calls == []


def test_a_child_process_env_replaces_the_device_count_and_keeps_the_other_xla_flags():
    parent = {
        "XLA_FLAGS": "--xla_dump_to=/tmp/d --xla_force_host_platform_device_count=8 "
        "--xla_backend_optimization_level=0",
        "JAX_PLATFORMS": "cuda",
        "HOME": "/h",
    }
    env = distributed.cpu_process_env(2, parent)
    assert env["XLA_FLAGS"].split() == [
        "--xla_dump_to=/tmp/d",
        "--xla_backend_optimization_level=0",
        "--xla_force_host_platform_device_count=2",
    ]
    assert env["JAX_PLATFORMS"] == "cpu" and env["HOME"] == "/h"
    assert "8" in parent["XLA_FLAGS"]  # the parent's own mapping is left as it was
    assert distributed.cpu_process_env(1, {})["XLA_FLAGS"] == (
        "--xla_force_host_platform_device_count=1"
    )
