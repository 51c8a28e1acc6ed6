"""Pangu-Weather patch embedding (fields -> tokens) and patch recovery (tokens -> fields).

Pangu-Weather (Bi et al., 2023) cuts the upper-air fields ``[B, 13, 721, 1440, 5]`` into
non-overlapping ``2 x 4 x 4`` patches and the surface fields ``[B, 721, 1440, 4]`` into
``4 x 4`` patches, after zero-padding to whole patches (13 -> 14 levels, 721 -> 724
latitudes). Each patch is mapped linearly to a ``dim``-vector (a convolution with stride =
kernel = patch). Recovery is the inverse shape-wise: a linear map from ``dim`` to
``pz * ph * pw * C_out`` values per token (a transposed convolution with stride = patch),
rearranged into the padded grid and cropped back to the original size.

Shapes (3D; the 2D modules drop the level axis):

* :class:`PatchEmbed3D`: ``[B, Z, H, W, C]`` -> ``[B, Z', H', W', dim]``,
  ``Z' = ceil(Z / pz)`` and so on.
* :class:`PatchRecovery3D`: ``[B, Z', H', W', dim]`` -> ``[B, Z, H, W, C_out]``.

Padding convention (see :func:`patch_grid`): an axis that needs ``p`` pad cells gets
``p // 2`` before and ``p - p // 2`` after, so 721 latitudes get 1 row before the first and 2
after the last, and 13 levels get 0 before and 1 after. Recovery crops exactly these cells,
so the padding never leaks into the output.

Each module has two implementations with identical parameters, switched by ``impl``:
``"matmul"`` (the default and the fast path: reshape into patches and one einsum, i.e. one
GEMM) and ``"conv"`` (``jax.lax.conv_general_dilated`` / ``jax.lax.conv_transpose``, the
reference: it reads like the paper's Conv3d / ConvTranspose3d). On CPU the transposed
convolution is the slow one by orders of magnitude (``docs/performance.md``): XLA's CPU
backend lowers a strided transposed convolution as a dense convolution over a dilated input.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.kernels.partitioning import constrain

IMPLS = ("matmul", "conv")
_PATCH_LETTERS = "pqr"  # einsum letters for the in-patch offsets (at most 3 spatial axes)

Pads = tuple[tuple[int, int], ...]


def patch_grid(
    shape: Sequence[int], patch: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...], Pads]:
    """Padded field shape, token grid shape and zero pads for cutting ``shape`` into patches.

    Args:
      shape: spatial field shape, e.g. ``(13, 721, 1440)`` (levels, lat, lon) or
        ``(721, 1440)``.
      patch: patch size per axis, same length, e.g. ``(2, 4, 4)``.

    Returns:
      ``(padded, grid, pads)``: ``padded[i] = grid[i] * patch[i]`` with
      ``grid[i] = ceil(shape[i] / patch[i])``, and ``pads[i] = (before, after)`` with
      ``before = (padded[i] - shape[i]) // 2`` and ``after`` the rest. For
      ``(13, 721, 1440)``, ``(2, 4, 4)``: ``((14, 724, 1440), (7, 181, 360),
      ((0, 1), (1, 2), (0, 0)))``.

    Raises:
      ValueError: lengths differ or a size is not positive.
    """
    shape, patch = tuple(int(s) for s in shape), tuple(int(p) for p in patch)
    if len(shape) != len(patch):
        raise ValueError(f"field shape {shape} and patch {patch} have different lengths")
    if any(s < 1 for s in shape) or any(p < 1 for p in patch):
        raise ValueError(f"field shape {shape} and patch {patch} must be positive")
    grid = tuple(-(-s // p) for s, p in zip(shape, patch, strict=True))
    padded = tuple(g * p for g, p in zip(grid, patch, strict=True))
    pads = tuple(((q - s) // 2, (q - s) - (q - s) // 2) for q, s in zip(padded, shape, strict=True))
    return padded, grid, pads


# ---------------------------------------------------------------------------------------------
# Pure functions (n spatial axes, channels last).


def embed_matmul(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Patch embedding by reshape + einsum.

    Args:
      x: ``[B, *spatial, C]`` fields, any spatial size (zero-padded here).
      kernel: ``[*patch, C, dim]``.
      bias: ``[dim]``.

    Returns:
      ``[B, *grid, dim]`` tokens, ``grid`` from :func:`patch_grid`.
    """
    n = x.ndim - 2
    patch = kernel.shape[:n]
    _, grid, pads = patch_grid(x.shape[1:-1], patch)
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    # [B, g0, p0, g1, p1, ..., C] -> [B, g0, g1, ..., p0, p1, ..., C]
    x = x.reshape(x.shape[0], *(d for gp in zip(grid, patch, strict=True) for d in gp), x.shape[-1])
    x = x.transpose(0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)
    p = _PATCH_LETTERS[:n]
    return jnp.einsum(f"...{p}c,{p}cd->...d", x, kernel) + bias


