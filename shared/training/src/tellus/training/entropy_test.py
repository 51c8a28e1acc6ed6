"""The Gaussian entropy proxy against hand values, and the ranking on a trunk whose one
attention layer adds nothing."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.kernels import earth_trunk
from tellus.training import entropy


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
    with pytest.raises(ValueError, match="no Earth-specific blocks"):
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
    run = nnx.jit(lambda m, x: m(x, biases))
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
    with pytest.raises(KeyError, match="'stage9/blocks/0' is not an Earth-specific block"):
        entropy.remove(trunk, ["stage9/blocks/0"])
    with pytest.raises(ValueError, match="lambda must be in"):
        entropy.degenerate(trunk, [], 1.5)
