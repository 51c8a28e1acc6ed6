import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.kernels import continuous_bias, earth_trunk, partitioning, window_attention

CFG = earth_trunk.TrunkConfig(8, (2, 2, 2, 2), (2, 2, 2, 2), (2, 2, 4), mlp_ratio=2.0)


@pytest.fixture(scope="module")
def bias():
    rng = np.random.default_rng(0)
    with nnx.use_eager_sharding(False):
        b = continuous_bias.ContinuousTrunkBias(CFG, 6, rngs=nnx.Rngs(0))
    # Random weights everywhere, so that no term of the MLP is zero.
    state = nnx.state(b, nnx.Param)
    nnx.update(b, jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), state))
    return b


def _hand_bias(block, lat, lon, lev, window, shift, t, i, j):
    """One entry per head by hand: the tokens' positions in the padded, rolled grid, their
    coordinates, the log-spaced differences and the MLP in numpy."""
    wz, wh, ww = window
    nh = -(-lat.size // wh)
    iz, ih = divmod(t, nh)
    s = window_attention.shift_sizes(window) if shift else (0, 0, 0)

    def coord(c, k):  # coordinate of grid index k, extended beyond the end by the last step
        return c[k] if k < c.size else c[-1] + (k - c.size + 1) * (c[-1] - c[-2])

    def where(n):
        zi, rest = divmod(n, wh * ww)
        hi, wi = divmod(rest, ww)
        zp, hp = -(-lev.size // wz) * wz, nh * wh
        z = (iz * wz + zi + s[0]) % zp
        h = (ih * wh + hi + s[1]) % hp
        return coord(lev, z), coord(lat, h), lon[(wi + s[2]) % lon.size]

    (zq, hq, wq), (zk, hk, wk) = where(i), where(j)
    d = np.array([hq - hk, (wq - wk + 180) % 360 - 180, zq - zk])
    x = np.sign(d) * np.log1p(np.abs(d))
    p = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(block, nnx.Param)))
    hidden = np.maximum(x @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0)
    return hidden @ p["fc2"]["kernel"] + p["fc2"]["bias"]


def test_the_bias_matches_a_hand_computation_from_the_coordinates(bias):
    lat = np.linspace(-30, 30, 7)  # 7 rows: padded to 8, as the trunk pads its tokens
    lon = np.arange(0, 360, 30.0)
    lev = np.arange(3.0)
    out = bias(lat, lon, lev)
    rng = np.random.default_rng(1)
    for stage in (0, 1):
        coords = bias.stage_coordinates(lat, lon, lev)[stage]
        for b, shift in ((0, False), (1, True)):
            table = np.asarray(out[stage][b])  # [T, heads, N, N]
            for _ in range(6):
                t = int(rng.integers(table.shape[0]))
                i, j = (int(v) for v in rng.integers(table.shape[2], size=2))
                want = _hand_bias(bias.stages[stage][b], *coords, CFG.window, shift, t, i, j)
                np.testing.assert_allclose(table[t, :, i, j], want, rtol=1e-4, atol=1e-4)


def test_the_bias_depends_only_on_relative_coordinates(bias):
    lat = np.linspace(-20, 20, 8)
    lon = np.arange(0, 360, 22.5)
    lev = np.arange(4.0)
    base = bias(lat, lon, lev)
    rng = np.random.default_rng(2)
    for _ in range(3):
        dlat, dlon, dlev = rng.uniform(-40, 40), rng.uniform(0, 360), rng.uniform(-5, 5)
        moved = bias(lat + dlat, np.mod(lon + dlon, 360), lev + dlev)
        for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(moved), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # A stretched grid has other relative coordinates and another bias.
    stretched = bias(2 * lat, lon, lev)
    assert np.abs(np.asarray(stretched[0][0] - base[0][0])).max() > 1e-3


def test_one_set_of_weights_serves_any_grid_in_the_trunk(bias):
    with nnx.use_eager_sharding(False):
        trunk = earth_trunk.EarthTrunk(CFG, rngs=nnx.Rngs(1))
    n = partitioning.count_params(bias)
    for h, w in ((6, 12), (9, 20)):
        lat, lon = np.linspace(-60, 60, h), np.arange(w) * 360.0 / w
        x = jax.random.normal(jax.random.key(0), (1, 2, h, w, 8))
        y = trunk(x, bias(lat, lon, np.arange(2.0)))
        assert y.shape == (1, 2, h, w, 16) and np.isfinite(np.asarray(y)).all()
    assert partitioning.count_params(bias) == n
    # Per block: 3 -> 6 -> heads, with biases.
    assert n == sum(d * (3 * 6 + 6 + 6 * h + h) for d, h in zip(CFG.depths, CFG.heads, strict=True))
    partitioning.param_specs(bias)  # every parameter's logical names are in the rules


def test_merged_coordinates_are_the_downsampled_pairs():
    np.testing.assert_allclose(continuous_bias.merged(np.array([0.0, 1, 2, 3, 4])), [0.5, 2.5, 4.5])


def test_a_pruned_trunk_has_no_bias_for_its_blocks_without_attention():
    import dataclasses

    cfg = dataclasses.replace(CFG, pruned=(1, 6))
    with nnx.use_eager_sharding(False):
        pruned = continuous_bias.ContinuousTrunkBias(cfg, 6, rngs=nnx.Rngs(0))
        trunk = earth_trunk.EarthTrunk(cfg, rngs=nnx.Rngs(1))
    lat, lon = np.linspace(-60, 60, 6), np.arange(12) * 30.0
    biases = pruned(lat, lon, np.arange(2.0))
    assert [[b is None for b in stage] for stage in biases] == [
        [False, True],
        [False, False],
        [False, False],
        [True, False],
    ]
    # Two blocks' bias MLPs fewer (3 -> 6 -> heads, with biases), and the trunk runs on it.
    per_block = 3 * 6 + 6 + 6 * 2 + 2
    assert partitioning.count_params(pruned) == 6 * per_block
    y = trunk(jax.random.normal(jax.random.key(0), (1, 2, 6, 12, 8)), biases)
    assert np.isfinite(np.asarray(y)).all()