def embed_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Patch embedding as one strided convolution; same arguments as :func:`embed_matmul`."""
    n = x.ndim - 2
    patch = kernel.shape[:n]
    _, _, pads = patch_grid(x.shape[1:-1], patch)
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=patch,
        padding=pads,
        dimension_numbers=_conv_dims(n),
    )
    return y + bias


def recover_matmul(
    tokens: jax.Array, kernel: jax.Array, bias: jax.Array, shape: Sequence[int]
) -> jax.Array:
    """Patch recovery by einsum + reshape + crop.

    Args:
      tokens: ``[B, *grid, dim]``.
      kernel: ``[dim, *patch, C_out]``.
      bias: ``[C_out]``.
      shape: the unpadded spatial field shape to recover; ``patch_grid(shape, patch)`` must
        give ``grid``.

    Returns:
      ``[B, *shape, C_out]``.
    """
    n = tokens.ndim - 2
    patch = kernel.shape[1 : n + 1]
    padded, _, pads = patch_grid(shape, patch)
    p = _PATCH_LETTERS[:n]
    y = jnp.einsum(f"...d,d{p}c->...{p}c", tokens, kernel) + bias
    # [B, g0, g1, ..., p0, p1, ..., C] -> [B, g0, p0, g1, p1, ..., C] -> [B, *padded, C]
    order = [i for a in range(n) for i in (1 + a, 1 + n + a)]
    y = y.transpose(0, *order, 2 * n + 1).reshape(y.shape[0], *padded, y.shape[-1])
    return _crop(y, shape, pads)


def recover_conv(
    tokens: jax.Array, kernel: jax.Array, bias: jax.Array, shape: Sequence[int]
) -> jax.Array:
    """Patch recovery as a transposed convolution; same arguments as
    :func:`recover_matmul`."""
    n = tokens.ndim - 2
    patch = kernel.shape[1 : n + 1]
    _, _, pads = patch_grid(shape, patch)
    # [dim, *patch, C] -> [*patch, dim, C], spatially reversed: conv_transpose is a
    # correlation of the dilated tokens with the kernel, so patch offset k meets kernel
    # entry p - 1 - k. The flip makes offset k read kernel[k], as the matmul path does.
    rhs = jnp.flip(jnp.moveaxis(kernel, 0, n), axis=tuple(range(n)))
    y = jax.lax.conv_transpose(
        tokens, rhs, strides=patch, padding="VALID", dimension_numbers=_conv_dims(n)
    )
    return _crop(y + bias, shape, pads)


def _conv_dims(n: int) -> tuple[str, str, str]:
    spatial = "DHW"[3 - n :] if n <= 3 else None
    if spatial is None:
        raise ValueError(f"at most 3 spatial axes are supported, got {n}")
    return f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"


def _crop(y: jax.Array, shape: Sequence[int], pads: Pads) -> jax.Array:
    index = tuple(slice(lo, lo + s) for (lo, _), s in zip(pads, shape, strict=True))
    return y[(slice(None), *index, slice(None))]


# ---------------------------------------------------------------------------------------------
# Modules.


def _check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")
    return impl


def _param(rngs: nnx.Rngs, init, shape: tuple[int, ...], names: tuple[str | None, ...]):
    return nnx.Param(nnx.with_partitioning(init, names)(rngs.params(), shape, jnp.float32))


_SPATIAL_NAMES = {2: ("lat", "lon"), 3: ("level", "lat", "lon")}
# The embedding's output is tokens: their levels are the trunk's (partitioning.TOKENS).
_TOKEN_NAMES = {2: ("lat", "lon"), 3: ("act_level", "lat", "lon")}
_AXIS_LETTERS = {2: "H, W", 3: "Z, H, W"}


class _PatchEmbed(nnx.Module):
    """Shared body of :class:`PatchEmbed2D` / :class:`PatchEmbed3D`."""

    def __init__(
        self, in_channels: int, dim: int, patch: Sequence[int], *, impl: str, rngs: nnx.Rngs
    ):
        self.patch = tuple(int(p) for p in patch)
        n = len(self.patch)
        if n not in _SPATIAL_NAMES:
            raise ValueError(f"{type(self).__name__}: patch {self.patch} must have 2 or 3 sizes")
        self.in_channels, self.dim, self.impl = int(in_channels), int(dim), _check_impl(impl)
        # Default PyTorch / Flax conv scaling: variance 1 / fan_in, fan_in = patch x C.
        init = jax.nn.initializers.variance_scaling(
            1.0, "fan_in", "truncated_normal", in_axis=tuple(range(n + 1)), out_axis=n + 1
        )
        self.kernel = _param(
            rngs,
            init,
            (*self.patch, self.in_channels, self.dim),
            (None,) * n + ("channels", "embed"),
        )
        self.bias = _param(rngs, jax.nn.initializers.zeros, (self.dim,), ("embed",))

    def token_grid(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Token grid ``(Z', H', W')`` (or ``(H', W')``) for a spatial field ``shape``."""
        return patch_grid(shape, self.patch)[1]

    def __call__(self, x: jax.Array) -> jax.Array:
        n = len(self.patch)
        if x.ndim != n + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects fields [B, {_AXIS_LETTERS[n]}, "
                f"C={self.in_channels}] (rank {n + 2}), got shape {tuple(x.shape)}"
            )
        fn = embed_conv if self.impl == "conv" else embed_matmul
        kernel = self.kernel[...]
        # The fields take the weights' dtype: under mixed precision (the step casts the
        # parameters to bfloat16) the whole network then computes in it, instead of
        # promoting every product back to the float32 of the inputs.
        x = x.astype(kernel.dtype)
        x = constrain(x, ("batch", *_SPATIAL_NAMES[n], "channels"))  # split as the tokens are
        y = fn(x, kernel, self.bias[...])
        return constrain(y, ("batch", *_TOKEN_NAMES[n], "act_embed"))


