"""Forecast metrics with WeatherBench2's definitions, as pure xarray functions over named dims.

Layouts (WeatherBench2's):

* a **forecast** has ``time`` = initialization time, ``prediction_timedelta`` = lead time, an
  optional ``realization`` (ensemble member), and ``[level,] latitude, longitude``;
* **truth** has the analysis layout, ``time`` = valid time. Every metric accepts truth either
  in that layout (it is then selected at ``init + lead`` by :func:`align`) or already aligned
  (it has a ``prediction_timedelta`` dim).

Every metric returns a Dataset with, per variable, dims ``(prediction_timedelta, [level])``:
the value is averaged over space with area weights (WeatherBench2's cell areas,
:func:`tellus.data.grid.latitude_weights`, times the region's mask; NaN cells, e.g. land in
an ocean field, are left out) and over init times.

Order of averaging, as WeatherBench2 (https://sites.research.google/weatherbench, 2024 on):

* ``mse``, ``mae``, ``bias``, ``crps``: mean over space, then over time (the order does not
  matter for these);
* ``rmse`` = sqrt(time mean of the spatially weighted MSE): the square root is taken *after*
  averaging over init times (``rmse(..., sqrt_before_time_mean=True)`` gives the older mean
  of per-init RMSEs);
* ``acc``: the spatially weighted, uncentred anomaly correlation per init time, then averaged
  over init times;
* ``spread`` = sqrt(time mean of the spatial mean of the unbiased ensemble variance);
  ``spread_skill`` = sqrt((m+1)/m) * spread / ensemble-mean RMSE, which is 1 in expectation
  for a calibrated ensemble of ``m`` members.

Deterministic metrics (``mse``, ``rmse``, ``mae``, ``bias``, ``acc``) applied to an ensemble
score its ensemble mean.

Monthly forecasts (the ocean's) count their leads in whole calendar months: an integer
``prediction_timedelta`` (attribute ``units: months``) is a number of months, so that init
``2001-01-01`` at lead 1 is valid on ``2001-02-01`` (a month has no fixed timedelta); their
climatology is by calendar month (a ``month`` dim, 1..12, in place of ``dayofyear``).
Ocean fields are averaged over depth by :func:`thickness_mean` (each layer weighted by its
thickness inside a depth range).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import grid
from tellus.evaluation import regions as regions_lib

TIME = "time"
LEAD = "prediction_timedelta"
REALIZATION = "realization"
LATITUDE = "latitude"
LONGITUDE = "longitude"
LEVEL = "level"
DEPTH = "depth"
MONTH = "month"
SPATIAL_DIMS = (LATITUDE, LONGITUDE)

RegionLike = regions_lib.Region | str | None


# --------------------------------------------------------------------------------------
# Weights and alignment.


def spatial_weights(
    lat: xr.DataArray | np.ndarray, lon: xr.DataArray | np.ndarray, region: RegionLike = None
) -> xr.DataArray:
    """Latitude (cell-area) weights, :func:`tellus.data.grid.latitude_weights`, times the
    region's 0/1 mask, dims ``(latitude, longitude)``."""
    region = regions_lib.get_region(region)
    lat_values = np.asarray(lat)
    w_lat = xr.DataArray(
        grid.latitude_weights(lat_values), dims=[LATITUDE], coords={LATITUDE: lat_values}
    )
    return w_lat * region.mask(lat_values, np.asarray(lon))


def spatial_mean(x: xr.Dataset | xr.DataArray, region: RegionLike = None) -> xr.Dataset | (
    xr.DataArray
):
    """Area-weighted mean over ``(latitude, longitude)`` inside ``region``, skipping NaN."""
    w = spatial_weights(x[LATITUDE].values, x[LONGITUDE].values, region)
    w = w.assign_coords({LATITUDE: x[LATITUDE], LONGITUDE: x[LONGITUDE]})
    return x.weighted(w).mean(SPATIAL_DIMS)


def is_monthly(leads: Sequence | np.ndarray | pd.TimedeltaIndex) -> bool:
    """Whether ``leads`` count whole months (integers) rather than timedeltas."""
    return np.asarray(leads).dtype.kind in "iu"


