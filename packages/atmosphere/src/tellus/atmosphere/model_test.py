"""The Pangu network: the paper's size, shapes, and the properties of its building blocks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.atmosphere import config, model
from tellus.kernels import earth_trunk, partitioning

# Bi et al. (2023) report about 64 million parameters per lead-time model (Methods).
PAPER_PARAMS = 64e6


def test_paper_config_parameter_count_without_allocation():
    cfg = config.preset("paper")
    m = model.abstract_model(cfg)
    leaves = jax.tree.leaves(nnx.state(m, nnx.Param))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)  # nothing allocated
    n = partitioning.count_params(m)
    # The Earth-specific bias tables dominate: one (2*12-1) * 6^2 * 2^2 table per window
    # type and head; 124 types in the fine stages (4 level x 31 lat windows of the padded
    # 8 x 186 x 360 grid), 64 in the coarse ones (4 x 16 of 8 x 96 x 180).
    tables = sum(
        int(x.size)
        for p, x in jax.tree_util.tree_leaves_with_path(nnx.state(m, nnx.Param))
        if "bias" in jax.tree_util.keystr(p) and "table" in jax.tree_util.keystr(p)
    )
    per_table = (2 * 12 - 1) * 6 * 6 * 2 * 2
    assert tables == per_table * (124 * 6 * 4 + 64 * 12 * 12)
    print(
        f"\npaper Pangu: {n:,} parameters ({n / 1e6:.1f} M; paper ~64 M), "
        f"of which {tables:,} in Earth-specific bias tables"
    )
    assert abs(n - PAPER_PARAMS) / PAPER_PARAMS < 0.02
    # The count before the trunk / adapter split (the same arrays, moved).
    assert n == 64_220_361
    # The shared trunk holds no grid-sized parameter: every bias table is the adapter's.
    trunk = partitioning.count_params(m.trunk)
    assert trunk + partitioning.count_params(m.adapter) == n
    assert not any(
        "table" in jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_leaves_with_path(nnx.state(m.trunk, nnx.Param))
    )


def test_drop_path_rates_rise_linearly_to_the_maximum():
    cfg = config.preset("paper")
    rates = cfg.drop_path_rates
    assert len(rates) == sum(cfg.depths)
    enc = rates[:8]
    np.testing.assert_allclose(enc, np.linspace(0.0, 0.2, 8), atol=1e-12)


def test_drop_path_keeps_expectation_and_is_identity_without_key():
    x = jnp.ones((4000, 3))
    assert earth_trunk.drop_path(x, 0.3, None) is x
    y = earth_trunk.drop_path(x, 0.3, jax.random.key(0))
    kept = np.asarray(y[:, 0] > 0)
    assert abs(kept.mean() - 0.7) < 0.03
    np.testing.assert_allclose(np.asarray(y[kept]), 1 / 0.7, rtol=1e-6)
    assert abs(float(y.mean()) - 1.0) < 0.05


@pytest.fixture(scope="module")
def tiny():
    cfg = config.preset("tiny", lat=16, lon=64)
    return cfg, model.make_model(cfg)


def _inputs(cfg, b=2, seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    up = jax.random.normal(k[0], (b, cfg.levels, cfg.lat, cfg.lon, cfg.upper_vars))
    sf = jax.random.normal(k[1], (b, cfg.lat, cfg.lon, cfg.surface_vars))
    st = jax.random.normal(k[2], (cfg.lat, cfg.lon, cfg.static_vars))
    return up, sf, st


def test_shapes_batch_independence_and_rotation(tiny):
    cfg, m = tiny
    up, sf, st = _inputs(cfg)
    f = nnx.jit(lambda m, u, s, st: m(u, s, st))
    ou, os_ = f(m, up, sf, st)
    assert ou.shape == up.shape and os_.shape == sf.shape
    # Samples do not interact: the first sample's output is unchanged by the second's input.
    ou2, _ = f(m, up.at[1].set(0.0), sf.at[1].set(0.0), st)
    np.testing.assert_allclose(np.asarray(ou2[0]), np.asarray(ou[0]), atol=1e-5)
    # Longitude is periodic and the bias depends on longitude only through relative
    # position, so rolling the input by a whole window of the coarse stage (8 tokens =
    # 16 fine tokens = 32 grid points) rolls the output: a property that a Swin model with
    # masks at the edges lacks.
    shift = cfg.window[2] * cfg.patch[2] * 2
    ru, rs = f(
        m, jnp.roll(up, shift, axis=3), jnp.roll(sf, shift, axis=2), jnp.roll(st, shift, axis=1)
    )
    np.testing.assert_allclose(np.asarray(ru), np.asarray(jnp.roll(ou, shift, axis=3)), atol=2e-4)
    np.testing.assert_allclose(np.asarray(rs), np.asarray(jnp.roll(os_, shift, axis=2)), atol=2e-4)


def test_reference_and_fast_paths_agree(tiny):
    cfg, m = tiny
    ref = model.make_model(config.preset("tiny", lat=16, lon=64, attention_impl="reference"))
    nnx.update(ref, nnx.state(m))
    up, sf, st = _inputs(cfg, b=1, seed=1)
    a = m(up, sf, st)
    b = ref(up, sf, st)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-4)


def test_bad_input_shapes_name_the_dimension(tiny):
    cfg, m = tiny
    up, sf, st = _inputs(cfg, b=1)
    with pytest.raises(ValueError, match="upper-air input"):
        m(up[:, :12], sf, st)
    with pytest.raises(ValueError, match="static input"):
        m(up, sf, st[..., :2])


def test_config_validation():
    with pytest.raises(ValueError, match="not divisible"):
        config.preset("tiny", dim=50)
    with pytest.raises(KeyError, match="choose from"):
        config.preset("huge")
    cfg = config.preset("small")
    assert config.PanguConfig.from_dict(cfg.to_dict()) == cfg


def test_a_spatially_sharded_step_equals_the_single_device_one():
    """Loss and gradients on 8 devices along ``spatial`` equal one device's. The grid is
    chosen so that every fallback of the sharding rules runs: the 8 token levels take the
    axis, the 22 latitude rows of the fields cannot and pass it to the 64 columns, and the
    windows (12 types x 4 columns) split as the compiler can."""
    from tellus.kernels import mesh as mesh_lib

    cfg = config.preset("tiny", lat=22, lon=64)
    up, sf, st = _inputs(cfg, b=1, seed=2)

    def loss(m, up, sf, st):
        ou, os_ = m(up, sf, st)
        return jnp.mean((ou - up) ** 2) + jnp.mean((os_ - sf) ** 2)

    step = nnx.jit(nnx.value_and_grad(loss))
    value, grads = step(model.make_model(cfg), up, sf, st)
    mesh = mesh_lib.make_mesh({"spatial": 8})
    sharded = model.make_model(cfg)
    with partitioning.use_mesh(mesh):
        partitioning.shard_model(sharded, mesh)
        value8, grads8 = step(sharded, up, sf, st)
    np.testing.assert_allclose(float(value8), float(value), rtol=1e-5)
    flat, flat8 = nnx.to_flat_state(grads), dict(nnx.to_flat_state(grads8))
    for path, g in flat:
        np.testing.assert_allclose(
            np.asarray(flat8[path][...]), np.asarray(g[...]), atol=2e-5, err_msg=str(path)
        )


def test_mixed_precision_multiplies_in_bfloat16():
    """`--bf16` (compute_dtype bfloat16): every matmul of the training step takes bfloat16
    operands except the attention's float32 softmax weights; float32 steps stay float32."""
    from tellus.atmosphere import bench, forecaster, plan_target
    from tellus.training import benchmarking

    cfg = config.preset("tiny")
    batch = bench.random_batch(cfg, 1)

    def count(dtype):
        model = plan_target.placeholder_forecaster(cfg)
        return benchmarking.step_matmul_dtypes(model, forecaster.loss_fn, batch, dtype)

    low = count("bfloat16")
    assert ("f32", "f32") not in low and low[("bf16", "bf16")] > 100
    assert set(low) <= {("bf16", "bf16"), ("f32", "bf16")}  # the softmax weights x V / K
    assert set(count("float32")) == {("f32", "f32")}