class PatchEmbed3D(_PatchEmbed):
    """Upper-air patch embedding: ``[B, Z, H, W, C]`` -> ``[B, Z', H', W', dim]``.

    The fields are zero-padded to whole patches as :func:`patch_grid` says, then every
    ``pz x ph x pw x C`` patch is mapped linearly to ``dim`` features.

    Attributes:
      kernel: ``nnx.Param [pz, ph, pw, C, dim]``, logical names
        ``(None, None, None, "channels", "embed")``.
      bias: ``nnx.Param [dim]``, logical names ``("embed",)``.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        patch: Sequence[int] = (2, 4, 4),
        *,
        impl: str = "matmul",
        rngs: nnx.Rngs,
    ):
        """Builds the layer.

        Args:
          in_channels: variables C of the input (5 for Pangu: Z, Q, T, U, V).
          dim: token width (192 for Pangu).
          patch: ``(pz, ph, pw)``.
          impl: ``"matmul"`` (reshape + einsum, fast) or ``"conv"`` (reference); same
            parameters.
          rngs: needs a ``params`` stream.
        """
        if len(patch) != 3:
            raise ValueError(f"PatchEmbed3D needs a 3-axis patch, got {tuple(patch)}")
        super().__init__(in_channels, dim, patch, impl=impl, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Embeds ``x: [B, Z, H, W, C]``.

        Returns:
          Tokens ``[B, Z', H', W', dim]``, constrained to
          ``("batch", "level", "lat", "lon", "act_embed")``.

        Raises:
          ValueError: ``x`` is not rank 5 or does not have ``in_channels`` variables.
        """
        return super().__call__(x)


class PatchEmbed2D(_PatchEmbed):
    """Surface patch embedding: ``[B, H, W, C]`` -> ``[B, H', W', dim]``.

    Attributes:
      kernel: ``nnx.Param [ph, pw, C, dim]``, logical names ``(None, None, "channels",
        "embed")``.
      bias: ``nnx.Param [dim]``, logical names ``("embed",)``.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        patch: Sequence[int] = (4, 4),
        *,
        impl: str = "matmul",
        rngs: nnx.Rngs,
    ):
        """Builds the layer; arguments as :class:`PatchEmbed3D` with ``patch = (ph, pw)``."""
        if len(patch) != 2:
            raise ValueError(f"PatchEmbed2D needs a 2-axis patch, got {tuple(patch)}")
        super().__init__(in_channels, dim, patch, impl=impl, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Embeds ``x: [B, H, W, C]``.

        Returns:
          Tokens ``[B, H', W', dim]``, constrained to ``("batch", "lat", "lon", "act_embed")``.

        Raises:
          ValueError: ``x`` is not rank 4 or does not have ``in_channels`` variables.
        """
        return super().__call__(x)


