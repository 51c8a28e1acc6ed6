"""3D (level x latitude x longitude) window attention of Pangu-Weather's Earth-specific block.

Tokens are ``x: [B, Z, H, W, C]`` (Z pressure-level patches, H latitude patches, W longitude
patches, C channels). Attention is restricted to windows of ``(wz, wh, ww)`` tokens
(Pangu: ``(2, 6, 12)``). Every second block uses the *shifted* configuration: the grid is
rolled by ``-(wz//2, wh//2, ww//2)`` before partitioning and rolled back afterwards, so
that information crosses window borders.

Conventions, used by every function here:

* ``window_partition`` lays windows out as ``[B, T, nW, N, C]``: ``T = (Z//wz) * (H//wh)``
  window *types* (type ``t = iz * (H//wh) + ih``; each type has its own Earth-specific
  bias table, :mod:`tellus.kernels.earth_bias`), ``nW = W//ww`` longitude windows sharing a
  type, ``N = wz*wh*ww`` tokens per window in row-major ``(z, h, w)`` order.
* Padding (:func:`pad_to_windows`) adds zeros at the *end* of Z, H and W. Ending at the
  end keeps window boundaries aligned with the first level and the first latitude row, so
  a window type always covers the same rows whatever the padding; the padded tokens are
  masked out as keys (:func:`attention_mask`) and cropped from the output.
* Masks are ``True`` where a query may attend to a key, shaped ``[T, nW, N, N]`` or
  ``[T, 1, N, N]`` when they do not vary along longitude (the usual case; broadcast).
* A *key mask* (``key_mask``, optional) marks tokens that may not be attended to at all,
  such as land in an ocean grid: ``[B, Z, H, W]`` bool, True where a token may be a key
  (batch 1 broadcasts). It is padded (padding is never a key), rolled and partitioned like
  the tokens, and combined with the structural masks; a query left without any allowed key
  (a window, or window region, that is all land) gets zero weight on every key and so a
  zero attention output, never a uniform average over the masked keys. Without a key mask
  every function computes exactly what it did before key masks existed.
* In the shifted configuration tokens that the roll brought together from opposite ends of
  the level or latitude axis are masked from each other; along longitude there is no mask,
  because longitude is periodic and the roll across the date line joins true neighbours.
  (This is exact when W is a multiple of ww; padded longitude columns sit between the last
  and the first meridian and are masked, which only loses some cross-date-line pairs.)

``jax.nn.dot_product_attention`` (the ``"fast"`` implementation) currently always lowers
to XLA when no ``implementation`` is named (jax 0.12); ``impl="cudnn"`` asks for cuDNN
flash attention explicitly (GPU, fp16/bf16 inputs only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec

from tellus.kernels import earth_bias, partitioning

Impl = Literal["reference", "fast", "cudnn"]
Partitioning = Literal["auto", "shard_map"]
Pads = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

INIT_STD = 0.02  # Swin / Pangu initialise linear layers with trunc_normal_(std=.02)


def pad_to_windows(x: jax.Array, window: Sequence[int]) -> tuple[jax.Array, Pads]:
    """Zero-pads Z, H and W (at the end) to multiples of ``window``.

    Args:
      x: ``[B, Z, H, W, C]``.
      window: ``(wz, wh, ww)``.

    Returns:
      ``(x_padded [B, Z', H', W', C], pads)`` with ``pads = ((0, pz), (0, ph), (0, pw))``,
      the (before, after) padding of Z, H, W, for :func:`crop`.
    """
    pads = tuple((0, -n % w) for n, w in zip(x.shape[1:4], window, strict=True))
    if any(p for _, p in pads):
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    return x, pads  # type: ignore[return-value]


def crop(x: jax.Array, pads: Pads) -> jax.Array:
    """Undoes :func:`pad_to_windows`: ``[B, Z', H', W', C] -> [B, Z, H, W, C]``."""
    index = tuple(slice(lo, n - hi) for (lo, hi), n in zip(pads, x.shape[1:4], strict=True))
    return x[(slice(None), *index)]


def window_partition(x, window: Sequence[int]):
    """Splits a padded grid into windows.

    Works on jax and numpy arrays alike (the masks are built in numpy).

    Args:
      x: ``[B, Z, H, W, C]`` with Z, H, W multiples of ``window``.
      window: ``(wz, wh, ww)``.

    Returns:
      ``[B, T, nW, N, C]``, ``T = (Z//wz) * (H//wh)`` (type ``t = iz * (H//wh) + ih``),
      ``nW = W//ww``, ``N = wz*wh*ww`` tokens in row-major ``(z, h, w)`` order.
    """
    b, nz, nh, nw, c = x.shape
    wz, wh, ww = window
    if nz % wz or nh % wh or nw % ww:
        raise ValueError(f"grid {(nz, nh, nw)} is not a multiple of the window {tuple(window)}")
    x = x.reshape(b, nz // wz, wz, nh // wh, wh, nw // ww, ww, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)  # [B, iz, ih, iw, z, h, w, C]
    return x.reshape(b, (nz // wz) * (nh // wh), nw // ww, wz * wh * ww, c)


def window_reverse(windows, window: Sequence[int], zhw: Sequence[int]):
    """Inverse of :func:`window_partition`: ``[B, T, nW, N, C] -> [B, Z, H, W, C]``.

    Args:
      windows: ``[B, T, nW, N, C]``.
      window: ``(wz, wh, ww)``.
      zhw: the padded grid ``(Z, H, W)``.
    """
    b, c = windows.shape[0], windows.shape[-1]
    (nz, nh, nw), (wz, wh, ww) = zhw, window
    x = windows.reshape(b, nz // wz, nh // wh, nw // ww, wz, wh, ww, c)
    x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)  # [B, iz, z, ih, h, iw, w, C]
    return x.reshape(b, nz, nh, nw, c)


def shift_sizes(window: Sequence[int]) -> tuple[int, int, int]:
    """The roll of the shifted configuration is ``-shift_sizes(window)``: half a window."""
    return tuple(w // 2 for w in window)  # type: ignore[return-value]


def attention_mask(
    padded_zhw: Sequence[int],
    window: Sequence[int],
    shift: bool,
    valid_zhw: Sequence[int] | None = None,
) -> np.ndarray | None:
    """Which keys each query may attend to, window by window (a static numpy array).

    Built in the coordinates the windows are cut from: the padded grid, rolled by
    ``-shift_sizes(window)`` when ``shift``. A query may attend to a key of its window iff

    * (``shift``) both come from the same side of the roll's wrap in level and in latitude
      (not along longitude, which is periodic), and
    * (``valid_zhw``) the key is not padding.

    Padding queries may also attend to themselves, so that every row keeps at least one
    allowed key even in a window (region) of padding only (their outputs are cropped).

    Args:
      padded_zhw: ``(Z, H, W)`` after :func:`pad_to_windows`.
      window: ``(wz, wh, ww)``.
      shift: the shifted configuration.
      valid_zhw: the unpadded ``(Z, H, W)``; ``None``: nothing is padding.

    Returns:
      bool ``[T, nW, N, N]``, or ``[T, 1, N, N]`` when it is the same for all longitude
      windows; ``None`` when every pair may attend (unshifted, unpadded).
    """
    padded_zhw = tuple(padded_zhw)
    valid_zhw = padded_zhw if valid_zhw is None else tuple(valid_zhw)
    if valid_zhw[2] == padded_zhw[2]:
        # Nothing varies along longitude: one longitude window stands for all (saves
        # nW-fold memory; 300 MB for Pangu's grid).
        padded_zhw = valid_zhw = (*padded_zhw[:2], window[2])
    shifts = shift_sizes(window) if shift else (0, 0, 0)
    labels, valid = [], []
    for axis, (n, v, s) in enumerate(zip(padded_zhw, valid_zhw, shifts, strict=True)):
        rolled = np.arange(n)
        original = (rolled + s) % n  # rolled[r] = x[(r + s) % n]
        # The last s rolled positions wrapped around from the start of the axis.
        labels.append(rolled >= n - s if axis < 2 and s else np.zeros(n, bool))
        valid.append(original < v)
    z_lab, h_lab, _ = np.meshgrid(*labels, indexing="ij")
    region = z_lab.astype(np.int8) * 2 + h_lab.astype(np.int8)
    ok = np.logical_and.reduce(np.meshgrid(*valid, indexing="ij"))
    region = window_partition(region[None, ..., None], window)[0, ..., 0]  # [T, nW, N]
    ok = window_partition(ok[None, ..., None], window)[0, ..., 0]
    mask = (region[..., :, None] == region[..., None, :]) & ok[..., None, :]
    mask |= ~ok[..., :, None] & np.eye(mask.shape[-1], dtype=bool)
    if mask.all():
        return None
    if (mask == mask[:, :1]).all():
        mask = mask[:, :1]
    return mask


def shift_mask(
    padded_zhw: Sequence[int], window: Sequence[int], valid_zhw: Sequence[int] | None = None
) -> np.ndarray:
    """:func:`attention_mask` of the shifted configuration (never ``None``)."""
    mask = attention_mask(padded_zhw, window, True, valid_zhw)
    if mask is None:  # a window of size 1 in Z and H: nothing to separate
        t = earth_bias.n_window_types(padded_zhw, window)
        n = math.prod(window)
        mask = np.ones((t, 1, n, n), bool)
    return mask


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    bias: jax.Array,
    mask: jax.Array | np.ndarray | None,
    impl: Impl = "fast",
    key_mask: jax.Array | None = None,
) -> jax.Array:
    """Biased, masked softmax attention inside each window.

    Args:
      q, k, v: ``[B, T, nW, heads, N, d]``.
      bias: ``[T, heads, N, N]``, added to the logits (shared by the nW windows of a type).
      mask: bool ``[T, nW, N, N]`` or ``[T, 1, N, N]`` (True = may attend), or ``None``.
      impl: ``"reference"``: explicit einsums, softmax in float32; ``"fast"``:
        ``jax.nn.dot_product_attention`` (XLA); ``"cudnn"``: the same with cuDNN flash
        attention (GPU, fp16/bf16).
      key_mask: bool ``[B, T, nW, N]`` (batch 1 broadcasts), True where a token may be a
        key, or ``None``. A query with no allowed key gets a zero output.

    Returns:
      ``[B, T, nW, heads, N, d]``; scale ``1/sqrt(d)``.
    """
    if impl not in ("reference", "fast", "cudnn"):
        raise ValueError(f"unknown attention impl {impl!r}; use 'reference', 'fast' or 'cudnn'")
    if key_mask is not None:
        full = combined_mask(mask, key_mask)  # [B, T, nW, N, N]
        if impl == "reference":
            probs = attention_weights(q, k, bias, mask, key_mask).astype(v.dtype)
            return jnp.einsum("btwhnm,btwhmd->btwhnd", probs, v)
        out = _fast_attention_per_sample(q, k, v, bias, full, None if impl == "fast" else "cudnn")
        has_key = jnp.any(full, axis=-1)[:, :, :, None, :, None]
        return jnp.where(has_key, out, jnp.zeros_like(out))
    if impl == "reference":
        return _reference_attention(q, k, v, bias, mask)
    return _fast_attention(q, k, v, bias, mask, None if impl == "fast" else "cudnn")


def combined_mask(mask: jax.Array | np.ndarray | None, key_mask: jax.Array) -> jax.Array:
    """The structural mask and a key mask as one bool ``[B, T, nW, N, N]`` (True = query
    ``n`` may attend to key ``m``).

    Args:
      mask: ``[T, nW | 1, N, N]`` or None (:func:`attention_mask`).
      key_mask: ``[B | 1, T, nW, N]``.
    """
    key_mask = jnp.asarray(key_mask, bool)
    full = key_mask[:, :, :, None, :]
    if mask is not None:
        full = full & jnp.asarray(mask, bool)[None]
    n = key_mask.shape[-1]
    return jnp.broadcast_to(full, (*key_mask.shape[:3], n, n))


def attention_weights(
    q: jax.Array,
    k: jax.Array,
    bias: jax.Array,
    mask: jax.Array | np.ndarray | None,
    key_mask: jax.Array | None = None,
) -> jax.Array:
    """The attention weights of :func:`attention` (``"reference"``), float32
    ``[B, T, nW, heads, N, N]``: each query's softmax over the keys it may attend to, exactly
    0 on every other key, and 0 on all keys for a query that may attend to none (only with
    a ``key_mask``; arguments as :func:`attention`)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("btwhnd,btwhmd->btwhnm", q, k).astype(jnp.float32) * scale
    logits = logits + bias[None, :, None].astype(jnp.float32)
    if key_mask is None:
        if mask is not None:
            logits = jnp.where(jnp.asarray(mask)[None, :, :, None], logits, -1e30)
        return jax.nn.softmax(logits, axis=-1)
    full = combined_mask(mask, key_mask)[:, :, :, None]  # [B, T, nW, 1, N, N]
    # A finite fill (not -inf): a row without any allowed key becomes a finite uniform
    # softmax, zeroed below, so that neither it nor its gradient is ever NaN. In every other
    # row exp(-1e30 - max) is exactly 0.
    probs = jax.nn.softmax(jnp.where(full, logits, -1e30), axis=-1)
    return jnp.where(full, probs, 0.0)


def _reference_attention(q, k, v, bias, mask):
    probs = attention_weights(q, k, bias, mask).astype(v.dtype)
    return jnp.einsum("btwhnm,btwhmd->btwhnd", probs, v)


def _fast_attention(q, k, v, bias, mask, implementation):
    per_lon = mask is not None and mask.shape[1] > 1
    if mask is not None and not per_lon:
        mask = mask[:, 0]

    def one_window(q, k, v, bias, mask):  # q, k, v [B, heads, N, d]; bias [heads, N, N]
        out = jax.nn.dot_product_attention(
            q.swapaxes(1, 2),
            k.swapaxes(1, 2),
            v.swapaxes(1, 2),
            bias=bias[None].astype(q.dtype),
            mask=None if mask is None else jnp.asarray(mask)[None, None],
            implementation=implementation,
        )
        return out.swapaxes(1, 2)

    # vmap over the window types and the longitude windows keeps bias and mask unbroadcast.
    per_window = jax.vmap(one_window, in_axes=(1, 1, 1, None, 0 if per_lon else None), out_axes=1)
    per_type = jax.vmap(per_window, in_axes=(1, 1, 1, 0, 0), out_axes=1)
    if mask is None:
        return per_type(q, k, v, bias, None)
    return per_type(q, k, v, bias, jnp.asarray(mask))


def _fast_attention_per_sample(q, k, v, bias, mask, implementation):
    """:func:`_fast_attention` with a mask that varies by sample: ``[B | 1, T, nW, N, N]``."""

    def one_window(q, k, v, bias, mask):  # q, k, v [B, heads, N, d]; mask [B | 1, N, N]
        out = jax.nn.dot_product_attention(
            q.swapaxes(1, 2),
            k.swapaxes(1, 2),
            v.swapaxes(1, 2),
            bias=bias[None].astype(q.dtype),
            mask=mask[:, None],
            implementation=implementation,
        )
        return out.swapaxes(1, 2)

    per_window = jax.vmap(one_window, in_axes=(1, 1, 1, None, 1), out_axes=1)
    per_type = jax.vmap(per_window, in_axes=(1, 1, 1, 0, 1), out_axes=1)
    return per_type(q, k, v, bias, mask)


_QKV_NAMES = ("batch", "window", None, "heads", "token", "head_dim")
_BIAS_NAMES = ("window", "heads", None, None)
_MASK_NAMES = ("window", None, None, None)
_KEY_MASK_NAMES = ("batch", "window", None, "token")


def shard_map_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    bias: jax.Array,
    mask: jax.Array | np.ndarray | None,
    impl: Impl = "fast",
    key_mask: jax.Array | None = None,
) -> jax.Array:
    """:func:`attention` in ``jax.shard_map`` over the ambient mesh, with no communication.

    q/k/v are split over batch (``data`` x ``fsdp``), window types (``spatial``) and heads
    (``tensor``), the bias over types and heads, the mask over types, the key mask over
    batch and types, all as the logical rules of :mod:`tellus.kernels.partitioning` say;
    each device attends within its own windows. Without an ambient mesh it is
    :func:`attention`.

    Raises:
      ValueError: batch, window types or heads not divisible by their mesh axes.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return attention(q, k, v, bias, mask, impl, key_mask)
    sizes = dict(mesh.shape)

    def spec(names):
        axes = partitioning.logical_to_spec(names)
        # Keep only axes this mesh has (Tellus meshes have all four).
        return PartitionSpec(
            *(
                None
                if a is None
                else tuple(x for x in ((a,) if isinstance(a, str) else a) if x in sizes) or None
                for a in axes
            )
        )

    qkv_spec = spec(_QKV_NAMES)
    for dim_name, dim, axes in zip(
        ("batch", "window types T", "heads"),
        (q.shape[0], q.shape[1], q.shape[3]),
        (qkv_spec[0], qkv_spec[1], qkv_spec[3]),
        strict=True,
    ):
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        n = math.prod(sizes[a] for a in axes)
        if dim % n:
            raise ValueError(
                f"shard_map window attention: {dim_name} = {dim} is not divisible "
                f"by mesh axes {axes} of total size {n}"
            )
    bias_spec, mask_spec = spec(_BIAS_NAMES), spec(_MASK_NAMES)

    if key_mask is not None:
        key_mask = jnp.broadcast_to(jnp.asarray(key_mask, bool), q.shape[:3] + q.shape[4:5])
        key_spec = spec(_KEY_MASK_NAMES)
        if mask is None:
            fn = jax.shard_map(
                lambda q, k, v, b, km: attention(q, k, v, b, None, impl, km),
                mesh=mesh,
                in_specs=(qkv_spec,) * 3 + (bias_spec, key_spec),
                out_specs=qkv_spec,
            )
            return fn(q, k, v, bias, key_mask)
        fn = jax.shard_map(
            lambda q, k, v, b, m, km: attention(q, k, v, b, m, impl, km),
            mesh=mesh,
            in_specs=(qkv_spec,) * 3 + (bias_spec, mask_spec, key_spec),
            out_specs=qkv_spec,
        )
        return fn(q, k, v, bias, jnp.asarray(mask), key_mask)
    if mask is None:
        fn = jax.shard_map(
            lambda q, k, v, b: attention(q, k, v, b, None, impl),
            mesh=mesh,
            in_specs=(qkv_spec,) * 3 + (bias_spec,),
            out_specs=qkv_spec,
        )
        return fn(q, k, v, bias)
    fn = jax.shard_map(
        lambda q, k, v, b, m: attention(q, k, v, b, m, impl),
        mesh=mesh,
        in_specs=(qkv_spec,) * 3 + (bias_spec, mask_spec),
        out_specs=qkv_spec,
    )
    return fn(q, k, v, bias, jnp.asarray(mask))


def _lora_delta(lora: nnx.LoRA) -> jax.Array:
    """``A B``: the ``[in, out]`` update a low-rank adapter adds to its kernel."""
    return lora.lora_a[...] @ lora.lora_b[...]


class EarthAttention3D(nnx.Module):
    """Pangu's 3D window attention with Earth-specific bias (the attention half of a block).

    Attributes:
      qkv_kernel: ``[dim, 3, heads, head_dim]``, ``("embed", None, "heads", "head_dim")``.
      qkv_bias: ``[3, heads, head_dim]``, ``(None, "heads", "head_dim")``.
      proj_kernel: ``[heads, head_dim, dim]``, ``("heads", "head_dim", "embed")``.
      proj_bias: ``[dim]``, ``("embed",)``.
      bias: :class:`tellus.kernels.earth_bias.EarthSpecificBias`, or None when the bias
        comes from outside (a shared trunk whose grid-sized bias tables belong to each
        domain's adapter: ``__call__(x, bias)``).
      qkv_lora, proj_lora: low-rank adapters (``flax.nnx.LoRA``, parameters ``lora_a``
        ``[in, r]`` and ``lora_b`` ``[r, out]``, ``lora_b`` zero at the start) of the two
        projections when ``lora_rank > 0``, else None. Their product is added to the
        kernel, ``W + A B`` (merged once per call: the same output as adding ``x A B`` to
        ``x W`` at the cost of one ``[in, out]`` matrix instead of one per token).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window: Sequence[int],
        n_types: int | None,
        *,
        shift: bool,
        impl: Impl = "fast",
        partitioning: Partitioning = "auto",
        lora_rank: int = 0,
        rngs: nnx.Rngs,
    ):
        """Creates the layer.

        Args:
          dim: channels C.
          heads: attention heads; must divide ``dim``.
          window: ``(wz, wh, ww)``, Pangu ``(2, 6, 12)``.
          n_types: window types of the padded grid,
            ``earth_bias.n_window_types(padded_zhw, window)``; None: no bias table of its
            own (the caller passes the bias).
          shift: use the shifted-window configuration.
          impl: see :func:`attention`.
          partitioning: ``"auto"``: sharding constraints only, the compiler partitions;
            ``"shard_map"``: the attention core runs in :func:`shard_map_attention`.
          lora_rank: rank of the low-rank adapters of the qkv and output projections (0:
            none).
          rngs: needs a ``params`` stream.
        """
        if dim % heads:
            raise ValueError(f"heads = {heads} does not divide dim = {dim}")
        if partitioning not in ("auto", "shard_map"):
            raise ValueError(f"partitioning must be 'auto' or 'shard_map', not {partitioning!r}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.window = tuple(int(w) for w in window)
        self.shift, self.impl, self.partitioning = shift, impl, partitioning
        kernel = jax.nn.initializers.truncated_normal(INIT_STD)
        zeros = jax.nn.initializers.zeros

        def param(init, shape, names):
            return nnx.Param(nnx.with_partitioning(init, names)(rngs.params(), shape))

        hd = self.head_dim
        self.qkv_kernel = param(kernel, (dim, 3, heads, hd), ("embed", None, "heads", "head_dim"))
        self.qkv_bias = param(zeros, (3, heads, hd), (None, "heads", "head_dim"))
        self.proj_kernel = param(kernel, (heads, hd, dim), ("heads", "head_dim", "embed"))
        self.proj_bias = param(zeros, (dim,), ("embed",))
        self.qkv_lora = nnx.LoRA(dim, lora_rank, 3 * dim, rngs=rngs) if lora_rank else None
        self.proj_lora = nnx.LoRA(dim, lora_rank, dim, rngs=rngs) if lora_rank else None
        self.bias = (
            None
            if n_types is None
            else earth_bias.EarthSpecificBias(self.window, n_types, heads, rngs=rngs)
        )

    def __call__(
        self, x: jax.Array, bias: jax.Array | None = None, key_mask: jax.Array | None = None
    ) -> jax.Array:
        """Window attention over ``x: [B, Z, H, W, C]``; returns the same shape.

        Args:
          x: tokens.
          bias: ``[n_types, heads, N, N]`` (:meth:`EarthSpecificBias.__call__`); default the
            layer's own table.
          key_mask: bool ``[B | 1, Z, H, W]``, True where a token may be attended to (ocean),
            or None (every token may).

        Raises:
          ValueError: the padded grid has a different number of window types than the
            bias, or there is no bias at all; a key mask of another grid.
        """
        valid_zhw = x.shape[1:4]
        if key_mask is not None:
            key_mask = jnp.asarray(key_mask, bool)
            if (
                key_mask.ndim != 4
                or key_mask.shape[1:] != valid_zhw
                or key_mask.shape[0]
                not in (
                    1,
                    x.shape[0],
                )
            ):
                raise ValueError(
                    f"key mask must be [1 or {x.shape[0]}, {', '.join(map(str, valid_zhw))}] "
                    f"for tokens {x.shape}; got {key_mask.shape}"
                )
        x, pads = pad_to_windows(x, self.window)
        zhw = x.shape[1:4]
        n_types = earth_bias.n_window_types(zhw, self.window)
        if bias is None:
            if self.bias is None:
                raise ValueError("this attention layer has no bias table: pass its bias")
            bias = self.bias()
        if n_types != bias.shape[0]:
            raise ValueError(
                f"grid {valid_zhw} (padded {zhw}) has {n_types} window types, "
                f"the bias was built for n_types = {bias.shape[0]}"
            )
        shifts = shift_sizes(self.window) if self.shift else (0, 0, 0)
        if self.shift:
            x = jnp.roll(x, tuple(-s for s in shifts), axis=(1, 2, 3))
        if key_mask is not None:  # padded, rolled and partitioned as the tokens
            key_mask = jnp.pad(key_mask, ((0, 0), *pads), constant_values=False)
            if self.shift:
                key_mask = jnp.roll(key_mask, tuple(-s for s in shifts), axis=(1, 2, 3))
            key_mask = window_partition(key_mask[..., None], self.window)[..., 0]
        windows = window_partition(x, self.window)  # [B, T, nW, N, C]
        windows = partitioning.constrain(
            windows, ("batch", "window", "window", "token", "act_embed"), free_unfit=True
        )

        qkv_kernel, proj_kernel = self.qkv_kernel[...], self.proj_kernel[...]
        if self.qkv_lora is not None:
            qkv_kernel = qkv_kernel + _lora_delta(self.qkv_lora).reshape(qkv_kernel.shape)
            proj_kernel = proj_kernel + _lora_delta(self.proj_lora).reshape(proj_kernel.shape)
        qkv = jnp.einsum("btwnc,cshd->sbtwhnd", windows, qkv_kernel)
        q, k, v = qkv + self.qkv_bias[...][:, None, None, None, :, None, :]
        mask = attention_mask(zhw, self.window, self.shift, valid_zhw if valid_zhw != zhw else None)
        core = shard_map_attention if self.partitioning == "shard_map" else attention
        if key_mask is None:
            out = core(q, k, v, bias, mask, self.impl)  # [B, T, nW, heads, N, d]
        else:
            out = core(q, k, v, bias, mask, self.impl, key_mask)
        y = jnp.einsum("btwhnd,hdc->btwnc", out, proj_kernel) + self.proj_bias[...]

        y = window_reverse(y, self.window, zhw)
        if self.shift:
            y = jnp.roll(y, shifts, axis=(1, 2, 3))
        y = crop(y, pads)
        return partitioning.constrain(y, ("batch", "act_level", "lat", "lon", "act_embed"))
