"""A pure, sharded, ahead-of-time compiled train step for NNX models.

The model is split once into a static ``graphdef`` and plain nested dicts of arrays
(params and any other state). ``TrainState`` holds only arrays, so it is a plain pytree
that jit, orbax and optax all handle directly, and ``train_step(state, batch)`` is pure.

Parameters fall into *groups* (:class:`Grouping`): the ``shared`` trunk, each domain's own
adapters, and ``frozen`` ones. Every group but ``frozen`` has its own AdamW moments, so a
step compiled for one domain updates the shared group and that domain's group only; the
moments, weight decay and values of another domain's adapters do not move on a step
without its data. The learning-rate schedule follows the global step, scaled per group.
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import functools
import hashlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tellus.kernels import partitioning
from tellus.training.config import OptimizerConfig, TrainConfig
from tellus.training.optimizer import clip_by_global_norm, learning_rate_schedule, moments

PyTree = Any
LossFn = Callable[[nnx.Module, PyTree], jax.Array]

SHARED = "shared"
FROZEN = "frozen"


def param_path(path: Sequence[Any]) -> str:
    """``"trunk/blocks/0/kernel"`` for a jax key path into a params dict."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def flat_params(params: PyTree) -> dict[str, Any]:
    """``{"a/b/kernel": leaf}`` for every leaf of a params pytree, in tree order."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return {param_path(p): x for p, x in leaves}


@dataclasses.dataclass(frozen=True)
class Grouping:
    """Which parameters train with which optimizer state.

    A parameter path (``"adapters/enso/head/kernel"``) is ``frozen`` when it matches one of
    ``frozen`` (fnmatch patterns, e.g. ``"trunk/*"``), else it belongs to the domain whose
    prefix in ``owners`` it starts with, else to the ``shared`` group.

    Attributes:
      owners: ``(path prefix, group name)``, e.g. ``(("adapters/enso", "enso"),)``.
      frozen: patterns of parameters that never change.
      lr_scale: ``(group name, factor)`` of the learning rate per group (default 1).
    """

    owners: tuple[tuple[str, str], ...] = ()
    frozen: tuple[str, ...] = ()
    lr_scale: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "owners", tuple((str(p), str(g)) for p, g in self.owners))
        object.__setattr__(self, "frozen", tuple(self.frozen))
        object.__setattr__(self, "lr_scale", tuple((str(g), float(f)) for g, f in self.lr_scale))
        for _, g in self.owners:
            if g in (SHARED, FROZEN):
                raise ValueError(f"group name {g!r} is reserved")

    def group(self, path: str) -> str:
        if any(fnmatch.fnmatchcase(path, pat) for pat in self.frozen):
            return FROZEN
        for prefix, g in self.owners:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return g
        return SHARED

    def names(self) -> tuple[str, ...]:
        """Every group name that may hold parameters (``frozen`` excluded)."""
        return (SHARED, *dict.fromkeys(g for _, g in self.owners))

    def scale(self, group: str) -> float:
        return dict(self.lr_scale).get(group, 1.0)

    def split(self, params: PyTree) -> dict[str, dict[str, Any]]:
        """``{group: {path: leaf}}`` of the trainable groups (empty groups kept)."""
        out: dict[str, dict[str, Any]] = {g: {} for g in self.names()}
        for path, x in flat_params(params).items():
            g = self.group(path)
            if g != FROZEN:
                out[g][path] = x
        return out

    def counts(self, params: PyTree) -> dict[str, int]:
        """Number of parameter values per group, ``frozen`` included."""
        out: dict[str, int] = {}
        for path, x in flat_params(params).items():
            g = self.group(path)
            out[g] = out.get(g, 0) + int(np.prod(x.shape))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "owners": [list(o) for o in self.owners],
            "frozen": list(self.frozen),
            "lr_scale": [list(x) for x in self.lr_scale],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Grouping:
        d = d or {}
        return cls(
            owners=tuple(tuple(o) for o in d.get("owners", ())),
            frozen=tuple(d.get("frozen", ())),
            lr_scale=tuple(tuple(x) for x in d.get("lr_scale", ())),
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything that changes during training, as arrays.

    Attributes:
      step: scalar int32 optimizer step.
      params: pure nested dict of ``nnx.Param`` values (float32 master copy).
      opt_state: ``{group: optax moments}`` over each group's ``{path: leaf}`` dict.
      ema: EMA of params, or ``None``.
      rest: pure dict of the model's non-param state (e.g. batch stats); may be empty.
      rng: PRNG key, split once per step.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    ema: PyTree | None
    rest: PyTree
    rng: jax.Array


@dataclasses.dataclass(frozen=True)
class StepFns:
    """The static half of training: how to rebuild the model and update the state."""

    graphdef: Any
    tx: optax.GradientTransformation
    config: TrainConfig
    grouping: Grouping = Grouping()


class NonFiniteError(FloatingPointError):
    """Raised when a step produced a non-finite loss or gradient."""


def split_model(model: nnx.Module) -> tuple[Any, PyTree, PyTree]:
    """Returns ``(graphdef, params, rest)`` with params and rest as pure dicts."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def merge_model(graphdef: Any, params: PyTree, rest: PyTree) -> nnx.Module:
    """Inverse of ``split_model``."""
    return nnx.merge(graphdef, nnx.State(params), nnx.State(rest))


