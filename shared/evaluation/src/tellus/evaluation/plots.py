"""Figures a person can look at: skill against lead time, and forecast/truth/error maps.

Matplotlib with the Agg backend (no display, no cartopy): maps are plain latitude-longitude
images with the longitudes rolled to ``[-180, 180)`` so that Europe and Africa sit in the middle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from tellus.evaluation import metrics as metrics_lib
from tellus.evaluation import scorecard

METRIC_TITLES = {
    "rmse": "RMSE",
    "mse": "MSE",
    "mae": "MAE",
    "bias": "Bias",
    "acc": "ACC",
    "crps": "CRPS",
    "spread": "Spread",
    "spread_skill": "Spread/skill",
    "ensemble_mean_rmse": "Ensemble-mean RMSE",
}


def _units(variable: str) -> str:
    from tellus.data import schema

    var = schema.lookup(variable)
    return var.units if var is not None else ""


def plot_metric_vs_lead(
    df: pd.DataFrame,
    metric: str,
    variables: Sequence[str] | None,
    path: str | os.PathLike,
    *,
    region: str = "global",
    models: Sequence[str] | None = None,
) -> str:
    """One panel per variable, one line per model, ``metric`` against lead time.

    Args:
      df: the output of :func:`tellus.evaluation.scorecard.evaluate`.
      metric: which metric to draw.
      variables: selections (``name`` or ``name@level``) to draw, one panel each; those not in
        ``df`` are left out. None: the headline variables.
      path: PNG file to write.
      region: which region's rows.
      models: models to draw, in this order (default: all in ``df``).

    Returns:
      The path written.
    """
    sub = df[(df["metric"] == metric) & (df["region"] == region)].copy()
    if sub.empty:
        raise ValueError(f"no rows with metric={metric!r} and region={region!r}")
    sub["selection"] = [
        scorecard.label(v, lv) for v, lv in zip(sub["variable"], sub["level"], strict=True)
    ]
    variables = scorecard.HEADLINE_VARIABLES if variables is None else variables
    panels = [v for v in variables if v in set(sub["selection"])]
    if not panels:
        raise ValueError(f"none of {list(variables)} has {metric!r} rows")
    models = list(models) if models is not None else list(dict.fromkeys(sub["model"]))
    hours = np.array([pd.Timedelta(x) / pd.Timedelta("1h") for x in sub["lead"]])
    in_days = hours.max() > 72
    sub["x"] = hours / 24.0 if in_days else hours

    ncol = min(len(panels), 2)
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.5 * ncol, 3.8 * nrow), squeeze=False)
    title = METRIC_TITLES.get(metric, metric)
    for ax, selection in zip(axes.ravel(), panels, strict=False):
        rows = sub[sub["selection"] == selection]
        for model in models:
            line = rows[rows["model"] == model].sort_values("x")
            if not line.empty:
                ax.plot(line["x"], line["value"], marker="o", markersize=3, label=model)
        name, _ = scorecard.parse_selection(selection)
        units = "" if metric in ("acc", "spread_skill") else _units(name)
        short = scorecard.SHORT_NAMES.get(selection, selection)
        ax.set_title(f"{short} ({selection})", fontsize=10)
        ax.set_xlabel("lead time [days]" if in_days else "lead time [hours]")
        ax.set_ylabel(f"{title} [{units}]" if units else title)
        ax.grid(alpha=0.3)
        if metric == "bias":
            ax.axhline(0.0, color="k", lw=0.8)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=8)
    fig.suptitle(f"{title}, region: {region}")
    fig.tight_layout()
    return _save(fig, path)


def _lon_centered(da: xr.DataArray) -> xr.DataArray:
    """Longitudes from [0, 360) to [-180, 180), sorted."""
    lon = ((da[metrics_lib.LONGITUDE] + 180.0) % 360.0) - 180.0
    return da.assign_coords({metrics_lib.LONGITUDE: lon}).sortby(metrics_lib.LONGITUDE)


def plot_maps(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    variable: str,
    level: int | None,
    lead: str | pd.Timedelta,
    init: str | pd.Timestamp | None,
    path: str | os.PathLike,
    *,
    member: int | None = None,
) -> str:
    """Forecast | truth | forecast - truth maps side by side, with colorbars.

    Args:
      forecast: forecast layout.
      truth: analysis layout (``time`` = valid time).
      variable: data variable to draw.
      level: pressure level (hPa) for upper-air variables (None: the first).
      lead: lead time, e.g. ``"24h"``.
      init: init time (None: the first).
      path: PNG file to write.
      member: for an ensemble, which realization index (default: the ensemble mean).

    Returns:
      The path written.
    """
    lead = pd.Timedelta(lead)
    init = pd.Timestamp(forecast[metrics_lib.TIME].values[0] if init is None else init)
    fc = forecast[variable].sel({metrics_lib.TIME: init, metrics_lib.LEAD: lead})
    tr = truth[variable].sel({metrics_lib.TIME: init + lead})
    if metrics_lib.REALIZATION in fc.dims:
        fc = (
            fc.isel({metrics_lib.REALIZATION: member})
            if member is not None
            else fc.mean(metrics_lib.REALIZATION)
        )
    if metrics_lib.LEVEL in fc.dims:
        level = int(fc[metrics_lib.LEVEL].values[0]) if level is None else level
        fc = fc.sel({metrics_lib.LEVEL: level})
        tr = tr.sel({metrics_lib.LEVEL: level})
    fc, tr = _lon_centered(fc.astype(np.float64)), _lon_centered(tr.astype(np.float64))
    diff = fc - tr
    units = forecast[variable].attrs.get("units") or _units(variable)
    name = scorecard.label(variable, level)

    vmin = float(min(fc.min(), tr.min()))
    vmax = float(max(fc.max(), tr.max()))
    dmax = float(np.abs(diff).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(18, 3.8))
    panels = (
        (
            fc,
            f"forecast, init {init:%Y-%m-%d %H}UTC +{scorecard.lead_label(lead)}",
            "viridis",
            vmin,
            vmax,
        ),
        (tr, f"truth, valid {init + lead:%Y-%m-%d %H}UTC", "viridis", vmin, vmax),
        (diff, "forecast - truth", "RdBu_r", -dmax, dmax),
    )
    for ax, (da, title, cmap, lo, hi) in zip(axes, panels, strict=True):
        mesh = ax.pcolormesh(
            da[metrics_lib.LONGITUDE],
            da[metrics_lib.LATITUDE],
            da.transpose(metrics_lib.LATITUDE, metrics_lib.LONGITUDE),
            cmap=cmap,
            vmin=lo,
            vmax=hi,
            shading="nearest",
        )
        cbar = fig.colorbar(mesh, ax=ax, fraction=0.023, pad=0.03)  # As tall as a 2:1 map.
        cbar.set_label(units)
        ax.set_title(f"{name} [{units}]\n{title}", fontsize=9)
        ax.set_xlabel("longitude [deg E]")
        ax.set_ylabel("latitude [deg N]")
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_aspect("equal")
    fig.tight_layout()
    return _save(fig, path)


def plot_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    x: Sequence[float],
    path: str | os.PathLike,
    *,
    xlabel: str = "lead (months)",
    ylabel: str = "RMSE",
) -> str:
    """One panel per entry of ``curves`` (``{panel: {line: values at x}}``), e.g. a
    monthly forecast's RMSE by lead for each system. Returns the path written."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.5), squeeze=False)
    for ax, (title, lines) in zip(axes[0], curves.items(), strict=True):
        for name, values in lines.items():
            ax.plot(list(x)[: len(values)], values, marker="o", ms=3, label=name)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_section(
    truth: xr.DataArray, forecast: xr.DataArray, path: str | os.PathLike, *, title: str = ""
) -> str:
    """Depth-latitude sections (dims ``(depth, latitude)``, e.g. zonal means): truth |
    forecast | forecast - truth, depth increasing downwards. Returns the path written."""
    diff = forecast - truth
    lo, hi = float(min(truth.min(), forecast.min())), float(max(truth.max(), forecast.max()))
    dmax = float(np.abs(diff).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    panels = (
        (truth, "truth", "viridis", lo, hi),
        (forecast, "forecast", "viridis", lo, hi),
        (diff, "forecast - truth", "RdBu_r", -dmax, dmax),
    )
    for ax, (da, name, cmap, vmin, vmax) in zip(axes, panels, strict=True):
        da = da.transpose("depth", metrics_lib.LATITUDE)
        mesh = ax.pcolormesh(
            da[metrics_lib.LATITUDE],
            da["depth"],
            da,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            shading="nearest",
        )
        fig.colorbar(mesh, ax=ax)
        ax.invert_yaxis()
        ax.set_title(f"{title} {name}".strip(), fontsize=9)
        ax.set_xlabel("latitude [deg N]")
    axes[0].set_ylabel("depth [m]")
    fig.tight_layout()
    return _save(fig, path)


def plot_map_pairs(
    pairs: Mapping[str, tuple[xr.DataArray, xr.DataArray]], path: str | os.PathLike
) -> str:
    """One row per entry of ``pairs`` (``{title: (forecast, truth)}``, each a
    ``(latitude, longitude)`` map): forecast | truth | forecast - truth, NaN (land) blank.
    Returns the path written."""
    fig, axes = plt.subplots(len(pairs), 3, figsize=(15, 3.2 * len(pairs)), squeeze=False)
    for row, (title, (fc, tr)) in zip(axes, pairs.items(), strict=True):
        fc, tr = _lon_centered(fc.astype(np.float64)), _lon_centered(tr.astype(np.float64))
        diff = fc - tr
        lo, hi = float(min(np.nanmin(fc), np.nanmin(tr))), float(max(np.nanmax(fc), np.nanmax(tr)))
        dmax = float(np.nanmax(np.abs(diff))) or 1.0
        panels = (
            (fc, "forecast", "viridis", lo, hi),
            (tr, "truth", "viridis", lo, hi),
            (diff, "forecast - truth", "RdBu_r", -dmax, dmax),
        )
        for ax, (da, name, cmap, vmin, vmax) in zip(row, panels, strict=True):
            mesh = ax.pcolormesh(
                da[metrics_lib.LONGITUDE],
                da[metrics_lib.LATITUDE],
                da.transpose(metrics_lib.LATITUDE, metrics_lib.LONGITUDE),
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                shading="nearest",
            )
            fig.colorbar(mesh, ax=ax, fraction=0.023, pad=0.03)
            ax.set_title(f"{title}: {name}", fontsize=9)
            ax.set_aspect("equal")
    fig.tight_layout()
    return _save(fig, path)


def plot_reconstruction(
    rows: Mapping[str, tuple[xr.DataArray, xr.DataArray, xr.DataArray]],
    path: str | os.PathLike,
) -> str:
    """One row per entry of ``rows`` (``{title: (truth, observed, reconstruction)}``, each a
    2D slice: a ``(latitude, longitude)`` map or a ``(depth, latitude|longitude)`` section):
    truth | observations | reconstruction | reconstruction - truth. ``observed`` is NaN where
    nothing is observed; its points are drawn as dots coloured like the truth. NaN (land)
    is blank, depth increases downwards. Returns the path written."""
    fig, axes = plt.subplots(len(rows), 4, figsize=(19, 3.3 * len(rows)), squeeze=False)
    for row, (title, (truth, observed, recon)) in zip(axes, rows.items(), strict=True):
        truth, observed, recon = (da.astype(np.float64) for da in (truth, observed, recon))
        section = "depth" in truth.dims
        if section:
            x = next(d for d in truth.dims if d != "depth")
            truth, observed, recon = (da.transpose("depth", x) for da in (truth, observed, recon))
            ydim = "depth"
        else:
            truth, observed, recon = (
                _lon_centered(da).transpose(metrics_lib.LATITUDE, metrics_lib.LONGITUDE)
                for da in (truth, observed, recon)
            )
            x, ydim = metrics_lib.LONGITUDE, metrics_lib.LATITUDE
        diff = recon - truth
        lo = float(min(np.nanmin(truth), np.nanmin(recon)))
        hi = float(max(np.nanmax(truth), np.nanmax(recon)))
        dmax = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
        panels = (
            (truth, "truth", "viridis", lo, hi),
            (truth * np.nan, "observations", "viridis", lo, hi),
            (recon, "reconstruction", "viridis", lo, hi),
            (diff, "reconstruction - truth", "RdBu_r", -(dmax or 1.0), dmax or 1.0),
        )
        for ax, (da, name, cmap, vmin, vmax) in zip(row, panels, strict=True):
            mesh = ax.pcolormesh(
                da[x], da[ydim], da, cmap=cmap, vmin=vmin, vmax=vmax, shading="nearest"
            )
            if name == "observations":
                ax.pcolormesh(
                    truth[x],
                    truth[ydim],
                    np.where(np.isfinite(truth), 1.0, np.nan),
                    cmap="Greys",
                    vmin=0.0,
                    vmax=6.0,
                    shading="nearest",
                )
                yy, xx = np.nonzero(np.isfinite(observed.to_numpy()))
                ax.scatter(
                    observed[x].to_numpy()[xx],
                    observed[ydim].to_numpy()[yy],
                    c=observed.to_numpy()[yy, xx],
                    cmap=cmap,
                    vmin=vmin,
                    vmax=vmax,
                    s=9,
                    edgecolors="k",
                    linewidths=0.2,
                )
            fig.colorbar(mesh, ax=ax, fraction=0.03 if not section else 0.05, pad=0.03)
            ax.set_title(f"{title}: {name}", fontsize=9)
            if section:
                if not ax.yaxis_inverted():
                    ax.invert_yaxis()
                ax.set_xlabel(f"{x} [deg]")
            else:
                ax.set_aspect("equal")
        row[0].set_ylabel("depth [m]" if section else "latitude [deg N]")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
