"""The ocean diffusion model's reconstructions from sparse profiles, scored on the observed
run's held-out months against three baselines (ReconMOST, Song et al. 2025).

The months of the observed run (:class:`Months`, built on the ocean forecaster's
:class:`tellus.ocean.train.ObservedSplit`) fall into three disjoint sets:

* fitting: its first ``fit_years`` years, on which the calendar-month climatology and the
  GP's kernels are fitted (:mod:`tellus.evaluation.point_baselines`);
* validation: the last ``validation_months`` months before the test years (in the gap
  after the fitting years), on which the guidance scale and spread are chosen
  (:func:`choose_scale`);
* test: the last ``test_months`` months of the last ``test_years`` years.

The denoiser was pretrained on the model run and, in the default recipe, fine-tuned on the
observed run's first years (:func:`tellus.ocean.recon.train_recon`); :func:`run` refuses a
model fine-tuned on months that reach the validation or test months.

For each coverage (1, 2.5, 5, 7.5, 10 % by default), Argo-like profiles are sampled from
the truth of the test months (:func:`tellus.data.profiles.sample_profiles`, whole profiles
to 2 000 m), split by whole profile into guidance and withheld check points
(:func:`tellus.data.profiles.split`, ``withheld_fraction`` of each month's profiles),
mapped to their nearest cells (:func:`tellus.data.profile_grid.to_grid`), and

* the reconstruction: ``samples`` DDIM samples per month guided by the guidance points
  (:class:`tellus.ocean.recon.Reconstructor`, compiled once for ``batch`` months), scored
  by their ensemble mean;
* the baselines on the same guidance points: the climatology, nearest neighbour and GP
  optimal interpolation of the anomalies (:mod:`tellus.evaluation.point_baselines`);

are scored with ReconMOST's MSEs (:func:`tellus.evaluation.reconstruction.reconstruction_mse`:
on the guidance points, on the withheld points, over the unobserved ocean, the whole ocean,
the share-weighted total), pooled and per depth, over ocean points only. The samples' spread
against the ensemble mean's error (:func:`tellus.evaluation.reconstruction.spread_error`) is
given per coverage, binned at the bar's coverage.

The bar (``summary["bar"]``): on the withheld points, the reconstruction's MSE is below GP
optimal interpolation's at 5 % coverage, and below the climatology's at every coverage.

Outputs in the report folder: ``summary.json`` (every number, the months, the settings, the
chosen scale and the bar), ``mse_by_coverage.png`` (MSE against coverage per system),
``maps.png`` (truth, observations, reconstruction and error at the surface and at depth for
the first test month at the bar's coverage) and ``section.png`` (the same along the
meridian with the most guidance profiles).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import profile_grid, profiles, progress, schema, validation
from tellus.evaluation import plots, point_baselines, reconstruction
from tellus.ocean import recon, recon_domain, train

TIME, DEPTH, LAT, LON = schema.TIME, schema.DEPTH, schema.LATITUDE, schema.LONGITUDE
DIMS = (TIME, DEPTH, LAT, LON)
TEMPERATURE = recon_domain.TEMPERATURE_VARIABLE
COVERAGES = (0.01, 0.025, 0.05, 0.075, 0.10)
BAR_COVERAGE = 0.05
SYSTEMS = ("reconstruction", "climatology", "nearest_neighbour", "gp_interpolation")
# The guidance scales tried on the validation months: powers of 2 around ReconMOST's 4 (a
# spread gradient keeps only about a sixth at the observed cell itself: hence up to 64).
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# The spreads tried: ReconMOST's optional 5 x 5 Gaussian (sigma one cell), a wider 9 x 9
# one (sigma two cells, 8 deg on the embedded ocean's 4 deg grid: its anomalies are broad),
# and none.
SPREADS = ((5, 1.0), (9, 2.0), None)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the evaluation runs (the defaults: ``just evaluate-recon``).

    Attributes:
      coverages: shares of the ocean points (down to 2 000 m) observed, each in (0, 1].
      fit_years, test_years: the observed run's first years (climatology and GP kernels)
        and last years (test), as :class:`tellus.ocean.train.ObservedSplit`.
      test_months: the last months of the test years that are reconstructed (a year or
        more, so that every calendar month is scored; fewer for a quick look).
      validation_months: the months just before the test years on which the scale is
        chosen.
      steps, samples, mode, eta: the sampler (DDIM on ``steps`` steps with stochasticity
        ``eta``, ``samples`` per month, ``"x0"`` or ``"posterior"`` guidance; see
        :class:`tellus.ocean.recon.Reconstructor`).
      spreads: the x0 gradient's Gaussian spreads ``(size, sigma)`` (or None) to choose
        from with the scale; with a fixed ``scale``, or in the posterior mode (which has
        none), the first is used.
      scale: a fixed guidance scale; None chooses one of ``scales`` (and of ``spreads``)
        on the validation months at :data:`BAR_COVERAGE`.
      withheld_fraction: the share of each month's profiles withheld as check points.
      batch: months per compiled sampler call.
      seed: the profiles' draws and the sampler's noise.
    """

    coverages: tuple[float, ...] = COVERAGES
    fit_years: int = 4
    test_years: int = 3
    test_months: int = 12
    validation_months: int = 2
    steps: int = 50
    samples: int = 4
    mode: str = "x0"
    eta: float = 1.0
    spreads: tuple[tuple[int, float] | None, ...] = SPREADS
    scale: float | None = None
    scales: tuple[float, ...] = SCALES
    withheld_fraction: float = 0.2
    batch: int = 4
    seed: int = 0

    def check(self) -> None:
        """Raises ValueError (naming the setting) for settings that cannot run."""
        bad = [c for c in self.coverages if not 0.0 < c <= 1.0]
        if not self.coverages or bad:
            raise ValueError(f"coverages must be in (0, 1] (0-100 %); got {list(self.coverages)}")
        if self.test_months < 1 or self.validation_months < 1:
            raise ValueError("test_months and validation_months must be >= 1")
        if self.test_months > 12 * self.test_years:
            raise ValueError(
                f"test_months {self.test_months} exceeds the {self.test_years} test years"
            )
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if self.samples < 2:
            raise ValueError(f"samples must be >= 2 (a spread), got {self.samples}")
        if self.scale is not None and not self.scale >= 0:
            raise ValueError(f"scale must be >= 0, got {self.scale}")
        if self.scale is None and not self.scales:
            raise ValueError("no scale to choose from")
        if not self.spreads:
            raise ValueError("spreads: give at least one (None for no spread)")

    def candidates(self) -> tuple[tuple[int, float] | None, ...]:
        """The spreads to try: the posterior mode has none; a fixed scale takes the first."""
        if self.mode == "posterior":
            return (None,)
        return tuple(self.spreads) if self.scale is None else tuple(self.spreads[:1])
        if not 0.0 < self.withheld_fraction < 1.0:
            raise ValueError(f"withheld_fraction must be in (0, 1), got {self.withheld_fraction}")