class _PatchRecovery(nnx.Module):
    """Shared body of :class:`PatchRecovery2D` / :class:`PatchRecovery3D`."""

    def __init__(
        self,
        dim: int,
        out_channels: int,
        shape: Sequence[int],
        patch: Sequence[int],
        *,
        impl: str,
        rngs: nnx.Rngs,
    ):
        self.patch = tuple(int(p) for p in patch)
        self.shape = tuple(int(s) for s in shape)
        n = len(self.patch)
        if n not in _SPATIAL_NAMES or len(self.shape) != n:
            raise ValueError(
                f"{type(self).__name__}: field shape {self.shape} and patch {self.patch} must "
                "both have 2 (surface) or 3 (upper-air) sizes"
            )
        self.dim, self.out_channels, self.impl = int(dim), int(out_channels), _check_impl(impl)
        _, self.grid, self.pads = patch_grid(self.shape, self.patch)
        init = jax.nn.initializers.variance_scaling(
            1.0, "fan_in", "truncated_normal", in_axis=0, out_axis=tuple(range(1, n + 2))
        )
        self.kernel = _param(
            rngs,
            init,
            (self.dim, *self.patch, self.out_channels),
            ("embed", *(None,) * n, "channels"),
        )
        self.bias = _param(rngs, jax.nn.initializers.zeros, (self.out_channels,), ("channels",))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        n = len(self.patch)
        expected = (*self.grid, self.dim)
        if tokens.ndim != n + 2 or tuple(tokens.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__} for fields {self.shape} with patch {self.patch} expects "
                f"tokens [B, {', '.join(map(str, expected))}], got shape {tuple(tokens.shape)}"
            )
        fn = recover_conv if self.impl == "conv" else recover_matmul
        y = fn(tokens, self.kernel[...], self.bias[...], self.shape)
        return constrain(y, ("batch", *_SPATIAL_NAMES[n], "channels"))


class PatchRecovery3D(_PatchRecovery):
    """Upper-air patch recovery: ``[B, Z', H', W', dim]`` -> ``[B, Z, H, W, C_out]``.

    Each token is mapped linearly to a ``pz x ph x pw x C_out`` patch (Pangu's transposed
    convolution with stride = patch), the patches are laid out on the padded grid and the
    padding of :func:`patch_grid` is cropped off.

    Attributes:
      kernel: ``nnx.Param [dim, pz, ph, pw, C_out]``, logical names
        ``("embed", None, None, None, "channels")``.
      bias: ``nnx.Param [C_out]`` (one per variable, shared by all patch offsets as in a
        transposed convolution), logical names ``("channels",)``.
      grid: token grid ``(Z', H', W')`` the layer expects.
      pads: ``((before, after),) * 3`` cropped off the padded grid.
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        shape: Sequence[int],
        patch: Sequence[int] = (2, 4, 4),
        *,
        impl: str = "matmul",
        rngs: nnx.Rngs,
    ):
        """Builds the layer.

        Args:
          dim: token width.
          out_channels: variables C_out of the output (5 for Pangu).
          shape: unpadded spatial field shape ``(Z, H, W)`` to recover, e.g.
            ``(13, 721, 1440)``; the token grid cannot tell 13 levels from 14.
          patch: ``(pz, ph, pw)``.
          impl: ``"matmul"`` (einsum + reshape, fast) or ``"conv"``
            (``jax.lax.conv_transpose``, reference); same parameters.
          rngs: needs a ``params`` stream.
        """
        if len(patch) != 3:
            raise ValueError(f"PatchRecovery3D needs a 3-axis patch, got {tuple(patch)}")
        super().__init__(dim, out_channels, shape, patch, impl=impl, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Recovers fields from ``tokens: [B, Z', H', W', dim]``.

        Returns:
          ``[B, Z, H, W, C_out]``, constrained to ``("batch", "level", "lat", "lon",
          "channels")``.

        Raises:
          ValueError: ``tokens`` is not ``[B, *self.grid, dim]``.
        """
        return super().__call__(tokens)


class PatchRecovery2D(_PatchRecovery):
    """Surface patch recovery: ``[B, H', W', dim]`` -> ``[B, H, W, C_out]``.

    Attributes:
      kernel: ``nnx.Param [dim, ph, pw, C_out]``, logical names ``("embed", None, None,
        "channels")``.
      bias: ``nnx.Param [C_out]``, logical names ``("channels",)``.
      grid: token grid ``(H', W')``.
      pads: ``((before, after),) * 2``.
    """

    def __init__(
        self,
        dim: int,
        out_channels: int,
        shape: Sequence[int],
        patch: Sequence[int] = (4, 4),
        *,
        impl: str = "matmul",
        rngs: nnx.Rngs,
    ):
        """Builds the layer; arguments as :class:`PatchRecovery3D` with ``shape = (H, W)``
        and ``patch = (ph, pw)``."""
        if len(patch) != 2:
            raise ValueError(f"PatchRecovery2D needs a 2-axis patch, got {tuple(patch)}")
        super().__init__(dim, out_channels, shape, patch, impl=impl, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Recovers fields from ``tokens: [B, H', W', dim]``.

        Returns:
          ``[B, H, W, C_out]``, constrained to ``("batch", "lat", "lon", "channels")``.

        Raises:
          ValueError: ``tokens`` is not ``[B, *self.grid, dim]``.
        """
        return super().__call__(tokens)
