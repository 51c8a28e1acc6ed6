"""The ocean's entry in the Domain registry (:mod:`tellus.training.domains`), its samples and
the config a store implies.

The task (:func:`tellus.ocean.forecaster.task_for`): the ocean state of one month (T, S, u,
v on every depth, SST, SSH) -> the states 1-6 months later, the wind stress at the initial
and every lead's month, the ocean mask as the one static field; samples:
:class:`tellus.data.sources.WindowSource` windows with the initial calendar month
(:class:`Samples`), through the shared loader (:func:`batches`); the model: the ORCA-DL
forecaster (:class:`tellus.ocean.forecaster.OceanForecaster`, its fusion the shared trunk);
the loss: area- and thickness-weighted MSE over the ocean (:func:`tellus.ocean.forecaster.loss_fn`).
:func:`make_config` fills a forecaster's config from a store: the grid, the depths, the
layers' thicknesses and the calendar-month statistics of a training range.
The loader (:func:`load`, ``Domain.load``): a trained forecaster as a
:class:`tellus.ocean.forecast.Predictor` (what ``tellus.load`` returns).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from tellus.data import schema, sources, stacking, tasks, validation
from tellus.kernels import earth_trunk
from tellus.ocean import forecaster as fc
from tellus.ocean import model as model_lib
from tellus.ocean.normalization import MonthlyNormalizer
from tellus.training import domains, streams

MONTH = "month"
KEYS = (sources.INPUTS, sources.TARGETS, sources.FORCINGS, sources.STATICS, MONTH)
THICKNESS = "layer_thickness"  # per depth (m), in the embedded ocean's stores


class Samples:
    """The windows of a :class:`~tellus.data.sources.WindowSource` of an ocean task with the
    calendar month of each initial state: ``inputs [1, lat, lon, C]``, ``targets [L, lat,
    lon, C]``, ``forcings [1 + L, lat, lon, F]``, ``statics [lat, lon, 1]`` (the ocean mask),
    float32 with NaN over land as in the store, and ``month`` int32 (1..12).

    A random-access source for the shared grain loader
    (:class:`tellus.training.streams.LoaderStream`).
    """

    def __init__(self, windows: sources.WindowSource, name: str = "ocean"):
        task = windows.task
        if task.history_steps != 1 or task.static_variables != fc.STATICS:
            raise ValueError(
                f"an ocean sample has one input month and the statics {fc.STATICS}; the task "
                f"has {task.history_steps} and {task.static_variables}"
            )
        self.windows = windows
        self.name = name
        self._months = windows.init_times.month.to_numpy().astype(np.int32)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        s = self.windows[int(index)]
        out = {key: s[key] for key in KEYS[:-1]}
        out[MONTH] = self._months[int(index)]
        return out

    def __repr__(self) -> str:
        # grain compares it when restoring an iterator state: keep it stable.
        return f"Samples({self.name!r}, n={len(self)})"


def samples(
    store: str | os.PathLike,
    cfg: fc.ForecasterConfig,
    dates: sources.DateRange | None = None,
    **kwargs: Any,
) -> Samples:
    """The samples of ``cfg``'s task in ``store`` (within ``dates``); ``kwargs`` go to the
    :class:`~tellus.data.sources.WindowSource`."""
    task = fc.task_for(cfg.depths, cfg.leads, cfg.variables, cfg.forcings)
    return Samples(sources.WindowSource(store, task, dates, **kwargs))


def batches(source: Samples, batch_size: int, seed: int = 0) -> streams.LoaderStream:
    """Endless shuffled batches of ``source`` through the shared grain loader."""
    return streams.LoaderStream(source, batch_size, seed)


def make_config(
    store: str | os.PathLike,
    net: model_lib.NetConfig,
    time_range: tuple[str, str],
    *,
    depths: Sequence[float] | None = None,
    variables: Sequence[str] = fc.VARIABLES,
    forcings: Sequence[str] = fc.FORCINGS,
    leads: Sequence[int] = fc.LEADS,
    observed_forcing: bool = False,
    residual: bool = True,
    anomaly_base: bool = True,
    forcing_modes: int = 0,
) -> fc.ForecasterConfig:
    """A forecaster's config for ``store``: its latitudes, depths (all, or ``depths``), the
    layers' thicknesses when the store has them, and the calendar-month statistics of the
    variables and forcings over ``time_range`` (the training months, inclusive). New
    forecasters predict each lead's change from the initial state (``residual``): from
    scratch, the network's first outputs are persistence, not noise around the mean state;
    with ``anomaly_base`` (the default) damped persistence of the anomaly from each grid
    point's calendar-month climatology, its damping initialized with the lag regression of
    the range's anomalies (:func:`anomaly_statistics`), and with ``forcing_modes`` a linear
    response to the initial month's forcing (:func:`forcing_response` fits it; the
    caller sets it with :func:`tellus.ocean.forecaster.set_forcing_response`); a residual
    forecaster's decoders start at zero (``zero_init``), so that it starts as its base.

    Raises:
      SchemaError: the store is outside the schema, or the range lacks a calendar month.
      ValueError: ``net`` does not fit the store's grid or channels.
    """
    ds = validation.open_dataset(str(store), check_values="none")
    if (net.n_lat, net.n_lon) != (ds.sizes[schema.LATITUDE], ds.sizes[schema.LONGITUDE]):
        raise ValueError(
            f"the network is for a {net.n_lat} x {net.n_lon} grid; {store} is "
            f"{ds.sizes[schema.LATITUDE]} x {ds.sizes[schema.LONGITUDE]}"
        )
    if depths is None:
        depths = tuple(float(d) for d in ds[schema.DEPTH].values)
    task = fc.task_for(depths, leads, variables, forcings)
    windows = sources.WindowSource(store, task)
    state = MonthlyNormalizer.from_dataset(ds, windows.input_layout, time_range)
    forcing = MonthlyNormalizer.from_dataset(ds, windows.forcing_layout, time_range)
    thickness = None
    if THICKNESS in ds.variables:
        all_depths = ds[schema.DEPTH].values
        index = [int(np.flatnonzero(np.isclose(all_depths, d))[0]) for d in depths]
        thickness = tuple(float(v) for v in np.asarray(ds[THICKNESS].values)[index])
    damping = None
    if anomaly_base:
        _, slopes = anomaly_statistics(store, task, time_range)
        damping = tuple(tuple(float(v) for v in row) for row in slopes)
    return fc.ForecasterConfig(
        net=net.to_dict(),
        variables=tuple(variables),
        forcings=tuple(forcings),
        depths=tuple(float(d) for d in depths),
        latitude=tuple(float(v) for v in windows.latitude),
        mean=state.mean,
        std=state.std,
        forcing_mean=forcing.mean,
        forcing_std=forcing.std,
        leads=tuple(leads),
        thickness=thickness,
        observed_forcing=observed_forcing,
        residual=residual,
        anomaly_base=anomaly_base,
        damping=damping,
        zero_init=residual,
        forcing_modes=forcing_modes,
    )


def anomaly_statistics(
    store: str | os.PathLike,
    task: tasks.TaskConfig,
    time_range: tuple[str, str],
    spans: int = fc.RESTART,
) -> tuple[np.ndarray, np.ndarray]:
    """The calendar-month climatology of every grid point and channel of ``task``'s state
    over ``time_range`` (inclusive months), and the regression slope of the anomaly ``k``
    months later on the anomaly now, per channel, pooled over the ocean and the months of
    the range, for ``k = 1 .. spans``.

    Returns:
      ``(climatology [12, lat, lon, C]`` float32, NaN over land; ``slopes [spans, C])``.

    Raises:
      SchemaError: the store is outside the schema.
      ValueError: the range lacks a calendar month, or is not longer than ``spans`` months.
    """
    ds = validation.open_dataset(str(store), check_values="none")
    layout = sources.WindowSource(store, task).input_layout
    ds = ds.sel({schema.TIME: slice(*time_range)})
    x = stacking.dataset_to_stacked(ds, layout).astype(np.float32)  # [T, lat, lon, C]
    months = ds[schema.TIME].to_index().month.to_numpy()
    if set(months) != set(range(1, 13)) or len(months) <= spans:
        raise ValueError(
            f"{store}: {time_range} holds {len(months)} months of {len(set(months))} calendar "
            f"months; the anomaly statistics need every calendar month and more than {spans}"
        )
    with warnings.catch_warnings():  # a land point's all-NaN months: NaN, as land is
        warnings.simplefilter("ignore", RuntimeWarning)
        clim = np.stack([np.nanmean(x[months == m], axis=0) for m in range(1, 13)])
    anomaly = np.nan_to_num(x - clim[months - 1])  # land: 0, never weighs
    slopes = np.empty((spans, x.shape[-1]), np.float32)
    for k in range(1, spans + 1):
        now, later = anomaly[:-k], anomaly[k:]
        den = np.einsum("tyxc,tyxc->c", now, now)
        num = np.einsum("tyxc,tyxc->c", now, later)
        slopes[k - 1] = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    return clim.astype(np.float32), slopes


def fit_response(
    anomaly: np.ndarray,
    forcing: np.ndarray,
    slopes: np.ndarray,
    modes: int,
    tolerance: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares response of the state's anomaly to the forcing's.

    Args:
      anomaly: ``[T, lat, lon, C]`` consecutive months of the state's anomaly (0 over land).
      forcing: ``[T, lat, lon, F]`` the forcing's anomaly in the same months (0 over land).
      slopes: ``[spans, C]`` the damping of the anomaly base.
      modes: how many of the forcing anomaly's leading patterns (singular vectors over the
        months) carry the response.
      tolerance: singular values at most this (or a millionth of the largest) are no mode:
        the rounding of a forcing without anomalies (a climatological forcing) is not
        fitted.

    Returns:
      ``(patterns [K, lat, lon, F]`` orthonormal, ``response [spans, K, lat, lon, C])``:
      with ``p = <forcing[t], patterns>``, ``response[k - 1]`` minimizes the squared error
      of ``anomaly[t + k] - slopes[k - 1] anomaly[t] - p[t] @ response[k - 1]`` over ``t``.
      Modes beyond the forcing's rank are zero, and so is everything when the forcing has
      no anomaly: the base then has no response.

    Raises:
      ValueError: fewer months than ``spans + modes``.
    """
    t, spans = anomaly.shape[0], slopes.shape[0]
    if t < spans + modes + 1 or modes < 1:
        raise ValueError(
            f"a forcing response of {modes} modes over {spans} spans needs more than "
            f"{spans + modes} months; got {t}"
        )
    flat = forcing.reshape(t, -1).astype(np.float64)
    _, sv, vt = np.linalg.svd(flat, full_matrices=False)
    k = min(modes, int(np.sum(sv > max(tolerance, sv[0] * 1e-6))))
    patterns = np.zeros((modes, flat.shape[1]))
    patterns[:k] = vt[:k]
    p = flat @ patterns.T  # [T, K]
    response = np.zeros((spans, modes, *anomaly.shape[1:]), np.float32)
    a = anomaly.reshape(t, -1).astype(np.float64)
    c = anomaly.shape[-1]
    for span in range(1, spans + 1):
        damped = a[:-span] * np.tile(slopes[span - 1], a.shape[1] // c)[None]
        coef, *_ = np.linalg.lstsq(p[:-span, :k], a[span:] - damped, rcond=None)
        response[span - 1, :k] = coef.reshape(k, *anomaly.shape[1:])
    return patterns.reshape(modes, *forcing.shape[1:]).astype(np.float32), response


def forcing_response(
    store: str | os.PathLike,
    task: tasks.TaskConfig,
    time_range: tuple[str, str],
    slopes: np.ndarray,
    modes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The anomaly base's response to the initial month's forcing over ``time_range``:
    the forcing's calendar-month climatology of every grid point, and :func:`fit_response`
    on the months' anomalies (the state's about :func:`anomaly_statistics`' climatology).

    Returns:
      ``(climatology [12, lat, lon, F]`` NaN over land, ``patterns [K, lat, lon, F]``,
      ``response [spans, K, lat, lon, C])``.

    Raises:
      SchemaError: the store is outside the schema.
      ValueError: as :func:`anomaly_statistics` and :func:`fit_response`.
    """
    clim, _ = anomaly_statistics(store, task, time_range, spans=slopes.shape[0])
    ds = validation.open_dataset(str(store), check_values="none")
    windows = sources.WindowSource(store, task)
    ds = ds.sel({schema.TIME: slice(*time_range)})
    x = stacking.dataset_to_stacked(ds, windows.input_layout).astype(np.float32)
    f = stacking.dataset_to_stacked(ds, windows.forcing_layout).astype(np.float32)
    months = ds[schema.TIME].to_index().month.to_numpy()
    # [lat, lon]: the model's ocean (its static mask), else wherever the state is finite
    if fc.STATICS[0] in ds.variables:
        ocean = np.asarray(ds[fc.STATICS[0]].values) > 0.5
    else:
        ocean = np.isfinite(x).any(axis=(0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        f_clim = np.stack([np.nanmean(f[months == m], axis=0) for m in range(1, 13)])
    f_clim = np.where(ocean[None, ..., None], f_clim, np.nan)
    anomaly = np.nan_to_num(x - clim[months - 1])
    f_anomaly = np.where(ocean[None, ..., None], np.nan_to_num(f - f_clim[months - 1]), 0.0)
    # a forcing anomaly a millionth of the forcing is rounding, not a mode
    tolerance = 1e-6 * float(np.linalg.norm(np.where(ocean[None, ..., None], np.nan_to_num(f), 0)))
    patterns, response = fit_response(
        anomaly, f_anomaly, np.asarray(slopes), modes, tolerance=tolerance
    )
    return f_clim.astype(np.float32), patterns, response


def load(path: str | os.PathLike, *, phase: str = "finetune", batch_size: int = 8):
    """The forecaster trained at ``path`` as a :class:`tellus.ocean.forecast.Predictor`.

    Args:
      path: a ``tellus train ocean`` workdir (its ``phase`` is loaded), or one ``fit``
        workdir (or its ``checkpoints`` folder).
      phase: ``finetune`` or ``pretrain``, for a training workdir.
      batch_size: init months per network call.

    Raises:
      FileNotFoundError: no checkpoint there.
      CheckpointKindError: a checkpoint of another kind.
    """
    from tellus.ocean import forecast, train

    return forecast.Predictor(
        train.load_forecaster(train.find_phase(path, phase)), batch_size=batch_size
    )


def _trunk(cfg: dict[str, Any]) -> earth_trunk.TrunkConfig:
    return fc.ForecasterConfig.from_dict(cfg).trunk_config


DOMAIN = domains.Domain(
    name="ocean",
    summary="seasonal ocean: ORCA-DL's 3D ocean state at 1-6 months, restarted every sixth",
    kind=fc.KIND,
    build=fc.make_forecaster,
    loss_fn=fc.loss_fn,
    trunk_config=_trunk,
    load=load,
)

__all__ = [
    "DOMAIN",
    "KEYS",
    "MONTH",
    "Samples",
    "anomaly_statistics",
    "batches",
    "fit_response",
    "forcing_response",
    "load",
    "make_config",
    "samples",
]
