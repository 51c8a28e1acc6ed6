"""Random-access training windows from a Zarr store (a grain ``RandomAccessDataSource``).

A window is one sample of a :class:`~tellus.data.tasks.TaskConfig`: the inputs at the history
times ending at the init time ``t0``, the targets at ``t0 + lead`` for every lead, the forcings
at all of those times and the static fields. :class:`WindowSource` yields it as a dict of
plain numpy arrays (``SAMPLE_KEYS``) in the channel order of its :class:`ChannelLayout`s::

    inputs     float32 [history, lat, lon, C_in]
    targets    float32 [n_leads, lat, lon, C_out]
    forcings   float32 [history + n_leads, lat, lon, C_f]   (input times, then target times)
    statics    float32 [lat, lon, C_s]
    init_time  int64   nanoseconds since 1970 of t0
    derived    float32 [n_leads, n_derived]   (only for a task with derived_targets)

Which windows exist: times are counted in steps of ``task.time_step`` (hours, or calendar
months, via :func:`step_ordinals`); a window exists only if every one of its times is in the
store, so a gap in the time axis removes the windows that would straddle it instead of
silently joining data across it. A :class:`DateRange` keeps a window only if *all* its input
and target times lie inside it, so disjoint ranges (train/validation/test) share no data.
"All its times" are the task's ``reach_offsets``: the window's offsets and, for a derived
target's running mean, the steps around each lead it reads (the centred 3-month mean at lead
24 needs step 25).

Segments: a store with a ``realization`` dim holds several runs on one time axis (a long
model run cut into consecutive segments, each labelled from the same start). Its windows are
indexed as (segment, time), segment by segment (:attr:`WindowSource.segment_indices`,
:attr:`WindowSource.inits`); a window reads one segment only, so none crosses a segment
boundary, and a :class:`DateRange` applies to the times within every segment.

Derived targets (:class:`tellus.data.tasks.DerivedTarget`, e.g. Nino3.4's centred 3-month
mean) are computed once when the source opens the store, with
:func:`tellus.data.derived.derive` over the whole store (each segment has its own
calendar-month climatology over the base period), and each sample reads them at its leads.

Read path: xarray reads only metadata (the edge). Each sample then reads, per variable, just
the time indices (and levels) it needs straight from the Zarr array with tensorstore, issuing
all variables' reads before waiting on any: about twice as fast as zarr-python's orthogonal
indexing and five to ten times faster than xarray's ``isel`` when measured (the figures are
in ``docs/performance.md``). ``backend="zarr"`` remains for stores tensorstore cannot open
(fsspec URLs).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import derived, schema, stacking, tasks

INPUTS = "inputs"
TARGETS = "targets"
FORCINGS = "forcings"
STATICS = "statics"
INIT_TIME = "init_time"
SAMPLE_KEYS = (INPUTS, TARGETS, FORCINGS, STATICS, INIT_TIME)
# Only in the samples of a task with derived targets.
DERIVED = "derived"
# The dim of a store's segments (consecutive parts of one long run, or independent runs).
REALIZATION = "realization"

Backend = Literal["auto", "tensorstore", "zarr"]

# GraphCast's constants for the progress features.
_SECONDS_PER_DAY = 86400.0
_DAYS_PER_YEAR = 365.24219  # Mean tropical year.


@dataclasses.dataclass(frozen=True)
class DateRange:
    """A half-open interval of times ``[start, stop)``.

    Half-open so that adjacent splits (train up to 2016, validation from 2016) meet without
    overlapping.
    """

    start: pd.Timestamp
    stop: pd.Timestamp

    def __post_init__(self):
        object.__setattr__(self, "start", pd.Timestamp(self.start))
        object.__setattr__(self, "stop", pd.Timestamp(self.stop))
        if not self.start < self.stop:
            raise ValueError(f"empty date range [{self.start}, {self.stop})")

    def overlaps(self, other: DateRange) -> bool:
        return self.start < other.stop and other.start < self.stop


def check_disjoint(ranges: Mapping[str, DateRange]) -> None:
    """Raises ValueError if any two named ranges overlap (which would leak data)."""
    items = list(ranges.items())
    for i, (a, ra) in enumerate(items):
        for b, rb in items[i + 1 :]:
            if ra.overlaps(rb):
                raise ValueError(f"splits {a!r} {ra} and {b!r} {rb} overlap")


def step_ordinals(times: pd.DatetimeIndex, time_step: str) -> np.ndarray:
    """Numbers each time by its step on the ``time_step`` grid: equal spacing -> consecutive.

    Fixed steps count from the first time; monthly (yearly) steps count calendar months
    (years), whatever the day within the month, so mid-month labels work too.

    Args:
      times: the store's time coordinate.
      time_step: pandas frequency alias.

    Returns:
      int64 ordinals, strictly increasing.

    Raises:
      ValueError: if a time is off the grid, or times are not strictly increasing (duplicates
        within one step included).
    """
    times = pd.DatetimeIndex(times)
    if len(times) == 0:
        raise ValueError("empty time coordinate")
    offset = tasks.time_offset(time_step)
    if isinstance(offset, pd.offsets.Tick):
        step = pd.Timedelta(offset).value
        ns = times.as_unit("ns").asi8
        units, rem = np.divmod(ns - ns[0], step)
    elif isinstance(offset, pd.offsets.MonthBegin | pd.offsets.MonthEnd):
        months = np.asarray(times.year * 12 + times.month - 1, dtype=np.int64)
        units, rem = np.divmod(months - months[0], offset.n)
    elif isinstance(offset, pd.offsets.YearBegin | pd.offsets.YearEnd):
        years = np.asarray(times.year, dtype=np.int64)
        units, rem = np.divmod(years - years[0], offset.n)
    else:
        raise ValueError(f"unsupported time_step {time_step!r}: use a fixed step or months")
    if np.any(rem != 0):
        raise ValueError(
            f"times {list(times[rem != 0][:3])} are not on the {time_step!r} grid "
            f"starting at {times[0]}"
        )
    if np.any(np.diff(units) <= 0):
        bad = np.flatnonzero(np.diff(units) <= 0)[:3]
        raise ValueError(
            f"time coordinate must have one time per {time_step!r} step, "
            f"increasing; see {list(times[bad])} -> {list(times[bad + 1])}"
        )
    return units.astype(np.int64)


def window_indices(
    times: pd.DatetimeIndex,
    task: tasks.TaskConfig,
    dates: DateRange | None = None,
) -> np.ndarray:
    """Time indices of every complete window, ``[n_windows, len(task.window_offsets)]``.

    Row ``w`` lists the store time indices of window ``w`` in the order of
    ``task.window_offsets`` (inputs, then leads). A window is kept only if all its times
    (``task.reach_offsets``: its offsets and the steps its derived targets' running means
    read) exist at the expected spacing and, given ``dates``, all lie in
    ``[dates.start, dates.stop)``.
    """
    ordinals = step_ordinals(times, task.time_step)
    reach = np.asarray(task.reach_offsets, dtype=np.int64)
    needed = ordinals[:, None] + reach[None, :]
    idx = np.clip(np.searchsorted(ordinals, needed), 0, len(ordinals) - 1)
    ok = np.all(ordinals[idx] == needed, axis=1)
    if dates is not None:
        ns = pd.DatetimeIndex(times).as_unit("ns").asi8[idx]
        ok &= np.all(ns >= dates.start.as_unit("ns").value, axis=1)
        ok &= np.all(ns < dates.stop.as_unit("ns").value, axis=1)
    return idx[ok][:, np.searchsorted(reach, task.window_offsets)]


def computed_forcings(
    names: tuple[str, ...], times_ns: np.ndarray, longitude: np.ndarray, n_lat: int
) -> np.ndarray:
    """Time features of GraphCast: progress through the year and the local solar day.

    Args:
      names: names from :data:`tellus.data.tasks.COMPUTED_FORCINGS`.
      times_ns: int64 nanoseconds since 1970, ``[T]``.
      longitude: degrees east, ``[lon]`` (the local day starts later to the west).
      n_lat: number of latitudes to broadcast over.

    Returns:
      float32 ``[T, n_lat, lon, len(names)]``.
    """
    seconds = np.asarray(times_ns, dtype=np.int64) // 10**9
    year = np.mod(seconds / _SECONDS_PER_DAY / _DAYS_PER_YEAR, 1.0)[:, None]
    day = np.mod(
        (seconds % 86400)[:, None] / _SECONDS_PER_DAY + np.asarray(longitude)[None, :] / 360.0, 1.0
    )
    features = {
        tasks.YEAR_PROGRESS_SIN: lambda: np.sin(2 * np.pi * year) + 0 * day,
        tasks.YEAR_PROGRESS_COS: lambda: np.cos(2 * np.pi * year) + 0 * day,
        tasks.DAY_PROGRESS_SIN: lambda: np.sin(2 * np.pi * day),
        tasks.DAY_PROGRESS_COS: lambda: np.cos(2 * np.pi * day),
    }
    out = np.empty((len(seconds), n_lat, len(longitude), len(names)), np.float32)
    for c, name in enumerate(names):
        out[..., c] = features[name]()[:, None, :]
    return out


# --- Array readers ---------------------------------------------------------------------------


class _Done:
    """A finished read, with the interface of a tensorstore future."""

    def __init__(self, value: np.ndarray):
        self._value = value

    def result(self) -> np.ndarray:
        return self._value


def _tensorstore_kvstore(store: str, name: str) -> dict | None:
    if store.startswith("gs://"):
        bucket, _, path = store[len("gs://") :].partition("/")
        return {"driver": "gcs", "bucket": bucket, "path": f"{path.rstrip('/')}/{name}/"}
    if "://" in store and not store.startswith("file://"):
        return None
    path = Path(store.removeprefix("file://")).absolute()
    return {"driver": "file", "path": f"{path}/{name}/"}


class _Reader:
    """Reads an outer (orthogonal) selection of one Zarr array; returns a future."""

    def __init__(self, store: str, name: str, backend: Backend, context=None):
        self.store, self.name = store, name
        kvstore = _tensorstore_kvstore(store, name) if backend != "zarr" else None
        if backend == "tensorstore" and kvstore is None:
            raise ValueError(f"tensorstore cannot open {store!r}; use backend='zarr'")
        if kvstore is not None:
            import tensorstore as ts

            spec = {"driver": "zarr3", "kvstore": kvstore}
            if context is not None:  # A cache: the store is read-only while it is read.
                spec["recheck_cached_data"] = "open"
            self._ts = ts.open(spec, read=True, context=context).result()
            self._zarr = None
        else:
            import zarr

            self._ts = None
            self._zarr = zarr.open_array(store, path=name, mode="r")

    def read(self, key: tuple):
        """``key``: one entry per leading dim (an index array, an int or a slice)."""
        if self._ts is not None:
            if len(key) == 1:
                return self._ts[key[0]].read()
            return self._ts.oindex[key].read()
        return _Done(self._zarr.oindex[key])


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How one store variable's read is scattered into the sample arrays."""

    name: str
    rows: np.ndarray  # Window rows (positions in task.window_offsets) to read.
    level_idx: np.ndarray | None  # Indices into the store's vertical dim; None: all or 2D.
    # (sample key, positions in `rows`, destination rows, channel slice).
    destinations: tuple[tuple[str, np.ndarray, np.ndarray, slice], ...]
    dims: tuple[str, ...] = ()  # The variable's dims in the store.

    def key(self, time_idx: np.ndarray, segment: int) -> tuple:
        """The selection of window times ``time_idx`` (and levels) in ``segment``: the
        segment's index drops the ``realization`` dim."""
        if REALIZATION not in self.dims:
            return (time_idx,) if self.level_idx is None else (time_idx, self.level_idx)
        out = []
        for dim in self.dims[: -len(schema.SPATIAL_DIMS)]:
            if dim == schema.TIME:
                out.append(time_idx)
            elif dim == REALIZATION:
                out.append(int(segment))
            else:  # The vertical dim.
                out.append(slice(None) if self.level_idx is None else self.level_idx)
        return tuple(out)