def valid_times(
    init_times: Sequence | np.ndarray | pd.DatetimeIndex,
    leads: Sequence | np.ndarray | pd.TimedeltaIndex,
) -> xr.DataArray:
    """``init + lead`` for every pair, dims ``(time, prediction_timedelta)``; integer
    ``leads`` are months (calendar months added to each init)."""
    init = pd.DatetimeIndex(np.asarray(init_times))
    if is_monthly(leads):
        lead_values = np.asarray(leads)
        values = np.stack(
            [(init + pd.DateOffset(months=int(k))).values for k in lead_values], axis=1
        ).reshape(len(init), len(lead_values))
    else:
        lead_values = pd.TimedeltaIndex(np.asarray(leads)).values
        values = init.values[:, None] + lead_values[None, :]
    return xr.DataArray(
        values, dims=[TIME, LEAD], coords={TIME: init.values, LEAD: lead_values}, name="valid_time"
    )


def align(
    forecast: xr.Dataset | xr.DataArray, truth: xr.Dataset | xr.DataArray
) -> xr.Dataset | xr.DataArray:
    """Truth at the valid time of every (init, lead) of ``forecast``.

    Args:
      forecast: forecast layout, dims ``time`` (init) and ``prediction_timedelta``.
      truth: analysis layout, dim ``time`` (valid); for a Dataset only the forecast's variables
        are kept.

    Returns:
      Truth with dims ``(time, prediction_timedelta, ...)`` and the forecast's ``time`` and
      ``prediction_timedelta`` coords, plus a 2-D ``valid_time`` coord.

    Raises:
      KeyError: if a valid time is missing from truth (forecasts that run past the end of the
        truth must be trimmed first, e.g. with :func:`complete_init_times`).
    """
    if isinstance(forecast, xr.Dataset) and isinstance(truth, xr.Dataset):
        truth = truth[[v for v in forecast.data_vars if v in truth.data_vars]]
    valid = valid_times(forecast[TIME].values, forecast[LEAD].values)
    index = pd.DatetimeIndex(truth[TIME].values)
    pos = index.get_indexer(valid.values.ravel())
    if np.any(pos < 0):
        missing = pd.DatetimeIndex(valid.values.ravel()[pos < 0]).unique()
        raise KeyError(f"{len(missing)} valid time(s) missing from truth, first {missing[:3]}")
    indexer = xr.DataArray(pos.reshape(valid.shape), dims=[TIME, LEAD])
    out = truth.rename({TIME: "_valid"}).drop_vars("_valid").isel(_valid=indexer)
    out = out.assign_coords(
        {
            TIME: forecast[TIME].values,
            LEAD: forecast[LEAD].values,
            "valid_time": ((TIME, LEAD), valid.values),
        }
    )
    return out


def layer_weights(
    thickness: Sequence[float] | np.ndarray, top: float = 0.0, bottom: float | None = None
) -> np.ndarray:
    """Metres of each layer inside ``[top, bottom]``: layer ``k`` spans the faces
    ``sum(thickness[:k])`` to ``sum(thickness[:k + 1])`` below the surface (``bottom`` None:
    the whole column)."""
    h = np.asarray(thickness, np.float64)
    if h.ndim != 1 or np.any(h <= 0):
        raise ValueError(f"thickness must be positive metres per layer, got {h}")
    faces = np.concatenate([[0.0], np.cumsum(h)])
    bottom = faces[-1] if bottom is None else float(bottom)
    if bottom <= top:
        raise ValueError(f"the depth range [{top}, {bottom}] m is empty")
    return np.clip(np.minimum(faces[1:], bottom) - np.maximum(faces[:-1], top), 0.0, None)


