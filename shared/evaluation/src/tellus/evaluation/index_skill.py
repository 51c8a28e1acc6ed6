"""Skill of forecasts of an index series (Nino3.4, a basin mean, ...) by lead, and its baselines.

Where :mod:`tellus.evaluation.metrics` scores fields on a grid, these score one number per
start and lead. Forecasts and truth are xarray objects with an ``init`` dim (the starts) and
a ``lead`` dim; the scores reduce over ``init`` and keep every other dim (``lead``, a system
dim, ...):

* :func:`correlation`: the Pearson (anomaly) correlation over the starts, all seasons
  pooled;
* :func:`rmse`: the root mean squared error over the starts.

Baselines, on numpy arrays ``[start]`` / ``[start, lead]``:

* :func:`persistence`: the index at the start (or a mean of recent months, all known at the
  start) held at every lead;
* :class:`DampedPersistence`: per start month and lead, the least-squares slope (through the
  origin: anomalies) of the target on that current index, i.e. a seasonally varying AR(1).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

INIT, LEAD = "init", "lead"
MONTHS = 12


def correlation(forecast: xr.DataArray, truth: xr.DataArray, dim: str = INIT) -> xr.DataArray:
    """Pearson correlation over ``dim`` (means removed), keeping every other dim."""
    f = forecast - forecast.mean(dim)
    t = truth - truth.mean(dim)
    return (f * t).sum(dim) / np.sqrt((f**2).sum(dim) * (t**2).sum(dim))


def rmse(forecast: xr.DataArray, truth: xr.DataArray, dim: str = INIT) -> xr.DataArray:
    """Root mean squared error over ``dim``."""
    return np.sqrt(((forecast - truth) ** 2).mean(dim))


def persistence(current: np.ndarray, n_leads: int) -> np.ndarray:
    """``[start, n_leads]``: the current index ``[start]`` held at every lead."""
    return np.repeat(np.asarray(current)[:, None], n_leads, axis=1)


@dataclasses.dataclass(frozen=True)
class DampedPersistence:
    """``y[t + lead] = coef[month(t), lead] * x[t]``, fitted by least squares (no intercept:
    anomalies)."""

    coef: np.ndarray  # [12, n_leads, *point]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, months: np.ndarray) -> DampedPersistence:
        """x [N, *point] predictor, y [N, L, *point] targets, months [N] start months
        (1..12): one index (no ``point`` dims) or every point of a field at once, each with
        its own slopes. NaN (land) points get NaN slopes."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        coef = np.zeros((MONTHS, *y.shape[1:]))
        for m in range(1, MONTHS + 1):
            sel = months == m
            xm, ym = x[sel], y[sel]
            xy = np.einsum("n...,nl...->l...", xm, ym)
            coef[m - 1] = xy / np.maximum(np.einsum("n...,n...->...", xm, xm), 1e-12)
        return cls(coef)

    def predict(self, x: np.ndarray, months: np.ndarray) -> np.ndarray:
        """``[N, L, *point]`` forecasts from the predictor x [N, *point] at start months [N]
        (1..12)."""
        return np.asarray(x)[:, None] * self.coef[np.asarray(months) - 1]
