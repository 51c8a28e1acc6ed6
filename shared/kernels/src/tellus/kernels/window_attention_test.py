import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.kernels import earth_bias, partitioning
from tellus.kernels import mesh as mesh_lib
from tellus.kernels import window_attention as wa


@functools.cache  # building compiles; tests share layers and never change their params
def _layer(zhw, window, *, shift, dim=8, heads=2, seed=0, **kwargs):
    padded = [-(-n // w) * w for n, w in zip(zhw, window, strict=True)]
    n_types = earth_bias.n_window_types(padded, window)

    @nnx.jit  # one compile instead of many eager ones
    def build():
        layer = wa.EarthAttention3D(
            dim, heads, window, n_types, shift=shift, rngs=nnx.Rngs(seed), **kwargs
        )
        # Non-zero biases, so that the tests see whether they are applied where they should.
        for p in (layer.qkv_bias, layer.proj_bias):
            p[...] = 0.1 * jax.random.normal(jax.random.key(seed + 1), p.shape)
        layer.bias.table[...] = jax.random.normal(jax.random.key(seed + 2), layer.bias.table.shape)
        return layer

    with nnx.use_eager_sharding(False):  # built outside any mesh
        return build()


_apply = nnx.jit(lambda layer, x: layer(x))


def _x(b, zhw, c=8, seed=3):
    return jax.random.normal(jax.random.key(seed), (b, *zhw, c))


def test_partition_reverse_round_trip_and_layout():
    x = _x(2, (4, 6, 8), c=3)
    window = (2, 3, 4)
    windows = wa.window_partition(x, window)
    assert windows.shape == (2, 2 * 2, 2, 24, 3)
    # Type t = iz * (H // wh) + ih; token n row-major in (z, h, w).
    t, iw, n = 1 * 2 + 1, 1, (1 * 3 + 2) * 4 + 3
    np.testing.assert_array_equal(windows[:, t, iw, n], x[:, 2 + 1, 3 + 2, 4 + 3])
    np.testing.assert_array_equal(wa.window_reverse(windows, window, (4, 6, 8)), x)


def test_pad_crop_round_trip():
    x = _x(1, (3, 10, 14), c=2)
    padded, pads = wa.pad_to_windows(x, (2, 3, 4))
    assert padded.shape == (1, 4, 12, 16, 2)
    assert pads == ((0, 1), (0, 2), (0, 2))
    np.testing.assert_array_equal(padded[:, 3:], 0)
    np.testing.assert_array_equal(wa.crop(padded, pads), x)


def _dense_reference(layer, x):
    """All-token attention over the padded, rolled grid, masked to window x region pairs."""
    x = np.asarray(x, np.float64)
    b, *zhw, c = x.shape
    window = np.array(layer.window)
    padded = -(-np.array(zhw) // window) * window
    s = window // 2 if layer.shift else np.zeros(3, int)
    xp = np.zeros((b, *padded, c))
    xp[:, : zhw[0], : zhw[1], : zhw[2]] = x
    rolled = np.roll(xp, tuple(-s), axis=(1, 2, 3))
    r = np.stack(np.meshgrid(*map(np.arange, padded), indexing="ij"), -1).reshape(-1, 3)
    o = (r + s) % padded  # original coordinates of each rolled token
    tokens = rolled.reshape(b, -1, c)

    def a(p):
        return np.asarray(p[...], np.float64)

    qkv = np.einsum("blc,cshd->sbhld", tokens, a(layer.qkv_kernel))
    q, k, v = qkv + a(layer.qkv_bias)[:, None, :, None, :]
    ri, rj, oi, oj = r[:, None], r[None, :], o[:, None], o[None, :]
    same_window = np.all(ri // window == rj // window, -1)
    # Genuine neighbours in level and latitude (P >= 2w here); any pair along longitude.
    same_region = np.all(np.abs(oi - oj)[..., :2] < window[:2], -1)
    key_valid = np.all(oj < np.array(zhw), -1)
    allowed = same_window & same_region & key_valid

    wz, wh, ww = window
    t = (ri[..., 0] // wz) * (padded[1] // wh) + ri[..., 1] // wh
    pi, pj = ri % window, rj % window
    row = (
        ((pi[..., 0] * wz + pj[..., 0]) * wh * wh + pi[..., 1] * wh + pj[..., 1]) * (2 * ww - 1)
        + pi[..., 2]
        - pj[..., 2]
        + ww
        - 1
    )
    table = a(layer.bias.table)
    bias = np.where(same_window, table[t, np.where(same_window, row, 0)].transpose(2, 0, 1), 0)

    logits = np.einsum("bhld,bhmd->bhlm", q, k) / np.sqrt(q.shape[-1]) + bias
    logits = np.where(allowed, logits, -1e30)  # rows of padding queries: cropped below
    logits -= logits.max(-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(-1, keepdims=True)
    out = np.einsum("bhlm,bhmd->bhld", probs, v)
    y = np.einsum("bhld,hdc->blc", out, a(layer.proj_kernel)) + a(layer.proj_bias)
    y = np.roll(y.reshape(b, *padded, c), tuple(s), axis=(1, 2, 3))
    return y[:, : zhw[0], : zhw[1], : zhw[2]]


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize(
    "zhw, window",
    [((4, 12, 24), (2, 6, 12)), ((3, 10, 14), (2, 3, 4))],
    ids=["pangu_window", "padded"],
)
def test_matches_dense_reference(zhw, window, shift):
    layer = _layer(zhw, window, shift=shift)
    x = _x(2, zhw)
    y = _apply(layer, x)
    assert y.shape == x.shape
    np.testing.assert_allclose(np.asarray(y), _dense_reference(layer, x), atol=2e-5)


def test_equivariant_to_longitude_roll_by_whole_windows():
    zhw = (4, 10, 24)  # padded in latitude, not in longitude
    layer = _layer(zhw, (2, 3, 4), shift=True)
    x = _x(1, zhw)
    y = _apply(layer, x)
    y_rolled = _apply(layer, jnp.roll(x, 4, axis=3))
    np.testing.assert_allclose(np.asarray(y_rolled), np.asarray(jnp.roll(y, 4, axis=3)), atol=1e-5)


def _locate(orig, padded, window, shift=True):
    """(type, longitude window, token) of a token given by its unrolled coordinates."""
    s = np.array(window) // 2 if shift else np.zeros(3, int)
    rz, rh, rw = (np.array(orig) - s) % np.array(padded)
    wz, wh, ww = window
    t = (rz // wz) * (padded[1] // wh) + rh // wh
    return t, rw // ww, ((rz % wz) * wh + rh % wh) * ww + rw % ww


def test_shift_mask_wraps_longitude_but_not_latitude():
    padded, window = (4, 12, 24), (2, 3, 4)
    mask = wa.shift_mask(padded, window)
    assert mask.shape == (8, 1, 24, 24)  # the same for every longitude window
    # First and last meridian: same window after the roll, and they may attend.
    t1, w1, n1 = _locate((1, 5, 23), padded, window)
    t2, w2, n2 = _locate((1, 5, 0), padded, window)
    assert (t1, w1) == (t2, w2)
    assert mask[t1, 0, n1, n2] and mask[t1, 0, n2, n1]
    # First and last latitude row: same window after the roll, but they may not.
    t1, w1, n1 = _locate((1, 0, 5), padded, window)
    t2, w2, n2 = _locate((1, 11, 5), padded, window)
    assert (t1, w1) == (t2, w2)
    assert not mask[t1, 0, n1, n2] and not mask[t1, 0, n2, n1]
    # Same for the first and last level.
    t1, _, n1 = _locate((0, 4, 5), padded, window)
    t2, _, n2 = _locate((3, 4, 5), padded, window)
    assert t1 == t2 and not mask[t1, 0, n1, n2]
    assert mask.any(-1).all()


def test_padding_mask():
    padded, window, valid = (4, 12, 16), (2, 3, 4), (3, 10, 14)
    assert wa.attention_mask(padded, window, False) is None
    for shift in (False, True):
        mask = wa.attention_mask(padded, window, shift, valid)
        assert mask.shape == (8, 4, 24, 24)  # padding along W: varies by longitude window
        assert mask.any(-1).all()  # every query keeps a key
        # A real query never sees a padding key; a padding query sees itself, no other one.
        # Longitudes 14, 15 are padding; 0 (shifted) or 13 (unshifted) shares their window.
        t, w, n = _locate((2, 5, 0 if shift else 13), padded, window, shift)
        tp, wp, npad = _locate((2, 5, 14), padded, window, shift)
        tp2, wp2, npad2 = _locate((2, 5, 15), padded, window, shift)
        assert (t, w) == (tp, wp) == (tp2, wp2)
        assert mask[t, w, n, n] and not mask[t, w, n, npad]
        assert mask[t, w, npad, npad] and not mask[t, w, npad, npad2]


def test_reference_and_fast_agree():
    padded, window = (4, 12, 16), (2, 3, 4)
    masks = (
        wa.attention_mask(padded, window, True),  # [T, 1, N, N], broadcast along longitude
        wa.attention_mask(padded, window, True, (3, 10, 14)),  # [T, nW, N, N]
        None,
    )
    assert masks[0].shape[1] == 1 and masks[1].shape[1] == 4
    b, t, nw, heads, n, d = 2, 8, 4, 3, 24, 5
    keys = jax.random.split(jax.random.key(0), 4)
    q, k, v = (jax.random.normal(kk, (b, t, nw, heads, n, d)) for kk in keys[:3])
    bias = jax.random.normal(keys[3], (t, heads, n, n))

    @jax.jit
    def run(q, k, v, bias):
        return [
            [wa.attention(q, k, v, bias, m, impl) for impl in ("reference", "fast")] for m in masks
        ]

    outs = run(q, k, v, bias)
    for ref, fast in outs:
        np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), atol=1e-5)
    assert not np.allclose(np.asarray(outs[0][0]), np.asarray(outs[2][0]))  # masks matter

    # The gradients too ("fast" folds the mask into the bias; "reference" selects), with
    # an upstream gradient that is zero on the padded query rows, as the crop makes it.
    real = np.pad(np.ones((1, 3, 10, 14, 1), np.float32), ((0, 0), (0, 1), (0, 2), (0, 2), (0, 0)))
    real = np.roll(real, [-s for s in wa.shift_sizes(window)], axis=(1, 2, 3))
    real = jnp.asarray(wa.window_partition(real, window))[:, :, :, None]  # [1, T, nW, 1, N, 1]

    @jax.jit
    def grads(q, k, v, bias):
        def loss(impl, *args):
            out = wa.attention(*args, masks[1], impl)
            return jnp.sum(jnp.sin(out) * real)

        return [
            jax.grad(loss, argnums=(1, 2, 3, 4))(i, q, k, v, bias) for i in ("reference", "fast")
        ]

    for ref, fast in zip(*grads(q, k, v, bias), strict=True):
        np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), atol=1e-5)


def test_layer_reference_impl_matches_fast():
    zhw, window = (3, 10, 14), (2, 3, 4)
    x = _x(1, zhw)
    layer = _layer(zhw, window, shift=True)
    reference = nnx.clone(layer)
    reference.impl = "reference"
    fast, ref = _apply(layer, x), _apply(reference, x)
    np.testing.assert_allclose(np.asarray(ref), np.asarray(fast), atol=1e-5)


def test_sharded_matches_single_device():
    zhw, window = (4, 12, 24), (2, 3, 4)  # T = 8 window types, nW = 6
    x = _x(2, zhw)
    expected = np.asarray(_apply(_layer(zhw, window, shift=True), x))
    mesh = mesh_lib.make_mesh({"data": 2, "spatial": 2, "tensor": 2})
    for mode in ("auto", "shard_map"):
        layer = _layer(zhw, window, shift=True, partitioning=mode)
        with partitioning.use_mesh(mesh):
            partitioning.shard_model(layer, mesh)
            y = _apply(layer, x)
        np.testing.assert_allclose(np.asarray(y), expected, atol=1e-5, err_msg=mode)
        # Split along its 4 levels, the first token dimension spatial divides.
        assert tuple(y.sharding.spec)[:2] == ("data", "spatial")


@pytest.mark.parametrize("spatial", [2, 4])
def test_windows_split_where_no_single_window_dimension_divides(spatial):
    """3 window types and 6 window columns: on 2 devices the columns take the axis, on 4
    neither dimension divides and the compiler splits the windows as it can (not kept
    whole); either way the result is the single device's."""
    zhw, window = (2, 9, 24), (2, 3, 4)
    x = _x(4, zhw)
    expected = np.asarray(_apply(_layer(zhw, window, shift=True), x))
    mesh = mesh_lib.make_mesh({"data": 8 // spatial, "spatial": spatial})
    layer = _layer(zhw, window, shift=True)
    with partitioning.use_mesh(mesh):
        partitioning.shard_model(layer, mesh)
        y = _apply(layer, x)
    np.testing.assert_allclose(np.asarray(y), expected, atol=1e-5)


def test_shard_map_core_needs_no_communication():
    mesh = mesh_lib.make_mesh({"data": 2, "spatial": 2, "tensor": 2})
    b, t, nw, heads, n, d = 2, 8, 2, 2, 24, 4
    q = jnp.ones((b, t, nw, heads, n, d))
    bias = jnp.zeros((t, heads, n, n))
    mask = wa.shift_mask((4, 12, 8), (2, 3, 4))
    with partitioning.use_mesh(mesh):
        hlo = (
            jax.jit(lambda q, b: wa.shard_map_attention(q, q, q, b, mask))
            .lower(q, bias)
            .compile()
            .as_text()
        )
    for collective in ("all-gather", "all-reduce", "all-to-all", "collective-permute"):
        assert collective not in hlo


def test_shard_map_names_indivisible_dimension():
    def trace(b, t, heads):
        q = jax.ShapeDtypeStruct((b, t, 2, heads, 24, 4), jnp.float32)
        bias = jax.ShapeDtypeStruct((t, heads, 24, 24), jnp.float32)
        return jax.eval_shape(lambda q, b: wa.shard_map_attention(q, q, q, b, None), q, bias)

    with partitioning.use_mesh(mesh_lib.make_mesh({"data": 2, "spatial": 2, "tensor": 2})):
        assert trace(2, 4, 2).shape == (2, 4, 2, 2, 24, 4)
        with pytest.raises(ValueError, match="batch = 3 is not divisible"):
            trace(3, 4, 2)
        with pytest.raises(ValueError, match="window types T = 3 is not divisible"):
            trace(2, 3, 2)
        with pytest.raises(ValueError, match="heads = 3 is not divisible"):
            trace(2, 4, 3)


def test_wrong_number_of_types_is_named():
    layer = _layer((4, 12, 24), (2, 3, 4), shift=True)
    with pytest.raises(ValueError, match="n_types = 8"):
        layer(_x(1, (4, 6, 24)))


# --- Key masks (land) -------------------------------------------------------------------------


def _land(zhw, seed=5):
    """A key mask ``[1, Z, H, W]`` with land scattered everywhere and one window (type 0,
    the first longitude window of the unshifted grid) all land."""
    ocean = np.random.default_rng(seed).random((1, *zhw)) > 0.4
    ocean[0, :2, :3, :4] = False
    return jnp.asarray(ocean)


def _dense_reference_masked(layer, x, ocean):
    """The dense reference with land keys removed; a query left without keys gives 0."""
    x = np.asarray(x, np.float64)
    b, *zhw, c = x.shape
    window = np.array(layer.window)
    padded = -(-np.array(zhw) // window) * window
    s = window // 2 if layer.shift else np.zeros(3, int)
    xp = np.zeros((b, *padded, c))
    xp[:, : zhw[0], : zhw[1], : zhw[2]] = x
    ok = np.zeros((b, *padded), bool)
    ok[:, : zhw[0], : zhw[1], : zhw[2]] = np.asarray(ocean)
    rolled = np.roll(xp, tuple(-s), axis=(1, 2, 3))
    ok_rolled = np.roll(ok, tuple(-s), axis=(1, 2, 3)).reshape(b, -1)
    r = np.stack(np.meshgrid(*map(np.arange, padded), indexing="ij"), -1).reshape(-1, 3)
    o = (r + s) % padded
    tokens = rolled.reshape(b, -1, c)

    def a(p):
        return np.asarray(p[...], np.float64)

    qkv = np.einsum("blc,cshd->sbhld", tokens, a(layer.qkv_kernel))
    q, k, v = qkv + a(layer.qkv_bias)[:, None, :, None, :]
    ri, rj, oi, oj = r[:, None], r[None, :], o[:, None], o[None, :]
    same_window = np.all(ri // window == rj // window, -1)
    same_region = np.all(np.abs(oi - oj)[..., :2] < window[:2], -1)
    allowed = (same_window & same_region)[None] & ok_rolled[:, None, :]  # [b, l, m]
    wz, wh, ww = window
    t = (ri[..., 0] // wz) * (padded[1] // wh) + ri[..., 1] // wh
    pi, pj = ri % window, rj % window
    row = (
        ((pi[..., 0] * wz + pj[..., 0]) * wh * wh + pi[..., 1] * wh + pj[..., 1]) * (2 * ww - 1)
        + pi[..., 2]
        - pj[..., 2]
        + ww
        - 1
    )
    table = a(layer.bias.table)
    bias = np.where(same_window, table[t, np.where(same_window, row, 0)].transpose(2, 0, 1), 0)
    logits = np.einsum("bhld,bhmd->bhlm", q, k) / np.sqrt(q.shape[-1]) + bias
    logits = np.where(allowed[:, None], logits, -np.inf)
    has_key = allowed.any(-1)[:, None, :, None]
    logits = np.where(has_key, logits, 0.0)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = np.where(allowed[:, None], probs, 0.0)
    probs /= np.maximum(probs.sum(-1, keepdims=True), 1e-300)
    out = np.einsum("bhlm,bhmd->bhld", probs, v)
    y = np.einsum("bhld,hdc->blc", out, a(layer.proj_kernel)) + a(layer.proj_bias)
    y = np.roll(y.reshape(b, *padded, c), tuple(s), axis=(1, 2, 3))
    return y[:, : zhw[0], : zhw[1], : zhw[2]]


_apply_masked = nnx.jit(lambda layer, x, m: layer(x, None, m))
_MASKED = ((3, 10, 14), (2, 3, 4))  # padded in every axis; the layer the tests above share


def test_key_mask_matches_dense_reference():
    zhw, window = _MASKED
    layer = _layer(zhw, window, shift=True)
    x, ocean = _x(1, zhw), _land(zhw)
    y = _apply_masked(layer, x, ocean)
    np.testing.assert_allclose(np.asarray(y), _dense_reference_masked(layer, x, ocean), atol=2e-5)


def test_land_values_never_reach_ocean_tokens():
    zhw, window = _MASKED
    layer = _layer(zhw, window, shift=True)
    x, ocean = _x(1, zhw), _land(zhw)
    huge = jnp.where(ocean[..., None], x, 1e4 * _x(1, zhw, seed=9))
    y, y_huge = _apply_masked(layer, x, ocean), _apply_masked(layer, huge, ocean)
    np.testing.assert_array_equal(np.asarray(y)[np.asarray(ocean)], np.asarray(y_huge)[ocean])
    # Without the key mask the land values do reach the ocean.
    no_mask, no_mask_huge = np.asarray(_apply(layer, x)), np.asarray(_apply(layer, huge))
    assert not np.allclose(no_mask[ocean], no_mask_huge[ocean])


def _core_inputs(b=2, t=2, nw=2, heads=2, n=8, d=4):
    keys = jax.random.split(jax.random.key(1), 4)
    q, k, v = (jax.random.normal(kk, (b, t, nw, heads, n, d)) for kk in keys[:3])
    bias = jax.random.normal(keys[3], (t, heads, n, n))
    ocean = np.random.default_rng(0).random((b, t, nw, n)) > 0.5
    ocean[0, 1, 1] = False  # a window without any ocean token
    return q, k, v, bias, ocean


def test_attention_weights_are_zero_on_land_keys():
    q, k, v, bias, ocean = _core_inputs()
    mask = wa.attention_mask((2, 4, 4), (2, 2, 2), True)  # [T, 1, N, N]
    w = np.asarray(jax.jit(wa.attention_weights)(q, k, bias, mask, ocean))
    land_key = np.broadcast_to(~ocean[:, :, :, None, None, :], w.shape)
    assert (w[land_key] == 0).all()  # exactly zero
    assert (w[0, 1, 1] == 0).all()  # the all-land window: no weight anywhere
    allowed = np.asarray(mask)[None, :, :, None] & ocean[:, :, :, None, None, :]
    rows = np.broadcast_to(allowed.any(-1), w.shape[:-1])
    np.testing.assert_allclose(w.sum(-1)[rows], 1.0, rtol=1e-5)
    assert (w.sum(-1)[~rows] == 0).all()

    @jax.jit
    def both(q, k, v, bias):
        return [wa.attention(q, k, v, bias, mask, impl, ocean) for impl in ("reference", "fast")]

    ref, fast = both(q, k, v, bias)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), atol=1e-5)
    assert np.isfinite(np.asarray(fast)).all()
    assert (np.asarray(fast)[0, 1, 1] == 0).all()


def test_all_land_window_has_finite_gradients():
    zhw, window = _MASKED
    layer = _layer(zhw, window, shift=True)
    ocean = jnp.zeros((1, *zhw), bool).at[0, 0, 0, 0].set(True)  # all land but one token
    x = _x(1, zhw)

    @nnx.jit
    def grads(layer, x):
        return nnx.grad(lambda m: jnp.sum(m(x, None, ocean) ** 2))(layer)

    for leaf in jax.tree.leaves(nnx.state(grads(layer, x))):
        assert np.isfinite(np.asarray(leaf)).all()


def test_key_mask_shard_map_matches_single_device():
    q, k, v, bias, ocean = _core_inputs()
    mask = wa.attention_mask((2, 4, 4), (2, 2, 2), True)
    expected = np.asarray(
        jax.jit(lambda q, k, v, b: wa.attention(q, k, v, b, mask, "fast", ocean))(q, k, v, bias)
    )
    with partitioning.use_mesh(mesh_lib.make_mesh({"data": 2, "spatial": 2, "tensor": 2})):
        y = jax.jit(lambda q, k, v, b: wa.shard_map_attention(q, k, v, b, mask, "fast", ocean))(
            q, k, v, bias
        )
    np.testing.assert_allclose(np.asarray(y), expected, atol=1e-6)


def test_key_mask_of_another_grid_is_named():
    layer = _layer(*_MASKED, shift=True)
    with pytest.raises(ValueError, match="key mask must be"):
        layer(_x(1, _MASKED[0]), None, jnp.ones((1, 3, 10, 13), bool))
