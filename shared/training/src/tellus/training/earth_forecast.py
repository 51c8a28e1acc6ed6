"""The Earth foundation model as a forecaster of Datasets: what ``tellus.load`` returns for a
pretraining or fine-tuning workdir (checkpoint kind ``earth.model``, or a fine-tune that kept
only its adapters).

A pretrained or fine-tuned Earth model knows its tasks from the config it saved
(:class:`tellus.training.pretraining.PretrainConfig`): each task's variables, levels, lead
and the normalization it was trained with. :meth:`EarthPredictor.forecast` runs one task on
the states of an ``xarray.Dataset`` in the schema (any grid the model's encoder reads: the
grid, the levels and the valid cells are the Dataset's own) and returns the forecast as a
Dataset in physical units, NaN where the input has no value (land for the ocean), or the
task's index by lead for an index task.

::

    import tellus.load

    model = tellus.load("runs/pretrain")            # or a fine-tune's workdir
    fc = model.forecast(ocean_ds, task="ocean", init_time=["2006-01-01"])
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr
from flax import nnx

from tellus.data import schema, stacking
from tellus.kernels import earth_model as em
from tellus.training import finetuning
from tellus.training import pretraining as pt

INIT_TIME, LEAD = "init_time", "lead"
PREDICTION_TIMEDELTA = "prediction_timedelta"


class EarthPredictor:
    """A trained Earth model and the tasks it was trained on.

    Args:
      model: the model.
      config: its saved :class:`~tellus.training.pretraining.PretrainConfig` dict.
      source: where it was loaded from (shown in errors).
    """

    def __init__(self, model: em.EarthModel, config: Mapping[str, Any], source: str = ""):
        self.model = model
        self.config = dict(config)
        self.source = source
        self.tasks = {t["name"]: pt.StoreData(**t) for t in self.config["tasks"]}
        self.norms = dict(self.config["norms"])
        self._compiled: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"EarthPredictor({self.source!r}, tasks {sorted(self.tasks)})"

    def _task(self, name: str | None) -> pt.StoreData:
        if name is None:
            if len(self.tasks) > 1:
                raise ValueError(
                    f"{self.source or 'this model'} was trained on several tasks: name one with "
                    f"task= ({', '.join(sorted(self.tasks))})"
                )
            return next(iter(self.tasks.values()))
        if name not in self.tasks:
            raise ValueError(
                f"task {name!r} is not one of the model's: {', '.join(sorted(self.tasks))}"
            )
        return self.tasks[name]

    def forecast(
        self,
        ds: xr.Dataset,
        *,
        task: str | None = None,
        init_time: Any = None,
        time_step: str | None = None,
    ) -> xr.Dataset:
        """One task's forecast from the states of ``ds`` at ``init_time``.

        Args:
          ds: a Dataset in the schema holding the task's variables (and levels) at the init
            times, on any grid.
          task: the task's name (default: the model's only task).
          init_time: one time or several (default: every time of ``ds``).
          time_step: the task's time step as a pandas alias (``"6h"``, ``"MS"``); by default
            read from the saved config, else from ``ds``'s times.

        Returns:
          A field task: its variables at ``init_time + lead``, dims ``(init_time, [level or
          depth], latitude, longitude)``, NaN where ``ds`` has no value, with a
          ``lead_time`` coordinate. An index task: the index by ``(init_time, lead)`` for
          leads 1..lead in store steps.

        Raises:
          ValueError: an unknown task, a variable, level or init time missing from ``ds``,
            or a time step that cannot be read.
        """
        data = self._task(task)
        missing = [v for v in data.variables if v not in ds.data_vars]
        if missing:
            raise ValueError(
                f"the Dataset lacks {missing} of task {data.name!r} (it has {list(ds.data_vars)})"
            )
        times = pd.DatetimeIndex(ds[schema.TIME].values)
        inits = times if init_time is None else pd.DatetimeIndex(np.atleast_1d(init_time))
        absent = inits.difference(times)
        if len(absent):
            raise ValueError(f"init_time {list(absent.astype(str))} is not in the Dataset")
        step = time_step or self.norms[data.name].get("time_step")
        if step is None:
            try:
                step = pt.store_time_step(times)
            except ValueError as e:
                raise ValueError(
                    f"the time step of task {data.name!r} is not in the saved config and "
                    f"cannot be read from the Dataset ({e}); pass time_step"
                ) from None
        lead_hours = pt.lead_hours(data.lead, step)
        state = ds[list(data.variables)].sel({schema.TIME: inits})
        if data.levels:
            try:
                layout = stacking.ChannelLayout.from_dataset(state, data.variables, data.levels)
            except (KeyError, ValueError) as e:
                raise ValueError(
                    f"the Dataset lacks levels of task {data.name!r} ({list(data.levels)}): {e}"
                ) from None
        else:  # every level of the Dataset, as training read every level of its store
            layout = _all_levels(state, data.variables)
        x = stacking.dataset_to_stacked(state, layout).astype(np.float32)  # [B, H, W, C]
        levels = {v.name: v.levels for v in layout.variables if v.vertical_dim is not None}
        earth = pt.EarthTask.from_shapes(
            data,
            state[schema.LATITUDE].values,
            state[schema.LONGITUDE].values,
            levels,
            lead_hours=lead_hours,
        )
        earth.valid = {
            name: np.moveaxis(np.isfinite(x[0][..., sl]), -1, 0).squeeze(0)
            if name not in earth.levels
            else np.moveaxis(np.isfinite(x[0][..., sl]), -1, 0)
            for name, sl in earth.layout.slices().items()
        }
        norm = self.norms[data.name]
        earth.mean = np.asarray(norm["mean"], np.float32)
        earth.std = np.asarray(norm["std"], np.float32)
        earth.index_std = float(norm.get("index_std", 1.0))
        if earth.mean.shape != (layout.num_channels,):
            raise ValueError(
                f"task {data.name!r} was trained on {earth.mean.shape[0]} channels; the "
                f"Dataset gives {layout.num_channels} ({layout.channels})"
            )
        batch = {pt.INPUTS: jnp.asarray(np.nan_to_num(x)[:, None])}
        if earth.is_index:
            batch[pt.DERIVED] = jnp.zeros((len(inits), data.lead, 1), jnp.float32)
        else:
            batch[pt.TARGETS] = batch[pt.INPUTS]
        pred = self._run(earth)(self.model, batch)
        coords = {INIT_TIME: inits}
        if earth.is_index:
            value = np.asarray(pred[data.name]) * earth.index_std
            return xr.Dataset(
                {data.name: ((INIT_TIME, LEAD), value)},
                coords={**coords, LEAD: np.arange(1, data.lead + 1)},
                attrs={"task": data.name, "index": data.index, "time_step": step},
            )
        fields = []
        for name in earth.layout.slices():
            f = np.asarray(pred[name])  # [B, (L,) H, W]
            fields.append(f[..., None] if f.ndim == 3 else np.moveaxis(f, 1, -1))
        y = np.concatenate(fields, axis=-1) * earth.std + earth.mean
        y = np.where(np.isfinite(x), y, np.nan)
        out = stacking.stacked_to_dataset(
            y,
            layout,
            leading_dims=(INIT_TIME,),
            coords={
                **coords,
                schema.LATITUDE: state[schema.LATITUDE].values,
                schema.LONGITUDE: state[schema.LONGITUDE].values,
            },
        )
        for name in out.data_vars:
            out[name].attrs = dict(ds[name].attrs)
        out = out.assign_coords(lead_time=pd.Timedelta(hours=lead_hours))
        out.attrs.update(task=data.name, time_step=step, source=self.source)
        return out

    def rollout(
        self,
        ds: xr.Dataset,
        *,
        task: str | None = None,
        init_time: Any = None,
        steps: int = 1,
        time_step: str | None = None,
    ) -> xr.Dataset:
        """``steps`` forecasts of a field task chained (each from the one before), in the
        WeatherBench2 forecast layout.

        Args:
          ds, task, init_time, time_step: as :meth:`forecast`.
          steps: forecasts to chain; an index task forecasts all its leads in one, so it
            takes 1 only.

        Returns:
          Dims ``(time, prediction_timedelta, [level or depth], latitude, longitude)``:
          ``time`` the init, ``prediction_timedelta`` the lead, a timedelta for an hourly
          task and whole months (integers, ``units="months"``) for a monthly one. An index
          task: its index by ``(time, prediction_timedelta)`` for leads 1..lead.

        Raises:
          ValueError: as :meth:`forecast`, or ``steps`` below 1 or above 1 for an index task.
        """
        data = self._task(task)
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if data.index and steps != 1:
            raise ValueError(
                f"task {data.name!r} forecasts its index at leads 1..{data.lead} in one call; "
                f"steps must be 1, got {steps}"
            )
        out = self.forecast(ds, task=data.name, init_time=init_time, time_step=time_step)
        step = out.attrs["time_step"]
        monthly = step == "MS"
        offset = pd.tseries.frequencies.to_offset(step)
        if data.index:
            leads = out[LEAD].values
            out = out.rename({INIT_TIME: schema.TIME, LEAD: PREDICTION_TIMEDELTA})
            return out.assign_coords({PREDICTION_TIMEDELTA: _leads(leads, step, monthly)})
        inits = pd.DatetimeIndex(out[INIT_TIME].values)
        fields = [out.drop_vars("lead_time")]
        for k in range(1, steps):  # each forecast read back as the states it starts from
            state = fields[-1].rename({INIT_TIME: schema.TIME})
            state = state.assign_coords({schema.TIME: inits + k * data.lead * offset})
            fc = self.forecast(state, task=data.name, time_step=step)
            fields.append(fc.drop_vars("lead_time").assign_coords({INIT_TIME: inits}))
        result = xr.concat(fields, dim=PREDICTION_TIMEDELTA).rename({INIT_TIME: schema.TIME})
        result = result.transpose(schema.TIME, PREDICTION_TIMEDELTA, ...)
        leads = data.lead * np.arange(1, steps + 1)
        result = result.assign_coords({PREDICTION_TIMEDELTA: _leads(leads, step, monthly)})
        result.attrs = {**out.attrs, "steps": steps}
        return result

    def _run(self, earth: pt.EarthTask):
        """The task's forward pass, compiled once per task, grid, levels and valid cells
        (each a constant of the program)."""
        h = hashlib.sha1(earth.data.name.encode())
        for a in (earth.grid.latitude, earth.grid.longitude, *earth.valid.values()):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr(sorted((k, v.values) for k, v in earth.levels.items())).encode())
        h.update(earth.mean.tobytes() + earth.std.tobytes())
        key = h.hexdigest()
        if key not in self._compiled:
            self._compiled[key] = nnx.jit(lambda m, b: earth(m, b)[0])
        return self._compiled[key]


def _leads(steps: np.ndarray, time_step: str, monthly: bool) -> xr.DataArray:
    """Leads in store steps as the ``prediction_timedelta`` coordinate: whole months for a
    monthly task, else timedeltas."""
    if monthly:
        return xr.DataArray(steps, dims=PREDICTION_TIMEDELTA, attrs={"units": "months"})
    return xr.DataArray(
        pd.to_timedelta(steps * pd.Timedelta(time_step)).values, dims=PREDICTION_TIMEDELTA
    )


def _all_levels(ds: xr.Dataset, names: Sequence[str]) -> stacking.ChannelLayout:
    out = []
    for name in names:
        vertical = [d for d in ds[name].dims if d in stacking.VERTICAL_DIMS]
        if vertical:
            (dim,) = vertical
            out.append(stacking.VariableChannels(name, dim, tuple(ds[dim].values.tolist())))
        else:
            out.append(stacking.VariableChannels(name))
    return stacking.ChannelLayout(tuple(out))


def is_earth_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a pretraining or fine-tuning workdir of the Earth model."""
    from tellus.training import domains

    path = Path(path)
    if (path / finetuning.ADAPTER_CONFIG).exists():
        return True
    try:
        envelopes = domains.read_envelopes(path)
    except FileNotFoundError:
        return False
    return bool(envelopes) and all(c.get("kind") == pt.KIND.name for c in envelopes.values())


def load(path: str | os.PathLike) -> EarthPredictor:
    """The Earth model of a pretraining or fine-tuning workdir, as an
    :class:`EarthPredictor`.

    Raises:
      FileNotFoundError: no checkpoint (nor adapters) in ``path``.
    """
    model, config = finetuning.load(path)
    jax.block_until_ready(jax.tree.leaves(nnx.state(model)))
    return EarthPredictor(model, config, source=str(path))


__all__ = ["EarthPredictor", "is_earth_model", "load"]