def init_train_state(
    model: nnx.Module, config: TrainConfig, grouping: Grouping = Grouping()
) -> tuple[StepFns, TrainState]:
    """Splits ``model`` and builds the optimizer and initial state.

    Args:
      model: an initialized NNX model (its arrays may already be sharded).
      config: training config.
      grouping: the parameter groups (default: every parameter shared).

    Returns:
      ``(fns, state)``.
    """
    graphdef, params, rest = split_model(model)
    tx = moments(config.optimizer)
    ema = jax.tree.map(jnp.copy, params) if config.optimizer.ema_decay is not None else None
    groups = grouping.split(params)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state={g: tx.init(p) for g, p in groups.items()},
        ema=ema,
        rest=rest,
        rng=jax.random.key_data(jax.random.key(config.seed)),
    )
    return StepFns(graphdef, tx, config, grouping), state


def state_shardings(
    fns: StepFns, state: TrainState, model: nnx.Module, mesh: Mesh, rules: Any = None
) -> TrainState:
    """NamedShardings for every state leaf, from the params' logical axis names.

    Optimizer moments and the EMA follow their param; everything else is replicated.

    Args:
      fns: from ``init_train_state``.
      state: a concrete or abstract state (for structure only).
      model: the model the state came from (carries the logical annotations).
      mesh: device mesh.
      rules: logical-to-mesh axis rules; default the shared table
        :data:`tellus.kernels.partitioning.RULES`.

    Raises:
      ShardingError: a parameter uses a logical name the rules do not know.
    """
    specs = partitioning.param_specs(model, partitioning.RULES if rules is None else rules)
    param_sh = jax.tree.map(lambda p: NamedSharding(mesh, p), specs)
    replicated = NamedSharding(mesh, PartitionSpec())
    group_sh = fns.grouping.split(param_sh)
    opt_sh = {
        g: optax.tree_map_params(
            fns.tx,
            lambda _, s: s,
            state.opt_state[g],
            group_sh[g],
            transform_non_params=lambda _: replicated,
        )
        for g in state.opt_state
    }
    return TrainState(
        step=replicated,
        params=param_sh,
        opt_state=opt_sh,
        ema=None if state.ema is None else param_sh,
        rest=jax.tree.map(lambda _: replicated, state.rest),
        rng=replicated,
    )


