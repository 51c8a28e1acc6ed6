"""Scores of a 3D ocean reconstruction from sparse observations: ReconMOST's three MSEs per
depth, and the spread-error relation of an ensemble of reconstructions.

:func:`reconstruction_mse` gives, per depth level (or pooled over all levels), plain means
over points (no area weights, as ReconMOST), in the variable's units squared:

* ``mse_guidance``: over the guidance points, the reconstruction against the observed
  values it was guided by;
* ``mse_withheld``: over the withheld check points (whole profiles never shown to the
  reconstruction), against their observed values;
* ``mse_unobserved``: over every ocean point that is not a guidance point, against the
  truth: ReconMOST's "reconstruction" MSE (there every non-guidance point is held out);
* ``mse_field``: over every ocean point, against the truth;
* ``total = share_guidance * mse_guidance + (1 - share_guidance) * mse_unobserved``, with
  ``share_guidance`` the guidance points' share of the ocean points: ReconMOST's total
  (its 0.633 = 0.925 x 0.680 + 0.075 x 0.049). Where the observations are the truth's
  values (sampled from the store, no noise) ``total`` equals ``mse_field`` exactly.

ReconMOST's released code averages the squared error over *all* cells after setting land
to zero, which divides by land cells too and so shrinks the number by the ocean share;
this module does not: every mean here is over ocean points only, and a land cell (NaN,
1e30 or anything else under a 0 of ``ocean``) never reaches a sum or a count.

:func:`spread_error`: the ensemble spread ``sqrt(mean unbiased variance over members)``
against the RMSE of the ensemble mean, and their ratio ``sqrt((m+1)/m) * spread / rmse``
(``m`` members), which is 1 in expectation for an ensemble whose members and truth are
exchangeable (WeatherBench2's spread-skill ratio); :func:`spread_error_bins` the same in
bins of the points' spread, for a spread-error diagram.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

TIME, DEPTH, LAT, LON = "time", "depth", "latitude", "longitude"
DIMS = (TIME, DEPTH, LAT, LON)
MEMBER = "realization"


def _ocean(ocean: xr.DataArray, like: xr.DataArray) -> np.ndarray:
    """``ocean`` (1/True over ocean; [depth, lat, lon] or with time) as bool like ``like``."""
    return (ocean > 0.5).broadcast_like(like).transpose(*like.dims).to_numpy().copy()


def _observed(obs, like: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask) of gridded observations (``value``/``mask``) in ``like``'s layout."""
    if hasattr(obs, "to_dataset"):
        obs = obs.to_dataset()
    values = obs["value"].transpose(*like.dims).to_numpy()
    mask = obs["mask"].transpose(*like.dims).to_numpy().astype(bool)
    if values.shape != like.shape:
        raise ValueError(f"observations {values.shape} and field {like.shape} differ")
    return values, mask


def _mean_sq(err: np.ndarray, where: np.ndarray, axes) -> tuple[np.ndarray, np.ndarray]:
    """(mean of err**2 where ``where``, count) over ``axes``; NaN where the count is 0."""
    sq = np.where(where, err, 0.0) ** 2
    n = where.sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, sq.sum(axis=axes) / np.maximum(n, 1), np.nan), n


def reconstruction_mse(
    field: xr.DataArray,
    truth: xr.DataArray,
    guidance,
    withheld,
    *,
    ocean: xr.DataArray,
    per_depth: bool = True,
) -> xr.Dataset:
    """ReconMOST's MSEs of ``field`` (see the module docstring).

    Args:
      field: the reconstruction [time, depth, latitude, longitude]; must be finite over
        the ocean (a NaN there is an error, not a point left out).
      truth: the true field on the same grid; anything over land.
      guidance, withheld: gridded observations (``value`` and ``mask``:
        :class:`tellus.data.profile_grid.GriddedObservations` or its ``to_dataset()``).
      ocean: 1/True over ocean, [depth, latitude, longitude] or with time. Points are
        ocean where it is 1 *and* the truth is finite.
      per_depth: one value per depth level; else pooled over all points.

    Returns:
      ``mse_guidance``, ``mse_withheld``, ``mse_unobserved``, ``mse_field``, ``total``,
      ``share_guidance`` and the counts ``n_guidance``, ``n_withheld``, ``n_ocean``
      (dim ``depth`` if ``per_depth``).
    """
    field = field.transpose(*DIMS)
    truth = truth.transpose(*DIMS)
    f, x = field.to_numpy(), truth.to_numpy()
    wet = _ocean(ocean, field)
    wet &= np.isfinite(x)
    if not np.isfinite(f[wet]).all():
        raise ValueError(
            f"the reconstruction is not finite at {int((~np.isfinite(f[wet])).sum())} ocean points"
        )
    g_val, g_mask = _observed(guidance, field)
    w_val, w_mask = _observed(withheld, field)
    g_mask &= wet
    w_mask &= wet
    f0 = np.where(wet, f, 0.0)
    axes = (0, 2, 3) if per_depth else (0, 1, 2, 3)
    mse_g, n_g = _mean_sq(f0 - np.where(g_mask, g_val, 0.0), g_mask, axes)
    mse_w, n_w = _mean_sq(f0 - np.where(w_mask, w_val, 0.0), w_mask, axes)
    err = f0 - np.where(wet, x, 0.0)
    mse_u, _ = _mean_sq(err, wet & ~g_mask, axes)
    mse_f, n = _mean_sq(err, wet, axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n > 0, n_g / np.maximum(n, 1), np.nan)
    total = share * np.where(n_g > 0, mse_g, 0.0) + (1.0 - share) * mse_u
    dims = (DEPTH,) if per_depth else ()
    coords = {DEPTH: field[DEPTH].values} if per_depth else {}
    out = {
        "mse_guidance": mse_g,
        "mse_withheld": mse_w,
        "mse_unobserved": mse_u,
        "mse_field": mse_f,
        "total": total,
        "share_guidance": share,
        "n_guidance": n_g,
        "n_withheld": n_w,
        "n_ocean": n,
    }
    return xr.Dataset({k: (dims, np.asarray(v)) for k, v in out.items()}, coords=coords)


