"""Measuring a model's steps against the machine's own limits, for the ``bench`` modules.

Every figure a benchmark prints should hold on a noisy shared machine, so the helpers here
return rates measured in the same process and the same minute as the model's steps, to be
reported as ratios:

* :func:`matmul_rate`: the FLOP/s of a jitted square matmul of the benchmark's dtype (the
  dense peak a model's step is compared with), best of a few repeats;
* :func:`time_calls`: the median and best wall time of a compiled call, its first call
  (the compile, and the first execution's allocations) excluded, each call blocked until
  its outputs exist;
* :func:`train_step_figures`: a model's AOT-compiled training step on one batch (the
  :mod:`tellus.training.step` program ``fit`` runs), with XLA's FLOP count and compiled
  memory, timed; steps/s, samples/s and the achieved fraction of :func:`matmul_rate`.

XLA's cost analysis counts a matmul of ``[m, k] x [k, n]`` as ``2 m k n`` FLOPs, as
:func:`matmul_rate` does, so the fraction compares like with like.
"""

from __future__ import annotations

import collections
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from tellus.training import config as config_lib
from tellus.training import step as step_lib


def time_calls(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """``{"median_s", "best_s"}`` of ``repeats`` calls of ``fn`` after ``warmup`` calls,
    each blocked until its outputs are ready."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "best_s": min(times)}


def matmul_rate(n: int = 2048, dtype: Any = jnp.float32, repeats: int = 5) -> float:
    """FLOP/s of a jitted ``n x n`` matmul in ``dtype`` (``2 n^3`` FLOPs, the best of
    ``repeats``)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(jnp.matmul)
    t = time_calls(lambda: f(a, b), repeats=repeats)["best_s"]
    return 2.0 * n**3 / t


def train_step_figures(
    model: Any,
    loss_fn: step_lib.LossFn,
    batch: dict[str, Any],
    batch_size: int,
    *,
    peak: float | None = None,
    repeats: int = 3,
    compute_dtype: str = "float32",
) -> dict[str, Any]:
    """The figures of one AdamW training step of ``model`` on ``batch``.

    Args:
      model: an NNX model (its parameters are the step's).
      loss_fn: ``loss_fn(model, batch, rng) -> loss``.
      batch: one batch (host arrays).
      batch_size: its samples, for samples/s.
      peak: FLOP/s to compare with (:func:`matmul_rate`); None leaves the fraction out.
      repeats: timed steps after the first.
      compute_dtype: the step's compute dtype.

    Returns:
      ``{"compile_s", "step_s", "best_step_s", "steps_per_s", "samples_per_s",
      "flops_per_step", "achieved_flops_per_s", "fraction_of_peak", "memory"}``.
    """
    cfg = config_lib.warmup_cosine(10, batch_size, 1e-4, compute_dtype=compute_dtype)
    fns, state = step_lib.init_train_state(model, cfg)
    jitted = step_lib.jit_train_step(step_lib.make_train_step(fns, loss_fn), None, None, None)
    t0 = time.perf_counter()
    compiled = step_lib.compile_train_step(jitted, state, batch)
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def one():
        holder["state"], metrics = compiled(holder["state"], batch)
        return metrics["loss"]

    timing = time_calls(one, repeats=repeats)
    out: dict[str, Any] = {
        "compile_s": compile_s,
        "step_s": timing["median_s"],
        "best_step_s": timing["best_s"],
        "steps_per_s": 1.0 / timing["median_s"],
        "samples_per_s": batch_size / timing["median_s"],
        "flops_per_step": compiled.flops,
        "memory": compiled.memory,
    }
    if compiled.flops:
        out["achieved_flops_per_s"] = compiled.flops / timing["best_s"]
        if peak:
            out["fraction_of_peak"] = out["achieved_flops_per_s"] / peak
    return out


def compare_train_steps(
    cases: dict[str, tuple[Any, step_lib.LossFn, dict[str, Any], int]],
    *,
    rounds: int = 7,
    steps: int = 3,
) -> dict[str, dict[str, Any]]:
    """Training throughput of several models timed against each other: every step is
    compiled first, then each round times ``steps`` steps of every model, in an order that
    rotates from round to round, so that a slow spell of a shared machine falls on all of
    them; the figures are the median and the best (shortest) of the rounds (on a shared
    machine noise only adds time, so the best is the steadier of the two).

    Args:
      cases: ``{name: (model, loss_fn, batch, batch_size)}``.
      rounds, steps: timed rounds, and steps per model per round.

    Returns:
      ``{name: {"step_s", "best_step_s", "samples_per_s", "best_samples_per_s",
      "flops_per_step", "memory"}}``.
    """
    prepared: dict[str, list[Any]] = {}
    for name, (model, loss_fn, batch, batch_size) in cases.items():
        cfg = config_lib.warmup_cosine(10, batch_size, 1e-4)
        fns, state = step_lib.init_train_state(model, cfg)
        jitted = step_lib.jit_train_step(step_lib.make_train_step(fns, loss_fn), None, None, None)
        compiled = step_lib.compile_train_step(jitted, state, batch)
        state, metrics = compiled(state, batch)  # the first call's allocations
        jax.block_until_ready(metrics["loss"])
        prepared[name] = [compiled, state, batch, batch_size]
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(max(rounds, 1)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            compiled, state, batch, _ = prepared[name]
            t0 = time.perf_counter()
            for _ in range(max(steps, 1)):
                state, metrics = compiled(state, batch)
            jax.block_until_ready(metrics["loss"])
            times[name].append((time.perf_counter() - t0) / max(steps, 1))
            prepared[name][1] = state
    out = {}
    for name, (compiled, _, _, batch_size) in prepared.items():
        step_s = statistics.median(times[name])
        out[name] = {
            "step_s": step_s,
            "best_step_s": min(times[name]),
            "samples_per_s": batch_size / step_s,
            "best_samples_per_s": batch_size / min(times[name]),
            "flops_per_step": compiled.flops,
            "memory": compiled.memory,
        }
    return out


def compare_calls(
    cases: dict[str, Callable[[], Any]], *, rounds: int = 7, best: bool = False
) -> dict[str, float]:
    """The median (``best``: the shortest) seconds of each call of ``cases`` (already
    compiled), timed round by round in a rotating order as :func:`compare_train_steps`
    does."""
    for fn in cases.values():
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(max(rounds, 1)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            jax.block_until_ready(cases[name]())
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) if best else statistics.median(t) for name, t in times.items()}


_CONTRACTION = re.compile(
    r"stablehlo\.(?:dot_general|convolution)\b[^\n]*?: \(tensor<([^>]*)>, tensor<([^>]*)>\)"
)


def matmul_dtypes(fn: Callable, *args: Any) -> collections.Counter:
    """How many matmuls and convolutions of ``jax.jit(fn)`` on ``args`` take each pair of
    operand element types, ``{("bf16", "bf16"): n, ("f32", "f32"): m, ...}``, read from the
    lowered program (before XLA's own rewrites): whether a mixed-precision step really
    multiplies in bfloat16 or promotes its operands back to float32."""
    text = jax.jit(fn).lower(*args).as_text()
    return collections.Counter(
        (a.rsplit("x", 1)[-1], b.rsplit("x", 1)[-1]) for a, b in _CONTRACTION.findall(text)
    )


def step_matmul_dtypes(
    model: Any, loss_fn: step_lib.LossFn, batch: dict[str, Any], compute_dtype: str
) -> collections.Counter:
    """:func:`matmul_dtypes` of ``model``'s training step (``fit``'s program) with
    ``compute_dtype``: under ``"bfloat16"`` a model that honours mixed precision multiplies
    bfloat16 operands; float32 ones are work the cast did not reach."""
    cfg = config_lib.warmup_cosine(10, 1, 1e-4, compute_dtype=compute_dtype)
    fns, state = step_lib.init_train_state(model, cfg)
    return matmul_dtypes(step_lib.make_train_step(fns, loss_fn), state, batch)


def compiled_figures(fn: Callable, *args: Any) -> dict[str, Any]:
    """XLA's FLOPs and memory of ``jax.jit(fn)`` on ``args``, and the compiled call."""
    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    mem = compiled.memory_analysis()
    return {
        "compiled": compiled,
        "flops": float(cost["flops"]) if cost and "flops" in cost else None,
        "temp_bytes": int(getattr(mem, "temp_size_in_bytes", 0)) if mem is not None else None,
    }


__all__ = [
    "compare_calls",
    "compare_train_steps",
    "compiled_figures",
    "matmul_dtypes",
    "matmul_rate",
    "step_matmul_dtypes",
    "time_calls",
    "train_step_figures",
]
