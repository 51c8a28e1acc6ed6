"""Fine-tuning a pretrained Earth model on a task it never saw, and its adapters.

:func:`finetune` starts from a :func:`tellus.training.pretraining.pretrain` workdir. The model
is the pretrained config with what the task adds: an embedding and a decoder head for each
new variable, a domain embedding, an index head for an index task, and, in ``lora`` mode,
low-rank adapters on every trunk block's attention and MLP weights (``flax.nnx.LoRA`` and
``nnx.LoRALinear``, :attr:`tellus.kernels.earth_trunk.TrunkConfig.lora_rank`). Every
parameter the checkpoint has (same path and shape) is restored; the others start fresh and
are listed in ``workdir/restored.json``. What trains:

* ``full``: everything;
* ``heads``: the task's heads (its variables' decoder heads, or its index head) and the new
  parameters; the rest frozen bitwise;
* ``lora``: as ``heads`` plus the low-rank adapters (the trunk's own weights frozen).

The new parameters train at ``new_lr_scale`` times the learning rate (Aurora: 1e-3 for new
patch embeddings against 3e-4 for the rest).

A fine-tune that froze the base (``heads``, ``lora``) keeps only what it trained: when it
finishes, ``workdir/adapters.npz`` holds the trained arrays and ``workdir/adapter.json`` the
base checkpoint (folder and step), a fingerprint of the frozen weights, the model and the
task; its full training checkpoints (kept while it runs, so that a kill resumes) are then
removed unless ``keep_checkpoints``. :func:`load` rebuilds the model from the base
checkpoint and the adapters, and refuses a base whose frozen weights are not the ones the
adapters were trained on.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.kernels import earth_model as em
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as train_config
from tellus.training import pretraining as pt
from tellus.training import step as step_lib
from tellus.training import trainer, transfer

log = logging.getLogger(__name__)

MODES = ("heads", "lora", "full")
RESTORE_REPORT = "restored.json"
ADAPTERS = "adapters.npz"
ADAPTER_CONFIG = "adapter.json"
DEFAULT_LORA_RANK = 8


def _param_shapes(cfg: em.EarthModelConfig) -> dict[str, tuple[int, ...]]:
    abstract = em.abstract_model(cfg)
    flat = step_lib.flat_params(nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))
    return {p: tuple(x.shape) for p, x in flat.items()}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a fine-tune builds and trains.

    Attributes:
      model: the fine-tuned model's config.
      new: parameter paths the pretrained model lacks (or has in another shape): fresh.
      trainable: the paths that train (every path in ``full`` mode).
      frozen: the paths that do not.
    """

    model: em.EarthModelConfig
    new: tuple[str, ...]
    trainable: tuple[str, ...]
    frozen: tuple[str, ...]


def plan(
    base: em.EarthModelConfig, task: pt.EarthTask, mode: str, lora_rank: int = DEFAULT_LORA_RANK
) -> Plan:
    """The fine-tuned model of ``base`` for ``task`` in ``mode`` and its parameter split.

    Raises:
      ValueError: an unknown mode or a rank < 1 in ``lora`` mode.
    """
    if mode not in MODES:
        raise ValueError(f"fine-tuning mode must be one of {MODES}, got {mode!r}")
    cfg = task.model_config(base)
    if mode == "lora":
        if lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1 in lora mode, got {lora_rank}")
        cfg = cfg.with_lora(lora_rank)
    old, shapes = _param_shapes(base), _param_shapes(cfg)
    new = tuple(p for p, s in shapes.items() if old.get(p) != s)
    if mode == "full":
        return Plan(cfg, new, tuple(shapes), ())
    heads = (
        (f"indices/{task.data.name}/",)
        if task.is_index
        else tuple(f"decoder/heads/{v}/" for v in task.data.variables)
    )
    trainable = tuple(p for p in shapes if p in new or p.startswith(heads))
    frozen = tuple(p for p in shapes if p not in trainable)
    return Plan(cfg, new, trainable, frozen)