def thickness_mean(
    x: xr.Dataset | xr.DataArray,
    thickness: Sequence[float] | np.ndarray,
    *,
    top: float = 0.0,
    bottom: float | None = None,
    dim: str = DEPTH,
) -> xr.Dataset | xr.DataArray:
    """The mean over ``dim`` (one entry per layer, top first) weighted by the metres of each
    layer inside ``[top, bottom]`` (:func:`layer_weights`), skipping NaN: the vertical mean
    of a field over a depth range, or of a per-depth squared error (then the root of it is a
    thickness-weighted RMSE). Variables without ``dim`` are dropped from a Dataset."""
    w = layer_weights(thickness, top, bottom)
    if x.sizes[dim] != len(w):
        raise ValueError(f"{dim} has {x.sizes[dim]} entries, thickness {len(w)}")
    if isinstance(x, xr.Dataset):
        x = x[[v for v in x.data_vars if dim in x[v].dims]]
    weights = xr.DataArray(w, dims=[dim], coords={dim: x[dim].values})
    return x.weighted(weights).mean(dim)


def complete_init_times(
    truth_times: Sequence | np.ndarray, leads: Sequence | np.ndarray
) -> np.ndarray:
    """The times in ``truth_times`` from which every lead's valid time is also in truth."""
    times = pd.DatetimeIndex(np.asarray(truth_times))
    valid = valid_times(times, leads).values
    ok = np.isin(valid, times.values).all(axis=1)
    return times[ok].values


def _aligned(forecast, truth):
    return truth if LEAD in truth.dims else align(forecast, truth)


def _deterministic(forecast):
    return forecast.mean(REALIZATION) if REALIZATION in forecast.dims else forecast


def _time_mean(x):
    return x.mean(TIME) if TIME in x.dims else x


# --------------------------------------------------------------------------------------
# Deterministic metrics.


def mse(forecast: xr.Dataset, truth: xr.Dataset, *, region: RegionLike = None) -> xr.Dataset:
    """Mean squared error, area-weighted over space and averaged over init times.

    Args:
      forecast: forecast layout (an ensemble is scored by its mean).
      truth: analysis layout or already aligned (see :func:`align`).
      region: a :class:`~tellus.data.regions.Region` or registry name (default global).

    Returns:
      Per variable, dims ``(prediction_timedelta, [level])``.
    """
    truth = _aligned(forecast, truth)
    err = _deterministic(forecast) - truth
    return _time_mean(spatial_mean(err**2, region))


def rmse(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    region: RegionLike = None,
    sqrt_before_time_mean: bool = False,
) -> xr.Dataset:
    """Root mean squared error: sqrt of the time mean of the spatially weighted MSE.

    Args:
      forecast, truth, region: as :func:`mse`.
      sqrt_before_time_mean: take the square root per init time and average the RMSEs (the
        definition in the first WeatherBench2 paper) instead.

    Returns:
      Per variable, dims ``(prediction_timedelta, [level])``.
    """
    truth = _aligned(forecast, truth)
    per_init = spatial_mean((_deterministic(forecast) - truth) ** 2, region)
    if sqrt_before_time_mean:
        return _time_mean(np.sqrt(per_init))
    return np.sqrt(_time_mean(per_init))


def mae(forecast: xr.Dataset, truth: xr.Dataset, *, region: RegionLike = None) -> xr.Dataset:
    """Mean absolute error (weighted over space, averaged over time); arguments as :func:`mse`."""
    truth = _aligned(forecast, truth)
    return _time_mean(spatial_mean(abs(_deterministic(forecast) - truth), region))


def bias(forecast: xr.Dataset, truth: xr.Dataset, *, region: RegionLike = None) -> xr.Dataset:
    """Mean error ``forecast - truth`` (positive: forecast too high); arguments as :func:`mse`."""
    truth = _aligned(forecast, truth)
    return _time_mean(spatial_mean(_deterministic(forecast) - truth, region))


