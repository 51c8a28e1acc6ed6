"""The benchmark helpers: XLA's FLOP count of a matmul against 2 m k n by hand, and a
training step's figures on a one-layer model (its FLOPs at least forward plus backward)."""

from __future__ import annotations

import jax
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


def test_matmul_dtypes_counts_each_product_by_its_operand_types():
    def fn(a, b, x, k):
        low = a.astype(jnp.bfloat16) @ b.astype(jnp.bfloat16)
        conv = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME")
        mixed = jnp.einsum("ij,jk->ik", a, b.astype(jnp.bfloat16))  # promoted to float32
        return low.sum() + conv.sum() + (a @ b).sum() + mixed.sum()

    a, x, k = jnp.ones((4, 4)), jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3))
    assert benchmarking.matmul_dtypes(fn, a, a, x, k) == {("bf16", "bf16"): 1, ("f32", "f32"): 3}


def test_a_bfloat16_step_multiplies_in_bfloat16_once_the_inputs_follow_the_weights():
    """The step casts the parameters; a model whose input stays float32 promotes every
    product back to float32, one that casts it to its weights' dtype does not."""

    class Net(nnx.Module):
        def __init__(self, cast):
            self.a, self.b, self.cast = (
                nnx.Linear(8, 16, rngs=nnx.Rngs(0)),
                nnx.Linear(16, 4, rngs=nnx.Rngs(1)),
                cast,
            )

        def __call__(self, x):
            if self.cast:
                x = x.astype(self.a.kernel.dtype)
            return self.b(jax.nn.gelu(self.a(x))).astype(jnp.float32)

    def loss_fn(m, b, rng=None):
        return jnp.mean((m(b["x"]) - b["y"]) ** 2)

    batch = {"x": np.ones((2, 8), np.float32), "y": np.zeros((2, 4), np.float32)}
    count = benchmarking.step_matmul_dtypes
    assert set(count(Net(False), loss_fn, batch, "bfloat16")) == {("f32", "f32")}
    low = count(Net(True), loss_fn, batch, "bfloat16")
    assert set(low) == {("bf16", "bf16")} and sum(low.values()) >= 4  # forward and backward
    assert set(count(Net(True), loss_fn, batch, "float32")) == {("f32", "f32")}
