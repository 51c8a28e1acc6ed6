import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.kernels import earth_trunk, window_attention


def _abstract(cfg, grid):
    """The trunk and its bias tables with shapes only (nothing is initialized)."""
    with nnx.use_eager_sharding(False):
        trunk = nnx.eval_shape(lambda: earth_trunk.EarthTrunk(cfg, rngs=nnx.Rngs(0)))
        bias = nnx.eval_shape(lambda: earth_trunk.TrunkBias(cfg, grid, rngs=nnx.Rngs(1)))
    return trunk, bias


def test_lead_experts_route_each_sample_to_its_expert():
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: earth_trunk.LeadExperts(8, 16, 6, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(0)  # random weights and biases, without a compile per shape
    state = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), state)
    experts = nnx.merge(graphdef, state)
    x = jax.random.normal(jax.random.key(1), (4, 1, 2, 3, 8))
    route = jnp.array([0, 3, 5, 0])

    @nnx.jit
    def run(experts):
        # Each expert's own Mlp (nnx.Linear layers) on every sample, beside the routed call.
        return experts(x, route), jnp.stack([mlp(x) for mlp in experts.experts])

    y, own = run(experts)
    for b, e in enumerate(route.tolist()):
        np.testing.assert_allclose(np.asarray(y[b]), np.asarray(own[e, b]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expert indices"):
        experts(x, route[:2])


def test_a_trunk_with_experts_needs_their_indices():
    cfg = earth_trunk.TrunkConfig(
        dim=8, depths=(1, 1, 0, 1), heads=(2, 2, 2, 2), window=(1, 2, 4), experts=3
    )
    trunk, bias = _abstract(cfg, (1, 4, 8))
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


def test_trunk_without_middle_stages_has_no_resampling_and_no_shift():
    # ORCA-DL's fusion: one resolution, a whole-grid window, no shift.
    cfg = earth_trunk.TrunkConfig(
        dim=8, depths=(1, 0, 0, 1), heads=(2, 2, 2, 2), window=(1, 3, 6), shift_windows=False
    )
    trunk, bias = _abstract(cfg, (1, 3, 6))
    assert trunk.down is None and trunk.up is None
    assert cfg.stage_grids((1, 3, 6)) == ((1, 3, 6),) * 4
    blocks = [*trunk.stage1.blocks, *trunk.stage4.blocks]
    assert len(blocks) == 2 and not any(b.attn.shift for b in blocks)
    paths = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(trunk, nnx.Param))}
    assert not any(p.startswith(("down", "up")) for p in paths)
    x = jax.ShapeDtypeStruct((2, 1, 3, 6, 8), jnp.float32)
    ocean = jax.ShapeDtypeStruct((2, 1, 3, 6), jnp.bool_)
    y = nnx.eval_shape(lambda t, b, x, m: t(x, b(), key_mask=m), trunk, bias, x, ocean)
    assert y.shape == (2, 1, 3, 6, 16)


def test_resampling_trunk_merges_the_key_mask(monkeypatch):
    cfg = earth_trunk.TrunkConfig(dim=8, depths=(1, 1, 1, 1), heads=(2, 2, 2, 2), window=(1, 2, 4))
    trunk, bias = _abstract(cfg, (1, 5, 8))
    shapes = []

    def spy(self, x, bias=None, key_mask=None):  # each attention layer's key mask, in order
        shapes.append(key_mask.shape)
        return x

    monkeypatch.setattr(window_attention.EarthAttention3D, "__call__", spy)
    x = jax.ShapeDtypeStruct((1, 1, 5, 8, 8), jnp.float32)
    ocean = jax.ShapeDtypeStruct((1, 1, 5, 8), jnp.bool_)
    nnx.eval_shape(lambda t, b, x, m: t(x, b(), key_mask=m), trunk, bias, x, ocean)
    # One block a stage: fine, merged 2 x 2 (5 x 8 -> 3 x 4) twice, fine.
    assert shapes == [(1, 1, 5, 8), (1, 1, 3, 4), (1, 1, 3, 4), (1, 1, 5, 8)]


def test_block_config_is_checked():
    with pytest.raises(ValueError, match="experts must be an int"):
        earth_trunk.TrunkConfig(
            dim=8, depths=(1, 1, 1, 1), heads=(2, 2, 2, 2), window=(1, 2, 4), experts=-1
        )
