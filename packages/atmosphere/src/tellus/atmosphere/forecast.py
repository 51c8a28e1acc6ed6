"""Forecasts: hierarchical temporal aggregation over the lead models, streamed to Zarr.

:class:`ForecastSystem` holds the trained lead models and yields the state at each requested
lead with the fewest model calls (:mod:`tellus.atmosphere.temporal`), keeping on device only
the states later calls start from. :func:`forecast` turns that into an ``xarray.Dataset`` in
the WeatherBench2 forecast layout::

    (time, prediction_timedelta, [realization,] [level,] latitude, longitude)

with ``time`` the init time. Given ``out``, each lead is written to a Zarr store as soon as
it is computed (the store is built under ``out.partial`` and renamed when complete), so a
10-day forecast at 0.25 deg never holds more than the states in flight. The initial states
come from a store or from a Dataset in the schema (:func:`initial_conditions`);
:class:`Predictor`, what ``tellus.load`` returns for atmosphere checkpoints, forecasts from
a Dataset with the lead models' own leads by default.
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


def initial_conditions(
    ds: xr.Dataset,
    init_times: Sequence[str | pd.Timestamp],
    cfg: fc.ForecasterConfig,
    where: str = "the dataset",
) -> tuple[np.ndarray, np.ndarray, stacking.ChannelLayout]:
    """Raw states ``[N, H, W, C]`` at ``init_times`` of a Dataset in the schema (a store's,
    or one in memory), its statics ``[H, W, S]`` and the channel layout.

    Raises:
      KeyError: an init time is not in ``ds`` (naming it and ``where``'s range), or a
        variable or level the model needs is missing.
      ValueError: ``ds`` is on another grid than the model's.
    """
    times = pd.DatetimeIndex(np.atleast_1d(ds.indexes[schema.TIME]))
    inits = pd.DatetimeIndex([pd.Timestamp(t) for t in init_times])
    missing = inits.difference(times)
    if len(missing):
        every = f", every {times[1] - times[0]}" if len(times) > 1 else ""
        raise KeyError(
            f"init times {[str(t) for t in missing]} are not in {where} "
            f"({times[0]} .. {times[-1]}{every})"
        )
    grid = (ds.sizes.get(schema.LATITUDE), ds.sizes.get(schema.LONGITUDE))
    if grid != (cfg.model.lat, cfg.model.lon) or not np.allclose(
        ds[schema.LATITUDE].values, cfg.latitude
    ):
        raise ValueError(
            f"{where} is on a {grid[0]} x {grid[1]} grid (latitude "
            f"{np.asarray(ds[schema.LATITUDE].values).tolist()}); the model's is "
            f"{cfg.model.lat} x {cfg.model.lon} (latitude {list(cfg.latitude)})"
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
    return x0.astype(np.float32), static.astype(np.float32), layout


def read_initial_conditions(
    store: str | Path,
    init_times: Sequence[str | pd.Timestamp],
    cfg: fc.ForecasterConfig,
) -> tuple[np.ndarray, np.ndarray, stacking.ChannelLayout, xr.Dataset]:
    """:func:`initial_conditions` of the store at ``store``, and the store (lazily opened).

    Raises:
      KeyError: an init time is not in the store (naming it and the store's range).
    """
    ds = xr.open_zarr(str(store), consolidated=False)
    x0, static, layout = initial_conditions(ds, init_times, cfg, where=str(store))
    return x0, static, layout, ds


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
    store: str | Path | xr.Dataset,
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
      store: the analysis store the initial conditions come from, or a Dataset in the
        schema (in memory or opened).
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
    if isinstance(store, xr.Dataset):
        grid = store
        x0, static, layout = initial_conditions(store, inits, cfg)
    else:
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


class Predictor:
    """The lead models of a run as ``tellus.load`` returns them: states in a Dataset in, the
    forecast in the WeatherBench2 layout out (through :class:`ForecastSystem` and
    :func:`forecast`).

    Args:
      system: the lead models.
    """

    def __init__(self, system: ForecastSystem):
        self.system = system

    @property
    def leads(self) -> tuple[int, ...]:
        """The lead models' hours."""
        return self.system.leads

    def __repr__(self) -> str:
        m = self.system.config.model
        return (
            f"atmosphere Predictor(lead models {', '.join(f'{h} h' for h in self.leads)}; "
            f"{m.lat} x {m.lon} grid, {m.levels} levels)"
        )

    def forecast(
        self,
        ds: xr.Dataset,
        *,
        lead: str | int | None = None,
        every: str | int | None = None,
        init_time: str | pd.Timestamp | Sequence[str | pd.Timestamp] | None = None,
        members: int = 1,
        perturbation: str = "perlin",
        seed: int = 0,
        out: str | Path | None = None,
        show_progress: bool = False,
    ) -> xr.Dataset:
        """The forecast from the states in ``ds``.

        Args:
          ds: a Dataset in the schema on the model's grid with the state at the init
            time(s) (the upper-air variables on the model's levels, the surface variables)
            and the static fields (``land_sea_mask``, ``soil_type``,
            ``geopotential_at_surface``); ``time`` a dimension or a scalar coordinate.
          lead: the longest lead (``"5d"``, ``"36h"`` or hours); default the longest lead
            model's.
          every: the output interval; default the shortest lead model's.
          init_time: the init time(s), among ``ds``'s times; default every one.
          members: ensemble members (1: deterministic); member 0 is the control.
          perturbation: ``perlin``, ``gaussian`` or ``bred``
            (:func:`tellus.atmosphere.ensemble.perturbation_fn`), for ``members > 1``.
          seed: the perturbations' seed.
          out: a Zarr path to stream the forecast to (replaced); None keeps it in memory.
          show_progress: show the progress over leads.

        Returns:
          ``(time, prediction_timedelta, [realization,] [level,] latitude, longitude)``,
          ``time`` the init time.

        Raises:
          KeyError: an init time not in ``ds``, or a variable or level the model needs.
          ValueError: ``ds`` on another grid, or leads the lead models cannot reach.
        """
        if schema.TIME not in ds.dims:
            if schema.TIME not in ds.coords:
                raise KeyError(f"the dataset has no {schema.TIME!r} (the init time)")
            ds = ds.expand_dims(schema.TIME)
            for name in fc.STATIC_VARIABLES:
                if name in ds:
                    ds[name] = ds[name].isel({schema.TIME: 0}, drop=True)
        if init_time is None:
            inits = list(pd.DatetimeIndex(ds.indexes[schema.TIME]))
        elif isinstance(init_time, str | pd.Timestamp | np.datetime64):
            inits = [pd.Timestamp(init_time)]
        else:
            inits = [pd.Timestamp(t) for t in init_time]
        lead_hours = output_leads(
            max(self.leads) if lead is None else lead, self.leads[0] if every is None else every
        )
        self.system.calls(lead_hours)  # every lead reachable from the lead models
        perturb = None
        if members > 1:
            from tellus.atmosphere import ensemble

            static = None
            if perturbation == "bred":  # breeding steps the model: it needs the statics
                static = initial_conditions(ds, inits[:1], self.system.config)[1]
            perturb = ensemble.perturbation_fn(self.system, perturbation, seed, static=static)
        return forecast(
            self.system,
            ds,
            inits,
            lead_hours,
            out=out,
            members=members,
            perturb=perturb,
            show_progress=show_progress,
        )


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