@dataclasses.dataclass(frozen=True)
class Months:
    """The observed run's fitting, validation and test months (module docstring)."""

    fit: pd.DatetimeIndex
    validation: pd.DatetimeIndex
    test: pd.DatetimeIndex

    @classmethod
    def of(cls, times: Sequence | np.ndarray, settings: Settings) -> Months:
        """Raises ValueError: the record is too short for the three sets."""
        times = pd.DatetimeIndex(np.asarray(times))
        split = train.ObservedSplit(
            settings.fit_years, settings.test_years, min_gap_months=settings.validation_months
        )
        split.check(len(times))
        start = split.test_start(len(times))
        return cls(
            fit=split.finetune_months(times),
            validation=times[start - settings.validation_months : start],
            test=times[len(times) - settings.test_months :],
        )

    def to_dict(self) -> dict[str, list[str]]:
        return {
            k: [str(v[0])[:7], str(v[-1])[:7], len(v)] for k, v in dataclasses.asdict(self).items()
        }


def ocean_of(ds: xr.Dataset) -> xr.DataArray:
    """Bool ``[depth, lat, lon]``: ``ocean_mask`` (where the store has one) and a finite
    temperature at every time: the points every score and the sampler use."""
    return profiles.ocean_points(ds, TEMPERATURE).all(TIME).transpose(DEPTH, LAT, LON)


def observe(
    ds: xr.Dataset, months: pd.DatetimeIndex, coverage: float, settings: Settings, seed: int
) -> tuple[profile_grid.GriddedObservations, profile_grid.GriddedObservations, float]:
    """(guidance, withheld, achieved): observations of ``months`` at ``coverage`` on the grid
    of ``ds`` restricted to ``months`` (time index i is ``months[i]``), and the mean share of
    the sampled levels' ocean points observed (guidance and withheld together)."""
    sub = ds.sel({TIME: months.values})
    table = profiles.sample_profiles(sub, TEMPERATURE, coverage, seed=seed)
    guide, held = profiles.split(table, settings.withheld_fraction, seed=seed + 1)
    return (
        profile_grid.to_grid(guide, sub, variable=TEMPERATURE),
        profile_grid.to_grid(held, sub, variable=TEMPERATURE),
        float(np.mean(table.attrs["achieved_coverage"])),
    )