def _ensemble(samples: xr.DataArray, truth: xr.DataArray, ocean: xr.DataArray, member: str):
    """(variance, squared error of the mean, points, m) over ocean points only."""
    if samples.sizes.get(member, 0) < 2:
        raise ValueError(f"spread needs at least 2 members along '{member}'")
    samples = samples.transpose(member, *DIMS)
    truth = truth.transpose(*DIMS)
    wet = _ocean(ocean, truth) & np.isfinite(truth.to_numpy())
    s = np.where(wet[None], samples.to_numpy(), 0.0)
    if not np.isfinite(s).all():
        raise ValueError("the samples are not finite over the ocean")
    var = s.var(axis=0, ddof=1)
    sq = (s.mean(axis=0) - np.where(wet, truth.to_numpy(), 0.0)) ** 2
    return var, sq, wet, samples.sizes[member]


def spread_error(
    samples: xr.DataArray,
    truth: xr.DataArray,
    *,
    ocean: xr.DataArray,
    member: str = MEMBER,
    per_depth: bool = True,
) -> xr.Dataset:
    """Ensemble spread, RMSE of the ensemble mean and their ratio over ocean points.

    Args:
      samples: [member, time, depth, latitude, longitude], at least 2 members.
      truth: [time, depth, latitude, longitude]; anything over land.
      ocean: as in :func:`reconstruction_mse`.
      member: the members' dim.
      per_depth: per depth level, or pooled.

    Returns:
      ``spread``, ``rmse``, ``ratio`` (``sqrt((m+1)/m) * spread / rmse``) and ``n``.
    """
    var, sq, wet, m = _ensemble(samples, truth, ocean, member)
    axes = (0, 2, 3) if per_depth else (0, 1, 2, 3)
    n = wet.sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.sqrt(np.where(wet, var, 0.0).sum(axis=axes) / n)
        rmse = np.sqrt(np.where(wet, sq, 0.0).sum(axis=axes) / n)
        ratio = np.sqrt((m + 1) / m) * spread / rmse
    dims = (DEPTH,) if per_depth else ()
    coords = {DEPTH: truth[DEPTH].values} if per_depth else {}
    return xr.Dataset(
        {
            k: (dims, np.asarray(v))
            for k, v in dict(spread=spread, rmse=rmse, ratio=ratio, n=n).items()
        },
        coords=coords,
        attrs={"members": m},
    )


def spread_error_bins(
    samples: xr.DataArray,
    truth: xr.DataArray,
    *,
    ocean: xr.DataArray,
    bins: int = 10,
    member: str = MEMBER,
) -> xr.Dataset:
    """The spread-error diagram: ocean points in ``bins`` equally filled bins of their
    ensemble spread (quantiles of the per-point standard deviation); in each bin the
    spread ``sqrt(mean variance)`` and the RMSE of the ensemble mean.

    For exchangeable members and truth, ``rmse = sqrt((m+1)/m) * spread`` in every bin
    where the binned spread is the true one. With few members it is not: the members'
    own spread is noisy, so the lowest bins gather points whose spread is underestimated
    and show more error than spread (and the highest less) even for a calibrated ensemble.
    Read the diagram against that selection effect, or pool (:func:`spread_error`).

    Returns:
      ``spread``, ``rmse``, ``n`` on dim ``bin``; ``attrs["members"]`` = m.
    """
    var, sq, wet, m = _ensemble(samples, truth, ocean, member)
    v, e = var[wet], sq[wet]
    edges = np.quantile(np.sqrt(v), np.linspace(0.0, 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, np.sqrt(v), side="right") - 1, 0, bins - 1)
    n = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.sqrt(np.bincount(which, v, minlength=bins) / n)
        rmse = np.sqrt(np.bincount(which, e, minlength=bins) / n)
    return xr.Dataset(
        {"spread": ("bin", spread), "rmse": ("bin", rmse), "n": ("bin", n)},
        coords={"bin": np.arange(bins), "lower": ("bin", edges[:-1]), "upper": ("bin", edges[1:])},
        attrs={"members": m},
    )
