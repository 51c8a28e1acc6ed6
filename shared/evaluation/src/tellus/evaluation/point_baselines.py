"""Reconstruction baselines from sparse observations: climatology, nearest neighbour, and
Gaussian-process optimal interpolation, each returning the full field.

Every baseline takes gridded observations (``value`` and ``mask`` on the store's time,
depth, latitude, longitude: :meth:`tellus.data.profile_grid.GriddedObservations.to_dataset`)
and returns a :class:`xarray.DataArray` [time, depth, latitude, longitude], NaN over land,
so that it can be scored at the guidance points, the withheld points and over the ocean
(:mod:`tellus.evaluation.reconstruction`).

* :func:`fit_climatology`: the calendar-month mean (``groupby("time.month")``) of the
  truth over the *fitting* months only; :func:`climatology_field` lays it out on the test
  times (a test month whose calendar month was never fitted is an error).
* :func:`nearest_neighbour`: per time and depth level, each ocean cell takes the anomaly
  (observation minus climatology) of the nearest observed cell on the sphere
  (scikit-learn ``NearestNeighbors``, haversine metric), plus its own climatology.
* :func:`gp_interpolation`: per time and depth level, the posterior mean of a Gaussian
  process on the anomalies (scikit-learn ``GaussianProcessRegressor``), a zero prior mean
  (so it relaxes to climatology far from the data), and a kernel on the sphere:
  coordinates are 3D unit vectors, so distance is the chord ``2 sin(angle / 2)``, which
  is what makes 0 and 360 deg meet; ``ConstantKernel * Matern(nu=1.5) + WhiteKernel``
  (a Matern kernel of the chord is positive definite on the sphere: it is one in 3D
  restricted to the sphere). Its hyperparameters come from :func:`fit_gp_kernels` on
  months outside the test months and stay fixed (``optimizer=None``) on the test months.

A level without an observation at a time (below the profiles' 2 000 m) gets zero anomaly,
i.e. the climatology, from both interpolators.

The GP's matrices are small (at most :data:`INTERPOLATION_POINTS` = 1 500 points per
level and time; :data:`FIT_POINTS` = 400 per level and month, :data:`FIT_MONTHS` = 3
months, when fitting), so its linear algebra runs on one BLAS thread
(``threadpoolctl``): on a loaded 2-core machine threaded BLAS made a 250-point fit 45
times slower (5.8 s against 0.12 s).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, Matern, WhiteKernel
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

TIME, DEPTH, LAT, LON = "time", "depth", "latitude", "longitude"
DIMS = (TIME, DEPTH, LAT, LON)
# Caps on the points a GP sees (for speed; a random subset when there are more): per level
# and month when fitting the hyperparameters, per level and time when interpolating.
FIT_POINTS = 400
FIT_MONTHS = 3
INTERPOLATION_POINTS = 1500
# Profiles reach 2 000 m (tellus.data.profiles): kernels are fitted down to there.
FIT_MAX_DEPTH = 2000.0


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """[n, 3] points on the unit sphere for latitudes and longitudes in degrees."""
    y, x = np.radians(np.asarray(lat, float)), np.radians(np.asarray(lon, float))
    return np.stack([np.cos(y) * np.cos(x), np.cos(y) * np.sin(x), np.sin(y)], axis=-1)


def sphere_kernel(variance: float = 1.0, length_scale: float = 0.2) -> Kernel:
    """``ConstantKernel * Matern(nu=1.5) + WhiteKernel`` on unit vectors (``length_scale``
    in chord units: 0.2 is about 11.5 deg of arc)."""
    return ConstantKernel(variance, (1e-8, 1e4)) * Matern(
        length_scale, (1e-3, 4.0), nu=1.5
    ) + WhiteKernel(1e-2 * variance, (1e-10, 1e3))


def fit_climatology(truth: xr.DataArray, fit_times: Sequence | np.ndarray) -> xr.DataArray:
    """The mean of ``truth`` [time, ...] per calendar month over ``fit_times`` only.

    Returns:
      [month, depth, latitude, longitude], ``month`` the calendar months fitted (1-12).
    """
    fit = truth.sel({TIME: np.asarray(fit_times, dtype=truth[TIME].dtype)})
    return fit.groupby(f"{TIME}.month").mean(TIME)


def climatology_field(climatology: xr.DataArray, times: Sequence | np.ndarray) -> xr.DataArray:
    """The climatology of each time's calendar month, [time, depth, latitude, longitude]."""
    times = pd.DatetimeIndex(np.asarray(times))
    missing = sorted(set(times.month) - set(climatology["month"].values.tolist()))
    if missing:
        raise ValueError(f"calendar month(s) {missing} were not among the fitting months")
    out = climatology.sel(month=xr.DataArray(times.month, dims=TIME)).drop_vars("month")
    return out.assign_coords({TIME: times.values}).transpose(*DIMS)


