"""Forecasts: hierarchical temporal aggregation over the lead models, streamed to Zarr.

:class:`ForecastSystem` holds the trained lead models and yields the state at each requested
lead with the fewest model calls (:mod:`tellus.atmosphere.temporal`), keeping on device only
the states later calls start from. :func:`forecast` turns that into an ``xarray.Dataset`` in
the WeatherBench2 forecast layout::

    (time, prediction_timedelta, [realization,] [level,] latitude, longitude)

with ``time`` the init time. Given ``out``, each lead is written to a Zarr store as soon as
it is computed (the store is built under ``out.partial`` and renamed when complete), so a
10-day forecast at 0.25 deg never holds more than the states in flight.
"""

from __future__ import annotations

import collections
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import dask.array as da
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr
from flax import nnx

from tellus.atmosphere import forecaster as fc
from tellus.atmosphere import temporal
from tellus.data import progress, schema, stacking

LEAD_DIM = "prediction_timedelta"
MEMBER_DIM = "realization"


def _call(model: fc.Forecaster, x: jax.Array, static: jax.Array) -> jax.Array:
    return model(x, static)


_jitted_call = nnx.jit(_call)


class ForecastSystem:
    """The lead models of one system, composed by hierarchical temporal aggregation.

    Args:
      models: lead hours -> trained forecaster (all on the same grid and channels).
      naive: step only the shortest model (the baseline aggregation is compared with).
    """

    def __init__(self, models: dict[int, fc.Forecaster], naive: bool = False):
        if not models:
            raise ValueError("no lead models given")
        self.models = dict(sorted(models.items()))
        self.leads = tuple(self.models)
        if naive:
            short = self.leads[0]
            self.models = {short: self.models[short]}
            self.leads = (short,)
        first = next(iter(self.models.values())).config
        for lead, m in self.models.items():
            if m.config.lead_hours != lead:
                raise ValueError(f"model under {lead} h was trained for {m.config.lead_hours} h")
            if (m.config.model.lat, m.config.model.lon, m.config.channels) != (
                first.model.lat,
                first.model.lon,
                first.channels,
            ):
                raise ValueError(f"the {lead} h model's grid/channels differ from the others'")

    @property
    def config(self) -> fc.ForecasterConfig:
        return next(iter(self.models.values())).config

    def calls(self, lead_hours: Sequence[int]) -> tuple[temporal.Call, ...]:
        return temporal.plan_leads(lead_hours, self.leads)

    def steps(
        self,
        x0: np.ndarray | jax.Array,
        static: np.ndarray | jax.Array,
        lead_hours: Sequence[int],
    ) -> Iterator[tuple[int, jax.Array]]:
        """Yields ``(lead_hours, state [N, H, W, C])`` in increasing lead order.

        Args:
          x0: raw initial states ``[N, H, W, C]`` (N inits x members).
          static: raw static fields ``[H, W, S]``.
          lead_hours: the leads to produce.
        """
        calls = self.calls(lead_hours)
        wanted = set(int(h) for h in lead_hours)
        pending = collections.Counter(c.start for c in calls)
        states = {0: jnp.asarray(x0, jnp.float32)}
        static = jnp.asarray(static, jnp.float32)
        if 0 in wanted:
            yield 0, states[0]
        nonneg = jnp.asarray(fc.nonnegative_channels(self.config.model), jnp.int32)
        for c in calls:
            y = _jitted_call(self.models[c.lead], states[c.start], static)
            if nonneg.size:  # physical constraint: no negative humidity, at every step
                y = y.at[..., nonneg].set(jnp.maximum(y[..., nonneg], 0.0))
            pending[c.start] -= 1
            if pending[c.start] == 0:
                del states[c.start]
            if c.end in wanted:
                yield c.end, y
            if pending[c.end] > 0:
                states[c.end] = y