def climatology_at(
    climatology: xr.Dataset | xr.DataArray, valid: xr.DataArray
) -> xr.Dataset | xr.DataArray:
    """The climatology at each valid time, selected by day of year and hour (or by calendar
    month).

    Args:
      climatology: dims ``(dayofyear, [hour], ...)`` as
        :func:`tellus.data.statistics.compute_climatology` writes (dayofyear 1..366); without
        an ``hour`` dim it is a daily climatology; with a ``month`` dim (1..12) instead, a
        calendar-month climatology.
      valid: valid times, any dims (e.g. :func:`valid_times`).

    Returns:
      The climatology with ``valid``'s dims and coords in place of ``dayofyear``/``hour``
      (or ``month``).
    """
    flat = pd.DatetimeIndex(valid.values.ravel())
    if MONTH in climatology.dims:
        month = xr.DataArray(flat.month.values.reshape(valid.shape), dims=valid.dims)
        out = climatology.sel({MONTH: month}).drop_vars(MONTH, errors="ignore")
        return out.assign_coords({d: valid[d] for d in valid.dims if d in valid.coords})
    doy = xr.DataArray(flat.day_of_year.values.reshape(valid.shape), dims=valid.dims)
    sel = {"dayofyear": doy}
    if "hour" in climatology.dims:
        hour = xr.DataArray(flat.hour.values.reshape(valid.shape), dims=valid.dims)
        missing = set(np.unique(hour.values)) - set(climatology["hour"].values.tolist())
        if missing:
            raise KeyError(f"climatology has no hour(s) {sorted(missing)}")
        sel["hour"] = hour
    out = climatology.sel(sel)
    out = out.drop_vars([c for c in ("dayofyear", "hour") if c in out.coords])
    return out.assign_coords({d: valid[d] for d in valid.dims if d in valid.coords})


def acc(
    forecast: xr.Dataset, truth: xr.Dataset, climatology: xr.Dataset, *, region: RegionLike = None
) -> xr.Dataset:
    """Anomaly correlation coefficient against a day-of-year/hour climatology.

    As WeatherBench2's ``ACC``: anomalies ``f - c`` and ``t - c`` with ``c`` the climatology at
    the valid time; per init time the uncentred, area-weighted correlation
    ``<fa ta> / sqrt(<fa^2> <ta^2>)``; then the mean over init times.

    Args:
      forecast, truth, region: as :func:`mse`.
      climatology: see :func:`climatology_at`.

    Returns:
      Per variable, dims ``(prediction_timedelta, [level])``, in [-1, 1].
    """
    truth = _aligned(forecast, truth)
    forecast = _deterministic(forecast)
    clim = climatology_at(climatology, valid_times(forecast[TIME].values, forecast[LEAD].values))
    if isinstance(forecast, xr.Dataset):
        missing = sorted(set(forecast.data_vars) - set(clim.data_vars))
        if missing:
            raise KeyError(f"climatology lacks {missing}")
        clim = clim[list(forecast.data_vars)]
    fa, ta = forecast - clim, truth - clim
    norm = np.sqrt(spatial_mean(fa**2, region) * spatial_mean(ta**2, region))
    # A zero anomaly (e.g. the climatology forecast itself) has an undefined ACC: NaN, without
    # a 0/0 warning (np.errstate would not reach a lazy dask computation).
    corr = spatial_mean(fa * ta, region) / norm.where(norm > 0)
    return _time_mean(corr)


# --------------------------------------------------------------------------------------
# Ensemble metrics.


def _require_ensemble(forecast):
    if REALIZATION not in forecast.dims:
        raise ValueError(f"an ensemble metric needs a {REALIZATION!r} dim")
    return forecast.sizes[REALIZATION]


