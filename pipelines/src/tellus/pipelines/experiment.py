"""Experiments as files: the TOML of ``tellus pretrain --config FILE``.

A file names the model, the training and every store the model pretrains on::

    workdir = "runs/pretrain"            # relative paths: from the working directory;
    [model]                              # ${TELLUS_DATA} and ~ are expanded
    preset = "tiny"                      # tellus.kernels.earth_model presets
    depths = [2, 0, 0, 2]                # optional: the trunk's blocks per stage
    [train]
    steps = 300
    batch = 2
    learning_rate = 1e-3
    mesh = "data=1"                      # as --mesh; default every device on data
    profile_steps = [20, 26]             # optional: steps traced, as --profile-steps 20:26
    [[tasks]]
    name = "atmosphere"                  # the loss is logged as train/atmosphere/loss
    domain = "atmosphere"                # the domain embedding
    store = "${TELLUS_DATA}/atmosphere.zarr"
    variables = ["temperature", "2m_temperature"]
    levels = [500, 850]                  # default: every level of the store
    grid = [721, 1440]                   # optional: (n_lat, n_lon) for `tellus plan --config`
    lead = 4                             # store steps
    weight = 1.0
    index = "nino34"                     # optional: predict the index at leads 1..lead
    [finetune]                           # tellus finetune: one task, from a pretrained model
                                         # (whose [model] it keeps: the file's is not read)
    pretrained = "runs/pretrain"
    mode = "lora"                        # "heads", "lora" (low-rank adapters) or "full"
    lora_rank = 8
    new_lr_scale = 3.33                  # the new parameters' learning-rate factor
    keep_checkpoints = false             # heads/lora: keep only the trained arrays at the end

The whole file is checked before any work starts (:func:`load`): an unknown key, a value of
the wrong type, a store that does not exist, or a mesh that does not divide the batch is one
line naming the key (``tasks[1].store``) and what was expected.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field


class ExperimentError(ValueError):
    """A bad experiment file: one line, naming the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class ModelSection(_Strict):
    preset: Literal["tiny", "paper"] = "tiny"  # tellus.kernels.earth_model.preset
    drop_path: float | None = Field(default=None, ge=0.0, lt=1.0)
    depths: tuple[int, int, int, int] | None = None  # the trunk's blocks per stage


class TrainSection(_Strict):
    steps: int = Field(gt=0)
    batch: int = Field(default=2, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    warmup: int | None = Field(default=None, ge=0)
    seed: int = 0
    mesh: str | None = None
    checkpoint_every: int | None = Field(default=None, gt=0)
    profile_steps: tuple[int, int] | None = None  # [first, stop]: traced, as --profile-steps

    @pydantic.field_validator("profile_steps")
    @classmethod
    def _step_range(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 0 <= v[0] < v[1]:
            raise ValueError("must be [first, stop] with 0 <= first < stop")
        return v


class TaskSection(_Strict):
    name: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    store: str
    variables: list[str] = Field(min_length=1)
    levels: list[float] = []
    lead: int = Field(default=1, gt=0)
    start: str | None = None
    stop: str | None = None
    weight: float = Field(default=1.0, gt=0.0)
    index: Literal["", "nino34"] = ""  # tellus.training.pretraining.INDICES
    index_variable: str = ""
    # The store's (n_lat, n_lon), equiangular, for `tellus plan --config` when the store is
    # not on this machine (a pod's data); otherwise read from the store.
    grid: tuple[int, int] | None = None

    @pydantic.field_validator("grid")
    @classmethod
    def _positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) < 2:
            raise ValueError(f"grid must be two sizes >= 2 (n_lat, n_lon), got {list(v)}")
        return v

    @pydantic.field_validator("store")
    @classmethod
    def _exists(cls, v: str, info: pydantic.ValidationInfo) -> str:
        path = Path(os.path.expanduser(os.path.expandvars(v)))
        if not (info.context or {}).get("check_stores", True):
            return str(path)  # planning: the stores are the pod's
        if "$" in str(path):
            raise ValueError(f"{v!r} names an unset environment variable")
        if not path.exists():
            raise ValueError(f"no store at {str(path)!r}; build it first (tellus data build)")
        return str(path)


class FinetuneSection(_Strict):
    pretrained: str
    mode: Literal["heads", "lora", "full"] = "full"  # tellus.training.finetuning.MODES
    new_lr_scale: float = Field(default=1e-3 / 3e-4, gt=0.0)
    lora_rank: int = Field(default=8, gt=0)
    keep_checkpoints: bool = False

    @pydantic.field_validator("pretrained")
    @classmethod
    def _trained(cls, v: str, info: pydantic.ValidationInfo) -> str:
        path = Path(os.path.expanduser(os.path.expandvars(v)))
        if (info.context or {}).get("check_stores", True) and not (path / "checkpoints").is_dir():
            raise ValueError(
                f"no pretrained model at {str(path)!r} (no checkpoints/ in it); run tellus "
                f"pretrain first"
            )
        return str(path)


class Experiment(_Strict):
    workdir: str
    model: ModelSection = ModelSection()
    train: TrainSection
    tasks: list[TaskSection] = Field(min_length=1)
    finetune: FinetuneSection | None = None

    @pydantic.field_validator("tasks")
    @classmethod
    def _distinct(cls, v: list[TaskSection]) -> list[TaskSection]:
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct, got {names}")
        return v

    @property
    def workdir_path(self) -> Path:
        return Path(os.path.expanduser(os.path.expandvars(self.workdir)))


def _where(loc: tuple[Any, ...]) -> str:
    """``("tasks", 1, "store")`` -> ``tasks[1].store``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(error: dict[str, Any]) -> str:
    where = _where(tuple(error["loc"]))
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"unknown key {where!r}"
    if kind == "missing":
        return f"{where}: missing (required)"
    msg = msg.removeprefix("Value error, ")
    return f"{where}: {msg}, got {error['input']!r}" if "input" in error else f"{where}: {msg}"


def parse(
    data: dict[str, Any], source: str = "<config>", *, check_stores: bool = True
) -> Experiment:
    """The experiment of a parsed TOML document (``check_stores``: that every store exists).

    Raises:
      ExperimentError: the first thing wrong with it, in one line.
    """
    try:
        return Experiment.model_validate(data, context={"check_stores": check_stores})
    except pydantic.ValidationError as e:
        found = e.errors(include_url=False)
        # An unknown key first: a misspelt key is also the missing one it was meant to be.
        first = sorted(found, key=lambda x: x["type"] != "extra_forbidden")[0]
        more = len(found) - 1
        extra = f" (and {more} more)" if more else ""
        raise ExperimentError(f"{source}: {_message(first)}{extra}") from None


def load(path: str | os.PathLike, *, check_stores: bool = True) -> Experiment:
    """Reads and checks an experiment file.

    Raises:
      ExperimentError: a missing or unparsable file, or a bad key or value.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such experiment file") from None
    except tomllib.TOMLDecodeError as e:
        raise ExperimentError(f"{path}: not valid TOML: {e}") from None
    return parse(data, str(path), check_stores=check_stores)


__all__ = ["Experiment", "ExperimentError", "load", "parse"]