def _parse_hours(lead: str | pd.Timedelta | int) -> int:
    if isinstance(lead, int):
        return lead
    if isinstance(lead, str):  # "10d" as users write it; pandas wants "10D"
        lead = re.sub(r"(?<=\d)d$", "D", lead.strip())
    td = pd.Timedelta(lead)
    hours = td / pd.Timedelta("1h")
    if hours != int(hours):
        raise ValueError(f"lead {lead!r} is not a whole number of hours")
    return int(hours)


def output_leads(max_lead: str | pd.Timedelta | int, every: str | pd.Timedelta | int) -> list[int]:
    """``every, 2 every, ..., max_lead`` in hours (``"10d"``, ``"6h"`` accepted)."""
    top, step = _parse_hours(max_lead), _parse_hours(every)
    if step <= 0 or top < step:
        raise ValueError(f"need 0 < every ({step} h) <= lead ({top} h)")
    return list(range(step, top + 1, step))


def read_initial_conditions(
    store: str | Path,
    init_times: Sequence[str | pd.Timestamp],
    cfg: fc.ForecasterConfig,
) -> tuple[np.ndarray, np.ndarray, stacking.ChannelLayout, xr.Dataset]:
    """Raw states ``[N, H, W, C]`` at ``init_times``, the statics ``[H, W, S]``, the channel
    layout and the store (lazily opened).

    Raises:
      KeyError: an init time is not in the store (naming it and the store's range).
    """
    ds = xr.open_zarr(str(store), consolidated=False)
    times = pd.DatetimeIndex(ds.indexes[schema.TIME])
    inits = pd.DatetimeIndex([pd.Timestamp(t) for t in init_times])
    missing = inits.difference(times)
    if len(missing):
        raise KeyError(
            f"init times {[str(t) for t in missing]} are not in {store} "
            f"({times[0]} .. {times[-1]}, every {times[1] - times[0]})"
        )
    levels = list(ds[schema.LEVEL].values[: cfg.model.levels]) if cfg.model.levels else []
    layout = stacking.ChannelLayout.from_dataset(
        ds,
        fc.UPPER_VARIABLES + fc.SURFACE_VARIABLES,
        [lv for lv in schema.PRESSURE_LEVELS_13 if lv in set(levels)] or levels,
    )
    x0 = stacking.dataset_to_stacked(ds[list(layout.names)].sel(time=inits).load(), layout)
    static_layout = stacking.ChannelLayout.from_dataset(ds, fc.STATIC_VARIABLES, [])
    static = stacking.dataset_to_stacked(ds[list(fc.STATIC_VARIABLES)].load(), static_layout)
    return x0.astype(np.float32), static.astype(np.float32), layout, ds


def _lead_dataset(
    state: np.ndarray,
    layout: stacking.ChannelLayout,
    inits: pd.DatetimeIndex,
    members: int,
    lead_h: int,
    grid: xr.Dataset,
) -> xr.Dataset:
    _, h, w, c = state.shape
    lead_dims: tuple[str, ...] = (schema.TIME,)
    if members > 1:
        state = state.reshape(len(inits), members, h, w, c)
        lead_dims = (schema.TIME, MEMBER_DIM)
    coords = {
        schema.TIME: inits,
        schema.LATITUDE: grid[schema.LATITUDE].values,
        schema.LONGITUDE: grid[schema.LONGITUDE].values,
    }
    if members > 1:
        coords[MEMBER_DIM] = np.arange(members)
    ds = stacking.stacked_to_dataset(state, layout, leading_dims=lead_dims, coords=coords)
    ds = ds.expand_dims({LEAD_DIM: [pd.Timedelta(hours=lead_h)]}, axis=1)
    for name in ds.data_vars:
        if name in grid:
            ds[name].attrs = dict(grid[name].attrs)
    return ds