def _withheld_mse(samples: np.ndarray, held: profile_grid.GriddedObservations) -> np.ndarray:
    """The MSE of each sample slot ``[S, time, depth, lat, lon]`` on the withheld points."""
    m = held.mask
    d = np.where(m[None], samples - np.where(m, held.values, 0.0)[None], 0.0)
    return (d**2).sum(axis=(1, 2, 3, 4)) / max(int(m.sum()), 1)


def choose_scale(
    model: Any,
    ds: xr.Dataset,
    months: pd.DatetimeIndex,
    ocean: np.ndarray,
    settings: Settings,
    bar: progress.Progress | None = None,
    scaling: Any = None,
) -> dict[str, Any]:
    """The guidance scale of ``settings.scales`` and spread of ``settings.candidates()``
    with the lowest withheld-point MSE on ``months`` (the validation months) at
    :data:`BAR_COVERAGE`: per spread, one compiled sampler, one call per batch of months,
    one sample slot per scale.

    Returns:
      ``{"scale", "spread": the chosen ones, "mse_withheld": {spread: {scale: MSE}},
      "months": [...], "at_edge": whether the chosen scale is the smallest or largest tried
      (a wider range might do better)}``.
    """
    scales = tuple(float(s) for s in settings.scales)
    guide, held, _ = observe(ds, months, BAR_COVERAGE, settings, settings.seed + 7919)
    table, best = {}, (np.inf, None, None)
    for spread in settings.candidates():
        run = recon.Reconstructor(
            model,
            ocean,
            steps=settings.steps,
            samples=len(scales),
            mode=settings.mode,
            eta=settings.eta,
            spread=spread,
            batch=min(settings.batch, len(months)),
            scaling=scaling,
        )
        x = run(
            guide.values,
            guide.mask,
            scales,
            seed=settings.seed + 1,
            months=months.month.to_numpy(),
            progress=bar,
        )
        mse = _withheld_mse(x, held)
        table[_spread_name(spread)] = {f"{s:g}": float(v) for s, v in zip(scales, mse, strict=True)}
        i = int(np.nanargmin(mse))
        if mse[i] < best[0]:
            best = (float(mse[i]), scales[i], spread)
    _, scale, spread = best
    return {
        "scale": scale,
        "spread": None if spread is None else list(spread),
        "coverage": BAR_COVERAGE,
        "mse_withheld": table,
        "months": [str(m)[:7] for m in months],
        "at_edge": len(scales) > 1 and scale in (min(scales), max(scales)),
    }


def _spread_name(spread: tuple[int, float] | None) -> str:
    return "none" if spread is None else f"{spread[0]}x{spread[0]} sigma {spread[1]:g}"


def _scores(field: xr.DataArray, truth, guide, held, ocean) -> dict[str, Any]:
    pooled = reconstruction.reconstruction_mse(
        field, truth, guide, held, ocean=ocean, per_depth=False
    )
    by_depth = reconstruction.reconstruction_mse(field, truth, guide, held, ocean=ocean)
    out: dict[str, Any] = {k: float(pooled[k]) for k in pooled.data_vars}
    out["per_depth"] = {
        k: [None if not np.isfinite(v) else float(v) for v in by_depth[k].values]
        for k in ("mse_guidance", "mse_withheld", "mse_unobserved", "mse_field", "total")
    }
    return out


def _verdict(scores: dict[str, dict[str, dict[str, Any]]], coverages) -> dict[str, Any]:
    """The bar (module docstring) from ``{coverage: {system: scores}}``."""
    key = f"{BAR_COVERAGE:g}"
    gp_ok = None
    if key in scores:
        r, g = (scores[key][s]["mse_withheld"] for s in ("reconstruction", "gp_interpolation"))
        gp_ok = bool(r < g)
    clim = {
        f"{c:g}": bool(
            scores[f"{c:g}"]["reconstruction"]["mse_withheld"]
            < scores[f"{c:g}"]["climatology"]["mse_withheld"]
        )
        for c in coverages
    }
    return {
        "beats_gp_withheld_at_5_percent": gp_ok,
        "beats_climatology_withheld": clim,
        "pass": bool(gp_ok is not False and gp_ok is not None and all(clim.values())),
    }