def _pairwise_abs_mean(x: np.ndarray, axis: int) -> np.ndarray:
    """``1/(2 m(m-1)) sum_ij |x_i - x_j|`` along ``axis``, in O(m log m) via sorting.

    For sorted ``x``, ``sum_{i<j} (x_j - x_i) = sum_k (2k - m + 1) x_(k)``; 0 when ``m == 1``.
    """
    m = x.shape[axis]
    if m == 1:
        return np.zeros_like(np.take(x, 0, axis=axis))
    s = np.sort(x, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = m
    coeff = (2 * np.arange(m) - m + 1).reshape(shape)
    return (coeff * s).sum(axis=axis) / (m * (m - 1))


def crps(forecast: xr.Dataset, truth: xr.Dataset, *, region: RegionLike = None) -> xr.Dataset:
    """Fair (unbiased-in-ensemble-size) CRPS of an ensemble.

    ``CRPS = mean_i |X_i - y| - 1/(2 m(m-1)) sum_{i,j} |X_i - X_j|`` per point, then the
    area-weighted mean over space and the mean over init times. A forecast without a
    ``realization`` dim, or with one member, has no spread term: its CRPS is its MAE.

    Args:
      forecast: forecast layout with ``realization`` (optional, see above).
      truth, region: as :func:`mse`.

    Returns:
      Per variable, dims ``(prediction_timedelta, [level])``.
    """
    truth = _aligned(forecast, truth)
    if REALIZATION not in forecast.dims:
        forecast = forecast.expand_dims({REALIZATION: 1})
    skill = abs(forecast - truth).mean(REALIZATION)
    spread_term = xr.apply_ufunc(
        _pairwise_abs_mean,
        forecast,
        input_core_dims=[[REALIZATION]],
        kwargs={"axis": -1},
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    return _time_mean(spatial_mean(skill - spread_term, region))


def ensemble_mean_rmse(
    forecast: xr.Dataset, truth: xr.Dataset, *, region: RegionLike = None
) -> xr.Dataset:
    """RMSE of the ensemble mean (:func:`rmse` of ``forecast.mean('realization')``)."""
    _require_ensemble(forecast)
    return rmse(forecast.mean(REALIZATION), _aligned(forecast, truth), region=region)


def spread(forecast: xr.Dataset, *, region: RegionLike = None) -> xr.Dataset:
    """Ensemble spread: sqrt(time mean of the area-weighted mean unbiased ensemble variance).

    Args:
      forecast: forecast layout with ``realization`` (at least 2 members).
      region: as :func:`mse`.

    Returns:
      Per variable, dims ``(prediction_timedelta, [level])``.
    """
    if _require_ensemble(forecast) < 2:
        raise ValueError("spread needs at least 2 ensemble members")
    var = forecast.var(REALIZATION, ddof=1)
    return np.sqrt(_time_mean(spatial_mean(var, region)))


def spread_skill(
    forecast: xr.Dataset, truth: xr.Dataset, *, region: RegionLike = None
) -> xr.Dataset:
    """Spread-skill ratio ``sqrt((m+1)/m) * spread / ensemble_mean_rmse``.

    The factor corrects for the finite ensemble: for ``m`` members exchangeable with the
    truth, E[(mean - y)^2] = (1 + 1/m) E[var], so a calibrated ensemble scores 1 and an
    under-dispersive one less than 1.

    Args:
      forecast: forecast layout with ``realization`` (at least 2 members).
      truth, region: as :func:`mse`.

    Returns:
      Per variable, dims ``(prediction_timedelta, [level])``.
    """
    m = _require_ensemble(forecast)
    truth = _aligned(forecast, truth)
    return (
        np.sqrt((m + 1) / m)
        * spread(forecast, region=region)
        / ensemble_mean_rmse(forecast, truth, region=region)
    )


DETERMINISTIC = ("rmse", "mse", "mae", "bias", "acc")
ENSEMBLE = ("crps", "spread", "spread_skill", "ensemble_mean_rmse")


def compute(
    name: str,
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    climatology: xr.Dataset | None = None,
    region: RegionLike = None,
) -> xr.Dataset:
    """Computes the metric called ``name`` (one of :data:`DETERMINISTIC` or :data:`ENSEMBLE`).

    Args:
      name: metric name.
      forecast, truth, region: as :func:`mse`.
      climatology: needed by ``acc`` only.

    Returns:
      Per variable, dims ``(prediction_timedelta, [level])``.
    """
    if name == "acc":
        if climatology is None:
            raise ValueError("acc needs a climatology")
        return acc(forecast, truth, climatology, region=region)
    if name == "spread":
        return spread(forecast, region=region)
    fns = {
        "rmse": rmse,
        "mse": mse,
        "mae": mae,
        "bias": bias,
        "crps": crps,
        "spread_skill": spread_skill,
        "ensemble_mean_rmse": ensemble_mean_rmse,
    }
    if name not in fns:
        raise KeyError(f"unknown metric {name!r}; known: {DETERMINISTIC + ENSEMBLE}")
    return fns[name](forecast, truth, region=region)