def _observations(obs) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask) [time, depth, lat, lon] from a GriddedObservations or its dataset."""
    if hasattr(obs, "to_dataset"):
        obs = obs.to_dataset()
    return obs["value"].transpose(*DIMS).to_numpy(), obs["mask"].transpose(*DIMS).to_numpy()


def _anomalies(obs, background: xr.DataArray, ocean):
    """(anomaly values, mask, ocean [time, depth, lat, lon]) of ``obs`` from ``background``."""
    values, mask = _observations(obs)
    bg = background.transpose(*DIMS).to_numpy()
    if values.shape != bg.shape:
        raise ValueError(f"observations {values.shape} and background {bg.shape} differ")
    wet = np.isfinite(bg)
    if ocean is not None:
        wet &= (ocean > 0.5).broadcast_like(background).transpose(*DIMS).to_numpy()
    mask = mask & wet
    return np.where(mask, values - np.where(wet, bg, 0.0), np.nan), mask, wet


def _field(background: xr.DataArray, anomaly: np.ndarray, wet: np.ndarray, name: str):
    """``background + anomaly`` over ocean, NaN over land."""
    bg = background.transpose(*DIMS)
    return bg.copy(data=np.where(wet, bg.to_numpy() + anomaly, np.nan)).rename(name)


def nearest_neighbour(
    obs, background: xr.DataArray, *, ocean: xr.DataArray | None = None
) -> xr.DataArray:
    """Climatology plus the nearest observed anomaly, per time and depth level.

    Args:
      obs: gridded observations (``value``, ``mask``) on ``background``'s grid.
      background: the climatology on the test times (:func:`climatology_field`).
      ocean: 1/True over ocean ([depth, lat, lon] or with time); else where the
        background is finite.
    """
    anom, mask, wet = _anomalies(obs, background, ocean)
    lat, lon = np.meshgrid(background[LAT].values, background[LON].values, indexing="ij")
    where = np.radians(np.stack([lat.ravel(), lon.ravel()], axis=-1))
    out = np.zeros(anom.shape)
    for t in range(anom.shape[0]):
        for k in range(anom.shape[1]):
            seen = mask[t, k].ravel()
            if not seen.any():
                continue
            nn = NearestNeighbors(n_neighbors=1, metric="haversine").fit(where[seen])
            index = nn.kneighbors(where, return_distance=False)[:, 0]
            out[t, k] = anom[t, k].ravel()[seen][index].reshape(lat.shape)
    return _field(background, out, wet, "nearest_neighbour")


@dataclasses.dataclass(frozen=True)
class GPKernels:
    """Fitted GP kernels, one per depth level.

    Attributes:
      kernels: the fitted kernels, top to bottom.
      depth: the depth of each.
      months: the months they were fitted on.
      notes: what the fit said (hyperparameters at a bound, levels without data).
    """

    kernels: tuple[Kernel, ...]
    depth: np.ndarray
    months: tuple
    notes: tuple[str, ...] = ()


def fit_gp_kernels(
    anomalies: xr.DataArray,
    *,
    seed: int = 0,
    months: int = FIT_MONTHS,
    max_points: int = FIT_POINTS,
    max_depth: float = FIT_MAX_DEPTH,
) -> GPKernels:
    """Fits a :func:`sphere_kernel` per depth level by maximum marginal likelihood.

    For each level down to the deepest not below ``max_depth``, ``months`` of the given
    months (chosen at random) each give up to ``max_points`` random ocean cells of their
    anomaly field; a GP is fitted to each month (L-BFGS-B, no restarts, from the level's
    variance and a 0.2 chord length scale), and the level's hyperparameters are the median
    over months of the fitted log-hyperparameters. Deeper levels (which the profiles never
    reach) take the deepest fitted level's kernel.

    Args:
      anomalies: truth minus climatology on months OUTSIDE the test months [time, depth,
        latitude, longitude], NaN over land.
      seed: seeds the choice of months and points.
      months, max_points: the caps above.
      max_depth: the deepest depth (m) observations reach.
    """
    rng = np.random.default_rng(seed)
    a = anomalies.transpose(*DIMS)
    times = a[TIME].values
    depth = a[DEPTH].values.astype(float)
    n_fit = max(int(np.searchsorted(depth, max_depth, side="right")), 1)
    chosen = np.sort(rng.choice(len(times), size=min(months, len(times)), replace=False))
    lat, lon = np.meshgrid(a[LAT].values, a[LON].values, indexing="ij")
    xyz = unit_vectors(lat.ravel(), lon.ravel())
    kernels, notes = [], []
    for k in range(n_fit):
        thetas, start = [], None
        for t in chosen:
            y = a.isel({TIME: t, DEPTH: k}).to_numpy().ravel()
            wet = np.flatnonzero(np.isfinite(y))
            if len(wet) < 3:
                continue
            pick = rng.choice(wet, size=min(max_points, len(wet)), replace=False)
            if start is None:
                start = sphere_kernel(max(float(np.var(y[wet])), 1e-8))
            gp = GaussianProcessRegressor(start, normalize_y=False, random_state=0)
            with warnings.catch_warnings(record=True) as caught, threadpool_limits(1, "blas"):
                warnings.simplefilter("always")
                gp.fit(xyz[pick], y[pick])
            notes += [f"depth {depth[k]:g} m: {w.message}" for w in caught]
            thetas.append(gp.kernel_.theta)
        if not thetas:
            notes.append(f"depth {depth[k]:g} m: no ocean points; the default kernel")
            kernels.append(sphere_kernel())
            continue
        kernels.append(start.clone_with_theta(np.median(np.stack(thetas), axis=0)))
    if len(depth) > n_fit:
        notes.append(f"below {depth[n_fit - 1]:g} m: the kernel of {depth[n_fit - 1]:g} m")
    kernels += [kernels[-1]] * (len(depth) - n_fit)
    return GPKernels(tuple(kernels), depth, tuple(times[chosen]), tuple(notes))


def gp_interpolation(
    obs,
    background: xr.DataArray,
    kernels: GPKernels,
    *,
    ocean: xr.DataArray | None = None,
    max_points: int = INTERPOLATION_POINTS,
    seed: int = 0,
) -> xr.DataArray:
    """Climatology plus the GP posterior mean of the observed anomalies, per time and level.

    Args:
      obs: gridded observations (``value``, ``mask``) on ``background``'s grid.
      background: the climatology on the test times (:func:`climatology_field`).
      kernels: fitted on months outside the test months (:func:`fit_gp_kernels`); fixed
        here (``optimizer=None``).
      ocean: as in :func:`nearest_neighbour`.
      max_points: observations per level and time beyond which a random subset is used.
    """
    if len(kernels.kernels) != background.sizes[DEPTH]:
        raise ValueError(
            f"{len(kernels.kernels)} kernels for {background.sizes[DEPTH]} depth levels"
        )
    anom, mask, wet = _anomalies(obs, background, ocean)
    rng = np.random.default_rng(seed)
    lat, lon = np.meshgrid(background[LAT].values, background[LON].values, indexing="ij")
    xyz = unit_vectors(lat.ravel(), lon.ravel())
    out = np.zeros(anom.shape)
    for t in range(anom.shape[0]):
        for k in range(anom.shape[1]):
            seen = np.flatnonzero(mask[t, k].ravel())
            if not len(seen):
                continue
            if len(seen) > max_points:
                seen = rng.choice(seen, size=max_points, replace=False)
            gp = GaussianProcessRegressor(kernels.kernels[k], optimizer=None, normalize_y=False)
            target = np.flatnonzero(wet[t, k].ravel())
            flat = np.zeros(lat.size)
            with threadpool_limits(1, "blas"):
                gp.fit(xyz[seen], anom[t, k].ravel()[seen])
                flat[target] = gp.predict(xyz[target])
            out[t, k] = flat.reshape(lat.shape)
    return _field(background, out, wet, "gp_interpolation")
