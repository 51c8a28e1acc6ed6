"""Logical axis names -> mesh axes: the one rules table, activation constraints, checks.

Parameters declare logical axis names through Flax NNX partitioning metadata
(``nnx.with_partitioning(init, ("embed", "mlp"))``); activations are constrained at block
boundaries with :func:`constrain`. Both are translated to mesh axes by :data:`RULES`, so a
model never names a mesh axis and the same model runs on any mesh from :mod:`.mesh`.

Logical names (every name a Tellus model may use is in the table; an unknown one raises):

================  ===================================================  =============
name              what it indexes                                      mesh axis
================  ===================================================  =============
``batch``         samples of a batch                                   data x fsdp
``ensemble``      ensemble members run as a batch                      data x fsdp
``level``         pressure levels / depth / patch-levels               (replicated)
``act_level``     token levels of the trunk's activations              spatial
``lat``           latitude rows (activations)                          spatial
``lon``           longitude columns (activations)                      spatial
``window``        windows of window attention (batch x lat x lon)      spatial
``token``         tokens inside one window                             (replicated)
``embed``         model width C of parameters                          fsdp
``act_embed``     model width C of activations                         (replicated)
``mlp``           MLP hidden units                                     tensor
``heads``         attention heads                                      tensor
``head_dim``      features inside one head                             (replicated)
``patch``         flattened patch x variable input features            (replicated)
``channels``      physical variables (x levels) of a field             (replicated)
``bias_type``     Earth-specific bias table types (level x lat window) (replicated)
``bias_pos``      positions inside one bias table                      fsdp
``norm``          LayerNorm scale/bias features                        (replicated)
================  ===================================================  =============

A mesh axis is used at most once per array: when two dimensions map to the same mesh axis
(e.g. ``batch`` and ``window`` both reaching ``fsdp`` through a custom table), the later
dimension is left unsharded. An activation constraint (:func:`constrain`) gives a mesh axis
to the first dimension it divides: the trunk's tokens ``(batch, act_level, lat, lon,
act_embed)`` are split along their levels where ``spatial`` divides them (Pangu's 8 token
levels on 2, 4 or 8 devices: every token-wise layer, the MLP and the projections, divides
exactly, whatever the grid's 181 latitude rows), else along latitude, else longitude; the
fields a patch embedding reads and a recovery writes (721 x 1440 at 0.25 deg) along
latitude where it divides, else along longitude (1440 columns of 4-wide patches on 2, 4
or 8 devices).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tellus.kernels.mesh import DATA, FSDP, SPATIAL, TENSOR

MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]

RULES: Rules = (
    ("batch", (DATA, FSDP)),
    ("ensemble", (DATA, FSDP)),
    ("level", None),
    ("act_level", SPATIAL),
    ("lat", SPATIAL),
    ("lon", SPATIAL),
    ("window", SPATIAL),
    ("token", None),
    ("embed", FSDP),
    ("act_embed", None),
    ("mlp", TENSOR),
    ("heads", TENSOR),
    ("head_dim", None),
    ("patch", None),
    ("channels", None),
    ("bias_type", None),
    ("bias_pos", FSDP),
    ("norm", None),
)

# Parameters smaller than this may stay replicated without complaint (norms, biases).
MIN_SHARDED_SIZE = 2**14


class ShardingError(ValueError):
    """Parameters are not laid out on the mesh as the logical axis rules say."""


def logical_to_spec(names: Sequence[str | None], rules: Rules = RULES) -> PartitionSpec:
    """The PartitionSpec for an array whose dimensions have logical ``names``.

    Args:
      names: one logical name (or ``None``, never sharded) per dimension.
      rules: logical name -> mesh axis (or tuple of axes, or ``None``).

    Raises:
      ShardingError: a name is not in ``rules``.
    """
    table = dict(rules)
    used: set[str] = set()
    out: list[MeshAxes] = []
    for name in names:
        if name is None:
            out.append(None)
            continue
        if name not in table:
            raise ShardingError(
                f"logical axis name {name!r} is not in the rules table; known names: "
                f"{sorted(table)}"
            )
        axes = table[name]
        axes_t = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        kept = tuple(a for a in axes_t if a not in used)
        used.update(kept)
        out.append(None if not kept else kept[0] if len(kept) == 1 else kept)
    return PartitionSpec(*out)


def logical_sharding(
    mesh: Mesh, names: Sequence[str | None], rules: Rules = RULES
) -> NamedSharding:
    """``NamedSharding(mesh, logical_to_spec(names, rules))``."""
    return NamedSharding(mesh, logical_to_spec(names, rules))


def constrain(
    x: jax.Array, names: Sequence[str | None], rules: Rules = RULES, *, free_unfit: bool = False
) -> jax.Array:
    """Sharding constraint by logical names on an activation, under the context mesh.

    Outside a mesh context (``jax.set_mesh``) this is the identity, so model code runs
    unchanged on one device and in tests.

    Raises:
      ShardingError: ``names`` does not have one entry per dimension of ``x``.
    """
    if len(names) != x.ndim:
        raise ShardingError(
            f"constraint names {tuple(names)} do not match an array of shape {x.shape}"
        )
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = fitting_spec(names, x.shape, mesh.shape, rules)
    if free_unfit:
        # A dimension whose rule names a mesh axis that fits nowhere is left to the compiler
        # (it may split the axis over several dimensions) rather than kept whole.
        named = {n for n in names if n is not None and dict(rules).get(n) is not None}
        if any(n in named for n, a in zip(names, spec, strict=True) if a is None):
            spec = PartitionSpec(
                *(
                    PartitionSpec.UNCONSTRAINED if a is None and n in named else a
                    for n, a in zip(names, spec, strict=True)
                )
            )
    return jax.lax.with_sharding_constraint(x, spec)


def fitting_spec(
    names: Sequence[str | None],
    shape: Sequence[int],
    sizes: Mapping[str, int],
    rules: Rules = RULES,
) -> PartitionSpec:
    """The PartitionSpec of an activation of ``shape`` with logical ``names`` on a mesh of
    ``sizes``: each dimension takes its rule's mesh axes that divide it and that no earlier
    dimension took, so an axis a dimension cannot use (8 devices, 181 latitude rows) passes
    to the next dimension that names it.

    Raises:
      ShardingError: a name is not in ``rules``.
    """
    table = dict(rules)
    used: set[str] = set()
    out: list[MeshAxes] = []
    for name, dim in zip(names, shape, strict=True):
        if name is None:
            out.append(None)
            continue
        if name not in table:
            raise ShardingError(
                f"logical axis name {name!r} is not in the rules table; known names: "
                f"{sorted(table)}"
            )
        axes = table[name]
        axes_t = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        kept = _fitting(tuple(a for a in axes_t if a not in used), dim, sizes)
        kept_t = () if kept is None else (kept,) if isinstance(kept, str) else kept
        used.update(kept_t)
        out.append(kept)
    return PartitionSpec(*out)


def dense(
    d_in: int,
    d_out: int,
    names: tuple[str | None, str | None],
    rngs: nnx.Rngs,
    kernel_init: nnx.Initializer | None = None,
    lora_rank: int = 0,
) -> nnx.Linear:
    """An ``nnx.Linear`` whose kernel carries the logical names ``names`` (in, out) and whose
    bias carries the output name; ``kernel_init`` defaults to LeCun normal (flax's).

    With ``lora_rank > 0`` an ``nnx.LoRALinear``: the same ``kernel`` and ``bias`` (same
    paths, so a checkpoint without adapters restores into it) plus a low-rank adapter
    ``lora/lora_a [d_in, r]``, ``lora/lora_b [r, d_out]`` (zero at the start) whose product
    is added to the output."""
    kwargs: dict[str, Any] = dict(
        kernel_init=nnx.with_partitioning(kernel_init or nnx.initializers.lecun_normal(), names),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (names[1],)),
        rngs=rngs,
    )
    if lora_rank:
        return nnx.LoRALinear(d_in, d_out, lora_rank=lora_rank, **kwargs)
    return nnx.Linear(d_in, d_out, **kwargs)


def layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """An ``nnx.LayerNorm`` whose scale and bias carry the logical name ``norm``."""
    return nnx.LayerNorm(
        dim,
        scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("norm",)),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("norm",)),
        rngs=rngs,
    )


def _fitting(axes: MeshAxes, dim: int, sizes: Mapping[str, int]) -> MeshAxes:
    if not axes:
        return None
    axes_t = (axes,) if isinstance(axes, str) else tuple(axes)
    kept: list[str] = []
    for a in axes_t:
        if dim % (math.prod(sizes[b] for b in kept) * sizes[a]) == 0:
            kept.append(a)
    return None if not kept else kept[0] if len(kept) == 1 else tuple(kept)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Rules = RULES) -> Iterator[Mesh]:
    """Context: ``mesh`` as the ambient mesh and ``rules`` as the NNX logical axis rules."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
        yield mesh


def count_params(model: nnx.Module) -> int:
    """Number of parameter values (``nnx.Param``) of a model, concrete or abstract."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def param_specs(model: nnx.Module, rules: Rules = RULES) -> dict[str, Any]:
    """PartitionSpecs of the model's ``nnx.Param`` leaves (a pure nested dict).

    Raises:
      ShardingError: a parameter uses a logical name missing from ``rules``.
    """
    state = nnx.state(model, nnx.Param)
    # Validate every annotation against the table (NNX passes unknown names through).
    for path, var in _annotated(state):
        names = var.get_metadata().get("out_sharding") or ()
        if len(names) != len(var.shape):
            raise ShardingError(
                f"parameter {path} has shape {var.shape} but logical names {tuple(names)}"
            )
        logical_to_spec(names, rules)
    with nnx.logical_axis_rules(rules):
        return nnx.to_pure_dict(nnx.get_partition_spec(state))


def _annotated(state: Any) -> Iterator[tuple[str, nnx.Variable]]:
    leaves = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda v: isinstance(v, nnx.Variable)
    )[0]
    for path, var in leaves:
        if isinstance(var, nnx.Variable) and var.get_metadata().get("out_sharding"):
            yield _path_str(path), var


def _path_str(path: Sequence[Any]) -> str:
    parts = []
    for p in path:
        key = getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))
        parts.append(str(key))
    return "/".join(parts)


def param_shardings(model: nnx.Module, mesh: Mesh, rules: Rules = RULES) -> dict[str, Any]:
    """NamedShardings of the model's params, by the rules (a pure nested dict)."""
    return jax.tree.map(lambda p: NamedSharding(mesh, p), param_specs(model, rules))


def shard_model(model: nnx.Module, mesh: Mesh, rules: Rules = RULES) -> nnx.Module:
    """Places the model's params on ``mesh`` as the rules say (in place; returns the model)."""
    shardings = param_shardings(model, mesh, rules)
    params = nnx.state(model, nnx.Param)
    values = nnx.to_pure_dict(params)
    placed = jax.tree.map(jax.device_put, values, shardings)
    nnx.replace_by_pure_dict(params, placed)
    nnx.update(model, params)
    return model


def check_sharded(
    params: Any,
    mesh: Mesh,
    expected: Any | None = None,
    *,
    min_size: int = MIN_SHARDED_SIZE,
) -> None:
    """Fails loudly when parameters are replicated that should not be.

    Two failures are reported, all offending paths at once:

    * a parameter whose expected spec (from the rules) shards it over mesh axes of size > 1
      but whose array is actually fully replicated (forgot ``shard_model`` or the jit's
      ``out_shardings``);
    * a parameter with at least ``min_size`` elements that has no sharded dimension at all
      in ``expected`` while the mesh has devices to spare (a missing logical annotation).

    Args:
      params: pure nested dict of arrays (``TrainState.params``, or
        ``nnx.to_pure_dict(nnx.state(model, nnx.Param))``).
      mesh: the mesh the run uses.
      expected: PartitionSpecs of the same structure (``param_specs(model)``); default:
        only the actual arrays' shardings are examined.
      min_size: smallest parameter that must be sharded when the mesh has > 1 device.

    Raises:
      ShardingError: listing each offending parameter, its shape and its sharding.
    """
    if mesh.size == 1:
        return
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    specs = (
        [None] * len(flat)
        if expected is None
        else jax.tree_util.tree_leaves(expected, is_leaf=lambda s: isinstance(s, PartitionSpec))
    )
    if len(specs) != len(flat):
        raise ShardingError(f"expected specs have {len(specs)} leaves, params {len(flat)}")
    sizes = dict(mesh.shape)
    problems = []
    for (path, arr), spec in zip(flat, specs, strict=True):
        name = _path_str(path)
        size = int(np.prod(arr.shape))
        want_devices = 1
        if spec is not None:
            for axes in spec:
                for a in (axes,) if isinstance(axes, str) else (axes or ()):
                    want_devices *= sizes[a]
        sharding = getattr(arr, "sharding", None)
        replicated = sharding is None or sharding.is_fully_replicated
        if want_devices > 1 and replicated:
            problems.append(f"{name} {tuple(arr.shape)}: rules say {spec} but it is replicated")
        elif spec is not None and want_devices == 1 and size >= min_size:
            problems.append(
                f"{name} {tuple(arr.shape)}: {size} elements with no sharded dimension "
                f"(spec {spec}); give it logical axis names"
            )
        elif spec is None and replicated and size >= min_size:
            problems.append(f"{name} {tuple(arr.shape)}: {size} elements fully replicated")
    if problems:
        raise ShardingError(
            f"{len(problems)} parameter(s) replicated on mesh {sizes}:\n  " + "\n  ".join(problems)
        )
