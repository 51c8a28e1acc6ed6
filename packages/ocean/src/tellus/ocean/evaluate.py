"""The ocean forecaster's evaluation on the observed run's test years.

Forecasts from every test month whose 12 leads lie in the test years
(:class:`tellus.ocean.forecast.Predictor`), scored with the shared metrics of
:mod:`tellus.evaluation` against three baselines:

* persistence: the initial month held (:func:`tellus.evaluation.baselines.persistence`);
* the calendar-month climatology of the fine-tuning years, months outside the test years
  (:func:`climatology`, :func:`tellus.evaluation.baselines.climatology_forecast`);
* damped persistence: the climatology plus the initial anomaly times a slope per start
  month, lead and grid point fitted on the fine-tuning years
  (:class:`tellus.evaluation.index_skill.DampedPersistence`, :func:`damped_persistence`).

Scores (every one area-weighted over the ocean: land is NaN and never weighed):

* RMSE and ACC (against the calendar-month climatology) by variable, depth and lead 1-12;
* the thickness-weighted RMSE of each 3-D variable over the whole column
  (:func:`tellus.evaluation.metrics.thickness_mean` of the per-depth MSE, then the root);
* the upper-ocean temperature (the thickness-weighted mean over 0-300 m) and its heat
  content ``rho0 cp 300 m x`` that mean (J m-2): RMSE and ACC;
* the shared Nino indices from the forecast SST (the boxes of
  :data:`tellus.data.regions.NINO34`, ``NINO3``, ``NINO4`` and ``NINO12``, each box's
  calendar-month anomaly): correlation and RMSE by lead
  (:mod:`tellus.evaluation.index_skill`);
* the scorecard: for the upper-ocean temperature and SSH at every lead 1-12, whether the
  forecaster's RMSE is below both persistence's and the climatology's (:func:`scorecard`);
* the 10-year rollout from the observed run's first month, driven by the observed wind
  stress block by block (:func:`rollout_check`): finite everywhere; its global-mean temperature and Drake Passage transport within 10 % of the
  observed run's (:mod:`tellus.ocean.sanity`); the standard deviation of the Nino3.4 box's
  SST within a factor of 1.5 of the observed run's.

Outputs in the report folder: ``summary.json``, ``rmse_by_lead.png``,
``section_temperature.png`` (depth-latitude sections of the zonal-mean temperature, truth,
forecast and error at lead 6) and ``maps.png`` (forecast against truth of SST and SSH).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import regions, schema, validation
from tellus.evaluation import baselines, index_skill, metrics, plots
from tellus.ocean import domain, sanity, train
from tellus.ocean.forecast import LEAD, Predictor

TIME = schema.TIME
LEADS = tuple(range(1, train.LONGEST_LEAD + 1))
TEMPERATURE = "sea_water_potential_temperature"
SSH = "sea_surface_height"
SST = "sea_surface_temperature"
UPPER = "upper_ocean_temperature_0_300m"
UPPER_DEPTH = 300.0  # m
RHO0, CP = 1025.0, 3992.0  # kg m-3, J kg-1 K-1: seawater's reference density, heat capacity
SYSTEMS = ("forecaster", "persistence", "climatology", "damped_persistence")
SCORED = (UPPER, SSH)  # the scorecard's variables
ROLLOUT_YEARS = 10
ROLLOUT_TOLERANCE = 0.10
NINO_FACTOR = 1.5


def climatology(truth: xr.Dataset, months: pd.DatetimeIndex) -> xr.Dataset:
    """The mean of each calendar month over ``months`` (dims ``(month, ...)``), of every
    time-dependent variable.

    Raises:
      ValueError: a calendar month missing from ``months``.
    """
    fit = truth[[v for v in truth.data_vars if TIME in truth[v].dims]].sel({TIME: months.values})
    if set(pd.DatetimeIndex(months).month) != set(range(1, 13)):
        raise ValueError("a calendar-month climatology needs every month of the year")
    return fit.groupby(f"{TIME}.month").mean(TIME)


def damped_persistence(
    truth: xr.Dataset,
    clim: xr.Dataset,
    fit_months: pd.DatetimeIndex,
    init_times: Sequence | np.ndarray,
    leads: Sequence[int] = LEADS,
) -> xr.Dataset:
    """The climatology plus each point's initial anomaly times its slope per start month and
    lead, fitted over the starts in ``fit_months`` whose leads all lie in them.

    Returns:
      The forecast layout ``(time, prediction_timedelta, ...)``.
    """
    leads = np.asarray(leads)
    fit_inits = metrics.complete_init_times(fit_months, leads)
    names = [v for v in clim.data_vars]
    anomaly = truth[names] - metrics.climatology_at(
        clim, xr.DataArray(truth[TIME].values, dims=[TIME], coords={TIME: truth[TIME].values})
    )

    def at_leads(inits):
        valid = metrics.valid_times(inits, leads)
        return anomaly.sel({TIME: xr.DataArray(valid.values, dims=[TIME, LEAD])})

    x_fit, y_fit = anomaly.sel({TIME: fit_inits}), at_leads(fit_inits)
    inits = pd.DatetimeIndex(np.asarray(init_times))
    x_new = anomaly.sel({TIME: inits.values})
    base = baselines.climatology_forecast(clim, inits.values, leads, template=truth)
    out = {}
    for name in names:
        model = index_skill.DampedPersistence.fit(
            x_fit[name].values, y_fit[name].values, pd.DatetimeIndex(fit_inits).month.to_numpy()
        )
        pred = model.predict(x_new[name].values, inits.month.to_numpy())
        out[name] = base[name] + xr.DataArray(pred, dims=base[name].dims).astype(np.float32)
    return xr.Dataset(out)


def upper_ocean(ds: xr.Dataset, thickness: Sequence[float]) -> xr.Dataset:
    """``ds`` with the 0-300 m thickness-weighted mean temperature added (:data:`UPPER`)."""
    if TEMPERATURE not in ds:
        return ds
    upper = metrics.thickness_mean(ds[TEMPERATURE], thickness, bottom=UPPER_DEPTH)
    return ds.assign({UPPER: upper.astype(np.float32)})


def scorecard(rmse: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, Any]:
    """Whether the forecaster beats persistence AND climatology at every lead.

    Args:
      rmse: ``{variable: {system: [RMSE by lead]}}`` with the systems ``forecaster``,
        ``persistence`` and ``climatology``.

    Returns:
      ``{variable: {"beats": [bool by lead], "all_leads": bool}, "all": bool}``: a lead is
      won when the forecaster's RMSE is below both baselines'.
    """
    out: dict[str, Any] = {}
    for name, by in rmse.items():
        f = np.asarray(by["forecaster"], float)
        beats = (f < np.asarray(by["persistence"], float)) & (
            f < np.asarray(by["climatology"], float)
        )
        out[name] = {"beats": [bool(b) for b in beats], "all_leads": bool(beats.all())}
    out["all"] = bool(all(v["all_leads"] for v in out.values()))
    return out


def _lead_list(da: xr.DataArray) -> list[float]:
    return [float(v) for v in np.asarray(da.values, float)]


INDICES = (regions.NINO34, regions.NINO3, regions.NINO4, regions.NINO12)


def nino34(
    ds: xr.Dataset, clim: xr.Dataset, box: regions.Box = regions.NINO34
) -> xr.DataArray | None:
    """A Nino box's SST anomaly (K; Nino3.4 by default) of a forecast layout Dataset (or
    None without SST)."""
    if SST not in ds:
        return None
    mean = metrics.spatial_mean(ds[SST], box)
    valid = metrics.valid_times(ds[TIME].values, ds[LEAD].values)
    c = metrics.spatial_mean(metrics.climatology_at(clim[SST], valid), box)
    return (mean - c).rename({TIME: index_skill.INIT, LEAD: index_skill.LEAD})


def cycled(ds: xr.Dataset, months: int) -> xr.Dataset:
    """``ds``'s whole years (a trailing part year dropped), repeated after their end with
    times shifted by whole years, until they hold at least ``months + 1`` months: a forcing
    cycle for a run longer than the record. Fields without a time dim are kept once."""
    times = pd.DatetimeIndex(ds[TIME].values)
    years = len(times) // 12
    if len(times) > months or years == 0:
        return ds
    record = ds.isel({TIME: slice(0, 12 * years)})
    timed = [v for v in ds.data_vars if TIME in ds[v].dims]
    parts = [record[timed]]
    shift = 0
    while sum(p.sizes[TIME] for p in parts) <= months:
        shift += 12 * years
        moved = times[: 12 * years] + pd.DateOffset(months=shift)
        parts.append(record[timed].assign_coords({TIME: moved.values}))
    out = xr.concat(parts, TIME)
    for v in ds.data_vars:
        if TIME not in ds[v].dims:
            out[v] = ds[v]
    return out


def rollout_check(
    predictor: Predictor, observed: xr.Dataset, years: int = ROLLOUT_YEARS
) -> dict[str, Any]:
    """The ``years``-long rollout from the observed run's first month against the observed
    run (module docstring): a run driven by the observed wind stress, each 6-month block
    from the forecast with the wind of its own first month (:func:`cycled` repeats the
    record's whole years past its end), since the embedded ocean's variability is all
    wind-forced and no forecast from one month's wind can keep it. The Nino3.4 box's std of
    the rollout with the initial month's wind alone is reported beside it
    (``nino34_box_std_initial_forcing``). A forecaster of each lead's observed forcing
    (``observed_forcing``) is driven by every month's wind instead, and has no
    initial-forcing run. Measures a variable needs are None when it is not forecast."""
    months = 12 * years
    first = observed[TIME].values[:1]
    forced = cycled(observed, months)
    # every month's observed wind for a forecaster of each lead's own forcing; else each
    # block's first month's
    observed_forcing = predictor.config.observed_forcing
    run = predictor.forecast(
        forced, init_time=first, months=months, restart_forcing=not observed_forcing
    ).isel({TIME: 0}, drop=True)
    run = run.swap_dims({LEAD: "valid_time"}).drop_vars(LEAD).rename({"valid_time": TIME})
    for name in ("ocean_mask", domain.THICKNESS):
        if name in observed:
            run[name] = observed[name]
    ocean = np.asarray(observed["ocean_mask"].values) > 0.5
    finite = all(
        bool(np.isfinite(np.asarray(run[v].values)[..., ocean]).all())
        for v in predictor.config.variables
    )
    out: dict[str, Any] = {"months": months, "finite": finite}

    def compare(key, value, reference, ok):
        out[key] = {"rollout": value, "data": reference, "pass": bool(ok)}

    if TEMPERATURE in run:
        r = float(np.mean(sanity.global_mean_temperature(run)))
        d = float(np.mean(sanity.global_mean_temperature(observed)))
        compare("global_mean_temperature", r, d, abs(r - d) <= ROLLOUT_TOLERANCE * abs(d))
    if sanity.EASTWARD in run:
        r, d = sanity.drake_passage_transport(run), sanity.drake_passage_transport(observed)
        compare("drake_passage_transport", r, d, abs(r - d) <= ROLLOUT_TOLERANCE * abs(d))
    if SST in run:
        r = float(metrics.spatial_mean(run[SST], regions.NINO34).std())
        d = float(metrics.spatial_mean(observed[SST], regions.NINO34).std())
        compare("nino34_box_std", r, d, d / NINO_FACTOR <= r <= d * NINO_FACTOR)
        if not observed_forcing:
            free = predictor.forecast(observed, init_time=first, months=months)
            out["nino34_box_std_initial_forcing"] = float(
                metrics.spatial_mean(free[SST].isel({TIME: 0}), regions.NINO34).std()
            )
    out["pass"] = bool(finite and all(v["pass"] for v in out.values() if isinstance(v, dict)))
    return out


def run(
    workdir: str | Path,
    observed_store: str | os.PathLike,
    report: str | Path,
    *,
    rollout_years: int = ROLLOUT_YEARS,
    plots: bool = True,
) -> dict[str, Any]:
    """Scores the forecaster trained in ``workdir`` on the test years of ``observed_store``
    (the split it was trained with), writes the report and returns the summary.

    Raises:
      FileNotFoundError: no trained forecaster in ``workdir``.
      ValueError: the test years hold no init month with 12 leads.
    """
    t0 = time.perf_counter()
    report = Path(report)
    info = train.read_info(workdir)
    split = train.split_of(info)
    predictor = domain.load(workdir)
    cfg = predictor.config
    observed = validation.open_dataset(str(observed_store), check_values="none").load()
    times = pd.DatetimeIndex(observed[TIME].values)
    split.check(len(times), train.LONGEST_LEAD)
    test, fit_months = split.test_months(times), split.finetune_months(times)
    leads = np.asarray(LEADS)
    inits = metrics.complete_init_times(test, leads)
    if len(inits) == 0:
        raise ValueError(f"the {split.test_years} test years hold no init month with 12 leads")
    # All init months in one batch (up to 36, the default test years'): one compilation.
    predictor.batch_size = min(len(inits), 36)
    thickness = (
        list(cfg.thickness) if cfg.thickness is not None else list(sanity.layer_thickness(observed))
    )
    names = list(cfg.variables)
    truth = observed[names]
    if schema.DEPTH in truth.dims:
        truth = truth.sel({schema.DEPTH: list(cfg.depths)})
    clim = climatology(truth, fit_months)
    systems = {
        "forecaster": predictor.forecast(observed, init_time=inits, months=len(leads))[names],
        "persistence": baselines.persistence(truth, inits, leads),
        "climatology": baselines.climatology_forecast(clim, inits, leads, template=truth),
        "damped_persistence": damped_persistence(truth, clim, fit_months, inits, leads),
    }
    systems = {
        k: upper_ocean(v.drop_vars("valid_time", errors="ignore"), thickness)
        for k, v in systems.items()
    }
    truth_u, clim_u = upper_ocean(truth, thickness), upper_ocean(clim, thickness)
    aligned = metrics.align(systems["forecaster"], truth_u)
    rmse: dict[str, dict[str, Any]] = {}
    acc: dict[str, dict[str, Any]] = {}
    column: dict[str, dict[str, list[float]]] = {}
    for system, fcst in systems.items():
        scores = metrics.rmse(fcst, aligned)
        anom = metrics.acc(fcst, aligned, clim_u) if system != "climatology" else None
        mse = metrics.mse(fcst, aligned)
        for name in fcst.data_vars:
            by = rmse.setdefault(name, {})
            by[system] = _scores(scores[name])
            if anom is not None:
                acc.setdefault(name, {})[system] = _scores(anom[name])
            if "depth" in fcst[name].dims:
                col = np.sqrt(metrics.thickness_mean(mse[name], thickness))
                column.setdefault(name, {})[system] = _lead_list(col)
    heat = {s: [v * RHO0 * CP * UPPER_DEPTH for v in by] for s, by in rmse.get(UPPER, {}).items()}
    card = scorecard({n: rmse[n] for n in SCORED if n in rmse})
    indices: dict[str, dict[str, Any]] = {}
    for box in INDICES:
        truth_index = nino34(aligned, clim, box)
        if truth_index is None:
            continue
        for system, fcst in systems.items():
            f = nino34(fcst, clim, box)
            indices.setdefault(box.name, {})[system] = {
                "correlation": _lead_list(index_skill.correlation(f, truth_index)),
                "rmse": _lead_list(index_skill.rmse(f, truth_index)),
            }
    nino = indices.get(regions.NINO34.name, {})
    roll = rollout_check(predictor, observed, rollout_years) if rollout_years else None
    summary = {
        "leads_months": [int(k) for k in leads],
        "test_months": [str(test[0])[:7], str(test[-1])[:7]],
        "climatology_months": [str(fit_months[0])[:7], str(fit_months[-1])[:7]],
        "n_inits": len(inits),
        "split": info["split"],
        "gap_months": info["gap_months"],
        "depths": list(cfg.depths),
        "rmse": rmse,
        "acc": acc,
        "column_rmse": column,
        "upper_ocean_heat_content_rmse_J_m2": heat,
        "nino34": nino,
        "indices": indices,
        "scorecard": card,
        "rollout": roll,
    }
    report.mkdir(parents=True, exist_ok=True)
    if plots:
        summary["plots"] = _plots(report, rmse, systems["forecaster"], aligned)
    summary["seconds"] = time.perf_counter() - t0
    (report / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _scores(da: xr.DataArray) -> Any:
    """By lead (a list), or by depth then lead (``{depth: list}``)."""
    if "depth" in da.dims:
        return {f"{float(d):g}": _lead_list(da.sel(depth=d)) for d in da["depth"].values}
    return _lead_list(da)


def _plots(report: Path, rmse, forecast: xr.Dataset, truth: xr.Dataset) -> list[str]:
    """RMSE against lead, a depth-latitude section and forecast-truth maps (PNGs, drawn by
    :mod:`tellus.evaluation.plots`)."""
    written = []
    shown = {n: rmse[n] for n in (UPPER, SSH, SST) if n in rmse}
    plots.plot_curves(shown, LEADS, report / "rmse_by_lead.png")
    written.append("rmse_by_lead.png")
    lead = min(6, forecast.sizes[LEAD])
    if TEMPERATURE in forecast:
        f = forecast[TEMPERATURE].sel({LEAD: lead}).mean((TIME, schema.LONGITUDE))
        t = truth[TEMPERATURE].sel({LEAD: lead}).mean((TIME, schema.LONGITUDE))
        title = f"zonal-mean temperature, lead {lead} months:"
        plots.plot_section(t, f, report / "section_temperature.png", title=title)
        written.append("section_temperature.png")
    pairs = {
        f"{n}, lead {lead} months": (
            forecast[n].isel({TIME: 0}).sel({LEAD: lead}),
            truth[n].isel({TIME: 0}).sel({LEAD: lead}),
        )
        for n in (SST, SSH)
        if n in forecast
    }
    if pairs:
        plots.plot_map_pairs(pairs, report / "maps.png")
        written.append("maps.png")
    return written


__all__ = [
    "INDICES",
    "LEADS",
    "SCORED",
    "SYSTEMS",
    "UPPER",
    "climatology",
    "cycled",
    "damped_persistence",
    "nino34",
    "rollout_check",
    "run",
    "scorecard",
    "upper_ocean",
]
