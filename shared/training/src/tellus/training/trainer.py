"""The fit loop: resume from the latest complete checkpoint with the same data order.

Data comes from a deterministic, index-addressed stream; its state (the next batch
index) is saved with every checkpoint so that a resumed run sees exactly the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from tellus.training import checkpoint as ckpt_lib
from tellus.training import step as step_lib
from tellus.training.config import TrainConfig

log = logging.getLogger(__name__)

# Batches run over both mesh axes: FSDP shards params and splits the batch too.
BATCH_SPEC = PartitionSpec(("data", "fsdp"))


class IndexedStream:
    """Batches ``batch_fn(index)`` for index 0, 1, 2, ...; its state is ``next_index``."""

    def __init__(self, batch_fn: Callable[[int], Any]):
        self.batch_fn = batch_fn
        self.next_index = 0

    def __next__(self) -> Any:
        batch = self.batch_fn(self.next_index)
        self.next_index += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"next_index": self.next_index}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.next_index = int(d["next_index"])


def fit(
    model_factory: Callable[[dict[str, Any]], nnx.Module],
    model_config: Any,
    config: TrainConfig,
    loss_fn: step_lib.LossFn,
    data: IndexedStream,
    workdir: str | Path,
    mesh: Mesh | None = None,
    rules: Any = None,
    batch_spec: PartitionSpec = BATCH_SPEC,
    show_progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[tuple[int, float]]:
    """Trains to ``config.num_steps``, resuming from ``workdir`` if it has checkpoints.

    Args:
      model_factory: builds the model from ``model_config.to_dict()`` (also on resume).
      model_config: model config with ``to_dict()``.
      config: training config.
      loss_fn: ``loss_fn(model, batch) -> scalar``.
      data: the batch stream; its state is checkpointed.
      workdir: checkpoints go to ``workdir/checkpoints``, TensorBoard events to
        ``workdir/tensorboard``.
      mesh, rules: optional mesh and logical axis rules for sharded training.
      batch_spec: how batches are partitioned over ``mesh``.
      show_progress: draw a rich progress bar.
      on_step: called after every step with ``(step, metrics)`` (host floats).

    Returns:
      ``[(step, loss), ...]`` for the steps run in this call.
    """
    from tensorboardX import SummaryWriter  # imported late: it is slow to import

    workdir = Path(workdir)
    cfg_json = ckpt_lib.config_dict(model_config, config)
    model = model_factory(cfg_json["model"])
    fns, state = step_lib.init_train_state(model, config)
    shardings = batch_sh = None
    if mesh is not None:
        shardings = step_lib.state_shardings(fns, state, model, mesh, rules)
        state = jax.device_put(state, shardings)
        batch_sh = NamedSharding(mesh, batch_spec)

    ck = ckpt_lib.Checkpointer(
        workdir / "checkpoints", keep=config.keep_checkpoints, best_metric=config.best_metric
    )
    latest = ck.latest_step()
    if latest is not None:
        state = ck.restore(latest, state, shardings)
        _, data_state = ck.read_json(latest)
        data.load_state_dict(data_state)
        log.info("resumed from step %d", latest)

    jitted = step_lib.jit_train_step(
        step_lib.make_train_step(fns, loss_fn), shardings, batch_sh, mesh
    )

    def place(b):
        return jax.tree.map(
            lambda x: jax.device_put(x, batch_sh) if batch_sh is not None else jax.device_put(x),
            b,
        )

    start = int(state.step)
    history: list[tuple[int, float]] = []
    writer = SummaryWriter(str(workdir / "tensorboard"))
    progress = Progress(
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"),
        TextColumn("{task.fields[rate]:.1f} samples/s"),
        TimeRemainingColumn(),
        disable=not show_progress,
    )
    try:
        with progress:
            task = progress.add_task(
                "train", total=config.num_steps, completed=start, loss=float("nan"), rate=0.0
            )
            compiled = None
            for step in range(start, config.num_steps):
                t0 = time.perf_counter()
                batch = place(next(data))
                if compiled is None:
                    compiled = step_lib.compile_train_step(jitted, state, batch)
                    log.info("compiled step: memory %s, flops %s", compiled.memory, compiled.flops)
                state, metrics = compiled(state, batch)
                step_lib.check_finite(metrics, step, state.params, config.nonfinite)
                loss = float(metrics["loss"])
                rate = config.batch_size / max(time.perf_counter() - t0, 1e-9)
                history.append((step, loss))
                writer.add_scalar("train/loss", loss, step)
                writer.add_scalar("train/grad_norm", float(metrics["grad_norm"]), step)
                writer.add_scalar("train/learning_rate", float(metrics["learning_rate"]), step)
                progress.update(task, completed=step + 1, loss=loss, rate=rate)
                if on_step is not None:
                    on_step(step, {"loss": loss})
                done = step + 1
                if done % config.checkpoint_every == 0 or done == config.num_steps:
                    ck.save(done, state, cfg_json, data.state_dict(), metrics={"loss": loss})
        ck.wait()
    finally:
        writer.close()
        ck.close()
    return history


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Appends one JSON line and flushes it to disk (survives a SIGKILL right after)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