def run(
    workdir: str | Path,
    observed_store: str | os.PathLike,
    report: str | Path,
    *,
    settings: Settings = Settings(),
    show_progress: bool = True,
    make_plots: bool = True,
) -> dict[str, Any]:
    """Scores the denoiser trained in ``workdir`` on the observed run, writes the report
    and returns the summary.

    Raises:
      FileNotFoundError: no trained model in ``workdir``.
      ValueError: bad settings, a store too short for the months, or a grid other than
        the model's.
    """
    t0 = time.perf_counter()
    settings.check()
    report = Path(report)
    info = recon.read_info(workdir)
    model = recon.load_denoiser(workdir)
    scaling = recon.load_scaling(workdir)
    cfg = model.config
    ds = validation.open_dataset(str(observed_store), check_values="none")
    if TEMPERATURE not in ds.data_vars:
        raise ValueError(f"{observed_store}: no {TEMPERATURE!r} to reconstruct")
    keep = [TEMPERATURE] + [v for v in (profiles.MASK,) if v in ds.data_vars]
    ds = ds[keep].load()
    ds[TEMPERATURE] = ds[TEMPERATURE].transpose(*DIMS)
    grid = (ds.sizes[DEPTH], ds.sizes[LAT], ds.sizes[LON])
    if grid != (cfg.depths, cfg.n_lat, cfg.n_lon):
        raise ValueError(
            f"{observed_store}: a grid of {grid} (depth, lat, lon); the model is for "
            f"{(cfg.depths, cfg.n_lat, cfg.n_lon)}"
        )
    months = Months.of(ds[TIME].values, settings)
    tuned = info.get("finetune_months")
    if tuned and pd.Timestamp(tuned[1]) >= months.validation[0]:
        raise ValueError(
            f"the model was fine-tuned on observed months up to {tuned[1]}, which reach the "
            f"validation and test months (from {str(months.validation[0])[:7]}); fine-tune "
            "on fewer years or test on later ones"
        )
    ocean_da = ocean_of(ds)
    ocean = ocean_da.to_numpy()
    truth_all = ds[TEMPERATURE].where(ocean_da)
    truth = truth_all.sel({TIME: months.test.values})
    clim = point_baselines.fit_climatology(truth_all, months.fit.values)
    background = point_baselines.climatology_field(clim, months.test.values)
    anomalies = truth_all.sel({TIME: months.fit.values}) - point_baselines.climatology_field(
        clim, months.fit.values
    )
    kernels = point_baselines.fit_gp_kernels(anomalies, seed=settings.seed)

    per_cov = -(-len(months.test) // settings.batch)
    n_val = (
        0
        if settings.scale is not None
        else len(settings.candidates()) * -(-len(months.validation) // settings.batch)
    )
    with progress.Progress(
        "evaluate-recon",
        n_val + len(settings.coverages) * (per_cov + 1),
        unit="part",
        enabled=show_progress,
    ) as bar:
        if settings.scale is None:
            choice = choose_scale(model, ds, months.validation, ocean, settings, bar, scaling)
        else:
            spread0 = settings.candidates()[0]
            choice = {
                "scale": float(settings.scale),
                "spread": None if spread0 is None else list(spread0),
                "fixed": True,
            }
        scale = choice["scale"]
        run_test = recon.Reconstructor(
            model,
            ocean,
            steps=settings.steps,
            samples=settings.samples,
            mode=settings.mode,
            eta=settings.eta,
            spread=None if choice["spread"] is None else tuple(choice["spread"]),
            batch=min(settings.batch, len(months.test)),
            scaling=scaling,
        )
        scores: dict[str, dict[str, Any]] = {}
        spread: dict[str, Any] = {}
        achieved: dict[str, float] = {}
        shown: dict[str, Any] = {}
        for i, coverage in enumerate(settings.coverages):
            guide, held, achieved[f"{coverage:g}"] = observe(
                ds, months.test, coverage, settings, settings.seed + 101 * i
            )
            x = run_test(
                guide.values,
                guide.mask,
                scale,
                seed=settings.seed + i,
                months=months.test.month.to_numpy(),
                progress=bar,
            )
            samples = xr.DataArray(
                x, dims=(reconstruction.MEMBER, *DIMS), coords=truth.coords
            ).where(ocean_da)
            fields = {
                "reconstruction": samples.mean(reconstruction.MEMBER),
                "climatology": background.where(ocean_da),
                "nearest_neighbour": point_baselines.nearest_neighbour(
                    guide, background, ocean=ocean_da
                ),
                "gp_interpolation": point_baselines.gp_interpolation(
                    guide, background, kernels, ocean=ocean_da, seed=settings.seed
                ),
            }
            bar.advance()
            key = f"{coverage:g}"
            scores[key] = {s: _scores(f, truth, guide, held, ocean_da) for s, f in fields.items()}
            se = reconstruction.spread_error(samples, truth, ocean=ocean_da, per_depth=False)
            spread[key] = {k: float(se[k]) for k in ("spread", "rmse", "ratio")}
            if coverage == BAR_COVERAGE or (not shown and i == len(settings.coverages) - 1):
                bins = reconstruction.spread_error_bins(samples, truth, ocean=ocean_da, bins=8)
                spread["bins"] = {
                    "coverage": coverage,
                    "spread": [float(v) for v in bins["spread"].values],
                    "rmse": [float(v) for v in bins["rmse"].values],
                    "n": [int(v) for v in bins["n"].values],
                }
                shown = {"coverage": coverage, "guide": guide, "field": fields["reconstruction"]}
    summary: dict[str, Any] = {
        "months": months.to_dict(),
        "settings": dataclasses.asdict(settings),
        "training": {
            k: info.get(k)
            for k in ("recipe", "preset", "model_store", "n_months", "finetune_months")
        },
        "units": "full temperature, [-5, 40] C -> [-1, 1]"
        if scaling is None
        else f"anomalies from the calendar-month climatology / ({scaling.width:g} std per depth)",
        "guidance_scale": choice,
        "depths": [float(d) for d in ds[DEPTH].values],
        "systems": list(SYSTEMS),
        "achieved_coverage": achieved,
        "mse": scores,
        "spread_error": spread,
        "gp_kernel_notes": list(kernels.notes),
        "bar": _verdict(scores, settings.coverages),
    }
    report.mkdir(parents=True, exist_ok=True)
    if make_plots:
        summary["plots"] = _plots(report, summary, truth, shown, settings.coverages)
    summary["seconds"] = time.perf_counter() - t0
    (report / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _plots(report: Path, summary, truth: xr.DataArray, shown, coverages) -> list[str]:
    """MSE against coverage per system; maps and a section of the first test month."""
    x = [100.0 * c for c in coverages]
    curves = {
        title: {s: [summary["mse"][f"{c:g}"][s][key] for c in coverages] for s in SYSTEMS}
        for title, key in (
            ("withheld points", "mse_withheld"),
            ("whole ocean (total)", "total"),
            ("guidance points", "mse_guidance"),
        )
    }
    written = [
        plots.plot_curves(
            curves,
            x,
            report / "mse_by_coverage.png",
            xlabel="coverage (%)",
            ylabel="MSE (deg C^2)",
        )
    ]
    guide, field = shown["guide"], shown["field"]
    obs = xr.DataArray(
        np.where(guide.mask, guide.values, np.nan), dims=DIMS, coords=truth.coords
    ).isel({TIME: 0})
    t, f = truth.isel({TIME: 0}), field.isel({TIME: 0})
    depths = truth[DEPTH].values
    deep = int(np.argmin(np.abs(depths - 500.0)))
    pct = f"{100 * shown['coverage']:g} %"
    month = str(truth[TIME].values[0])[:7]
    rows = {
        f"{month}, {depths[k]:g} m, {pct}": (
            t.isel({DEPTH: k}),
            obs.isel({DEPTH: k}),
            f.isel({DEPTH: k}),
        )
        for k in sorted({0, deep})
    }
    written.append(plots.plot_reconstruction(rows, report / "maps.png"))
    column = int(np.argmax(guide.mask[0].sum(axis=(0, 1))))
    lon = float(truth[LON].values[column])
    section = {
        f"{month}, {lon:g} E, {pct}": (
            t.isel({LON: column}),
            obs.isel({LON: column}),
            f.isel({LON: column}),
        )
    }
    written.append(plots.plot_reconstruction(section, report / "section.png"))
    return [os.path.basename(p) for p in written]


__all__ = [
    "BAR_COVERAGE",
    "COVERAGES",
    "SCALES",
    "SYSTEMS",
    "Months",
    "Settings",
    "choose_scale",
    "observe",
    "ocean_of",
    "run",
]