def forecast(
    system: ForecastSystem,
    store: str | Path,
    init_times: Sequence[str | pd.Timestamp],
    lead_hours: Sequence[int],
    *,
    out: str | Path | None = None,
    members: int = 1,
    perturb=None,
    show_progress: bool = True,
) -> xr.Dataset:
    """Forecasts from ``init_times`` to every lead in ``lead_hours``.

    Args:
      system: the lead models.
      store: the analysis store the initial conditions come from.
      init_times: init times (must be store times).
      lead_hours: output leads in hours.
      out: Zarr path to stream the leads to; None keeps the result in memory.
      members: ensemble size; members > 1 needs ``perturb``.
      perturb: ``perturb(x0 [N, H, W, C], members) -> [N * members, H, W, C]`` (raw units),
        e.g. from :mod:`tellus.atmosphere.perturbations`; member 0 may be the control.
      show_progress: show the progress over leads (a bar on a terminal, lines in a log).

    Returns:
      The forecast in the WeatherBench2 layout (opened from ``out`` when given).
    """
    cfg = system.config
    inits = pd.DatetimeIndex([pd.Timestamp(t) for t in init_times])
    x0, static, layout, grid = read_initial_conditions(store, inits, cfg)
    if members > 1:
        if perturb is None:
            raise ValueError(f"members={members} needs a perturbation function")
        x0 = np.asarray(perturb(x0, members), np.float32)
        if x0.shape[0] != len(inits) * members:
            raise ValueError(
                f"perturb returned {x0.shape[0]} states, expected "
                f"{len(inits)} inits x {members} members"
            )
    leads = sorted(set(int(h) for h in lead_hours))
    partial = None
    if out is not None:
        out = Path(out)
        partial = out.with_name(out.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        _create_store(partial, layout, inits, members, leads, grid)
    pieces = []
    steps = system.steps(x0, static, leads)
    for lead_h, state in progress.track(
        steps, "forecast", total=len(leads), unit="lead", enabled=show_progress
    ):
        ds = _lead_dataset(np.asarray(state), layout, inits, members, lead_h, grid)
        if partial is None:
            pieces.append(ds)
        else:
            i = leads.index(lead_h)
            ds.drop_vars([c for c in ds.coords if c != LEAD_DIM]).to_zarr(
                partial, region={LEAD_DIM: slice(i, i + 1)}, zarr_format=3, consolidated=False
            )
    if partial is None:
        return xr.concat(pieces, dim=LEAD_DIM)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return xr.open_zarr(out, consolidated=False)


def _create_store(path: Path, layout, inits, members, leads, grid) -> None:
    n_lat, n_lon = grid.sizes[schema.LATITUDE], grid.sizes[schema.LONGITUDE]
    dims = (schema.TIME, LEAD_DIM) + ((MEMBER_DIM,) if members > 1 else ())
    shape = (len(inits), len(leads)) + ((members,) if members > 1 else ())
    coords = {
        schema.TIME: inits,
        LEAD_DIM: pd.to_timedelta(leads, unit="h"),
        schema.LATITUDE: grid[schema.LATITUDE].values,
        schema.LONGITUDE: grid[schema.LONGITUDE].values,
    }
    if members > 1:
        coords[MEMBER_DIM] = np.arange(members)
    data_vars = {}
    encoding = {}
    for v in layout.variables:
        if v.vertical_dim is not None:
            vdims = (*dims, v.vertical_dim, schema.LATITUDE, schema.LONGITUDE)
            vshape = (*shape, len(v.levels), n_lat, n_lon)
            coords[v.vertical_dim] = np.asarray(v.levels)
        else:
            vdims = (*dims, schema.LATITUDE, schema.LONGITUDE)
            vshape = (*shape, n_lat, n_lon)
        chunks = tuple(1 if d == LEAD_DIM else s for d, s in zip(vdims, vshape, strict=True))
        data_vars[v.name] = (
            vdims,
            da.zeros(vshape, dtype=np.float32, chunks=chunks),
            dict(grid[v.name].attrs) if v.name in grid else {},
        )
        encoding[v.name] = {"chunks": chunks}
    xr.Dataset(data_vars, coords=coords).to_zarr(
        path, mode="w", compute=False, encoding=encoding, zarr_format=3, consolidated=False
    )
