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
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from tellus.data import grid as data_grid
from tellus.data import schema, sources, stacking, tasks
from tellus.kernels import earth_model as em
from tellus.kernels.earth_encoder import Grid, Levels
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as train_config
from tellus.training import streams, trainer

# Units of each vertical dimension of the schema.
LEVEL_UNITS = {"level": "hPa", "depth": "m"}
HOURS_PER_MONTH = 730.5  # 365.25 days / 12: the lead encoding of a monthly store's step
LOSSES = "losses.jsonl"  # every step's task and loss, one JSON line each (process 0 writes)
NORM_WINDOWS = 32  # training windows the per-channel mean and std are estimated from
INPUTS, TARGETS, DERIVED = sources.INPUTS, sources.TARGETS, sources.DERIVED
# Index targets a task may predict, by name: the data layer's derived target of a variable.
INDICES = {
    "nino34": lambda variable: tasks.DerivedTarget.nino34_3month(None, variable=variable),
}
INDEX_VARIABLES = ("sea_surface_temperature_anomaly", "sea_surface_temperature")


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
      index: a box index predicted instead of the fields (one of :data:`INDICES`, e.g.
        ``nino34``: the centred 3-month mean of the Nino3.4 anomaly of ``index_variable``)
        at every lead from 1 to ``lead`` store steps, by an index head named after the
        task; empty: the task forecasts its variables at ``lead``.
      index_variable: the 2D variable the index is computed from (default: the first of
        :data:`INDEX_VARIABLES` among ``variables``).
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
    index: str = ""
    index_variable: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", tuple(self.variables))
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        if not self.variables:
            raise ValueError(f"task {self.name!r}: no variables")
        if self.lead < 1:
            raise ValueError(f"task {self.name!r}: lead must be >= 1 store step, got {self.lead}")
        if self.weight <= 0:
            raise ValueError(f"task {self.name!r}: weight must be > 0, got {self.weight}")
        if self.index:
            if self.index not in INDICES:
                raise ValueError(
                    f"task {self.name!r}: unknown index {self.index!r}; known: {sorted(INDICES)}"
                )
            if not self.index_variable:
                found = [v for v in INDEX_VARIABLES if v in self.variables]
                if not found:
                    raise ValueError(
                        f"task {self.name!r}: the {self.index} index needs one of "
                        f"{INDEX_VARIABLES} among its variables or an index_variable"
                    )
                object.__setattr__(self, "index_variable", found[0])

    @property
    def derived_target(self) -> tasks.DerivedTarget | None:
        """The index as the data layer's derived target (None for a field task)."""
        return INDICES[self.index](self.index_variable) if self.index else None


