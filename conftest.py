"""Test-session setup shared by every package.

Sharding is tested on 8 simulated CPU devices, so XLA must be told before jax is first
imported anywhere in the session (pytest imports this file before any test module).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
