"""Test-session setup shared by every package.

Sharding is tested on 8 simulated CPU devices, so XLA must be told before jax is first
imported anywhere in the session (pytest imports this file before any test module).

Compiled programs go to a persistent compilation cache, one folder per session that the
xdist workers and the commands the tests start share (they inherit the environment): a
program compiled twice in a session (a fine-tuning phase's step after pretraining's, a
resumed run's after the killed one's, the same tiny model in two modules) compiles once.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
# The suite's programs are tiny and compiled once or twice each, so compiling is most of its
# time: XLA's CPU code generator at optimization level 0 instead of the default 3 took the
# whole suite from 13.4 to 10.7 minutes on 2 cores, for slower steps in the few tests that
# run many (docs/contributing.md). Child processes keep it
# (tellus.training.distributed.cpu_process_env). A test that compares two different programs
# bit for bit compiles them at the default level, as the product does (entropy_test.py).
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"

# The training commands' CPU setting (tellus.pipelines.devices.cpu_rng), for every test and
# the commands the tests start: JAX's partitionable random-number generator compiles about
# six times slower on a CPU.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "false")

# `tellus data stats|ingest` compute on dask's threads in the tests (their default starts a
# LocalCluster); tellus/data/cluster_test.py runs them on a 2-worker cluster.
os.environ.setdefault("TELLUS_SCHEDULER", "threads")

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="tellus-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")


def pytest_unconfigure(config):
    """The session's compilation cache goes when the session does (the controller's call;
    xdist workers have ``workerinput``)."""
    import shutil

    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
    if not hasattr(config, "workerinput") and os.path.basename(cache).startswith(
        "tellus-jax-cache-"
    ):
        shutil.rmtree(cache, ignore_errors=True)
