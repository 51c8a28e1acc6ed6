"""The benchmark helpers: XLA's FLOP count of a matmul against 2 m k n by hand, and a
training step's figures on a one-layer model (its FLOPs at least forward plus backward)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.training import benchmarking


def test_matmul_flops_by_hand_and_a_positive_rate():
    a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
    figures = benchmarking.compiled_figures(jnp.matmul, a, b)
    assert figures["flops"] == 2 * 64 * 32 * 16
    np.testing.assert_allclose(np.asarray(figures["compiled"](a, b)), 32.0)
    assert benchmarking.matmul_rate(n=128, repeats=2) > 0


def test_train_step_figures_of_a_linear_model():
    model = nnx.Linear(256, 128, rngs=nnx.Rngs(0))
    batch = {"x": np.ones((8, 256), np.float32)}

    def loss_fn(m, b, rng=None):
        return jnp.mean(m(b["x"]) ** 2)

    out = benchmarking.train_step_figures(model, loss_fn, batch, 8, peak=1e9, repeats=2)
    forward = 2 * 8 * 256 * 128
    assert out["flops_per_step"] >= 2 * forward  # forward and the weight gradient at least
    assert out["steps_per_s"] > 0 and out["samples_per_s"] == 8 * out["steps_per_s"]
    assert out["fraction_of_peak"] == out["achieved_flops_per_s"] / 1e9
    assert out["memory"]["argument_size_in_bytes"] > 256 * 128 * 4  # the weights at least


def test_models_timed_against_each_other_keep_their_own_figures():
    def loss_fn(m, b, rng=None):
        return jnp.mean(m(b["x"]) ** 2)

    batch = {"x": np.ones((8, 64), np.float32)}
    cases = {
        "narrow": (nnx.Linear(64, 16, rngs=nnx.Rngs(0)), loss_fn, batch, 8),
        "wide": (nnx.Linear(64, 256, rngs=nnx.Rngs(0)), loss_fn, batch, 8),
    }
    out = benchmarking.compare_train_steps(cases, rounds=3, steps=2)
    assert set(out) == {"narrow", "wide"}
    # XLA's FLOPs follow each model's width: 16x the output features, 16x the matmul FLOPs.
    assert out["wide"]["flops_per_step"] > 8 * out["narrow"]["flops_per_step"]
    for f in out.values():
        assert f["samples_per_s"] == 8 / f["step_s"] > 0
    calls = {"a": lambda: jnp.ones(3), "b": lambda: jnp.zeros(3)}
    assert all(t > 0 for t in benchmarking.compare_calls(calls, rounds=2).values())
