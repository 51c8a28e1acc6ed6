"""Pretraining the Earth foundation model on several stores at once, through ``fit``.

Every store in the shared schema is a source of the same kind of sample, whatever its domain:
the state of some variables (on pressure levels, depths or at the surface) on some grid at an
init time, and the same variables ``lead`` store steps later. :class:`StoreData` names one
such source (a JSON-able config); :class:`EarthTask` opens it through the data layer
(:class:`tellus.data.sources.WindowSource`, read by the shared grain loader) and knows what
the model needs besides the arrays: the grid's coordinates, each variable's levels with
units, the cells that are valid (ocean only, above the sea floor), the per-channel
normalization, the lead in hours and the domain's name. The loss of a task
(:meth:`EarthTask.loss`) is the latitude-weighted mean squared error of the model's decoded
fields at the lead, in normalized units, over the valid cells only.

:func:`pretrain` gives ``fit`` one :class:`~tellus.training.trainer.TrainDomain` per task, all
training the one :class:`tellus.kernels.earth_model.EarthModel` (no parameter is owned by a
task: the encoder's per-variable embeddings are touched only by the tasks that have the
variable), interleaved with the tasks' sampling weights, each task's loss logged under its
own name, one checkpoint of kind ``earth.model`` for the whole model. The model's encoder
gets an embedding for every variable and domain of the tasks (:meth:`EarthModelConfig.with_inputs`).
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx

from tellus.data import grid as data_grid
from tellus.data import schema, sources, tasks
from tellus.kernels import earth_model as em
from tellus.kernels.earth_encoder import Grid, Levels
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as train_config
from tellus.training import step as step_lib
from tellus.training import streams, trainer

# Units of each vertical dimension of the schema.
LEVEL_UNITS = {"level": "hPa", "depth": "m"}
HOURS_PER_MONTH = 730.5  # 365.25 days / 12: the lead encoding of a monthly store's step
NORM_WINDOWS = 32  # training windows the per-channel mean and std are estimated from
INPUTS, TARGETS = sources.INPUTS, sources.TARGETS


@dataclasses.dataclass(frozen=True)
class StoreData:
    """One pretraining source.

    Attributes:
      name: the task's name (its loss is logged as ``train/<name>/loss``).
      domain: the domain embedding it is read with (``atmosphere``, ``ocean``, ``enso``...).
      store: a Zarr store in the schema.
      variables: the variables read at the init time and predicted at the lead.
      levels: pressure levels (hPa) or depths (m) of the 3D variables (default: all).
      lead: the lead in store time steps.
      start, stop: the training windows' dates (ISO; default: the whole store).
      weight: its sampling weight among the tasks.
    """

    name: str
    domain: str
    store: str
    variables: tuple[str, ...]
    levels: tuple[float, ...] = ()
    lead: int = 1
    start: str | None = None
    stop: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", tuple(self.variables))
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        if not self.variables:
            raise ValueError(f"task {self.name!r}: no variables")
        if self.lead < 1:
            raise ValueError(f"task {self.name!r}: lead must be >= 1 store step, got {self.lead}")
        if self.weight <= 0:
            raise ValueError(f"task {self.name!r}: weight must be > 0, got {self.weight}")


def store_time_step(times: pd.DatetimeIndex) -> str:
    """The pandas alias of a store's time step: ``"{n}h"`` for a fixed step, ``"MS"`` for
    consecutive month starts.

    Raises:
      ValueError: fewer than two times, or a step that is neither.
    """
    if len(times) < 2:
        raise ValueError(f"a store needs at least 2 times to have a time step, got {len(times)}")
    seconds = times.values.astype("datetime64[s]").astype(np.int64)
    steps = np.unique(np.diff(seconds))
    if len(steps) == 1 and steps[0] % 3600 == 0:
        return f"{steps[0] // 3600}h"
    months = times.year * 12 + times.month
    if times.is_month_start.all() and np.all(np.diff(months) == 1):
        return "MS"
    raise ValueError(
        f"the store's times are neither evenly spaced in hours nor monthly: {times[:3]}"
    )


class EarthTask:
    """A :class:`StoreData` opened: its windows, grid, levels, valid cells and normalization.

    Attributes:
      data: the config.
      source: the training windows (``inputs [1, H, W, C]``, ``targets [1, H, W, C]``).
      grid: the store's grid.
      levels: ``{variable: Levels}`` of its 3D variables.
      valid: ``{variable: [L, H, W] or [H, W] bool}``, True where the store has values.
      mean, std: ``[C]`` per channel, from up to :data:`NORM_WINDOWS` training windows.
      lead_hours: the lead as hours (a month is :data:`HOURS_PER_MONTH`).
    """

    def __init__(self, data: StoreData, norm: Mapping[str, Sequence[float]] | None = None):
        self.data = data
        meta = sources.open_metadata(data.store)
        times = pd.DatetimeIndex(meta.indexes[schema.TIME])
        step = store_time_step(times)
        levels = data.levels
        if not levels:
            dims = {schema.VARIABLES[v].dims for v in data.variables if v in schema.VARIABLES}
            vertical = [d for dims_ in dims for d in dims_ if d in LEVEL_UNITS]
            levels = tuple(float(v) for v in meta[vertical[0]].values) if vertical else ()
        task = tasks.TaskConfig(
            input_variables=data.variables,
            target_variables=data.variables,
            levels=levels,
            time_step=step,
            lead_steps=(data.lead,),
        )
        dates = None
        if data.start or data.stop:
            dates = sources.DateRange(
                pd.Timestamp(data.start or times[0]), pd.Timestamp(data.stop or times[-1])
            )
        self.source = sources.WindowSource(data.store, task, dates)
        if len(self.source) == 0:
            raise ValueError(f"task {data.name!r}: no window of lead {data.lead} in {data.store}")
        self.layout = self.source.input_layout
        self.grid = Grid(tuple(self.source.latitude), tuple(self.source.longitude))
        self.levels = {
            v.name: Levels(v.levels, LEVEL_UNITS[v.vertical_dim])
            for v in self.layout.variables
            if v.vertical_dim is not None
        }
        self.lead_hours = float(
            data.lead * HOURS_PER_MONTH
            if step == "MS"
            else data.lead * pd.Timedelta(step) / pd.Timedelta("1h")
        )
        first = self.source[0][INPUTS][0]  # [H, W, C]
        self.valid = {
            name: np.moveaxis(np.isfinite(first[..., sl]), -1, 0).squeeze(0)
            if name not in self.levels
            else np.moveaxis(np.isfinite(first[..., sl]), -1, 0)
            for name, sl in self.layout.slices().items()
        }
        if norm is None:
            norm = self._estimate_norm()
        self.mean = np.asarray(norm["mean"], np.float32)
        self.std = np.asarray(norm["std"], np.float32)
        if self.mean.shape != (self.layout.num_channels,):
            raise ValueError(
                f"task {data.name!r}: normalization of {self.mean.shape} channels, the store "
                f"gives {self.layout.num_channels}"
            )
        self.latitude_weights = data_grid.latitude_weights(np.asarray(self.source.latitude))

    def _estimate_norm(self) -> dict[str, list[float]]:
        rng = np.random.default_rng(0)
        n = min(NORM_WINDOWS, len(self.source))
        idx = np.sort(rng.choice(len(self.source), n, replace=False))
        x = np.stack([self.source[int(i)][INPUTS][0] for i in idx])  # [n, H, W, C]
        mean = np.nanmean(x, axis=(0, 1, 2))
        std = np.nanstd(x, axis=(0, 1, 2))
        std = np.where(std > 0, std, 1.0)
        return {"mean": mean.tolist(), "std": std.tolist()}

    @property
    def norm(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @property
    def mask(self) -> np.ndarray | None:
        """``[H, W]`` True where any variable has a value at any level (None: everywhere)."""
        any_valid = np.zeros(self.grid.shape, bool)
        for v in self.valid.values():
            any_valid |= v if v.ndim == 2 else v.any(0)
        return None if any_valid.all() else any_valid

    def fields(self, x: jax.Array) -> dict[str, jax.Array]:
        """Stacked ``[B, H, W, C]`` (physical units) -> normalized ``{name: [B, (L,) H, W]}``,
        zero where the store has no value."""
        x = (x - self.mean) / self.std
        out = {}
        for name, sl in self.layout.slices().items():
            f = jnp.moveaxis(x[..., sl], -1, 1)  # [B, L, H, W]
            if name not in self.levels:
                f = f[:, 0]
            out[name] = jnp.where(jnp.asarray(self.valid[name])[None], f, 0.0)
        return out

    def cell_masks(self) -> dict[str, np.ndarray]:
        return {name: v[None] for name, v in self.valid.items()}

    def __call__(self, model: em.EarthModel, batch: Mapping[str, jax.Array], key=None):
        """``{name: [B, (L,) H, W]}`` normalized forecasts at the lead and their targets."""
        x = batch[INPUTS][:, -1]
        b = x.shape[0]
        pred = model(
            self.fields(x),
            self.grid,
            levels=self.levels,
            lead_hours=jnp.full((b,), self.lead_hours, jnp.float32),
            domain=self.data.domain,
            mask=self.mask,
            cell_masks=self.cell_masks(),
            key=key,
        )
        return pred, self.fields(batch[TARGETS][:, 0])

    def loss(self, model: em.EarthModel, batch: Mapping[str, jax.Array], rng=None) -> jax.Array:
        """Latitude-weighted MSE over the valid cells, every variable and level alike."""
        pred, target = self(model, batch, rng)
        w_lat = jnp.asarray(self.latitude_weights)[:, None]
        total, count = 0.0, 0.0
        for name, p in pred.items():
            valid = jnp.asarray(self.valid[name], jnp.float32)
            w = valid * w_lat  # [(L,) H, W]
            total = total + jnp.sum(w * (p - target[name]) ** 2) / p.shape[0]
            count = count + jnp.sum(w)
        return total / count

    def batches(self, batch_size: int, seed: int) -> streams.LoaderStream:
        return streams.LoaderStream(self.source, batch_size, seed, keys=(INPUTS, TARGETS))


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """What :func:`pretrain` saves with the model (JSON in every checkpoint).

    Attributes:
      model: the Earth model (:class:`EarthModelConfig` as a dict).
      tasks: the :class:`StoreData` of each task.
      norms: each task's ``{"mean", "std"}`` (fixed at the first start: a resume keeps them).
    """

    model: dict[str, Any]
    tasks: tuple[dict[str, Any], ...]
    norms: dict[str, dict[str, list[float]]]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "tasks": list(self.tasks), "norms": self.norms}


def _model_factory(d: Mapping[str, Any]) -> em.EarthModel:
    return em.make_earth_model(d["model"])


KIND = ckpt_lib.Kind(name="earth.model", version=1, factory=_model_factory)
"""A pretrained Earth model: its config is a :class:`PretrainConfig` dict."""


def open_tasks(
    data: Sequence[StoreData], norms: Mapping[str, Any] | None = None
) -> list[EarthTask]:
    """Every task opened (normalization from ``norms`` where given, else estimated).

    Raises:
      ValueError: two tasks of one name, a task without windows.
    """
    names = [d.name for d in data]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"pretraining needs one or more tasks with distinct names, got {names}")
    norms = norms or {}
    return [EarthTask(d, norms.get(d.name)) for d in data]


def pretrain(
    model: em.EarthModelConfig,
    data: Sequence[StoreData],
    workdir: str | Path,
    train: train_config.TrainConfig,
    *,
    mesh=None,
    rules=None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Pretrains ``model`` on every task of ``data`` at once (resumes after a kill).

    Returns:
      ``{"history": [(step, loss)], "by_task": {name: [(step, loss)]}, "tasks": {name:
      n_windows}, "model": config dict}`` (the steps run in this call).
    """
    workdir = Path(workdir)
    saved = _saved_config(workdir)
    tasks_ = open_tasks(data, saved["norms"] if saved else None)
    cfg = model.with_inputs(
        [v for t in tasks_ for v in t.data.variables], [t.data.domain for t in tasks_]
    )
    run_cfg = PretrainConfig(
        cfg.to_dict(),
        tuple(dataclasses.asdict(d) for d in data),
        {t.data.name: t.norm for t in tasks_},
    )
    if show_progress:
        for t in tasks_:
            print(
                f"{t.data.name}: {len(t.source)} windows of {t.data.store}, "
                f"{len(t.data.variables)} variables, grid {t.grid.shape}"
            )
    by_task: dict[str, list[tuple[int, float]]] = {t.data.name: [] for t in tasks_}

    def record(step: int, info: dict[str, Any]) -> None:
        by_task[info["domain"]].append((step, float(info["loss"])))

    history = trainer.fit(
        _model_factory,
        run_cfg,
        train,
        [
            trainer.TrainDomain(
                t.data.name,
                t.loss,
                t.batches(train.batch_size, train.seed + i),
                weight=t.data.weight,
            )
            for i, t in enumerate(tasks_)
        ],
        workdir,
        envelope=trainer.Envelope(kind=KIND.name, version=KIND.version),
        mesh=mesh,
        rules=rules,
        show_progress=show_progress,
        on_step=record,
    )
    return {
        "history": history,
        "by_task": by_task,
        "tasks": {t.data.name: len(t.source) for t in tasks_},
        "model": cfg.to_dict(),
    }