def finetune(
    pretrained: str | Path,
    data: pt.StoreData,
    workdir: str | Path,
    train: train_config.TrainConfig,
    *,
    mode: str = "full",
    new_lr_scale: float = 1e-3 / 3e-4,
    lora_rank: int = DEFAULT_LORA_RANK,
    keep_checkpoints: bool = False,
    mesh=None,
    rules=None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Fine-tunes a pretrained Earth model (``pretrained``: a pretraining workdir) on one
    task, which may bring variables, a domain or an index the pretraining never saw
    (resumes after a kill; see the module docstring for the modes and the adapters).

    Returns:
      ``{"history", "new", "trainable", "frozen", "model", "adapters"}`` (``adapters``: the
      adapter file, None in ``full`` mode; ``history`` empty when the fine-tune was done).

    Raises:
      ValueError: an unknown ``mode``; a finished fine-tune asked for more steps.
      FileNotFoundError: ``pretrained`` has no complete checkpoint.
    """
    if mode not in MODES:
        raise ValueError(f"fine-tuning mode must be one of {MODES}, got {mode!r}")
    pretrained, workdir = Path(pretrained), Path(workdir)
    done = _finished(workdir, train.num_steps)
    if done is not None:
        return done
    base = pt.saved_config(pretrained)
    if base is None:
        raise FileNotFoundError(f"no complete checkpoint in {pretrained}/checkpoints to start from")
    saved = pt.saved_config(workdir)
    (task,) = pt.open_tasks([data], saved["norms"] if saved else None)
    split = plan(em.EarthModelConfig.from_dict(base["model"]), task, mode, lora_rank)
    run_cfg = pt.PretrainConfig(
        split.model.to_dict(), (dataclasses.asdict(data),), {data.name: task.norm}
    )
    factory = transfer.warm_start(
        pretrained,
        pt.model_factory,
        source_kind=pt.KIND,
        partial=True,
        report=workdir / RESTORE_REPORT,
    )
    history = trainer.fit(
        factory,
        run_cfg,
        train,
        trainer.TrainDomain(
            data.name,
            task.loss,
            task.batches(train.batch_size, train.seed),
            owns=split.new,
        ),
        workdir,
        envelope=trainer.Envelope(kind=pt.KIND.name, version=pt.KIND.version),
        mesh=mesh,
        rules=rules,
        freeze=[glob.escape(p) for p in split.frozen],
        lr_scale={data.name: new_lr_scale},
        show_progress=show_progress,
        on_step=lambda step, info: pt.record_loss(workdir, step, info),
    )
    out = {
        "history": history,
        "new": list(split.new),
        "trainable": list(split.trainable),
        "frozen": list(split.frozen),
        "model": split.model.to_dict(),
        "adapters": None,
    }
    if split.frozen:
        out["adapters"] = str(_export(pretrained, workdir, mode, out))
        _barrier("tellus-finetune-export")  # every process has read the checkpoint
        if not keep_checkpoints and jax.process_index() == 0:
            # Renamed first: a kill while deleting leaves no partial checkpoints/ behind.
            gone = workdir / "checkpoints.removing"
            (workdir / "checkpoints").rename(gone)
            shutil.rmtree(gone)
        _barrier("tellus-finetune-removed")
    return out


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


class FinishedError(ValueError):
    """A fine-tune that kept only its adapters was asked for more steps."""


def _finished(workdir: Path, steps: int) -> dict[str, Any] | None:
    meta_path = workdir / ADAPTER_CONFIG
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if meta["step"] < steps and not (workdir / "checkpoints").is_dir():
        raise FinishedError(
            f"the fine-tune in {workdir} finished at step {meta['step']} and kept only its "
            f"adapters; train {steps} steps in a new workdir"
        )
    if meta["step"] < steps:
        return None
    return {
        "history": [],
        **{k: meta[k] for k in ("new", "trainable", "frozen")},
        "model": meta["config"]["model"],
        "adapters": str(workdir / ADAPTERS),
    }


def fingerprint(params: dict[str, Any], paths: list[str] | tuple[str, ...]) -> str:
    """A digest of the arrays at ``paths`` (path, shape, dtype and bytes): equal only for
    bitwise-equal weights, whatever device computed them."""
    h = hashlib.sha256()
    for p in sorted(paths):
        x = np.asarray(jax.device_get(params[p]))
        h.update(f"{p}|{x.shape}|{x.dtype}|".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _export(pretrained: Path, workdir: Path, mode: str, out: dict[str, Any]) -> Path:
    ck = ckpt_lib.Checkpointer(workdir / "checkpoints", async_save=False)
    try:
        step = ck.latest_step()
        cfg = ck.read_json(step)[0]["model"]
        model = ckpt_lib.rebuild(ck, step, pt.KIND)[0]
    finally:
        ck.close()
    base_step = json.loads((workdir / RESTORE_REPORT).read_text())["step"]  # warm start's
    params = step_lib.flat_params(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    meta = {
        "base": str(pretrained.resolve()),
        "base_step": base_step,
        "base_fingerprint": fingerprint(params, out["frozen"]),
        "mode": mode,
        "step": step,
        "config": cfg,
        **{k: out[k] for k in ("new", "trainable", "frozen")},
    }
    path = workdir / ADAPTERS
    if jax.process_index() == 0:
        arrays = {p: np.asarray(jax.device_get(params[p])) for p in out["trainable"]}
        tmp = workdir / (ADAPTERS + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)  # the file is whole or absent
        meta_tmp = workdir / (ADAPTER_CONFIG + ".tmp")
        meta_tmp.write_text(json.dumps(meta, indent=1))
        meta_tmp.replace(workdir / ADAPTER_CONFIG)
    n = sum(int(np.prod(params[p].shape)) for p in out["trainable"])
    log.info("saved %d trained arrays (%d values) to %s", len(out["trainable"]), n, path)
    return path


def load(workdir: str | Path) -> tuple[em.EarthModel, dict[str, Any]]:
    """The model of a fine-tune (or of a pretraining) and its config dict.

    A fine-tune that saved its adapters is rebuilt from its base checkpoint (the step it was
    trained on) and ``adapters.npz``; others load from their own latest checkpoint.

    Raises:
      FileNotFoundError: no checkpoint, or the base checkpoint's step is gone.
      ValueError: the base's frozen weights are not the ones the adapters were trained on.
    """
    workdir = Path(workdir)
    meta_path = workdir / ADAPTER_CONFIG
    if not meta_path.exists():
        return pt.load(workdir)
    meta = json.loads(meta_path.read_text())
    base = Path(meta["base"])
    ck = ckpt_lib.Checkpointer(base / "checkpoints", async_save=False)
    try:
        if meta["base_step"] not in ck.all_steps():
            raise FileNotFoundError(
                f"the adapters in {workdir} need step {meta['base_step']} of {base}/checkpoints, "
                f"which has {ck.all_steps()}"
            )
        base_model = ckpt_lib.rebuild(ck, meta["base_step"], pt.KIND)[0]
    finally:
        ck.close()
    base_params = step_lib.flat_params(nnx.to_pure_dict(nnx.state(base_model, nnx.Param)))
    model = pt.model_factory(meta["config"])
    with np.load(workdir / ADAPTERS) as f:
        adapters = {p: f[p] for p in f.files}

    def pick(path, x):
        p = step_lib.param_path(path)
        value = adapters[p] if p in adapters else base_params.get(p)
        if value is None or tuple(value.shape) != tuple(x.shape):
            raise ValueError(f"{workdir}: parameter {p} is neither in the adapters nor the base")
        return jnp.asarray(value, x.dtype)

    params = jax.tree_util.tree_map_with_path(pick, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    nnx.update(model, nnx.State(params))
    flat = step_lib.flat_params(params)
    if fingerprint(flat, meta["frozen"]) != meta["base_fingerprint"]:
        raise ValueError(
            f"{base} step {meta['base_step']} is not the base the adapters in {workdir} were "
            "trained on (its frozen weights differ)"
        )
    return model, meta["config"]


__all__ = [
    "ADAPTERS",
    "ADAPTER_CONFIG",
    "MODES",
    "RESTORE_REPORT",
    "FinishedError",
    "Plan",
    "finetune",
    "fingerprint",
    "load",
    "plan",
]
