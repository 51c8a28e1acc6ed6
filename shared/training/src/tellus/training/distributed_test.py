import dataclasses
import json
import os
import socket
import subprocess
import sys

import numpy as np

from tellus.training import config as config_lib
from tellus.training import step as step_lib
from tellus.training import toy_model

SCRIPT = r"""
import dataclasses, json, sys
from tellus.training import distributed
assert distributed.initialize_from_env()
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from tellus.kernels import mesh as mesh_lib
from tellus.training import config as config_lib, step as step_lib, toy_model
cfg = dataclasses.replace(config_lib.preset("tiny"), batch_size=8)
mesh = mesh_lib.make_mesh({"data": 4, "fsdp": 1})
model = toy_model.make_model(toy_model.ToyConfig())
fns, state = step_lib.init_train_state(model, cfg)
sh = step_lib.state_shardings(fns, state, model, mesh, toy_model.RULES)
state = jax.device_put(state, sh)
bsh = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
fn = step_lib.jit_train_step(step_lib.make_train_step(fns, toy_model.loss_fn), sh, bsh, mesh)
pid = jax.process_index()
out = []
for i in range(3):
    full = toy_model.synthetic_batch(0, i, 8)
    local = jax.tree.map(lambda x: x[pid * 4:(pid + 1) * 4], full)
    state, m = fn(state, distributed.global_batch(local, bsh))
    out.append(float(m["loss"]))
if pid == 0:
    print("LOSSES", json.dumps(out))
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_cpu_matches_single_process():
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ)
        env.update(
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
            JAX_PLATFORMS="cpu",
            PYTHONWARNINGS="ignore",
            TELLUS_COORDINATOR=f"127.0.0.1:{port}",
            TELLUS_NUM_PROCESSES="2",
            TELLUS_PROCESS_ID=str(pid),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", SCRIPT],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    line = next(ln for ln in outs[0][0].splitlines() if ln.startswith("LOSSES"))
    multi = json.loads(line.split(" ", 1)[1])

    cfg = dataclasses.replace(config_lib.preset("tiny"), batch_size=8)
    fns, state = step_lib.init_train_state(toy_model.make_model(toy_model.ToyConfig()), cfg)
    fn = step_lib.jit_train_step(step_lib.make_train_step(fns, toy_model.loss_fn))
    single = []
    for i in range(3):
        state, m = fn(state, toy_model.place_batch(toy_model.synthetic_batch(0, i, 8)))
        single.append(float(m["loss"]))
    np.testing.assert_allclose(multi, single, rtol=1e-5)


def test_no_env_is_noop():
    from tellus.training import distributed

    assert distributed.initialize_from_env({}) is False
