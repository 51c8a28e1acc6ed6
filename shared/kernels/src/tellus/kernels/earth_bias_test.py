import itertools

import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from tellus.kernels import earth_bias, partitioning

WINDOW = (2, 2, 3)  # N = 12 tokens, table of 2*2 * 2*2 * 5 = 80 rows


def _flat(z, h, w, window=WINDOW):
    _, wh, ww = window
    return (z * wh + h) * ww + w


def test_table_size():
    assert earth_bias.bias_table_size(WINDOW) == 80
    assert earth_bias.bias_table_size((2, 6, 12)) == 4 * 36 * 23


@pytest.mark.parametrize(
    "query, key, expected",
    [
        # ((zi*wz+zj)*wh*wh + hi*wh+hj)*(2ww-1) + wi-wj+ww-1, worked by hand for (2, 2, 3):
        ((0, 0, 0), (0, 0, 0), 2),  # (0*4 + 0)*5 + 0-0+2
        ((0, 0, 0), (0, 0, 2), 0),  # wi - wj = -2
        ((0, 0, 2), (0, 0, 0), 4),  # wi - wj = +2
        ((1, 0, 1), (0, 1, 1), 47),  # ((1*2 + 0)*4 + (0*2 + 1))*5 + 1-1+2
        ((1, 1, 2), (1, 1, 0), 79),  # last row: (3*4 + 3)*5 + 4
    ],
)
def test_position_index_by_hand(query, key, expected):
    index = earth_bias.position_index(WINDOW)
    assert index.shape == (12, 12)
    assert index[_flat(*query), _flat(*key)] == expected


def test_position_index_properties():
    wz, wh, ww = WINDOW
    index = earth_bias.position_index(WINDOW)
    coords = list(itertools.product(range(wz), range(wh), range(ww)))
    seen: dict[tuple, int] = {}
    for (zi, hi, wi), (zj, hj, wj) in itertools.product(coords, coords):
        value = index[_flat(zi, hi, wi), _flat(zj, hj, wj)]
        key = (zi, zj, hi, hj, wi - wj)
        # Same absolute z/h pair and same longitude offset: same row, wherever in longitude.
        assert seen.setdefault(key, value) == value
    # Distinct keys get distinct rows (so pairs differing in zi differ), and all rows are used.
    assert len(set(seen.values())) == len(seen) == earth_bias.bias_table_size(WINDOW)
    assert index.min() == 0 and index.max() == earth_bias.bias_table_size(WINDOW) - 1
    # Differing only in zi: (0,0,0)->(0,0,0) vs (1,0,0)->(0,0,0).
    assert index[_flat(0, 0, 0), _flat(0, 0, 0)] != index[_flat(1, 0, 0), _flat(0, 0, 0)]


def test_n_window_types():
    assert earth_bias.n_window_types((8, 186, 360), (2, 6, 12)) == 4 * 31
    with pytest.raises(ValueError, match="not padded"):
        earth_bias.n_window_types((8, 181, 360), (2, 6, 12))


def test_bias_module_gathers_table():
    with nnx.use_eager_sharding(False):  # no mesh here to place the annotated table on
        bias = earth_bias.EarthSpecificBias(WINDOW, n_types=3, heads=4, rngs=nnx.Rngs(0))
    table = np.asarray(bias.table[...])
    assert table.shape == (3, 80, 4)
    assert 0.01 < table.std() < 0.03
    out = np.asarray(bias())
    assert out.shape == (3, 4, 12, 12)
    i, j = _flat(1, 0, 1), _flat(0, 1, 2)
    row = ((1 * 2 + 0) * 4 + (0 * 2 + 1)) * 5 + (1 - 2 + 2)
    np.testing.assert_array_equal(out[2, :, i, j], table[2, row, :])
    specs = partitioning.param_specs(bias)
    # The tables hold most of Pangu's parameters (40 M of 64 M): FSDP shards their positions.
    assert specs["table"] == P(None, "fsdp", "tensor")