def _cast_floats(tree: PyTree, dtype: Any) -> PyTree:
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def make_train_step(
    fns: StepFns, loss_fn: LossFn, active: Iterable[str] | None = None
) -> Callable[..., tuple[TrainState, dict]]:
    """Builds the pure ``train_step(state, batch, lr=None) -> (state, metrics)``.

    With ``lr=None`` the step evaluates the config's schedule at ``state.step``, so the
    schedule's constants (peak, warm-up, length) are compiled into the program. ``fit``
    passes the schedule's value from the host instead (:func:`host_learning_rate`): the
    program then does not depend on them, and a second phase with another schedule (a
    fine-tuning after pretraining) reuses the first phase's compiled step from the
    persistent compilation cache instead of compiling it again.

    Args:
      fns: from ``init_train_state``.
      active: the groups this step updates (a domain's step: ``("shared", domain)``);
        default every trainable group. The others, and ``frozen``, keep their values,
        moments and EMA exactly.
      loss_fn: ``loss_fn(model, batch) -> scalar`` (mean over the batch, so that
        gradient accumulation over equal micro-batches equals one big batch). A loss that
        takes an ``rng`` keyword (dropout, drop-path, noise) gets a fresh key every step
        and micro-batch, derived from ``state.rng``, so runs and resumes are reproducible.

    Returns:
      An un-jitted step function; see ``jit_train_step`` / ``compile_train_step``.
    """
    cfg = fns.config
    compute_dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else None
    schedule = learning_rate_schedule(cfg.optimizer)
    grouping = fns.grouping
    active = tuple(grouping.names() if active is None else active)
    unknown = sorted(set(active) - set(grouping.names()))
    if unknown:
        raise ValueError(f"active groups {unknown} are not groups of {grouping.names()}")

    takes_rng = "rng" in inspect.signature(loss_fn).parameters

    def loss_of_params(params, rest, batch, rng):
        if compute_dtype is not None:
            # Master params stay float32; the cast is differentiated, so grads are float32.
            params = _cast_floats(params, compute_dtype)
        model = merge_model(fns.graphdef, params, rest)
        loss = loss_fn(model, batch, rng=rng) if takes_rng else loss_fn(model, batch)
        return loss.astype(jnp.float32)

    if cfg.remat:
        loss_of_params = jax.checkpoint(loss_of_params)
    grad_fn = jax.value_and_grad(loss_of_params)

    def loss_and_grads(params, rest, batch, rng):
        n = cfg.grad_accum_steps
        if n == 1:
            return grad_fn(params, rest, batch, rng)
        micro = jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n, *x.shape[1:])), batch)

        def body(carry, xs):
            mb, i = xs
            loss_sum, grad_sum = carry
            loss, grads = grad_fn(params, rest, mb, jax.random.fold_in(rng, i))
            return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (loss_sum, grad_sum), _ = jax.lax.scan(
            body, (jnp.zeros((), jnp.float32), zeros), (micro, jnp.arange(n))
        )
        return loss_sum / n, jax.tree.map(lambda g: g / n, grad_sum)

    def train_step(state: TrainState, batch: PyTree, lr=None) -> tuple[TrainState, dict]:
        step_key, next_key = jax.random.split(jax.random.wrap_key_data(state.rng))
        loss, grads = loss_and_grads(state.params, state.rest, batch, step_key)
        g_groups = grouping.split(grads)
        p_groups = grouping.split(state.params)
        g_active = {g: g_groups[g] for g in active}
        leaf_finite = jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
        finite = jnp.isfinite(loss) & jnp.all(leaf_finite)
        grad_norm = optax.tree.norm(g_active)
        g_active = clip_by_global_norm(g_active, grad_norm, cfg.optimizer.clip_global_norm)
        lr = schedule(state.step) if lr is None else jnp.asarray(lr, jnp.float32)
        new_flat = flat_params(state.params)
        opt_state = dict(state.opt_state)
        for g in active:
            updates, opt_state[g] = fns.tx.update(g_active[g], state.opt_state[g], p_groups[g])
            step_lr = lr * grouping.scale(g)
            for path, u in updates.items():
                new_flat[path] = new_flat[path] - step_lr * u
        treedef = jax.tree.structure(state.params)
        params = jax.tree.unflatten(treedef, list(new_flat.values()))
        ema = state.ema
        if ema is not None:
            d = cfg.optimizer.ema_decay
            moved = {path for g in active for path in p_groups[g]}
            ema_flat = flat_params(ema)
            ema = jax.tree.unflatten(
                treedef,
                [
                    d * e + (1 - d) * new_flat[path] if path in moved else e
                    for path, e in ema_flat.items()
                ],
            )
        new = TrainState(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            ema=ema,
            rest=state.rest,
            rng=jax.random.key_data(next_key),
        )
        # A non-finite step never touches the state (whatever the policy): "skip" goes
        # on with the last good state, "raise" reports it on the host with that state.
        keep = lambda a, b: jnp.where(finite, a, b)  # noqa: E731
        new = dataclasses.replace(
            new,
            params=jax.tree.map(keep, new.params, state.params),
            opt_state=jax.tree.map(keep, new.opt_state, state.opt_state),
            ema=None if ema is None else jax.tree.map(keep, new.ema, state.ema),
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "learning_rate": lr,
            "finite": finite,
            "leaf_finite": leaf_finite,
        }
        return new, metrics

    return train_step


