"""A few training steps traced with the JAX profiler, from inside the training loop.

``TrainConfig.profile_steps = (first, stop)`` makes :func:`tellus.training.trainer.fit`
trace steps ``first .. stop - 1`` into ``workdir/profile``: the device's operations (XLA
fusions, matmuls, copies, collectives) and the host's (the loop, the batch reads, the
dispatch), as TensorBoard's profile plugin and XProf read them
(``plugins/profile/<run>/<host>.xplane.pb``: ``xprof --logdir workdir/profile`` or
``tensorboard --logdir workdir/profile``) and as a Perfetto trace
(``<host>.trace.json.gz``, for https://ui.perfetto.dev). Every step of a run is marked with
a ``StepTraceAnnotation`` (``train``, ``step_num``), which those tools use to split the
trace into steps; outside a trace it costs nothing.

The trace starts before step ``first`` is dispatched and stops once step ``stop - 1`` has
finished on the device (the loop otherwise leaves a step in flight). Start after the first
step of a run: it compiles, and a trace of the compile says little about the step. A run
resumed past ``first`` traces nothing; one resumed inside the range traces what is left.
Only process 0 traces (one trace per job). Where a trace is already running (one
process traces once at a time), the run goes on untraced with a warning.

The host side alone is py-spy's (``py-spy record -o host.svg -- tellus train ...``):
``docs/performance.md`` shows both on a training run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax

log = logging.getLogger(__name__)

PROFILE_DIR = "profile"
"""The trace's folder under the run's workdir."""


class StepProfiler:
    """Starts and stops one trace around the steps ``[first, stop)`` of a loop.

    Call :meth:`step` around each step's dispatch (it marks the step and starts the trace
    at ``first``) and :meth:`dispatched` after it with the step's outputs (it stops the
    trace after ``stop - 1``, once they are ready); :meth:`close` stops a trace a loop left
    open (an error, or fewer steps than ``stop``).
    """

    def __init__(self, workdir: str | Path, steps: tuple[int, int] | None):
        self.dir = Path(workdir) / PROFILE_DIR
        self.steps = steps if jax.process_index() == 0 else None
        self.active = False
        self.traced: list[int] = []

    @contextlib.contextmanager
    def step(self, step: int) -> Iterator[None]:
        """Marks ``step`` (and starts the trace before the first traced one)."""
        if self.steps is not None and not self.active and self.steps[0] <= step < self.steps[1]:
            self.dir.mkdir(parents=True, exist_ok=True)
            try:
                jax.profiler.start_trace(str(self.dir), create_perfetto_trace=True)
            except RuntimeError as e:  # a trace already running: train on, untraced
                log.warning("not profiling steps %s: %s", self.steps, e)
                self.steps = None
            else:
                self.active = True
                log.info("profiling steps %d..%d into %s", step, self.steps[1] - 1, self.dir)
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
            yield
        if self.active:
            self.traced.append(step)

    def dispatched(self, step: int, outputs: Any) -> None:
        """After ``step`` was dispatched: the trace ends with the last traced step's
        ``outputs`` computed."""
        if self.active and self.steps is not None and step >= self.steps[1] - 1:
            jax.block_until_ready(outputs)
            self.close()

    def close(self) -> None:
        """Stops the trace if one is running."""
        if not self.active:
            return
        self.active = False
        jax.profiler.stop_trace()
        log.info(
            "profiled steps %s in %s: xprof --logdir %s (or tensorboard with its profile "
            "plugin), or the .trace.json.gz in https://ui.perfetto.dev",
            f"{self.traced[0]}..{self.traced[-1]}" if self.traced else "none",
            self.dir,
            self.dir,
        )


__all__ = ["PROFILE_DIR", "StepProfiler"]
