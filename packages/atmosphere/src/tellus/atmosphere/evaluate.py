"""Evaluating the trained lead models against persistence and climatology, WeatherBench2-style.

:func:`run` forecasts from every init time of the test period (the store's last dates,
never seen in training), streams the forecast to ``report/forecast.zarr``, scores it with
:mod:`tellus.evaluation` next to the two baselines and the naive composition of the
shortest lead model, and writes a report folder::

    report/
      forecast.zarr            the forecast (WeatherBench2 layout; forecast-NNN.zarr per
                               batch of init times when there is more than one batch)
      scores.csv               every metric x model x variable x level x region x lead
      scorecard_rmse.{md,csv}  RMSE card, with each model relative to persistence
      scorecard_acc.{md,csv}   ACC card
      rmse_vs_lead.png, acc_vs_lead.png
      maps_<var>_<lead>.png    forecast next to truth, and their difference
      verdict.csv              per headline variable and lead: model vs baselines
      rollout_30d.csv          a 30-day forecast's extremes against the data's range, by day
      tracks_*.csv             vortex tracks in forecast and truth, errors by lead
      summary.json             the verdict and the rollout check in brief

The climatology baseline is computed from the training period only. The embedded
Held-Suarez world has no seasonal or diurnal cycle, so its climatology is the training-period
mean at every day of year and hour; on a store with seasons, the day-of-year/hour
climatology of :mod:`tellus.data.statistics` over the training dates takes its place.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from tellus.atmosphere import forecast as fc_lib
from tellus.atmosphere import tracking, train
from tellus.data import schema, statistics
from tellus.evaluation import plots, scorecard

MODEL = "tellus-pangu"
NAIVE = "tellus-pangu-naive"
# The bar: beat both baselines on these, at every lead from 6 h to 5 days.
VERDICT_VARIABLES = ("geopotential@500", "temperature@850", "2m_temperature")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What :func:`run` evaluates.

    Attributes:
      max_lead, every: the longest lead and the output interval (``"5d"``, ``"6h"``).
      init_every: spacing of init times over the test period.
      max_inits: cap on the number of init times (evenly thinned), None for all.
      naive: also score naive stepping of the shortest lead model.
      map_leads: leads of the forecast-vs-truth maps.
      batch: init times forecast together (memory vs speed).
      rollout_days: length of the sanity-checked long forecast (0 to skip).
      tracks: track lows in the forecast and the truth and score the tracks.
    """

    max_lead: str = "5d"
    every: str = "6h"
    init_every: str = "24h"
    max_inits: int | None = None
    naive: bool = True
    map_leads: tuple[str, ...] = ("1d", "5d")
    batch: int = 64
    rollout_days: int = 30
    tracks: bool = True


def evaluation_init_times(
    store: str | Path,
    splits: train.Splits,
    max_lead: str,
    init_every: str,
    max_inits: int | None = None,
) -> pd.DatetimeIndex:
    """Init times in the test range whose every lead up to ``max_lead`` is in the store.

    Raises:
      ValueError: the test range is too short for ``max_lead``.
    """
    times = pd.DatetimeIndex(xr.open_zarr(str(store), consolidated=False).indexes[schema.TIME])
    horizon = pd.Timedelta(hours=fc_lib._parse_hours(max_lead))
    step = pd.Timedelta(hours=fc_lib._parse_hours(init_every))
    start, stop = pd.Timestamp(splits.test.start), times[-1] - horizon
    inits = pd.date_range(start, stop, freq=step) if stop >= start else pd.DatetimeIndex([])
    inits = inits.intersection(times)
    if len(inits) == 0:
        raise ValueError(
            f"the test period {splits.test.start} .. {times[-1]} of {store} is "
            f"shorter than the {max_lead} lead"
        )
    if max_inits is not None and len(inits) > max_inits:
        keep = np.unique(np.linspace(0, len(inits) - 1, max_inits).round().astype(int))
        inits = inits[keep]
    return inits


