"""Frozen, typed training configuration with named presets.

The training config is kept apart from the model and task configs, so that one model can
be trained by several recipes and one recipe reused across models, and it is
JSON-serializable so that it travels inside every checkpoint and a run can be rebuilt from
its checkpoint alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

NonfinitePolicy = Literal["raise", "skip"]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with linear warm-up then cosine decay, global-norm clipping.

    Attributes:
      peak_learning_rate: learning rate reached at the end of warm-up.
      end_learning_rate: learning rate at ``decay_steps``.
      warmup_steps: linear warm-up length from 0 to the peak.
      decay_steps: total schedule length (warm-up included).
      b1, b2, eps: Adam moments.
      weight_decay: decoupled AdamW weight decay.
      clip_global_norm: gradient global-norm bound; ``None`` disables clipping.
      ema_decay: decay of an exponential moving average of params; ``None`` disables it.
    """

    peak_learning_rate: float = 1e-3
    end_learning_rate: float = 1e-5
    warmup_steps: int = 100
    decay_steps: int = 10_000
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip_global_norm: float | None = 1.0
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        if self.warmup_steps < 0 or self.decay_steps <= self.warmup_steps:
            raise ValueError(
                f"need 0 <= warmup_steps < decay_steps, got {self.warmup_steps}, {self.decay_steps}"
            )
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything the training loop needs besides the model and the data.

    Attributes:
      optimizer: optimizer and schedule.
      num_steps: optimizer steps to run.
      batch_size: global batch (samples per optimizer step).
      grad_accum_steps: micro-batches per optimizer step (must divide ``batch_size``).
      compute_dtype: ``"bfloat16"`` casts the params for the forward pass (master params
        and optimizer state stay float32); the models cast their normalized inputs to their
        weights' dtype, so the network computes in bfloat16 (the attention's softmax in
        float32) and returns float32, and the loss is float32.
      remat: rematerialize the forward pass (``jax.checkpoint``) to save memory.
      nonfinite: ``"raise"`` stops with the step and first bad gradient leaf;
        ``"skip"`` leaves the state untouched for that step.
      checkpoint_every: save every N steps.
      keep_checkpoints: keep the last N checkpoints (plus the best one).
      best_metric: metric used to keep the best checkpoint (lower is better).
      seed: model init and step rng seed.
      log_every: progress lines every N steps (when not on a terminal).
      validate_every: validation loss of every domain with a validation stream every N
        steps (and at the last one); None for none.
      profile_steps: ``(first, stop)``: steps ``first .. stop - 1`` traced with the JAX
        profiler into ``workdir/profile`` (TensorBoard's profile plugin / XProf, and a
        Perfetto trace); None for none. Start after the first step, which compiles.
    """

    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    num_steps: int = 1000
    batch_size: int = 8
    grad_accum_steps: int = 1
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    remat: bool = False
    nonfinite: NonfinitePolicy = "raise"
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    best_metric: str | None = "loss"
    seed: int = 0
    log_every: int = 10
    validate_every: int | None = None
    profile_steps: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.grad_accum_steps < 1 or self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"grad_accum_steps={self.grad_accum_steps} must divide batch_size={self.batch_size}"
            )
        if self.nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip', got {self.nonfinite!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"unknown compute_dtype {self.compute_dtype!r}")
        if self.validate_every is not None and self.validate_every < 1:
            raise ValueError(f"validate_every must be >= 1 or None, got {self.validate_every}")
        if self.profile_steps is not None:
            steps = tuple(int(v) for v in self.profile_steps)  # a JSON list comes back too
            if len(steps) != 2 or not 0 <= steps[0] < steps[1]:
                raise ValueError(
                    f"profile_steps must be (first, stop) with 0 <= first < stop, "
                    f"got {self.profile_steps}"
                )
            object.__setattr__(self, "profile_steps", steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nested optimizer config included)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``."""
        d = dict(d)
        d["optimizer"] = OptimizerConfig(**d.get("optimizer", {}))
        return cls(**d)


def warmup_cosine(
    steps: int,
    batch_size: int,
    peak_learning_rate: float,
    *,
    decay: float = 100.0,
    max_warmup: int = 50,
    weight_decay: float = 0.05,
    checkpoints: int = 4,
    keep_checkpoints: int = 2,
    seed: int = 0,
    **overrides: Any,
) -> TrainConfig:
    """The training config of a run of ``steps``: AdamW, a linear warm-up over a tenth of the
    steps (at most ``max_warmup``), cosine decay to ``peak / decay`` at the last step, and
    ``checkpoints`` evenly spaced checkpoints of which the last ``keep_checkpoints`` stay.

    Every domain's CPU recipe is one call of this (fields such as ``remat`` or
    ``compute_dtype`` through ``overrides``).
    """
    fields = dict(
        optimizer=OptimizerConfig(
            peak_learning_rate=peak_learning_rate,
            end_learning_rate=peak_learning_rate / decay,
            warmup_steps=min(max_warmup, steps // 10),
            decay_steps=steps,
            weight_decay=weight_decay,
            ema_decay=None,
        ),
        num_steps=steps,
        batch_size=batch_size,
        checkpoint_every=max(steps // checkpoints, 1),
        keep_checkpoints=keep_checkpoints,
        best_metric=None,
        log_every=10,
        seed=seed,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


PRESETS: dict[str, TrainConfig] = {
    # A few steps on CPU: tests and smoke runs.
    "tiny": TrainConfig(
        optimizer=OptimizerConfig(peak_learning_rate=1e-2, warmup_steps=2, decay_steps=50),
        num_steps=20,
        batch_size=4,
        checkpoint_every=5,
        keep_checkpoints=2,
        log_every=1,
    ),
    "small": TrainConfig(
        optimizer=OptimizerConfig(peak_learning_rate=1e-3, warmup_steps=500, decay_steps=20_000),
        num_steps=20_000,
        batch_size=16,
        compute_dtype="bfloat16",
        checkpoint_every=1000,
    ),
    # GraphCast/Pangu-scale pre-training: AdamW, warm-up then cosine, bf16, remat.
    "paper": TrainConfig(
        optimizer=OptimizerConfig(
            peak_learning_rate=1e-3,
            end_learning_rate=0.0,
            warmup_steps=1000,
            decay_steps=300_000,
            weight_decay=0.1,
            ema_decay=0.999,
        ),
        num_steps=300_000,
        batch_size=32,
        compute_dtype="bfloat16",
        remat=True,
        checkpoint_every=2000,
    ),
}


def preset(name: str) -> TrainConfig:
    """Returns a named preset (``tiny``, ``small``, ``paper``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