MODES = ("heads", "full")
RESTORE_REPORT = "restored.json"


def finetune(
    pretrained: str | Path,
    data: StoreData,
    workdir: str | Path,
    train: train_config.TrainConfig,
    *,
    mode: str = "full",
    new_lr_scale: float = 1e-3 / 3e-4,
    mesh=None,
    rules=None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Fine-tunes a pretrained Earth model (``pretrained``: a :func:`pretrain` workdir) on one
    task, which may bring variables and a domain the pretraining never saw (resumes).

    The model is the pretrained config with an embedding and a decoder head for each new
    variable (:meth:`EarthModelConfig.with_inputs`); every parameter the checkpoint has is
    restored, the new ones start fresh (listed in ``workdir/restored.json``). ``mode``:
    ``full`` trains everything, ``heads`` only the task's decoder heads and the new
    embeddings (the rest frozen). The new parameters train at ``new_lr_scale`` times the
    learning rate (Aurora: 1e-3 for new patch embeddings against 3e-4).

    Returns:
      ``{"history", "new": [paths initialized fresh], "frozen": [paths], "model"}``.

    Raises:
      ValueError: an unknown ``mode``.
      FileNotFoundError: ``pretrained`` has no complete checkpoint.
    """
    if mode not in MODES:
        raise ValueError(f"fine-tuning mode must be one of {MODES}, got {mode!r}")
    pretrained, workdir = Path(pretrained), Path(workdir)
    base = _saved_config(pretrained)
    if base is None:
        raise FileNotFoundError(f"no complete checkpoint in {pretrained}/checkpoints to start from")
    saved = _saved_config(workdir)
    (task,) = open_tasks([data], saved["norms"] if saved else None)
    base_cfg = em.EarthModelConfig.from_dict(base["model"])
    cfg = base_cfg.with_inputs(data.variables, [data.domain])
    new_vars = [v for v in data.variables if v not in base_cfg.encoder.variables]
    new_prefixes = [f"encoder/embeddings/{v}" for v in new_vars]
    new_prefixes += [f"decoder/heads/{v}" for v in new_vars]
    run_cfg = PretrainConfig(cfg.to_dict(), (dataclasses.asdict(data),), {data.name: task.norm})
    abstract = nnx.eval_shape(lambda: _model_factory(run_cfg.to_dict()))
    paths = list(step_lib.flat_params(nnx.to_pure_dict(nnx.state(abstract, nnx.Param))))
    new = [p for p in paths if any(p.startswith(q + "/") for q in new_prefixes)]
    frozen: list[str] = []
    if mode == "heads":
        trainable = [f"decoder/heads/{v}/" for v in data.variables] + [
            q + "/" for q in new_prefixes
        ]
        frozen = [p for p in paths if not any(p.startswith(q) for q in trainable)]
    factory = ckpt_lib.warm_start(
        pretrained, _model_factory, source_kind=KIND, partial=True, report=workdir / RESTORE_REPORT
    )
    history = trainer.fit(
        factory,
        run_cfg,
        train,
        trainer.TrainDomain(
            data.name,
            task.loss,
            task.batches(train.batch_size, train.seed),
            owns=tuple(new_prefixes),
        ),
        workdir,
        envelope=trainer.Envelope(kind=KIND.name, version=KIND.version),
        mesh=mesh,
        rules=rules,
        freeze=[glob.escape(p) for p in frozen],
        lr_scale={data.name: new_lr_scale},
        show_progress=show_progress,
    )
    return {"history": history, "new": new, "frozen": frozen, "model": cfg.to_dict()}


def _saved_config(workdir: Path) -> dict[str, Any] | None:
    """The config of the latest checkpoint in ``workdir`` (None when there is none)."""
    folder = workdir / "checkpoints"
    if not folder.is_dir():
        return None
    ck = ckpt_lib.Checkpointer(folder, async_save=False)
    try:
        step = ck.latest_step()
        return None if step is None else ck.read_json(step)[0]["model"]
    finally:
        ck.close()


def load(workdir: str | Path) -> tuple[em.EarthModel, dict[str, Any]]:
    """The pretrained model of ``workdir`` and its :class:`PretrainConfig` dict."""
    saved = _saved_config(Path(workdir))
    if saved is None:
        raise FileNotFoundError(f"no complete checkpoint in {workdir}/checkpoints")
    ck = ckpt_lib.Checkpointer(Path(workdir) / "checkpoints", async_save=False)
    try:
        model = ckpt_lib.rebuild(ck, ck.latest_step(), KIND)[0]
    finally:
        ck.close()
    return model, saved


__all__ = [
    "KIND",
    "EarthTask",
    "PretrainConfig",
    "StoreData",
    "finetune",
    "load",
    "open_tasks",
    "pretrain",
    "store_time_step",
]
