"""Pangu-Weather's Earth-specific positional bias for 3D window attention.

Swin's relative position bias assumes that the grid looks the same everywhere. On the Earth
it does not: pressure levels differ in physics, and latitude rows differ in area and
climate. Pangu-Weather (Bi et al., 2023, "Accurate medium-range global weather forecasting
with 3D neural networks") therefore indexes the bias by the *absolute* positions of query
and key in level and latitude inside a window, and by their *relative* position in
longitude only, where the Earth is (statistically) invariant. It also keeps one bias table
per window *type*, i.e. per (level-window, latitude-window) pair, shared by all longitude
windows of that type.

Shapes, for a window ``(wz, wh, ww)`` with ``N = wz * wh * ww`` tokens in row-major
``(z, h, w)`` order (the order :func:`tellus.kernels.window_attention.window_partition`
uses):

* table: ``[n_types, wz**2 * wh**2 * (2*ww - 1), heads]``
* :func:`position_index`: ``[N, N]`` integers into the table's second axis
* :class:`EarthSpecificBias` output: ``[n_types, heads, N, N]``
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Window = tuple[int, int, int]

BIAS_INIT_STD = 0.02  # Swin / Pangu: trunc_normal_(std=.02)


def bias_table_size(window: Sequence[int]) -> int:
    """Rows of one bias table: ``wz**2 * wh**2 * (2*ww - 1)``.

    Args:
      window: ``(wz, wh, ww)`` window size in tokens.
    """
    wz, wh, ww = window
    return wz**2 * wh**2 * (2 * ww - 1)


def position_index(window: Sequence[int]) -> np.ndarray:
    """Row of the bias table for each (query, key) pair of one window.

    For query ``i = (zi, hi, wi)`` and key ``j = (zj, hj, wj)`` (row-major in-window
    coordinates) the index is::

        ((zi * wz + zj) * wh**2 + (hi * wh + hj)) * (2*ww - 1) + (wi - wj + ww - 1)

    absolute in level and latitude, relative in longitude.

    Args:
      window: ``(wz, wh, ww)``.

    Returns:
      int32 array ``[N, N]``, ``N = wz * wh * ww``, values in ``[0, bias_table_size)``,
      every value used.
    """
    wz, wh, ww = window
    z, h, w = (
        a.reshape(-1)
        for a in np.meshgrid(np.arange(wz), np.arange(wh), np.arange(ww), indexing="ij")
    )
    zi, zj = z[:, None], z[None, :]
    hi, hj = h[:, None], h[None, :]
    wi, wj = w[:, None], w[None, :]
    index = ((zi * wz + zj) * wh * wh + (hi * wh + hj)) * (2 * ww - 1) + (wi - wj + ww - 1)
    return index.astype(np.int32)


def n_window_types(padded_zhw: Sequence[int], window: Sequence[int]) -> int:
    """Number of bias tables: ``(Z // wz) * (H // wh)``, one per level x latitude window.

    Args:
      padded_zhw: ``(Z, H, W)`` token grid, already padded to multiples of ``window``.
      window: ``(wz, wh, ww)``.

    Raises:
      ValueError: the grid is not a multiple of the window in Z or H.
    """
    (nz, nh, _), (wz, wh, _) = padded_zhw, window
    if nz % wz or nh % wh:
        raise ValueError(
            f"grid {tuple(padded_zhw)} is not padded to multiples of the window "
            f"{tuple(window)}; pad it first (window_attention.pad_to_windows)"
        )
    return (nz // wz) * (nh // wh)


class EarthSpecificBias(nnx.Module):
    """Learned Earth-specific attention bias: one table per window type.

    Attributes:
      table: ``nnx.Param [n_types, bias_table_size(window), heads]``, logical names
        ``("bias_type", "bias_pos", "heads")``.
    """

    def __init__(self, window: Sequence[int], n_types: int, heads: int, *, rngs: nnx.Rngs):
        """Creates the tables.

        Args:
          window: ``(wz, wh, ww)``.
          n_types: window types, :func:`n_window_types` of the padded grid.
          heads: attention heads.
          rngs: needs a ``params`` stream.
        """
        self.window: Window = tuple(int(w) for w in window)  # type: ignore[assignment]
        self.n_types = n_types
        self.heads = heads
        init = nnx.with_partitioning(
            jax.nn.initializers.truncated_normal(BIAS_INIT_STD),
            ("bias_type", "bias_pos", "heads"),
        )
        self.table = nnx.Param(
            init(rngs.params(), (n_types, bias_table_size(self.window), heads), jnp.float32)
        )

    def __call__(self) -> jax.Array:
        """The bias of every window type.

        Returns:
          ``[n_types, heads, N, N]``: ``out[t, h, i, j] = table[t, index[i, j], h]``.
        """
        n = int(np.prod(self.window))
        index = position_index(self.window).reshape(-1)
        bias = jnp.take(self.table[...], index, axis=1)  # [T, N*N, heads]
        return bias.reshape(self.n_types, n, n, self.heads).transpose(0, 3, 1, 2)