def open_metadata(store: str | os.PathLike) -> xr.Dataset:
    """Opens a store lazily with xarray, for its coordinates and variable metadata."""
    with warnings.catch_warnings():
        # Stores written without consolidated metadata are fine, just slower to open.
        warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated")
        return xr.open_zarr(str(store), chunks=None, consolidated=None)


class WindowSource:
    """Windows of a task from one Zarr store, by index (grain ``RandomAccessDataSource``).

    Attributes:
      task: the task.
      dates: the date range windows must lie in, or None for all.
      input_layout, target_layout, forcing_layout, static_layout: channel orders.
      latitude, longitude: grid coordinates (degrees).
      n_segments: the store's ``realization`` size (1 without that dim).
      time_indices: ``[len(self), n_window_times]`` store time indices of each window.
      segment_indices: ``[len(self)]`` the segment of each window (windows run segment by
        segment, in time order within each).
      derived: ``[n_segments, n_time, n_derived]`` float32, the task's derived targets at every
        store time (NaN where a running mean leaves the record); ``n_derived`` may be 0.
    """

    def __init__(
        self,
        store: str | os.PathLike,
        task: tasks.TaskConfig,
        dates: DateRange | None = None,
        *,
        backend: Backend = "auto",
        cache_bytes: int = 0,
    ):
        """Opens the store and finds the task's windows.

        Args:
          store: path or URL of a Zarr store in the Tellus schema.
          task: what to read.
          dates: keep only windows whose times all lie in this range.
          backend: ``"tensorstore"`` (local or ``gs://``), ``"zarr"`` (any fsspec URL), or
            ``"auto"`` (tensorstore when it can open the store).
          cache_bytes: a tensorstore cache of decoded chunks (per process, shared by the
            variables), for stores small enough to stay in memory whose windows share chunks
            (monthly worlds: a sample then reads a few months of a cached chunk instead of
            decoding it); 0 for none.

        Raises:
          KeyError: for a variable or level missing from the store.
          ValueError: for a time axis off the task's time step, no complete window, or a
            derived target that is NaN at a lead of some window (NaN data in its box).
        """
        self.store = str(store)
        self.task = task
        self.dates = dates
        self.backend: Backend = backend
        self.cache_bytes = int(cache_bytes)
        ds = open_metadata(self.store)
        derived_vars = tuple(d.variable for d in task.derived_targets)
        for name in dict.fromkeys(
            task.input_variables + task.target_variables + task.store_forcings + derived_vars
        ):
            if name not in ds.data_vars:
                raise KeyError(f"{name!r} not in {self.store} ({sorted(ds.data_vars)})")
            dims = ds[name].dims
            core = tuple(d for d in dims if d != REALIZATION)
            if core[0] != schema.TIME or core[-2:] != schema.SPATIAL_DIMS or len(core) > 4:
                raise ValueError(
                    f"{name!r} has dims {dims}; expected (time, [level|depth], "
                    "latitude, longitude), with or without a 'realization' dim: bring the "
                    "store into the schema"
                )

        self._times = pd.DatetimeIndex(ds.indexes[schema.TIME]).as_unit("ns")
        self.n_segments = int(ds.sizes[REALIZATION]) if REALIZATION in ds.dims else 1
        windows = window_indices(self._times, task, dates)
        if len(windows) == 0:
            raise ValueError(
                f"no complete window of {task.reach_offsets} steps of "
                f"{task.time_step!r} in {self.store} within {dates}"
            )
        # Segment by segment: window w of segment s is row s * len(windows) + w.
        self.time_indices = np.tile(windows, (self.n_segments, 1))
        self.segment_indices = np.repeat(np.arange(self.n_segments), len(windows))
        self.derived = self._derive()
        self.latitude = np.asarray(ds[schema.LATITUDE].values)
        self.longitude = np.asarray(ds[schema.LONGITUDE].values)

        levels = task.levels
        self.input_layout = stacking.ChannelLayout.from_dataset(ds, task.input_variables, levels)
        self.target_layout = stacking.ChannelLayout.from_dataset(ds, task.target_variables, levels)
        self.forcing_layout = stacking.ChannelLayout(
            tuple(
                stacking.VariableChannels(n)
                if n in tasks.COMPUTED_FORCINGS
                else stacking.ChannelLayout.from_dataset(ds, [n], levels).variables[0]
                for n in task.forcing_variables
            )
        )
        self.static_layout = stacking.ChannelLayout.from_dataset(ds, task.static_variables, levels)
        statics = ds[list(task.static_variables)].load()
        self._statics = (
            stacking.dataset_to_stacked(statics, self.static_layout).astype(np.float32)
            if task.static_variables
            else np.zeros((len(self.latitude), len(self.longitude), 0), np.float32)
        )
        self._plans = self._make_plans(ds)
        self._readers: dict[str, _Reader] | None = None

    def _derive(self) -> np.ndarray:
        """The derived targets at every time of every segment, checked finite at the leads
        of every window."""
        targets = self.task.derived_targets
        shape = (self.n_segments, len(self._times))
        if not targets:
            return np.zeros((*shape, 0), np.float32)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Failed to open Zarr store with consolidated")
            # Lazily indexed, without dask: a box mean reads the box's window of every
            # time step once (a dask graph of a monthly store's one-month chunks cost
            # seconds of scheduling for a few megabytes).
            ds = xr.open_zarr(self.store, chunks=None, consolidated=None)
        out = np.empty((*shape, len(targets)), np.float32)
        for k, target in enumerate(targets):
            da = derived.derive(ds, target)
            if REALIZATION not in da.dims:
                da = da.expand_dims({REALIZATION: self.n_segments})
            out[..., k] = da.transpose(REALIZATION, schema.TIME).values.astype(np.float32)
        h = self.task.history_steps
        at_leads = out[self.segment_indices[:, None], self.time_indices[:, h:]]
        bad = ~np.isfinite(at_leads).all(axis=(1, 2))
        if bad.any():
            w = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"derived targets {self.task.derived_names} are NaN at a lead of {bad.sum()} "
                f"windows of {self.store} (first: segment {self.segment_indices[w]}, init "
                f"{self._times[self.time_indices[w, h - 1]]}): the store has NaN in a box"
            )
        return out

    def _make_plans(self, ds: xr.Dataset) -> tuple[_Plan, ...]:
        h = self.task.history_steps
        n_rows = len(self.task.window_offsets)
        roles = (
            (INPUTS, self.input_layout, np.arange(h)),
            (TARGETS, self.target_layout, np.arange(h, n_rows)),
            (FORCINGS, self.forcing_layout, np.arange(n_rows)),
        )
        plans = []
        names = dict.fromkeys(
            self.task.input_variables + self.task.target_variables + self.task.store_forcings
        )
        for name in names:
            used = [(key, layout, rows) for key, layout, rows in roles if name in layout.names]
            rows = np.unique(np.concatenate([r for _, _, r in used]))
            level_idx = None
            vc = used[0][1][name]
            if vc.vertical_dim is not None:
                level_idx = stacking.level_indices(ds[vc.vertical_dim].values, vc.levels)
                if np.array_equal(level_idx, np.arange(ds.sizes[vc.vertical_dim])):
                    level_idx = None  # All levels in store order: no index needed.
            # Inputs fill rows 0..h-1, targets 0..n_leads-1, forcings every window row.
            dests = tuple(
                (
                    key,
                    np.searchsorted(rows, r),
                    r - h if key == TARGETS else r,
                    layout.slices()[name],
                )
                for key, layout, r in used
            )
            plans.append(_Plan(name, rows, level_idx, dests, tuple(ds[name].dims)))
        return tuple(plans)

    # --- grain RandomAccessDataSource ----------------------------------------------------

    def __len__(self) -> int:
        return len(self.time_indices)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range [0, {len(self)})")
        if self._readers is None:
            context = None
            if self.cache_bytes > 0 and self.backend != "zarr":
                import tensorstore as ts

                context = ts.Context({"cache_pool": {"total_bytes_limit": self.cache_bytes}})
            self._readers = {
                p.name: _Reader(self.store, p.name, self.backend, context) for p in self._plans
            }
        tidx, segment = self.time_indices[index], self.segment_indices[index]
        # Issue every read before waiting on any: tensorstore reads them concurrently.
        futures = [self._readers[p.name].read(p.key(tidx[p.rows], segment)) for p in self._plans]

        h, n_lat, n_lon = self.task.history_steps, len(self.latitude), len(self.longitude)
        n_leads = len(self.task.lead_steps)
        times_ns = self._times.asi8[tidx]
        out = {
            INPUTS: np.empty((h, n_lat, n_lon, self.input_layout.num_channels), np.float32),
            TARGETS: np.empty((n_leads, n_lat, n_lon, self.target_layout.num_channels), np.float32),
            FORCINGS: np.empty(
                (h + n_leads, n_lat, n_lon, self.forcing_layout.num_channels), np.float32
            ),
            STATICS: self._statics.copy(),
            INIT_TIME: np.int64(times_ns[h - 1]),
        }
        if self.task.derived_targets:
            out[DERIVED] = self.derived[segment, tidx[h:]]
        computed = self.task.computed_forcings
        if computed:
            values = computed_forcings(computed, times_ns, self.longitude, n_lat)
            slices = self.forcing_layout.slices()
            for c, name in enumerate(computed):
                out[FORCINGS][..., slices[name]] = values[..., c : c + 1]
        for plan, future in zip(self._plans, futures, strict=True):
            data = future.result()
            # [rows, level, lat, lon] -> [rows, lat, lon, level]; 2D gets a channel axis.
            data = np.moveaxis(data, 1, -1) if data.ndim == 4 else data[..., None]
            for key, src, dst, channels in plan.destinations:
                out[key][dst, ..., channels] = data[src]
        return out

    def __repr__(self) -> str:
        # grain checks repr(source) when restoring an iterator state: keep it stable.
        return (
            f"WindowSource(store={self.store!r}, task={self.task!r}, dates={self.dates!r},"
            f" n={len(self)})"
        )

    def __getstate__(self):
        # Open arrays are per process: worker processes reopen them lazily.
        state = self.__dict__.copy()
        state["_readers"] = None
        return state

    # --- Metadata ------------------------------------------------------------------------

    @property
    def init_times(self) -> pd.DatetimeIndex:
        """The init time (last input time) of every window (the same in every segment)."""
        return self._times[self.time_indices[:, self.task.history_steps - 1]]

    @property
    def inits(self) -> np.ndarray:
        """``[len(self), 2]`` the (segment, store time index of the init time) of every
        window."""
        t0 = self.time_indices[:, self.task.history_steps - 1]
        return np.stack([self.segment_indices, t0], axis=-1)

    @property
    def times(self) -> pd.DatetimeIndex:
        """The store's time axis (of every segment)."""
        return self._times

    def window_times(self, index: int) -> pd.DatetimeIndex:
        """All times of window ``index``: inputs then targets."""
        return self._times[self.time_indices[index]]

    def unstack(self, array: np.ndarray, key: str, leading_dims=("time",)) -> xr.Dataset:
        """A sample array (``inputs``, ``targets``...) back as a Dataset on the store grid."""
        layout = {
            INPUTS: self.input_layout,
            TARGETS: self.target_layout,
            FORCINGS: self.forcing_layout,
            STATICS: self.static_layout,
        }[key]
        coords = {schema.LATITUDE: self.latitude, schema.LONGITUDE: self.longitude}
        return stacking.stacked_to_dataset(array, layout, leading_dims=leading_dims, coords=coords)

    @classmethod
    def splits(
        cls,
        store: str | os.PathLike,
        task: tasks.TaskConfig,
        ranges: Mapping[str, DateRange],
        **kwargs,
    ) -> dict[str, WindowSource]:
        """One source per named, pairwise disjoint date range (train/validation/test).

        Raises:
          ValueError: if two ranges overlap.
        """
        check_disjoint(ranges)
        return {name: cls(store, task, r, **kwargs) for name, r in ranges.items()}