def training_climatology(
    store: str | Path, splits: train.Splits, variables: Sequence[str]
) -> xr.Dataset:
    """The training-period mean of ``variables`` at every day of year and 6-hourly hour:
    the climatology of a world without seasons, in the layout of
    :func:`tellus.evaluation.metrics.climatology_at`."""
    ds = xr.open_zarr(str(store), consolidated=False)[list(variables)]
    sel = ds.sel(
        {
            schema.TIME: slice(
                pd.Timestamp(splits.train.start),
                pd.Timestamp(splits.train.stop) - pd.Timedelta("1ns"),
            )
        }
    )
    mean = sel.mean(schema.TIME).load()
    hours = np.unique(pd.DatetimeIndex(ds.indexes[schema.TIME]).hour)
    clim = mean.expand_dims(dayofyear=np.arange(1, 367), hour=hours)
    clim.attrs["description"] = "training-period mean (the world has no seasonal cycle)"
    return clim


def _base_variables(selections: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(scorecard.parse_selection(s)[0] for s in selections))


def _subset(ds: xr.Dataset, selections: Sequence[str]) -> xr.Dataset:
    out = ds[_base_variables(selections)]
    levels = {lv for _, lv in map(scorecard.parse_selection, selections) if lv is not None}
    if schema.LEVEL in out.dims and levels:
        out = out.sel({schema.LEVEL: sorted(levels)})
    return out


def _forecast_batches(system, store, inits, leads, out, batch, show_progress) -> xr.Dataset:
    """Forecasts in batches of init times, each batch streamed to its own store, then
    concatenated lazily: memory stays at one batch."""
    parts, single = [], len(inits) <= batch
    for i in range(0, len(inits), batch):
        part = None
        if out is not None:
            part = out if single else out.with_name(f"{out.stem}-{i // batch:03d}.zarr")
        parts.append(
            fc_lib.forecast(
                system, store, inits[i : i + batch], leads, out=part, show_progress=show_progress
            )
        )
    return xr.concat(parts, dim=schema.TIME) if len(parts) > 1 else parts[0]


def verdict(
    df: pd.DataFrame,
    model: str = MODEL,
    variables: Sequence[str] = VERDICT_VARIABLES,
    baselines: Sequence[str] = ("persistence", "climatology"),
) -> pd.DataFrame:
    """Per headline variable and lead: the model's RMSE, each baseline's, and whether the
    model beats all of them."""
    rows = []
    sub = df[(df["metric"] == "rmse") & (df["region"] == "global")]
    for sel in variables:
        var, level = scorecard.parse_selection(sel)
        v = sub[sub["variable"] == var]
        if level is not None:
            v = v[v["level"] == level]
        for lead, g in v.groupby("lead"):
            vals = dict(zip(g["model"], g["value"], strict=True))
            if model not in vals:
                continue
            row: dict[str, Any] = {
                "variable": scorecard.label(var, level),
                "lead": scorecard.lead_label(pd.Timedelta(lead)),
                model: vals[model],
            }
            for b in baselines:
                row[b] = vals.get(b, np.nan)
            row["beats_all"] = all(vals[model] < row[b] for b in baselines)
            rows.append(row)
    return pd.DataFrame(rows)


