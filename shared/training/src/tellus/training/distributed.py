"""Multi-process start-up from environment variables.

Each process calls ``initialize_from_env()`` before touching devices. Variables:
``TELLUS_COORDINATOR`` (``host:port``), ``TELLUS_NUM_PROCESSES``, ``TELLUS_PROCESS_ID``.
Without them it is a no-op (single process), so the same entry point runs anywhere.
On CPU, cross-process collectives use gloo.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np


def initialize_from_env(env: dict[str, str] | None = None) -> bool:
    """Calls ``jax.distributed.initialize`` when the TELLUS_* variables are set.

    Returns:
      True if a multi-process runtime was initialized.
    """
    env = dict(os.environ if env is None else env)
    if "TELLUS_COORDINATOR" not in env:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=env["TELLUS_COORDINATOR"],
        num_processes=int(env["TELLUS_NUM_PROCESSES"]),
        process_id=int(env["TELLUS_PROCESS_ID"]),
    )
    return True


def global_batch(local: Any, sharding: jax.sharding.Sharding) -> Any:
    """Assembles per-process host batches (this process's rows) into global arrays."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local
    )
