import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.kernels import earth_trunk


def _build(cfg, grid, seed=0):
    with nnx.use_eager_sharding(False):
        trunk = earth_trunk.EarthTrunk(cfg, rngs=nnx.Rngs(seed))
        bias = earth_trunk.TrunkBias(cfg, grid, rngs=nnx.Rngs(seed + 1))
    return trunk, bias


def _by_path(grads):
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.state(grads))[0]
    }


def test_lead_experts_route_each_sample_to_its_expert():
    with nnx.use_eager_sharding(False):
        experts = earth_trunk.LeadExperts(8, 16, 6, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 1, 2, 3, 8))
    route = jnp.array([0, 3, 5, 0])

    @nnx.jit
    def run(experts):
        y = experts(x, route)
        # Each expert's own Mlp (nnx.Linear layers) on every sample.
        own = jnp.stack([mlp(x) for mlp in experts.experts])
        return y, own, nnx.grad(lambda m: jnp.sum(m(x, route) ** 2))(experts)

    y, own, grads = run(experts)
    for b, e in enumerate(route.tolist()):
        np.testing.assert_allclose(np.asarray(y[b]), np.asarray(own[e, b]), rtol=1e-5, atol=1e-6)
    for path, g in _by_path(grads).items():
        used = int(path.split("/")[1]) in (0, 3, 5)
        assert (np.abs(g).max() > 0) == used, path


def test_a_trunk_with_experts_needs_their_indices():
    cfg = earth_trunk.TrunkConfig(
        dim=8, depths=(1, 1, 0, 1), heads=(2, 2, 2, 2), window=(1, 2, 4), experts=3
    )
    with nnx.use_eager_sharding(False):
        trunk = nnx.eval_shape(lambda: earth_trunk.EarthTrunk(cfg, rngs=nnx.Rngs(0)))
        bias = nnx.eval_shape(lambda: earth_trunk.TrunkBias(cfg, (1, 4, 8), rngs=nnx.Rngs(0)))
    x = jax.ShapeDtypeStruct((2, 1, 4, 8, 8), jnp.float32)
    y = nnx.eval_shape(lambda t, b, x: t(x, b(), expert=jnp.array([0, 2])), trunk, bias, x)
    assert y.shape == (2, 1, 4, 8, 16)
    assert len(trunk.stage1.blocks[0].mlp.experts) == 3
    with pytest.raises(ValueError, match="lead-routed experts"):
        nnx.eval_shape(lambda t, b, x: t(x, b()), trunk, bias, x)


def test_merge_mask_follows_downsample():
    ocean = np.zeros((1, 1, 3, 5), bool)
    ocean[0, 0, 2, 4] = True  # only the last cell: its merged token is the padded corner
    ocean[0, 0, 0, 1] = True
    merged = np.asarray(earth_trunk.merge_mask(jnp.asarray(ocean)))
    expected = np.zeros((1, 1, 2, 3), bool)
    expected[0, 0, 1, 2] = expected[0, 0, 0, 0] = True
    np.testing.assert_array_equal(merged, expected)


def _fusion_like():
    """One resolution, a whole-grid window, no shift: every token attends to every other."""
    cfg = earth_trunk.TrunkConfig(
        dim=8, depths=(1, 0, 0, 1), heads=(2, 2, 2, 2), window=(1, 3, 6), shift_windows=False
    )
    return cfg, *_build(cfg, (1, 3, 6))


def test_trunk_without_middle_stages_has_no_resampling_and_no_shift():
    cfg, trunk, _ = _fusion_like()
    assert trunk.down is None and trunk.up is None
    assert cfg.stage_grids((1, 3, 6)) == ((1, 3, 6),) * 4
    blocks = [*trunk.stage1.blocks, *trunk.stage4.blocks]
    assert len(blocks) == 2 and not any(b.attn.shift for b in blocks)
    paths = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(trunk, nnx.Param))}
    assert not any(p.startswith(("down", "up")) for p in paths)


def test_key_mask_in_the_trunk():
    _, trunk, bias = _fusion_like()
    x = jax.random.normal(jax.random.key(3), (2, 1, 3, 6, 8))
    ocean = jnp.asarray(np.random.default_rng(0).random((2, 1, 3, 6)) > 0.5)
    huge = jnp.where(ocean[..., None], x, 1e4)

    @nnx.jit
    def run(trunk, bias, x, ocean):
        return trunk(x, bias(), key_mask=ocean)

    plain = nnx.jit(lambda trunk, bias, x: trunk(x, bias()))(trunk, bias, x)
    np.testing.assert_allclose(
        np.asarray(run(trunk, bias, x, jnp.ones_like(ocean))), np.asarray(plain), atol=1e-6
    )
    y, y_huge = np.asarray(run(trunk, bias, x, ocean)), np.asarray(run(trunk, bias, huge, ocean))
    ocean = np.asarray(ocean)
    # Only attention mixes tokens here, and no land token is ever a key.
    np.testing.assert_array_equal(y[ocean], y_huge[ocean])
    assert not np.allclose(y[ocean], np.asarray(plain)[ocean])
    none = np.asarray(run(trunk, bias, x, jnp.zeros_like(ocean)))
    assert np.isfinite(none).all()


def test_resampling_trunk_takes_a_key_mask():
    cfg = earth_trunk.TrunkConfig(dim=8, depths=(1, 1, 0, 1), heads=(2, 2, 2, 2), window=(1, 2, 4))
    trunk, bias = _build(cfg, (1, 5, 8))
    x = jax.random.normal(jax.random.key(4), (1, 1, 5, 8, 8))
    ocean = jnp.zeros((1, 1, 5, 8), bool).at[0, 0, :, 5:].set(True)
    y = nnx.jit(lambda t, b: t(x, b(), key_mask=ocean))(trunk, bias)
    assert y.shape == (1, 1, 5, 8, 16) and np.isfinite(np.asarray(y)).all()


def test_block_config_is_checked():
    with pytest.raises(ValueError, match="experts must be an int"):
        earth_trunk.TrunkConfig(
            dim=8, depths=(1, 1, 1, 1), heads=(2, 2, 2, 2), window=(1, 2, 4), experts=-1
        )
