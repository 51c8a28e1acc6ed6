"""Patch embedding / recovery: two implementations, hand-computed sums, an exact inverse."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.kernels import mesh as mesh_lib
from tellus.kernels import partitioning
from tellus.kernels import patch_embed as pe

SHAPE_3D = (13, 10, 16)  # pads: levels (0, 1), lat (1, 1), lon none
SHAPE_2D = (10, 15)  # pads: lat (1, 1), lon (0, 1)


def _build(cls, *args, seed=0, **kwargs):
    """The layer with N(0, 1) parameters from numpy, non-zero biases included.

    Built abstractly and filled from numpy: the real initializer compiles for every shape,
    which is slow on CPU (``docs/performance.md``); it is tested once, in
    ``test_params_init_and_logical_names``.
    """
    with nnx.use_eager_sharding(False):  # built outside any mesh
        layer = nnx.eval_shape(lambda: cls(*args, rngs=nnx.Rngs(seed), **kwargs))
    rng = np.random.default_rng(seed)
    values = jax.tree.map(
        lambda s: jnp.asarray(rng.standard_normal(s.shape), jnp.float32), nnx.state(layer)
    )
    nnx.update(layer, values)
    return layer


def _x(shape, seed=3):
    # numpy, not jax.random: nothing to compile per shape, which keeps the file fast.
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


_apply = nnx.jit(lambda layer, x: layer(x))


def test_patch_grid_pangu_and_pad_split():
    assert pe.patch_grid((13, 721, 1440), (2, 4, 4)) == (
        (14, 724, 1440),
        (7, 181, 360),
        ((0, 1), (1, 2), (0, 0)),
    )
    assert pe.patch_grid((721, 1440), (4, 4)) == ((724, 1440), (181, 360), ((1, 2), (0, 0)))
    assert pe.patch_grid(SHAPE_3D, (2, 4, 4))[2] == ((0, 1), (1, 1), (0, 0))


@pytest.mark.parametrize(
    "embed_cls, recover_cls, shape, patch, c",
    [
        (pe.PatchEmbed3D, pe.PatchRecovery3D, SHAPE_3D, (2, 4, 4), 5),
        (pe.PatchEmbed2D, pe.PatchRecovery2D, SHAPE_2D, (4, 4), 4),
    ],
)
def test_matmul_equals_conv(embed_cls, recover_cls, shape, patch, c):
    dim = 6
    x = _x((2, *shape, c))
    embed = _build(embed_cls, c, dim, patch, impl="matmul")
    embed_fast = _build(embed_cls, c, dim, patch, impl="conv")  # same seed, same params
    tokens = _apply(embed, x)
    grid = pe.patch_grid(shape, patch)[1]
    assert tokens.shape == (2, *grid, dim)
    np.testing.assert_allclose(_apply(embed_fast, x), tokens, rtol=1e-5, atol=1e-4)

    recover = _build(recover_cls, dim, c, shape, patch, impl="matmul")
    recover_fast = _build(recover_cls, dim, c, shape, patch, impl="conv")
    fields = _apply(recover, tokens)
    assert fields.shape == x.shape
    np.testing.assert_allclose(_apply(recover_fast, tokens), fields, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("impl", pe.IMPLS)
def test_ones_kernel_sums_each_patch(impl):
    x = _x((1, 5, 7, 6, 1))  # pads: (0, 1), (0, 1), (1, 1)
    layer = _build(pe.PatchEmbed3D, 1, 1, (2, 4, 4), impl=impl)
    layer.kernel[...] = np.ones(layer.kernel.shape, np.float32)
    layer.bias[...] = np.zeros(layer.bias.shape, np.float32)
    got = np.asarray(_apply(layer, x))[0, ..., 0]
    padded = np.pad(np.asarray(x)[0, ..., 0], ((0, 1), (0, 1), (1, 1)))
    want = padded.reshape(3, 2, 2, 4, 2, 4).sum(axis=(1, 3, 5))
    assert got.shape == (3, 2, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("impl", pe.IMPLS)
def test_ones_kernel_by_hand_2d(impl):
    # H = 5 -> 8 with pads (1, 2); W = 4 -> no pad. On all-ones input the first token row
    # sees 3 real rows (12 cells) and the second 2 real rows (8 cells).
    layer = _build(pe.PatchEmbed2D, 1, 1, (4, 4), impl=impl)
    layer.kernel[...] = np.ones(layer.kernel.shape, np.float32)
    layer.bias[...] = np.zeros(layer.bias.shape, np.float32)
    got = np.asarray(_apply(layer, jnp.ones((1, 5, 4, 1))))
    np.testing.assert_array_equal(got[0, :, :, 0], [[12.0], [8.0]])


@pytest.mark.parametrize("impl", pe.IMPLS)
@pytest.mark.parametrize(
    "embed_cls, recover_cls, shape, patch, c",
    [
        (pe.PatchEmbed3D, pe.PatchRecovery3D, (5, 7, 6), (2, 4, 4), 2),
        (pe.PatchEmbed2D, pe.PatchRecovery2D, SHAPE_2D, (4, 4), 3),
    ],
)
def test_identity_kernels_make_recovery_invert_embed(impl, embed_cls, recover_cls, shape, patch, c):
    dim = math.prod(patch) * c
    eye = jnp.eye(dim)
    embed = _build(embed_cls, c, dim, patch, impl=impl)
    embed.kernel[...] = eye.reshape(*patch, c, dim)
    embed.bias[...] = jnp.zeros(dim)
    recover = _build(recover_cls, dim, c, shape, patch, impl=impl)
    recover.kernel[...] = eye.reshape(dim, *patch, c)
    recover.bias[...] = jnp.zeros(c)
    x = _x((2, *shape, c))
    np.testing.assert_allclose(_apply(recover, _apply(embed, x)), x, rtol=1e-6, atol=1e-6)


def test_pangu_token_grids_without_allocation():
    def abstract(cls, *args):
        with nnx.use_eager_sharding(False):
            return nnx.eval_shape(lambda: cls(*args, rngs=nnx.Rngs(0)))  # no parameters made

    embed = abstract(pe.PatchEmbed3D, 5, 192)
    surface = abstract(pe.PatchEmbed2D, 4, 192)
    recover = abstract(pe.PatchRecovery3D, 192, 5, (13, 721, 1440))
    recover_surface = abstract(pe.PatchRecovery2D, 192, 4, (721, 1440))
    assert recover.grid == (7, 181, 360) and recover_surface.grid == (181, 360)
    assert embed.token_grid((13, 721, 1440)) == (7, 181, 360)

    def shape_of(layer, shape):
        out = nnx.eval_shape(lambda m, x: m(x), layer, jax.ShapeDtypeStruct(shape, jnp.float32))
        return out.shape

    assert shape_of(embed, (2, 13, 721, 1440, 5)) == (2, 7, 181, 360, 192)
    assert shape_of(surface, (2, 721, 1440, 4)) == (2, 181, 360, 192)
    assert shape_of(recover, (2, 7, 181, 360, 192)) == (2, 13, 721, 1440, 5)
    assert shape_of(recover_surface, (2, 181, 360, 192)) == (2, 721, 1440, 4)


def test_params_init_and_logical_names():
    with nnx.use_eager_sharding(False):
        embed = pe.PatchEmbed3D(5, 8, rngs=nnx.Rngs(0))
    recover = _build(pe.PatchRecovery2D, 8, 4, SHAPE_2D)
    assert embed.kernel.shape == (2, 4, 4, 5, 8) and embed.bias.shape == (8,)
    assert recover.kernel.shape == (8, 4, 4, 4) and recover.bias.shape == (4,)
    # Variance 1 / fan_in with fan_in = 2 * 4 * 4 * 5 = 160 (std 0.079), zero bias.
    assert 0.06 < float(jnp.std(embed.kernel[...])) < 0.1
    np.testing.assert_array_equal(embed.bias[...], 0.0)
    assert embed.kernel.get_metadata()["out_sharding"] == (None, None, None, "channels", "embed")
    assert embed.bias.get_metadata()["out_sharding"] == ("embed",)
    assert recover.kernel.get_metadata()["out_sharding"] == ("embed", None, None, "channels")
    assert recover.bias.get_metadata()["out_sharding"] == ("channels",)
    specs = partitioning.param_specs(embed)
    assert specs["kernel"] == jax.P(None, None, None, None, "fsdp")


def test_errors_name_expected_and_got():
    embed = _build(pe.PatchEmbed3D, 5, 8)
    with pytest.raises(
        ValueError,
        match=r"expects fields \[B, Z, H, W, C=5\] \(rank 5\), got "
        r"shape \(1, 10, 16, 5\)",
    ):
        embed(jnp.zeros((1, 10, 16, 5)))
    with pytest.raises(ValueError, match=r"C=5.*got shape \(1, 13, 10, 16, 4\)"):
        embed(jnp.zeros((1, *SHAPE_3D, 4)))
    surface = _build(pe.PatchEmbed2D, 4, 8)
    with pytest.raises(ValueError, match=r"expects fields \[B, H, W, C=4\]"):
        surface(jnp.zeros((1, 10, 16, 3)))
    recover = _build(pe.PatchRecovery3D, 8, 5, SHAPE_3D)
    with pytest.raises(
        ValueError,
        match=r"expects tokens \[B, 7, 3, 4, 8\], got shape "
        r"\(1, 7, 3, 4, 6\)",
    ):
        recover(jnp.zeros((1, 7, 3, 4, 6)))
    with pytest.raises(ValueError, match="impl must be one of"):
        _build(pe.PatchEmbed2D, 4, 8, impl="fast")
    with pytest.raises(ValueError, match="3-axis patch"):
        _build(pe.PatchRecovery3D, 8, 5, SHAPE_3D, (4, 4))
    with pytest.raises(ValueError, match="different lengths"):
        pe.patch_grid((13, 721), (2, 4, 4))


def test_sharded_matches_single_device():
    x = _x((4, *SHAPE_3D, 5))
    embed = _build(pe.PatchEmbed3D, 5, 8)
    recover = _build(pe.PatchRecovery3D, 8, 5, SHAPE_3D)
    want = _apply(recover, _apply(embed, x))
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "spatial": 2})
    with partitioning.use_mesh(mesh):
        partitioning.shard_model(embed, mesh)
        partitioning.shard_model(recover, mesh)
        tokens = _apply(embed, x)
        got = _apply(recover, tokens)
    assert tokens.sharding.spec[0] == ("data", "fsdp")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("impl", ["matmul", "conv"])
def test_float32_fields_take_bfloat16_weights_dtype(impl):
    """Under mixed precision (the step casts the weights to bfloat16) the float32 fields
    are cast to the weights' dtype, so the tokens and everything after them are bfloat16,
    and equal the embedding of the rounded fields; float32 weights keep float32."""
    layer = _build(pe.PatchEmbed2D, 3, 8, (2, 2), impl=impl)
    x = _x((1, *SHAPE_2D, 3))
    assert _apply(layer, x).dtype == jnp.float32
    nnx.update(layer, jax.tree.map(lambda a: a.astype(jnp.bfloat16), nnx.state(layer)))
    tokens = _apply(layer, x)
    assert tokens.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(tokens, np.float32),
        np.asarray(_apply(layer, x.astype(jnp.bfloat16)), np.float32),
    )
