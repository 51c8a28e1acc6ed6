"""Scoring several forecasts against one truth, as a tidy table and a WeatherBench2-like card.

:func:`evaluate` runs every (model, metric, region) and returns one row per (model, metric,
variable, level, region, lead). :func:`scorecard_table` pivots one metric of that table into
rows of variables and columns of leads, one block per model plus the relative difference to a
reference model, and writes it as Markdown and CSV.

Variables are selected as ``"name"`` (all levels the forecast has) or ``"name@level"`` (one
pressure level, hPa), e.g. the headline set ``geopotential@500`` (Z500), ``temperature@850``
(T850), ``2m_temperature`` (T2M) and ``10m_u_component_of_wind`` (U10).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from tellus.evaluation import baselines
from tellus.evaluation import metrics as metrics_lib
from tellus.evaluation import regions as regions_lib

HEADLINE_VARIABLES: tuple[str, ...] = (
    "geopotential@500",
    "temperature@850",
    "2m_temperature",
    "10m_u_component_of_wind",
)
SHORT_NAMES = {
    "geopotential@500": "Z500",
    "temperature@850": "T850",
    "2m_temperature": "T2M",
    "10m_u_component_of_wind": "U10",
    "10m_v_component_of_wind": "V10",
    "mean_sea_level_pressure": "MSLP",
    "specific_humidity@700": "Q700",
    "u_component_of_wind@850": "U850",
    "v_component_of_wind@850": "V850",
}
DEFAULT_METRICS: tuple[str, ...] = ("rmse", "bias", "acc", "crps", "spread_skill")
COLUMNS = ("model", "metric", "variable", "level", "region", "lead", "value")


def headline_variables() -> tuple[str, ...]:
    """Z500, T850, T2M, U10 as selections (see the module docstring)."""
    return HEADLINE_VARIABLES


def parse_selection(selection: str) -> tuple[str, int | None]:
    """``"geopotential@500"`` -> ``("geopotential", 500)``; ``"2m_temperature"`` -> (name, None)."""
    name, _, level = selection.partition("@")
    return name, (int(level) if level else None)


def label(variable: str, level: int | float | None) -> str:
    """The selection string of a row: ``variable@level`` or ``variable``."""
    if level is None or pd.isna(level):
        return variable
    return f"{variable}@{int(level)}"


def lead_label(lead: pd.Timedelta, unit: str | None = None) -> str:
    """A lead as ``"6h"`` or ``"2.5d"``.

    Args:
      lead: the lead time.
      unit: ``"h"`` or ``"d"``; default hours below 3 days, days from there on.
    """
    hours = pd.Timedelta(lead) / pd.Timedelta("1h")
    unit = unit or ("h" if hours < 72 else "d")
    return f"{hours:g}h" if unit == "h" else f"{hours / 24:g}d"


def _select(ds: xr.Dataset, selections: Sequence[str]) -> tuple[xr.Dataset, list[tuple]]:
    """Subsets ``ds`` to the selections it has; returns it and the (name, level) pairs."""
    wanted: list[tuple[str, int | None]] = []
    for s in selections:
        name, level = parse_selection(s)
        if name not in ds.data_vars:
            continue
        has_level = metrics_lib.LEVEL in ds[name].dims
        if level is not None and not has_level:
            continue
        if has_level:
            levels = [level] if level is not None else [int(x) for x in ds[metrics_lib.LEVEL]]
            wanted += [(name, lv) for lv in levels if lv in ds[metrics_lib.LEVEL].values]
        else:
            wanted.append((name, None))
    names = list(dict.fromkeys(n for n, _ in wanted))
    sub = ds[names]
    levels = sorted({lv for _, lv in wanted if lv is not None})
    if levels and metrics_lib.LEVEL in sub.dims:
        sub = sub.sel({metrics_lib.LEVEL: levels})
    return sub, wanted


def _applicable(metric: str, forecast: xr.Dataset, climatology) -> bool:
    if metric == "acc":
        return climatology is not None
    if metric in ("spread", "spread_skill", "ensemble_mean_rmse"):
        return (
            metrics_lib.REALIZATION in forecast.dims and forecast.sizes[metrics_lib.REALIZATION] > 1
        )
    return True


def evaluate(
    forecasts: Mapping[str, xr.Dataset],
    truth: xr.Dataset,
    climatology: xr.Dataset | None = None,
    *,
    variables: Sequence[str] = HEADLINE_VARIABLES,
    regions: Sequence[str | regions_lib.Region] = ("global",),
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> pd.DataFrame:
    """Scores every forecast on every metric, region, variable, level and lead.

    Combinations that do not apply are skipped, not errors: ``acc`` without a climatology,
    ``spread``/``spread_skill``/``ensemble_mean_rmse`` for a deterministic forecast, a variable
    a forecast (or, for ``acc``, the climatology) lacks. ``crps`` of a deterministic forecast is its MAE.

    Args:
      forecasts: model name -> forecast-layout dataset (add baselines with
        :func:`add_baselines`).
      truth: analysis layout; must hold every valid time of every forecast.
      climatology: dims ``(dayofyear, [hour], ...)``, for ``acc``.
      variables: selections ``name`` or ``name@level``.
      regions: registry names or :class:`~tellus.data.regions.Region` objects.
      metrics: names from :data:`metrics.DETERMINISTIC` and :data:`metrics.ENSEMBLE`.

    Returns:
      A tidy DataFrame with columns ``model, metric, variable, level, region, lead, value``
      (``level`` is ``<NA>`` for surface variables, ``lead`` a Timedelta).
    """
    rows = []
    region_objs = [regions_lib.get_region(r) for r in regions]
    for model, forecast in forecasts.items():
        fc, wanted = _select(forecast, variables)
        if not wanted:
            continue
        aligned = metrics_lib.align(fc, truth)
        for metric in metrics:
            if not _applicable(metric, fc, climatology):
                continue
            for region in region_objs:
                f, t = fc, aligned
                if metric == "acc":  # Only the variables the climatology has.
                    keep = [v for v in fc.data_vars if v in climatology.data_vars]
                    f, t = fc[keep], aligned[keep]
                result = metrics_lib.compute(
                    metric, f, t, climatology=climatology, region=region
                ).compute()
                for name, level in wanted:
                    if name not in result:
                        continue
                    da = result[name]
                    if level is not None:
                        da = da.sel({metrics_lib.LEVEL: level})
                    leads = pd.TimedeltaIndex(da[metrics_lib.LEAD].values)
                    for lead, value in zip(leads, np.asarray(da.values).ravel(), strict=True):
                        rows.append((model, metric, name, level, region.name, lead, float(value)))
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["level"] = df["level"].astype("Int64")
    return df


def add_baselines(
    forecasts: Mapping[str, xr.Dataset],
    truth: xr.Dataset,
    climatology: xr.Dataset | None = None,
) -> dict[str, xr.Dataset]:
    """``forecasts`` plus ``persistence`` and (with a climatology) ``climatology`` forecasts.

    The baselines use the init times and leads of the first forecast, and the truth's
    variables and levels.

    Args:
      forecasts: model name -> forecast-layout dataset (at least one).
      truth: analysis layout, holding the init times and the valid times.
      climatology: dims ``(dayofyear, [hour], ...)``.

    Returns:
      A new dict, the forecasts first.
    """
    first = next(iter(forecasts.values()))
    init, leads = first[metrics_lib.TIME].values, first[metrics_lib.LEAD].values
    out = dict(forecasts)
    out["persistence"] = baselines.persistence(truth, init, leads)
    if climatology is not None:
        out["climatology"] = baselines.climatology_forecast(
            climatology, init, leads, template=truth
        )
    return out


def scorecard_table(
    df: pd.DataFrame,
    *,
    metric: str = "rmse",
    region: str = "global",
    reference: str | None = None,
    path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """A WeatherBench2-like card of one metric: rows of variables, columns of leads.

    One block of rows per model, then for each other model a block of the relative difference
    to ``reference``, ``100 * (model - reference) / |reference|`` in percent (for RMSE, CRPS
    negative is better; for ACC positive is better).

    Args:
      df: the output of :func:`evaluate`.
      metric, region: which rows of ``df``.
      reference: model to compare against (default: none, no relative blocks).
      path: if given, writes ``path.md`` and ``path.csv`` (a suffix on ``path`` is replaced).

    Returns:
      Columns ``block, variable`` then one per lead (labelled by :func:`lead_label`).
    """
    sub = df[(df["metric"] == metric) & (df["region"] == region)].copy()
    if sub.empty:
        raise ValueError(f"no rows with metric={metric!r} and region={region!r}")
    sub["variable"] = [label(v, lv) for v, lv in zip(sub["variable"], sub["level"], strict=True)]
    order = list(dict.fromkeys(sub["variable"]))
    leads = sorted(sub["lead"].unique())
    models = list(dict.fromkeys(sub["model"]))
    wide = sub.pivot_table(
        index=["model", "variable"], columns="lead", values="value", aggfunc="first", dropna=False
    )
    wide = wide.reindex(columns=leads)

    blocks = []
    for model in models:
        block = wide.loc[model].reindex(order) if model in wide.index.get_level_values(0) else None
        if block is not None:
            blocks.append((model, block))
    if reference is not None:
        if reference not in models:
            raise KeyError(f"reference model {reference!r} not among {models}")
        ref = dict(blocks)[reference]
        for model, block in list(blocks):
            if model != reference:
                rel = 100.0 * (block - ref) / ref.abs()
                # Against a zero reference (persistence at lead 0) the change is undefined.
                rel = rel.where(np.isfinite(rel))
                blocks.append((f"{model} vs {reference} (%)", rel))

    # One unit for the whole card: hours when every lead is under 3 days, else days.
    unit = "h" if max(pd.Timedelta(x) for x in leads) < pd.Timedelta("72h") else "d"
    frames = []
    for name, block in blocks:
        b = block.copy()
        b.columns = [lead_label(pd.Timedelta(c), unit) for c in b.columns]
        b.insert(0, "variable", b.index)
        b.insert(0, "block", name)
        frames.append(b.reset_index(drop=True))
    table = pd.concat(frames, ignore_index=True)
    table.columns.name = None
    table.attrs.update(metric=metric, region=region, reference=reference)

    if path is not None:
        stem = os.path.splitext(os.fspath(path))[0]
        os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
        table.to_csv(stem + ".csv", index=False)
        with open(stem + ".md", "w") as f:
            f.write(f"## {metric} ({region})\n\n" + to_markdown(table) + "\n")
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (numbers to 4 significant digits, percentages signed)."""

    def fmt(value, percent: bool) -> str:
        if isinstance(value, str):
            return value
        if value is None or pd.isna(value):
            return ""
        return f"{value:+.1f}" if percent else f"{value:.4g}"

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" if i < 2 else "---:" for i in range(len(table.columns))) + "|"
    lines = [header, rule]
    for row in table.itertuples(index=False):
        percent = str(row[0]).endswith("(%)")
        lines.append("| " + " | ".join(fmt(v, percent) for v in row) + " |")
    return "\n".join(lines)