def lead_hours(lead: int, time_step: str) -> float:
    """``lead`` steps of ``time_step`` (a pandas alias: ``"6h"``, or ``"MS"`` for months of
    :data:`HOURS_PER_MONTH`) in hours."""
    if time_step == "MS":
        return float(lead * HOURS_PER_MONTH)
    return float(lead * pd.Timedelta(time_step) / pd.Timedelta("1h"))


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
        derived = data.derived_target
        task = tasks.TaskConfig(
            input_variables=data.variables,
            target_variables=() if derived else data.variables,
            levels=levels,
            time_step=step,
            lead_steps=tuple(range(1, data.lead + 1)) if derived else (data.lead,),
            derived_targets=(derived,) if derived else (),
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
        self.time_step = step
        self.lead_hours = lead_hours(data.lead, step)
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
        self.index_std = float(norm.get("index_std", 1.0))
        if self.mean.shape != (self.layout.num_channels,):
            raise ValueError(
                f"task {data.name!r}: normalization of {self.mean.shape} channels, the store "
                f"gives {self.layout.num_channels}"
            )
        self.latitude_weights = data_grid.latitude_weights(np.asarray(self.source.latitude))

    @classmethod
    def from_shapes(
        cls,
        data: StoreData,
        latitude: Sequence[float],
        longitude: Sequence[float],
        levels: Mapping[str, Sequence[float]],
        *,
        lead_hours: float,
        land: np.ndarray | None = None,
    ) -> EarthTask:
        """A task from its geometry alone, without a store (planning a pod run whose data
        are elsewhere): unit normalization, every cell valid except ``land`` ``[H, W]``.

        Args:
          data: the task (its ``store`` is not read).
          latitude, longitude: the grid.
          levels: ``{variable: levels}`` of its 3D variables (hPa or m, by the schema's
            vertical dimension of the variable).

        Raises:
          ValueError: a variable the schema does not know, or a 3D one without levels.
        """
        self = cls.__new__(cls)
        self.data, self.source = data, None
        channels = []
        for name in data.variables:
            if name not in schema.VARIABLES:
                raise ValueError(f"task {data.name!r}: unknown variable {name!r}")
            vertical = [d for d in schema.VARIABLES[name].dims if d in LEVEL_UNITS]
            if vertical and not levels.get(name):
                raise ValueError(f"task {data.name!r}: 3D variable {name!r} needs its levels")
            channels.append(
                stacking.VariableChannels(name, vertical[0], tuple(levels[name]))
                if vertical
                else stacking.VariableChannels(name)
            )
        self.layout = stacking.ChannelLayout(tuple(channels))
        self.grid = Grid(tuple(float(v) for v in latitude), tuple(float(v) for v in longitude))
        self.levels = {
            v.name: Levels(v.levels, LEVEL_UNITS[v.vertical_dim])
            for v in self.layout.variables
            if v.vertical_dim is not None
        }
        self.lead_hours = float(lead_hours)
        self.time_step = None
        ocean = np.ones(self.grid.shape, bool) if land is None else ~np.asarray(land, bool)
        self.valid = {
            v.name: np.broadcast_to(ocean, (len(v.levels), *ocean.shape)) if v.levels else ocean
            for v in self.layout.variables
        }
        c = self.layout.num_channels
        self.mean, self.std = np.zeros(c, np.float32), np.ones(c, np.float32)
        self.index_std = 1.0
        self.latitude_weights = data_grid.latitude_weights(np.asarray(latitude, np.float64))
        return self

    def _estimate_norm(self) -> dict[str, list[float]]:
        rng = np.random.default_rng(0)
        n = min(NORM_WINDOWS, len(self.source))
        idx = np.sort(rng.choice(len(self.source), n, replace=False))
        samples = [self.source[int(i)] for i in idx]
        x = np.stack([s[INPUTS][0] for s in samples])  # [n, H, W, C]
        mean = np.nanmean(x, axis=(0, 1, 2))
        std = np.nanstd(x, axis=(0, 1, 2))
        std = np.where(std > 0, std, 1.0)
        out: dict[str, Any] = {"mean": mean.tolist(), "std": std.tolist()}
        if self.is_index:  # the index's own scale, every lead alike
            out["index_std"] = float(np.std(np.stack([s[DERIVED] for s in samples])) or 1.0)
        return out

    @property
    def is_index(self) -> bool:
        return bool(self.data.index)

    @property
    def norm(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.is_index:
            out["index_std"] = self.index_std
        if self.time_step is not None:  # what a forecast from a Dataset needs for the lead
            out["time_step"] = self.time_step
        return out

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
        """``{name: [B, (L,) H, W]}`` normalized forecasts at the lead and their targets;
        for an index task ``{task name: [B, leads]}`` in units of :attr:`index_std`."""
        x = batch[INPUTS][:, -1]
        b = x.shape[0]
        if self.is_index:  # the state now (lead 0) to every lead's index at once
            pred = model(
                self.fields(x),
                self.grid,
                levels=self.levels,
                lead_hours=jnp.zeros((b,), jnp.float32),
                domain=self.data.domain,
                mask=self.mask,
                cell_masks=self.cell_masks(),
                targets={},
                indices=(self.data.name,),
                key=key,
            )
            name = self.data.name
            return {name: pred[name]}, {name: batch[DERIVED][..., 0] / self.index_std}
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
        if self.is_index:
            name = self.data.name
            return jnp.mean((pred[name] - target[name]) ** 2)
        w_lat = jnp.asarray(self.latitude_weights)[:, None]
        total, count = 0.0, 0.0
        for name, p in pred.items():
            valid = jnp.asarray(self.valid[name], jnp.float32)
            w = valid * w_lat  # [(L,) H, W]
            total = total + jnp.sum(w * (p - target[name]) ** 2) / p.shape[0]
            count = count + jnp.sum(w)
        return total / count

    def batches(self, batch_size: int, seed: int) -> streams.LoaderStream:
        keys = (INPUTS, DERIVED) if self.is_index else (INPUTS, TARGETS)
        return streams.LoaderStream(self.source, batch_size, seed, keys=keys)

    def model_config(self, cfg: em.EarthModelConfig) -> em.EarthModelConfig:
        """``cfg`` with this task's inputs (and its index head)."""
        cfg = cfg.with_inputs(self.data.variables, [self.data.domain])
        if self.is_index:
            cfg = cfg.with_index(self.data.name, self.data.lead)
        return cfg


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


def model_factory(d: Mapping[str, Any]) -> em.EarthModel:
    return em.make_earth_model(d["model"])


KIND = ckpt_lib.Kind(name="earth.model", version=1, factory=model_factory)
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
    saved = saved_config(workdir)
    tasks_ = open_tasks(data, saved["norms"] if saved else None)
    cfg = model
    for t in tasks_:
        cfg = t.model_config(cfg)
    run_cfg = PretrainConfig(
        cfg.to_dict(),
        tuple(dataclasses.asdict(d) for d in data),
        {t.data.name: t.norm for t in tasks_},
    )
    if show_progress:
        n, i = jax.process_count(), jax.process_index()
        for t in tasks_:
            shard = (
                f"; process {i} of {n} reads positions {i}, {i + n}, ... of each global batch "
                f"({train.batch_size // n} of {train.batch_size})"
                if n > 1
                else ""
            )
            print(
                f"{t.data.name}: {len(t.source)} windows of {t.data.store}, "
                f"{len(t.data.variables)} variables, grid {t.grid.shape}{shard}"
            )
    by_task: dict[str, list[tuple[int, float]]] = {t.data.name: [] for t in tasks_}

    def record(step: int, info: dict[str, Any]) -> None:
        by_task[info["domain"]].append((step, float(info["loss"])))
        record_loss(workdir, step, info)

    history = trainer.fit(
        model_factory,
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


def record_loss(workdir: Path, step: int, info: dict[str, Any]) -> None:
    """Appends a step's task and loss to ``workdir``'s :data:`LOSSES` (process 0 writes)."""
    if jax.process_index() == 0:
        trainer.append_jsonl(
            Path(workdir) / LOSSES,
            {"step": step, "task": info["domain"], "loss": float(info["loss"])},
        )


def read_losses(workdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{task: [(step, loss)]}`` from ``workdir``'s :data:`LOSSES`, each step once (a step
    run again after a resume keeps its last record), in step order."""
    path = Path(workdir) / LOSSES
    by_task: dict[str, dict[int, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                by_task.setdefault(r["task"], {})[int(r["step"])] = float(r["loss"])
    return {t: sorted(d.items()) for t, d in by_task.items()}


def saved_config(workdir: Path) -> dict[str, Any] | None:
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


def load(workdir: str | Path, step: int | None = None) -> tuple[em.EarthModel, dict[str, Any]]:
    """The pretrained model of ``workdir`` (its checkpoint at ``step``, default the latest)
    and its :class:`PretrainConfig` dict (a fine-tune that kept only its adapters:
    :func:`tellus.training.finetuning.load`).

    Raises:
      FileNotFoundError: no checkpoint (at ``step``).
    """
    folder = Path(workdir) / "checkpoints"
    if not folder.is_dir():
        raise FileNotFoundError(f"no complete checkpoint in {folder}")
    ck = ckpt_lib.Checkpointer(folder, async_save=False)
    try:
        steps = ck.all_steps()
        step = ck.latest_step() if step is None else step
        if step is None or step not in steps:
            raise FileNotFoundError(f"no complete checkpoint at step {step} in {folder}: {steps}")
        model = ckpt_lib.rebuild(ck, step, KIND)[0]
        saved = ck.read_json(step)[0]["model"]
    finally:
        ck.close()
    return model, saved


__all__ = [
    "KIND",
    "EarthTask",
    "PretrainConfig",
    "StoreData",
    "lead_hours",
    "load",
    "open_tasks",
    "pretrain",
    "saved_config",
    "store_time_step",
]