def long_rollout(
    system: fc_lib.ForecastSystem,
    store: str | Path,
    init: str | pd.Timestamp,
    days: int = 30,
    max_range_ratio: float = 1.5,
    show_progress: bool = True,
) -> pd.DataFrame:
    """A ``days``-long forecast from ``init`` (daily outputs), checked against the data's range.

    The yardstick is the data itself: for each variable and level, ``data_excursion`` is the
    largest distance from the store's mean (its statistics) that any grid point reaches in
    the training period, and ``range_ratio`` the forecast's largest distance over that.
    A standard-deviation bound would not do: the truth's own near-surface wind reaches 6.5
    standard deviations of its global spread. Columns per variable and level: the forecast's
    ``min``/``max``, ``finite``, ``plausible`` (inside the schema's physical range),
    ``range_ratio``, ``days_in_range`` (the leading days whose ratio stays at or below
    ``max_range_ratio``) and ``bounded`` (all of it holds over every day).
    """
    leads = list(range(24, 24 * days + 1, 24))
    ds = fc_lib.forecast(system, store, [init], leads, show_progress=show_progress)
    stats = statistics.read_statistics(statistics.stats_path(store))
    splits = train.Splits.for_store(store)
    data = xr.open_zarr(str(store), consolidated=False)[list(ds.data_vars)].sel(
        {
            schema.TIME: slice(
                pd.Timestamp(splits.train.start),
                pd.Timestamp(splits.train.stop) - pd.Timedelta("1ns"),
            )
        }
    )
    spatial = (schema.LATITUDE, schema.LONGITUDE)
    lo_data = data.min((schema.TIME, *spatial)).load()
    hi_data = data.max((schema.TIME, *spatial)).load()
    rows = []
    for name, da in ds.data_vars.items():
        var = schema.lookup(name)
        levels = da[schema.LEVEL].values if schema.LEVEL in da.dims else [None]
        for level in levels:
            at = {schema.LEVEL: level} if level is not None else {}
            x = da.sel(at)
            mean = float(stats["mean"][name].sel(at))
            excursion = max(
                abs(float(lo_data[name].sel(at)) - mean),
                abs(float(hi_data[name].sel(at)) - mean),
                1e-12,
            )
            daily = np.abs(x - mean).max([d for d in x.dims if d != fc_lib.LEAD_DIM]).values
            ratio = daily / excursion
            in_range = np.isfinite(ratio) & (ratio <= max_range_ratio)
            lo, hi = float(x.min()), float(x.max())
            plausible = var.plausible if var is not None and var.plausible else (-np.inf, np.inf)
            rows.append(
                {
                    "variable": name,
                    "level": level,
                    "min": lo,
                    "max": hi,
                    "finite": bool(np.isfinite(x.values).all()),
                    "plausible": plausible[0] <= lo and hi <= plausible[1],
                    "data_excursion": excursion,
                    "range_ratio": float(np.nanmax(ratio)) if np.isfinite(ratio).any() else np.inf,
                    "days_in_range": int(np.argmin(in_range)) if not in_range.all() else days,
                }
            )
    df = pd.DataFrame(rows)
    df["bounded"] = (
        df["finite"]
        & df["plausible"]
        & (df["range_ratio"] <= max_range_ratio)
        & (df["days_in_range"] == days)
    )
    return df


# The Held-Suarez world has no tropical cyclones: track its extratropical lows instead.
STORM_TRACKER = tracking.TrackerConfig(lat_band=(-75.0, 75.0))


def vortex_tracks(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    config: tracking.TrackerConfig = STORM_TRACKER,
    max_distance_km: float = 600.0,
) -> dict[str, pd.DataFrame]:
    """Tracks in the forecast and, found the same way, in the truth over the forecast's valid
    times; their matches and the position/intensity errors by lead."""
    names = [
        n
        for n in (*tracking.PRESSURE_VARIABLES, *tracking.UPPER_WINDS, *tracking.SURFACE_WINDS)
        if n in forecast
    ]
    fc = forecast[names]
    if schema.LEVEL in fc.dims:
        fc = fc.sel({schema.LEVEL: [config.vorticity_level]})
    inits = pd.DatetimeIndex(fc[schema.TIME].values)
    last = inits[-1] + pd.Timedelta(fc[fc_lib.LEAD_DIM].values[-1])
    tr = truth[names].sel({schema.TIME: slice(inits[0], last)})
    if schema.LEVEL in tr.dims:
        tr = tr.sel({schema.LEVEL: [config.vorticity_level]})
    fc_tracks = tracking.track(fc.load(), config)
    truth_tracks = tracking.track(tr.load(), config)
    errors = tracking.track_errors(fc_tracks, truth_tracks, max_distance_km=max_distance_km)
    return {"forecast": fc_tracks, "truth": truth_tracks, "errors": errors}


