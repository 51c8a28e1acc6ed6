"""The Gaussian entropy proxy against hand values, and the ranking on a trunk whose one
attention layer adds nothing."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.kernels import earth_trunk
from tellus.training import entropy, pruning

# The suite compiles at XLA's backend optimization level 1 (conftest.py), the product at the
# default, 3. Two programs equal bit for bit at one level need not be at another (the code
# generator may fuse a multiply and an add in one and not in the other), so the removed
# model's equality to the lambda = 0 model is checked as the product compiles them.
PRODUCT_LEVEL = {"xla_backend_optimization_level": 3}


def _as_product_compiles(call):
    """``call(module, *args)`` jitted at the product's optimization level."""
    jitted = jax.jit(
        lambda graphdef, state, *args: call(nnx.merge(graphdef, state), *args),
        static_argnums=0,
        compiler_options=PRODUCT_LEVEL,
    )

    def run(module, *args):
        return jitted(*nnx.split(module), *args)

    return run


def test_the_gaussian_proxy_is_the_sum_of_log_standard_deviations():
    # Two features: +-2 (std 2) and 1 +- 0.5 (std 0.5), over four samples.
    x = np.array([[2.0, 1.5], [-2.0, 0.5], [2.0, 1.5], [-2.0, 0.5]])
    moments = np.asarray(earth_trunk.feature_moments(jnp.asarray(x)))
    np.testing.assert_allclose(moments, [[4, 4], [0, 4], [16, 5]])
    assert entropy.gaussian_entropy(moments) == pytest.approx(math.log(2.0) + math.log(0.5))
    # Moments of two halves add up to the whole's.
    halves = sum(np.asarray(earth_trunk.feature_moments(jnp.asarray(h))) for h in (x[:2], x[2:]))
    np.testing.assert_allclose(halves, moments)
    with pytest.raises(ValueError, match="1 features have no variance"):
        constant_first = jnp.array([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
        entropy.gaussian_entropy(np.asarray(earth_trunk.feature_moments(constant_first)))


def test_an_attention_layer_that_adds_nothing_adds_exactly_zero():
    cfg = earth_trunk.TrunkConfig(
        dim=8, depths=(2, 2, 2, 2), heads=(2, 2, 2, 2), window=(1, 2, 4), drop_path=0.0
    )
    grid = (2, 4, 8)
    with nnx.use_eager_sharding(False):
        trunk = earth_trunk.EarthTrunk(cfg, rngs=nnx.Rngs(0))
        bias = earth_trunk.TrunkBias(cfg, grid, rngs=nnx.Rngs(1))
    # Stage 3's first block: its attention's output projection is zero, so x + Attn(x) = x.
    silent = trunk.stage3.blocks[0].attn
    silent.proj_kernel[...] = jnp.zeros_like(silent.proj_kernel[...])
    silent.proj_bias[...] = jnp.zeros_like(silent.proj_bias[...])
    biases = bias()
    batches = [jax.random.normal(jax.random.key(i), (2, *grid, 8)) for i in range(3)]
    ranking = entropy.measure(trunk, lambda m, x: m(x, biases), batches)
    # Least added first; an attention layer may also lower the entropy (a negative addition).
    added = [e.added for e in ranking]
    assert added == sorted(added) and len(ranking) == 8
    by_path = {e.path: e for e in ranking}
    assert set(by_path) == {f"stage{s}/blocks/{i}" for s in (1, 2, 3, 4) for i in (0, 1)}
    zero = [e.path for e in ranking if abs(e.added) < 1e-9]
    assert zero == ["stage3/blocks/0"] and by_path["stage3/blocks/0"].added == 0.0
    # Stage 3 runs on the merged 2 x 4 grid of 2 levels: 2 samples x 16 tokens x 3 batches.
    assert by_path["stage3/blocks/0"].samples == 3 * 2 * 2 * 2 * 4
    assert by_path["stage1/blocks/0"].samples == 3 * 2 * 2 * 4 * 8
    # Measuring leaves the model as it was: no recording, nothing sown.
    assert not any(b.record_moments for b in entropy.blocks(trunk).values())
    assert not nnx.state(trunk, nnx.Intermediate)


def test_a_model_without_blocks_is_refused():
    with pytest.raises(ValueError, match="no blocks with prunable attention"):
        entropy.measure(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), lambda m, x: m(x), [jnp.ones((1, 2))])


def test_a_removed_attention_is_the_lambda_zero_block_and_lambda_one_the_plain_one():
    cfg = earth_trunk.TrunkConfig(
        dim=8, depths=(2, 2, 2, 2), heads=(2, 2, 2, 2), window=(1, 2, 4), drop_path=0.0
    )
    grid = (2, 4, 8)
    with nnx.use_eager_sharding(False):
        trunk = earth_trunk.EarthTrunk(cfg, rngs=nnx.Rngs(0))
        biases = earth_trunk.TrunkBias(cfg, grid, rngs=nnx.Rngs(1))()
    x = jax.random.normal(jax.random.key(5), (2, *grid, 8))
    run = _as_product_compiles(lambda m, x: m(x, biases))
    plain = np.asarray(run(trunk, x))
    chosen = ["stage2/blocks/1", "stage3/blocks/0"]
    entropy.degenerate(trunk, chosen, 1.0)
    np.testing.assert_array_equal(np.asarray(run(trunk, x)), plain)
    entropy.degenerate(trunk, chosen, 0.5)
    half = np.asarray(run(trunk, x))
    assert np.abs(half - plain).max() > 1e-3  # the residual changed
    entropy.degenerate(trunk, chosen, 0.0)
    degenerate = np.asarray(run(trunk, x))
    n_params = sum(v.size for v in jax.tree.leaves(nnx.state(trunk, nnx.Param)))
    entropy.remove(trunk, chosen)
    np.testing.assert_array_equal(np.asarray(run(trunk, x)), degenerate)
    removed = sum(v.size for v in jax.tree.leaves(nnx.state(trunk, nnx.Param)))
    # Each removed attention had qkv (16 x 3 x 2 x 8 + 3 x 2 x 8) and proj (2 x 8 x 16 + 16).
    assert n_params - removed == 2 * (16 * 48 + 48 + 16 * 16 + 16)
    # The removed blocks are no longer measured; the others still are.
    ranking = entropy.measure(trunk, lambda m, x: m(x, biases), [x])
    assert {e.path for e in ranking} == {
        f"stage{s}/blocks/{i}" for s in (1, 2, 3, 4) for i in (0, 1)
    } - set(chosen)
    with pytest.raises(KeyError, match="'stage9/blocks/0' is not a prunable block"):
        entropy.remove(trunk, ["stage9/blocks/0"])
    with pytest.raises(ValueError, match="lambda must be in"):
        entropy.degenerate(trunk, [], 1.5)


class _Net(nnx.Module):
    """A trunk with its bias tables, as the domain models hold them."""

    def __init__(self, cfg: earth_trunk.TrunkConfig, grid):
        self.bias = earth_trunk.TrunkBias(cfg, grid, rngs=nnx.Rngs(1))
        self.trunk = earth_trunk.EarthTrunk(cfg, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return self.trunk(x, self.bias())


def test_an_annealed_lambda_is_state_and_the_model_built_pruned_is_the_lambda_zero_one():
    cfg = earth_trunk.TrunkConfig(
        dim=8, depths=(2, 2, 2, 2), heads=(2, 2, 2, 2), window=(1, 2, 4), drop_path=0.0
    )
    grid = (2, 4, 8)
    with nnx.use_eager_sharding(False):
        net = _Net(cfg, grid)
    x = jax.random.normal(jax.random.key(5), (2, *grid, 8))
    chosen = ["trunk/stage1/blocks/1", "trunk/stage4/blocks/0"]
    assert entropy.block_indices(net, chosen) == (1, 6)  # stage by stage, block by block
    entropy.degenerate(net, chosen, 0.5)
    static_half = np.asarray(nnx.jit(lambda m, x: m(x))(net, x))
    entropy.degenerate(net, chosen, 0.0)
    static_zero = np.asarray(_as_product_compiles(lambda m, x: m(x))(net, x))

    # lambda as state: one compiled program whatever its value; the values are the static ones.
    entropy.anneal(net, chosen)
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    calls = []

    @jax.jit
    def run(params, rest, x):
        calls.append(1)  # traced once per compilation
        return nnx.merge(graphdef, params, rest)(x)

    schedule = entropy.lambda_schedule(4)
    assert [entropy.lambda_at(s, 4) for s in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    pure = nnx.to_pure_dict(rest)
    halfway = schedule(2, pure)
    lams = {
        jax.tree_util.keystr(p): float(v)
        for p, v in jax.tree_util.tree_leaves_with_path(halfway)
        if "attn_lambda" in jax.tree_util.keystr(p)
    }
    assert list(lams.values()) == [0.5, 0.5] and len(jax.tree.leaves(halfway)) == len(
        jax.tree.leaves(pure)
    )
    rest_half = nnx.State(jax.tree.map(jnp.asarray, halfway))
    np.testing.assert_allclose(np.asarray(run(params, rest_half, x)), static_half, atol=1e-6)
    rest_zero = nnx.State(jax.tree.map(jnp.asarray, schedule(7, pure)))
    annealed_zero = np.asarray(run(params, rest_zero, x))
    np.testing.assert_allclose(annealed_zero, static_zero, atol=1e-6)
    assert len(calls) == 1

    # The model built without those attention layers, with the trained weights loaded, computes
    # the lambda = 0 model; what it drops is exactly their attention and bias tables.
    with nnx.use_eager_sharding(False):
        pruned = _Net(dataclasses.replace(cfg, pruned=(6, 1)), grid)
    assert pruned.trunk.config.pruned == (1, 6)
    assert pruned.trunk.stage1.blocks[1].attn is None and pruned.trunk.stage4.blocks[0].attn is None
    assert pruned.bias.stages[0][1] is None and pruned.bias.stages[0][0] is not None
    dropped = pruning.transplant(pruned, nnx.to_pure_dict(nnx.state(net, nnx.Param)))
    assert {d.rsplit("/", 1)[0] for d in dropped} == {
        "trunk/stage1/blocks/1/attn",
        "trunk/stage4/blocks/0/attn",
        "bias/stages/0/1",
        "bias/stages/3/0",
    }
    np.testing.assert_array_equal(
        np.asarray(_as_product_compiles(lambda m, x: m(x))(pruned, x)), static_zero
    )
    with pytest.raises(ValueError, match=r"pruned must name distinct blocks 0..7"):
        dataclasses.replace(cfg, pruned=(8,))
    with pytest.raises(KeyError, match="not a block with attention"):
        entropy.anneal(pruned, ["trunk/stage1/blocks/1"])
