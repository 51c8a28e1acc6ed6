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
    with pytest.raises(ValueError, match="lora_rank must be an int"):
        earth_trunk.BlockConfig(window=(1, 2, 4), lora_rank=-2)
    with pytest.raises(ValueError, match="adapters on lead-routed experts"):
        earth_trunk.BlockConfig(window=(1, 2, 4), lora_rank=2, experts=3)


def _random_block(cfg: earth_trunk.BlockConfig, seed: int):
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(
            lambda: earth_trunk.EarthSpecificBlock(
                cfg, 8, 2, shift=True, drop_rate=0.0, rngs=nnx.Rngs(0)
            )
        )
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)  # host draws: no compile per shape
    state = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), state)
    return nnx.merge(graphdef, state)


def test_low_rank_adapters_add_their_product_to_each_kernel():
    plain = _random_block(earth_trunk.BlockConfig(window=(1, 2, 4)), 1)
    adapted = _random_block(earth_trunk.BlockConfig(window=(1, 2, 4), lora_rank=2), 2)
    plain_paths = {p for p, _ in nnx.to_flat_state(nnx.state(plain, nnx.Param))}
    adapted_state = dict(nnx.to_flat_state(nnx.state(adapted, nnx.Param)))
    lora = earth_trunk.lora_paths(["/".join(map(str, p)) for p in adapted_state])
    # The adapted block's other parameters have the plain block's paths (a checkpoint
    # without adapters restores into it) and 2 x 4 adapter matrices are added.
    assert set(adapted_state) - {tuple(p.split("/")) for p in lora} == plain_paths
    assert sorted(lora) == sorted(
        f"{m}/{ab}"
        for m in ("attn/qkv_lora", "attn/proj_lora", "mlp/fc1/lora", "mlp/fc2/lora")
        for ab in ("lora_a", "lora_b")
    )
    # The plain block with every kernel merged, W + A B, computes what the adapted one does.
    a, b = adapted.attn, adapted.mlp
    merged = {
        ("attn", "qkv_kernel"): a.qkv_kernel[...]
        + (a.qkv_lora.lora_a[...] @ a.qkv_lora.lora_b[...]).reshape(8, 3, 2, 4),
        ("attn", "proj_kernel"): a.proj_kernel[...]
        + (a.proj_lora.lora_a[...] @ a.proj_lora.lora_b[...]).reshape(2, 4, 8),
        ("mlp", "fc1", "kernel"): b.fc1.kernel[...]
        + b.fc1.lora.lora_a[...] @ b.fc1.lora.lora_b[...],
        ("mlp", "fc2", "kernel"): b.fc2.kernel[...]
        + b.fc2.lora.lora_a[...] @ b.fc2.lora.lora_b[...],
    }
    nnx.update(
        plain,
        nnx.from_flat_state({p: merged.get(p, adapted_state[p][...]) for p in plain_paths}),
    )
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 1, 4, 8, 8)), jnp.float32)
    bias = jnp.asarray(np.random.default_rng(4).normal(size=(2, 2, 8, 8)), jnp.float32)

    @jax.jit
    def both(x, bias):
        return plain(x, bias), adapted(x, bias)

    y_plain, y_adapted = both(x, bias)
    np.testing.assert_allclose(np.asarray(y_adapted), np.asarray(y_plain), rtol=1e-5, atol=1e-5)
    for p, w in merged.items():  # the adapters changed every kernel they sit on
        assert np.abs(np.asarray(w) - np.asarray(adapted_state[p][...])).max() > 0.05, p