def check_finite(metrics: dict, step: int, params: PyTree, policy: str) -> bool:
    """Host-side non-finite handling after a step.

    Args:
      metrics: the step's metrics (fetched to host here).
      step: the step number that produced them.
      params: params pytree, for leaf path names.
      policy: ``"raise"`` or ``"skip"``.

    Returns:
      True if the step was finite.

    Raises:
      NonFiniteError: naming the step and the first non-finite gradient leaf path.
    """
    if bool(metrics["finite"]):
        return True
    if policy == "skip":
        return False
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    bad = np.flatnonzero(~np.asarray(metrics["leaf_finite"]))
    where = f"first non-finite gradient leaf {paths[bad[0]]}" if bad.size else "loss only"
    raise NonFiniteError(
        f"non-finite loss/gradient at step {step} (loss={float(metrics['loss'])}); {where}"
    )


def host_learning_rate(cfg: TrainConfig, step: int) -> np.ndarray:
    """The schedule's learning rate at ``step``, as the float32 scalar a step taking
    ``lr`` from the host expects (the value the in-program schedule would compute).

    Read from a table of every step's rate, computed once per schedule and run length
    (:func:`learning_rate_table`): evaluating the schedule each step would put a few small
    device computations behind the step in flight, and the host would wait for that step
    to finish before it could queue the next one."""
    return np.asarray(learning_rate_table(cfg.optimizer, max(cfg.num_steps, step + 1))[step])


@functools.lru_cache(maxsize=8)
def learning_rate_table(optimizer: OptimizerConfig, steps: int) -> np.ndarray:
    """``[steps]`` float32: the schedule's learning rate at steps ``0 .. steps - 1``, in one
    compiled call (cached: a run's loop reads it at every step)."""
    schedule = jax.jit(jax.vmap(learning_rate_schedule(optimizer)))
    table = np.asarray(schedule(jnp.arange(steps, dtype=jnp.int32)), np.float32)
    table.setflags(write=False)
    return table


def jit_train_step(
    step_fn: Callable,
    state_sharding: TrainState | None = None,
    batch_sharding: Any = None,
    mesh: Mesh | None = None,
    host_lr: bool = False,
) -> Callable:
    """``jax.jit`` with in/out shardings and the state donated (argument 0).

    ``host_lr``: the compiled step takes the learning rate as a third, replicated argument
    (see :func:`make_train_step`).
    """
    if state_sharding is None:
        return jax.jit(step_fn, donate_argnums=0)
    replicated = NamedSharding(mesh, PartitionSpec())
    extra = (replicated,) if host_lr else ()
    return jax.jit(
        step_fn,
        in_shardings=(state_sharding, batch_sharding, *extra),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )


@dataclasses.dataclass(frozen=True)
class CompiledStep:
    """An AOT-compiled step with its compiled memory and flop estimates."""

    compiled: Any
    memory: dict[str, int]
    flops: float | None

    def __call__(self, state: TrainState, batch: PyTree, *lr) -> tuple[TrainState, dict]:
        return self.compiled(state, batch, *lr)


_PROGRAMS: collections.OrderedDict[str, Any] = collections.OrderedDict()
_KEEP_PROGRAMS = 8


def compile_train_step(
    jitted: Callable, state: TrainState, batch: PyTree, *lr: Any
) -> CompiledStep:
    """Lowers and compiles ahead of time; returns memory_analysis and cost_analysis flops.

    A program this process compiled before (the same text: a second phase of a training,
    a resumed ``fit``) is reused, not compiled again: on a CPU, JAX's persistent cache
    saves only about a third of a large step's compile time (the ocean's CPU step: 340 s
    to compile, 245 s to load), this saves all of it. The last eight programs are kept.

    Args:
      jitted: from ``jit_train_step``.
      state, batch: concrete or ``jax.ShapeDtypeStruct`` examples.
      lr: the learning rate's example, for a step that takes it from the host.
    """
    lowered = jitted.lower(state, batch, *lr)
    key = hashlib.sha256(lowered.as_text().encode()).hexdigest()
    compiled = _PROGRAMS.pop(key, None)
    if compiled is None:
        compiled = lowered.compile()
    _PROGRAMS[key] = compiled
    while len(_PROGRAMS) > _KEEP_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    mem = compiled.memory_analysis()
    memory = {}
    if mem is not None:
        for name in (
            "argument_size_in_bytes",
            "output_size_in_bytes",
            "temp_size_in_bytes",
            "alias_size_in_bytes",
            "generated_code_size_in_bytes",
        ):
            memory[name] = int(getattr(mem, name, 0))
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = float(cost["flops"]) if cost and "flops" in cost else None
    return CompiledStep(compiled, memory, flops)
