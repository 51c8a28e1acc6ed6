"""The ocean denoiser: its shape on the embedded grid, land, periodicity, the shared trunk,
and the paper preset's parameter count by hand."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.kernels import earth_trunk, partitioning
from tellus.ocean import unet

GRID = (35, 90, 15)


def _tiny(n_lat=35, n_lon=90, depths=15) -> unet.UNetConfig:
    probe = unet.UNetConfig(
        n_lat, n_lon, depths, unet.bottleneck_trunk((1, 1), 16, 2), 8, (1, 2, 2), 1, 4
    )
    return dataclasses.replace(probe, trunk=unet.bottleneck_trunk(probe.bottleneck, 16, 2))


@pytest.fixture(scope="module")
def tiny():
    """A tiny denoiser on 35 x 90 x 15 with random weights everywhere (the zero-initialized
    output convolutions would make every output 0), its forward compiled once."""
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: unet.UNetDenoiser(_tiny(), rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(abstract, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(3)  # on the host: nothing to compile
    randomized = [jnp.asarray(0.2 * rng.standard_normal(x.shape), jnp.float32) for x in leaves]
    model = nnx.merge(graphdef, jax.tree.unflatten(treedef, randomized))
    ocean = np.ones((1, *GRID), bool)
    ocean[0, :4] = False  # polar land at every depth
    ocean[0, 10:20, 30:40, 8:] = False  # a shelf: land below level 8
    forward = nnx.jit(lambda m, x, t, o: m(x, t, o))
    return model, forward, ocean


def test_shape_and_land_zero_on_the_embedded_grid(tiny):
    model, forward, ocean = tiny
    x = jax.random.normal(jax.random.key(0), (2, *GRID))
    out = np.asarray(forward(model, x, jnp.array([3, 700]), ocean))
    assert out.shape == (2, *GRID) and np.isfinite(out).all()
    assert np.all(out[:, ~ocean[0]] == 0.0)
    assert np.abs(out[:, ocean[0]]).mean() > 1e-3
    # land inputs never matter: NaN and 1e30 there give the same output
    poisoned = np.where(ocean, np.asarray(x), np.nan)
    poisoned[1][~ocean[0]] = 1e30
    np.testing.assert_array_equal(
        forward(model, jnp.asarray(poisoned), jnp.array([3, 700]), ocean), out
    )


def test_circular_padding_and_conv_periodic():
    x = jnp.arange(2 * 3 * 5 * 1, dtype=jnp.float32).reshape(2, 3, 5, 1)
    p = np.asarray(unet.circular_pad(x, 1))
    assert p.shape == (2, 5, 7, 1)
    np.testing.assert_array_equal(p[:, 0], 0.0)  # latitude: zeros
    np.testing.assert_array_equal(p[:, 1:-1, 0], x[:, :, -1])  # longitude: wrapped
    np.testing.assert_array_equal(p[:, 1:-1, -1], x[:, :, 0])
    with nnx.use_eager_sharding(False):
        conv = unet.Conv(1, 2, rngs=nnx.Rngs(0))
    y = jax.random.normal(jax.random.key(1), (1, 4, 6, 1))
    np.testing.assert_allclose(
        conv(jnp.roll(y, 2, axis=2)), jnp.roll(conv(y), 2, axis=2), atol=1e-6
    )


def test_bottleneck_mask_and_padding():
    cfg = _tiny()
    assert cfg.padded == (36, 92) and cfg.bottleneck == (9, 23)
    ocean = np.zeros((1, *GRID), bool)
    ocean[0, 0, 1, 14] = (
        True  # padded row 0 is land, so cell row 0 is padded row 0 // 4 ... see below
    )
    m = np.asarray(unet.bottleneck_mask(ocean, cfg))
    assert m.shape == (1, 1, 9, 23)
    # one padded row on top (35 -> 36 splits 0 above, 1 below): cell (0, 1) -> token (0, 0)
    expected = np.zeros((9, 23), bool)
    expected[0, 0] = expected[0, 22] = True  # longitude 1 is also padded column 91
    np.testing.assert_array_equal(m[0, 0], expected)
    ocean[:] = False
    ocean[0, 34, 88, 0] = True  # the last row, and a column whose wrapped copy is not padded
    ocean[0, 20, 0, 0] = True  # column 0 is also padded column 90: tokens 0 and 22
    m = np.asarray(unet.bottleneck_mask(ocean, cfg))[0, 0]
    assert m[8, 22] and m[5, 0] and m[5, 22] and m.sum() == 3


def test_shared_trunk_and_config_round_trip():
    cfg = _tiny(7, 12, 3)
    assert unet.UNetConfig.from_dict(cfg.to_dict()) == cfg
    assert unet.trunk_config(cfg.to_dict()) == cfg.trunk_config
    with nnx.use_eager_sharding(False):
        trunk = earth_trunk.EarthTrunk(cfg.trunk_config, rngs=nnx.Rngs(0))
        other = earth_trunk.EarthTrunk(
            dataclasses.replace(cfg.trunk_config, dim=32), rngs=nnx.Rngs(0)
        )
    model = unet.make_denoiser(cfg.to_dict(), trunk)
    assert model.trunk is trunk
    with pytest.raises(ValueError, match="shared trunk"):
        unet.make_denoiser(cfg, other)
    with pytest.raises(ValueError, match="groups"):
        dataclasses.replace(cfg, groups=3)
    with pytest.raises(ValueError, match="x must be"):
        model(jnp.zeros((1, 7, 12, 2)), jnp.zeros(1, jnp.int32), np.ones((1, 7, 12), bool))
    # every parameter's logical names are in the rules table
    partitioning.param_specs(model)


def _res_block(c_in: int, c_out: int, t_dim: int) -> int:
    """GN(c_in) + conv3x3(c_in, c_out) + dense(t_dim, c_out) + GN(c_out) + conv3x3(c_out,
    c_out) [+ conv1x1(c_in, c_out)], each with its bias."""
    n = 2 * c_in + (9 * c_in * c_out + c_out) + (t_dim * c_out + c_out) + 2 * c_out
    n += 9 * c_out * c_out + c_out
    return n + (c_in * c_out + c_out if c_in != c_out else 0)


def test_paper_preset_parameter_count_by_hand():
    cfg = unet.PRESETS["paper"]
    assert (cfg.base, cfg.mults, cfg.res_blocks, cfg.bottleneck) == (128, (1, 2, 2, 4), 3, (5, 12))
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: unet.UNetDenoiser(cfg, rngs=nnx.Rngs(0)))
    # one block by hand: the first of level 1, 128 -> 256 channels, 512-wide time embedding
    first_of_level_1 = abstract.down[4]  # 3 blocks of level 0, its down-sampling, then this
    assert partitioning.count_params(first_of_level_1) == _res_block(128, 256, 512) == 1_050_368
    # the whole network by hand
    c, t = 128, 512
    widths, res = (128, 256, 256, 512), 3
    total = (c * t + t) + (t * t + t) + (9 * 15 * c + c)  # time MLP, input conv
    chans, ch = [c], c
    for level, w in enumerate(widths):
        for _ in range(res):
            total += _res_block(ch, w, t)
            ch = w
            chans.append(ch)
        if level < 3:
            total += 9 * ch * ch + ch  # stride-2 conv
            chans.append(ch)
    trunk = partitioning.count_params(abstract.attention.trunk)
    bias = partitioning.count_params(abstract.attention.bias)
    # two 512-wide blocks: LN, qkv, proj, LN, MLP 4x; plus two 5 x 12 bias tables
    block = (
        2 * 512
        + (512 * 1536 + 1536)
        + (512 * 512 + 512)
        + 2 * 512
        + (512 * 2048 + 2048)
        + (2048 * 512 + 512)
    )
    assert trunk == 2 * block
    assert bias == 2 * (5 * 5 * (2 * 12 - 1) * 8)
    total += 2 * _res_block(ch, ch, t) + 2 * ch + (ch * 512 + 512) + trunk + bias + (1024 * ch + ch)
    for level in reversed(range(4)):
        for i in range(res + 1):
            total += _res_block(ch + chans.pop(), widths[level], t)
            ch = widths[level]
            if level > 0 and i == res:
                total += 9 * ch * ch + ch  # conv after the 2x up-sampling
    total += 2 * ch + (9 * ch * 15 + 15)  # output norm and conv
    assert unet.count_parameters(cfg) == total == 94_003_583


def test_mixed_precision_multiplies_in_bfloat16():
    """compute_dtype bfloat16: the denoiser's convolutions and matmuls take bfloat16
    operands (the noisy field and the timestep embedding follow the weights) but the
    attention's float32 softmax weights."""
    from tellus.ocean import bench, diffusion_loss
    from tellus.training import benchmarking

    cfg = _tiny()
    batch = bench.denoiser_batch(cfg, 1)

    def count(dtype):
        with nnx.use_eager_sharding(False):
            model = unet.UNetDenoiser(cfg, rngs=nnx.Rngs(0))
        return benchmarking.step_matmul_dtypes(model, diffusion_loss.diffusion_loss, batch, dtype)

    low = count("bfloat16")
    assert ("f32", "f32") not in low and low[("bf16", "bf16")] > 50
    assert set(count("float32")) == {("f32", "f32")}