def run(
    store: str | Path,
    workdir: str | Path,
    report: str | Path,
    config: EvalConfig = EvalConfig(),
    show_progress: bool = True,
) -> dict[str, Any]:
    """Forecasts, scores and writes the report folder (see the module docstring).

    Returns:
      The summary written to ``summary.json``.
    """
    store, report = str(store), Path(report)
    report.mkdir(parents=True, exist_ok=True)
    models = train.load_models(workdir)
    splits = train.Splits.for_store(store)
    inits = evaluation_init_times(
        store, splits, config.max_lead, config.init_every, config.max_inits
    )
    leads = fc_lib.output_leads(config.max_lead, config.every)
    selections = scorecard.HEADLINE_VARIABLES
    system = fc_lib.ForecastSystem(models)
    forecasts = {
        MODEL: _subset(
            _forecast_batches(
                system, store, inits, leads, report / "forecast.zarr", config.batch, show_progress
            ),
            selections,
        )
    }
    calls = {MODEL: len(system.calls(leads))}
    if config.naive and len(system.leads) > 1:
        naive = fc_lib.ForecastSystem(models, naive=True)
        forecasts[NAIVE] = _subset(
            _forecast_batches(naive, store, inits, leads, None, config.batch, show_progress),
            selections,
        )
        calls[NAIVE] = len(naive.calls(leads))
    truth = _subset(xr.open_zarr(store, consolidated=False), selections).load()
    clim = training_climatology(store, splits, _base_variables(selections))
    clim = _subset(clim, selections)
    everything = scorecard.add_baselines({k: v.load() for k, v in forecasts.items()}, truth, clim)
    df = scorecard.evaluate(
        everything,
        truth,
        clim,
        variables=selections,
        regions=("global", "tropics", "extratropics"),
        metrics=("rmse", "bias", "acc"),
    )
    df.to_csv(report / "scores.csv", index=False)
    scorecard.scorecard_table(
        df, metric="rmse", reference="persistence", path=report / "scorecard_rmse"
    )
    scorecard.scorecard_table(
        df, metric="acc", reference="persistence", path=report / "scorecard_acc"
    )
    pngs = [
        plots.plot_metric_vs_lead(df, "rmse", selections, report / "rmse_vs_lead.png"),
        plots.plot_metric_vs_lead(df, "acc", selections, report / "acc_vs_lead.png"),
    ]
    for sel in ("geopotential@500", "2m_temperature"):
        var, level = scorecard.parse_selection(sel)
        for lead in config.map_leads:
            name = f"maps_{scorecard.SHORT_NAMES.get(sel, var)}_{lead}.png"
            lead_td = pd.Timedelta(hours=fc_lib._parse_hours(lead))
            pngs.append(
                plots.plot_maps(
                    forecasts[MODEL], truth, var, level, lead_td, inits[0], report / name
                )
            )
    v = verdict(df)
    v.to_csv(report / "verdict.csv", index=False)
    tracks = None
    if config.tracks:
        full = (
            xr.open_zarr(report / "forecast.zarr", consolidated=False)
            if (report / "forecast.zarr").exists()
            else None
        )
        if full is not None:
            tracks = vortex_tracks(full, xr.open_zarr(store, consolidated=False))
            for name, frame in tracks.items():
                frame.to_csv(report / f"tracks_{name}.csv", index=False)
    rollout = None
    if config.rollout_days:
        rollout = long_rollout(
            system, store, inits[0], config.rollout_days, show_progress=show_progress
        )
        rollout.to_csv(report / f"rollout_{config.rollout_days}d.csv", index=False)
    summary = {
        "store": store,
        "workdir": str(workdir),
        "init_times": len(inits),
        "first_init": str(inits[0]),
        "last_init": str(inits[-1]),
        "leads_hours": leads,
        "lead_models_hours": list(system.leads),
        "model_calls_per_forecast": calls,
        "beats_persistence_and_climatology_everywhere": bool(v["beats_all"].all()),
        "losses": v[~v["beats_all"]][["variable", "lead"]].to_dict("records"),
        "tracks": None
        if tracks is None
        else {
            "forecast_tracks": int(tracks["forecast"]["track_id"].nunique()),
            "truth_tracks": int(tracks["truth"]["track_id"].nunique()),
            "position_error_km_by_lead_hours": {
                int(pd.Timedelta(k) / pd.Timedelta("1h")): round(float(x), 1)
                for k, x in zip(
                    tracks["errors"].get("lead", []),
                    tracks["errors"].get("position_error_km", []),
                    strict=True,
                )
            },
        },
        "rollout_days": config.rollout_days,
        "rollout_bounded": None if rollout is None else bool(rollout["bounded"].all()),
        "rollout_max_range_ratio": (
            None if rollout is None else float(rollout["range_ratio"].max())
        ),
        "rollout_days_in_range": (None if rollout is None else int(rollout["days_in_range"].min())),
        "plots": [str(p) for p in pngs],
    }
    (report / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


__all__ = [
    "EvalConfig",
    "evaluation_init_times",
    "long_rollout",
    "run",
    "training_climatology",
    "verdict",
    "vortex_tracks",
]
