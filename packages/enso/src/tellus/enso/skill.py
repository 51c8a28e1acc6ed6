"""Nino3.4 skill by lead and season, the statistical baselines, and the exact optimum.

Metrics are xarray functions over an ``init`` dim (weatherbench2 style), with forecasts laid
out as ``(system, init, lead)`` and the truth as ``(init, lead)``:

* :func:`tellus.evaluation.index_skill.correlation` and ``rmse``: all-season scores by lead
  (the anomaly correlation pools every start month, as in Ham et al. 2019);
* :func:`correlation_by_target_month`: the 12 x 24 map whose spring dip is the spring
  predictability barrier;
* :func:`longest_lead_above`: the last lead before the correlation first drops to 0.5.

Baselines, each fitted on the same training samples as the network's fine-tuning:

* persistence (:func:`tellus.evaluation.index_skill.persistence`): the current 3-month mean
  (months t-2..t, all known at t) held;
* damped persistence (:class:`tellus.evaluation.index_skill.DampedPersistence`): per start
  month and lead, the least-squares regression of the target on that current index;
* a linear inverse model (LIM, Penland & Sardeshmukh 1995): the leading EOFs of the
  normalized SST and heat-content anomalies, a stationary propagator
  ``G(tau) = exp(L tau) = G(1)^tau`` with ``G(1) = C(1) C(0)^-1`` from the lag-0 and lag-1
  covariances of their PCs, and the Nino3.4 index read off the propagated fields;
* the optimal forecast: :func:`tellus.enso.optimal_skill.optimal_skill` for the observed
  world's parameters and its index noise (an upper bound no forecaster beats on average).

Forty test years leave correlations uncertain by several hundredths at long leads, more than
the differences between good forecasters of a linear world. :func:`evaluate_ensemble`
therefore scores twice: on the protocol's test years, and on a long independent draw of the
observed world (same parameters, another seed: what the test years are a sample of), where
the same comparison is decisive and each system's skill can be set against the optimum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.linalg
import xarray as xr

from tellus.enso import indices, optimal_skill, world
from tellus.enso import recharge_oscillator as ro
from tellus.enso.train import N_LEADS, Series, gather
from tellus.evaluation import bootstrap, index_skill
from tellus.evaluation.index_skill import INIT, LEAD

METHOD = "system"
MONTHS = 12


# --- metrics ---------------------------------------------------------------------------------


def target_month(init_month: xr.DataArray, lead: xr.DataArray) -> xr.DataArray:
    """Calendar month (1..12) of the target (the centre of its 3-month mean)."""
    return (init_month - 1 + lead) % MONTHS + 1


def correlation_by_target_month(
    forecast: xr.DataArray, truth: xr.DataArray, init_month: xr.DataArray
) -> xr.DataArray:
    """Correlation for the samples of each target month: (..., target_month, lead)."""
    out = []
    for lead in forecast[LEAD].values:
        tm = target_month(init_month, int(lead))
        f = forecast.sel({LEAD: lead}).groupby(tm.rename("target_month"))
        t = truth.sel({LEAD: lead}).groupby(tm.rename("target_month"))
        out.append(
            xr.concat(
                [index_skill.correlation(fg, tg) for (_, fg), (_, tg) in zip(f, t, strict=True)],
                dim=xr.DataArray(
                    sorted(np.unique(tm.values)), dims="target_month", name="target_month"
                ),
            ).reindex(target_month=np.arange(1, MONTHS + 1))  # NaN: no start for that month
        )
    return xr.concat(out, dim=forecast[LEAD]).transpose(..., "target_month", LEAD)


def longest_lead_above(
    corr: xr.DataArray | np.ndarray, threshold: float = 0.5, leads: Sequence[int] | None = None
) -> int:
    """The last lead before the correlation first falls to ``threshold`` or below (0 if the
    first lead already does)."""
    c = np.asarray(corr)
    if leads is None:
        leads = corr[LEAD].values if isinstance(corr, xr.DataArray) else np.arange(1, len(c) + 1)
    below = np.flatnonzero(~(c > threshold))
    n = len(c) if below.size == 0 else int(below[0])
    return int(leads[n - 1]) if n else 0


def correlation_difference_interval(
    forecast_a: np.ndarray,
    forecast_b: np.ndarray,
    truth: np.ndarray,
    blocks: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.9,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """How sure a difference in correlation skill is: a block bootstrap over ``blocks``.

    Starts a few months apart share most of their targets, so resampling single starts
    would understate the spread; whole blocks (the start year) are resampled instead, with
    replacement, and the correlation of both forecasts recomputed on the same resample.

    Args:
      forecast_a, forecast_b, truth: [N, L] (starts x leads).
      blocks: [N] block label of each start (e.g. its year).
      n_boot: resamples.
      level: central probability of the interval.

    Returns:
      ``diff`` [L] the point estimate corr(a) - corr(b); ``low``, ``high`` [L] the interval;
      ``mean_diff``, ``mean_low``, ``mean_high``: the same for the mean over leads.
    """

    out = bootstrap.correlation_difference(
        forecast_a, forecast_b, truth, blocks, n_boot=n_boot, level=level, seed=seed
    )
    return {
        "diff": out.diff,
        "low": out.low,
        "high": out.high,
        "mean_diff": out.mean_diff,
        "mean_low": out.mean_low,
        "mean_high": out.mean_high,
    }


# --- baselines -------------------------------------------------------------------------------


def current_index(series: Series, inits: np.ndarray) -> np.ndarray:
    """[N] the mean Nino3.4 anomaly over months t-2..t (all known at the start t): the
    target's running mean (3 months) ending at t."""
    (target,) = series.window_task.derived_targets
    s, t = inits[:, 0], inits[:, 1]
    hist = t[:, None] + np.arange(-target.running_mean + 1, 1)[None]
    return series.nino34[s[:, None], hist].mean(-1).astype(np.float64)


def fit_propagator(pcs: Sequence[np.ndarray]) -> np.ndarray:
    """The one-step propagator ``G(1) = C(1) C(0)^-1`` of state series.

    Args:
      pcs: state series [time, k], one per contiguous segment (lag pairs never cross).

    Returns:
      [k, k] with ``x[t + 1] ~ G(1) x[t]``.
    """
    c0 = sum(p[:-1].T @ p[:-1] for p in pcs)
    c1 = sum(p[1:].T @ p[:-1] for p in pcs)
    return np.linalg.solve(c0.T, c1.T).T


def lim_operator(g1: np.ndarray) -> np.ndarray:
    """The LIM's dynamical operator ``L = log(G(1))`` (per month)."""
    return np.real(scipy.linalg.logm(g1))


@dataclasses.dataclass(frozen=True)
class Lim:
    """A linear inverse model on the leading EOFs of normalized SST and heat content.

    Attributes:
      scale: [2] per-variable scale of the fields.
      eofs: [k, 2 * lat * lon] orthonormal patterns (sqrt(cos lat) weighted space).
      sqrt_w: [lat, lon] sqrt(cos lat).
      operator: [k, k] ``L``; ``G(tau) = expm(L tau)``.
      nino: [k] Nino3.4 (K) of a unit PC.
    """

    scale: np.ndarray
    eofs: np.ndarray
    sqrt_w: np.ndarray
    operator: np.ndarray
    nino: np.ndarray

    @classmethod
    def fit(
        cls,
        series: Series,
        rows: Sequence[tuple[int, int, int]],
        n_eofs: int = 8,
        latitude: np.ndarray = world.LATITUDES,
        longitude: np.ndarray = world.LONGITUDES,
    ) -> Lim:
        """Fits on the months ``[start, stop)`` of segment ``s`` for each (s, start, stop)."""
        chunks = [series.fields[s, a:b].astype(np.float64) for s, a, b in rows]
        scale = np.sqrt(np.mean([np.mean(c**2, axis=(0, 2, 3)) for c in chunks], axis=0))
        sqrt_w = np.sqrt(np.cos(np.deg2rad(latitude)))[:, None] * np.ones(len(longitude))
        flat = [cls._flatten(c, scale, sqrt_w) for c in chunks]
        _, _, vt = np.linalg.svd(np.concatenate(flat), full_matrices=False)
        eofs = vt[:n_eofs]
        pcs = [f @ eofs.T for f in flat]
        operator = lim_operator(fit_propagator(pcs))
        box = indices.box_weights(indices.NINO34, latitude, longitude)
        # Nino3.4 of a PC: undo the weighting and the scale of the SST part of each EOF.
        sst_part = eofs[:, : sqrt_w.size].reshape(-1, *sqrt_w.shape) / sqrt_w * scale[0]
        nino = (sst_part * box).sum((1, 2))
        return cls(scale, eofs, sqrt_w, operator, nino)

    @staticmethod
    def _flatten(f: np.ndarray, scale: np.ndarray, sqrt_w: np.ndarray) -> np.ndarray:
        f = f / scale[None, :, None, None] * sqrt_w
        return f.reshape(len(f), -1)

    def pcs(self, fields: np.ndarray) -> np.ndarray:
        """[N, var, lat, lon] -> [N, k]."""
        return self._flatten(fields.astype(np.float64), self.scale, self.sqrt_w) @ self.eofs.T

    def predict(self, x: np.ndarray, n_leads: int = N_LEADS) -> np.ndarray:
        """[N, n_leads] centred 3-month means of Nino3.4 at leads 1..n_leads from inputs
        x [N, history, var, lat, lon] (the state at t is the last month)."""
        p = self.pcs(x[:, -1])
        g1 = scipy.linalg.expm(self.operator)
        monthly = [p]
        for _ in range(n_leads + 1):
            monthly.append(monthly[-1] @ g1.T)
        nino = np.stack([m @ self.nino for m in monthly], axis=1)  # [N, n_leads + 2]
        return (nino[:, :-2] + nino[:, 1:-1] + nino[:, 2:]) / 3.0


# --- the optimum -----------------------------------------------------------------------------


def optimal_correlation(max_lead: int = N_LEADS) -> xr.Dataset:
    """The exact optimal skill of the observed world's (noisy) Nino3.4, 3-month centred."""
    cfg = world.WorldConfig.observed()
    return optimal_skill.optimal_skill(
        ro.RecParams.observed(),
        world.index_weights(cfg, indices.NINO34),
        running_mean=3,
        index_noise_var=world.index_noise_variance(cfg, indices.NINO34),
        max_lead=max_lead,
    )


# --- putting it together ---------------------------------------------------------------------


def baseline_forecasts(
    train: Series,
    train_inits: np.ndarray,
    test: Series,
    test_inits: np.ndarray,
    n_eofs: int = 8,
) -> dict[str, np.ndarray]:
    """Persistence, damped persistence and LIM forecasts [N_test, n_leads], fitted on
    ``train_inits`` (their input and target months, running means included)."""
    tr = gather(train, train_inits)
    dp = index_skill.DampedPersistence.fit(
        current_index(train, train_inits), tr["y"].astype(np.float64), tr["month"]
    )
    reach = train.window_task.reach_offsets  # the months a sample reads, relative to t
    rows = []
    for s in np.unique(train_inits[:, 0]):
        t = train_inits[train_inits[:, 0] == s, 1]
        rows.append((int(s), int(t.min()) + reach[0], int(t.max()) + reach[-1] + 1))
    lim = Lim.fit(train, rows, n_eofs=n_eofs)
    te = gather(test, test_inits)
    n_leads = te["y"].shape[1]
    return {
        "persistence": index_skill.persistence(current_index(test, test_inits), n_leads),
        "damped_persistence": dp.predict(current_index(test, test_inits), te["month"]),
        "lim": lim.predict(te["x"], n_leads),
    }


def forecast_dataset(
    forecasts: Mapping[str, np.ndarray], truth: np.ndarray, init_month: np.ndarray
) -> xr.Dataset:
    """``forecast`` (system, init, lead), ``truth`` (init, lead), ``init_month`` (init)."""
    names = list(forecasts)
    return xr.Dataset(
        {
            "forecast": ((METHOD, INIT, LEAD), np.stack([forecasts[k] for k in names])),
            "truth": ((INIT, LEAD), truth),
            "init_month": ((INIT,), init_month),
        },
        coords={METHOD: names, LEAD: np.arange(1, truth.shape[1] + 1)},
    )


def scores(ds: xr.Dataset) -> xr.Dataset:
    """Correlation and RMSE by (system, lead), correlation by (system, target_month, lead),
    the optimal correlation and each method's fraction of it."""
    corr = index_skill.correlation(ds["forecast"], ds["truth"])
    opt = optimal_correlation(int(ds[LEAD].max()))
    out = xr.Dataset(
        {
            "correlation": corr,
            "rmse": index_skill.rmse(ds["forecast"], ds["truth"]),
            "correlation_by_target_month": correlation_by_target_month(
                ds["forecast"], ds["truth"], ds["init_month"]
            ),
            "optimal_correlation": opt["correlation"],
            "optimal_correlation_by_target_month": opt["correlation_by_target_month"],
        }
    )
    out["fraction_of_optimal"] = out["correlation"] / out["optimal_correlation"]
    return out


def longest_leads(sc: xr.Dataset, threshold: float = 0.5) -> dict[str, int]:
    out = {
        str(m): longest_lead_above(sc["correlation"].sel({METHOD: m}), threshold)
        for m in sc[METHOD].values
    }
    out["optimal"] = longest_lead_above(sc["optimal_correlation"], threshold)
    return out


# --- plots -----------------------------------------------------------------------------------


def plot_skill_by_lead(sc: xr.Dataset, path: str | Path, title: str | None = None) -> Path:
    """All-season correlation (left) and RMSE (right) by lead, every method and the optimum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    lead = sc[LEAD].values
    for m in sc[METHOD].values:
        a.plot(lead, sc["correlation"].sel({METHOD: m}), marker=".", label=str(m))
        b.plot(lead, sc["rmse"].sel({METHOD: m}), marker=".", label=str(m))
    a.plot(lead, sc["optimal_correlation"], "k--", label="optimal")
    a.axhline(0.5, color="grey", lw=0.5)
    a.set(
        xlabel="lead (months)",
        ylabel="correlation",
        title="Nino3.4 (3-month mean)",
        ylim=(min(0.0, float(sc["correlation"].min())), 1.0),
    )
    b.set(xlabel="lead (months)", ylabel="RMSE (K)", title="RMSE")
    a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_skill_by_season(sc: xr.Dataset, method: str, path: str | Path) -> Path:
    """Heat maps of correlation by target month and lead: ``method`` and the optimum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    maps = [
        (sc["correlation_by_target_month"].sel({METHOD: method}), method),
        (sc["optimal_correlation_by_target_month"], "optimal"),
    ]
    for ax, (da, title) in zip(axes, maps, strict=True):
        da = da.transpose("target_month", LEAD)
        im = ax.pcolormesh(
            da[LEAD].values,
            da["target_month"].values,
            da.values,
            vmin=-0.2,
            vmax=1.0,
            cmap="RdYlBu_r",
            shading="nearest",
        )
        ax.contour(
            da[LEAD].values,
            da["target_month"].values,
            da.values,
            levels=[0.5],
            colors="k",
            linewidths=0.8,
        )
        ax.set(xlabel="lead (months)", title=f"{title}: correlation by target month")
    axes[0].set_ylabel("target month")
    fig.colorbar(im, ax=axes, shrink=0.8)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the evaluation run ----------------------------------------------------------------------

SUMMARY_LEADS = (1, 3, 6, 9, 12, 18, 24)
LONG_TEST_YEARS, LONG_TEST_SEED = 1200, 1001
BASELINES = ("persistence", "damped_persistence", "lim")


def _at(da: xr.DataArray, leads: Sequence[int] = SUMMARY_LEADS) -> dict[int, float]:
    return {int(k): round(float(da.sel({LEAD: k})), 4) for k in leads}


def compare(
    forecasts: Mapping[str, np.ndarray],
    truth: np.ndarray,
    init_month: np.ndarray,
    blocks: np.ndarray,
    *,
    system: str = "resonet",
    min_lead: int = 6,
) -> tuple[dict, xr.Dataset]:
    """Scores every forecast and sets ``system`` against each baseline at leads >=
    ``min_lead``, with a block bootstrap over ``blocks`` (start years).

    Returns:
      ``(summary, scores)``: correlation and RMSE at :data:`SUMMARY_LEADS`, the fraction of
      the optimum at every lead, the longest lead above 0.5, and per baseline the leads won
      (point estimate, beyond the 90 % interval) and lost beyond it.
    """
    ds = forecast_dataset(forecasts, truth, init_month)
    sc = scores(ds)
    corr = sc["correlation"]
    long = [int(k) for k in sc[LEAD].values if k >= min_lead]
    li = [k - 1 for k in long]
    beats = {}
    for other in BASELINES:
        if other not in forecasts:
            continue
        ci = correlation_difference_interval(
            forecasts[system][:, li], forecasts[other][:, li], truth[:, li], blocks
        )
        beats[other] = {
            "leads_ge_6_won": int((ci["diff"] > 0).sum()),
            "of": len(long),
            "leads_ge_6_won_at_90pct": int((ci["low"] > 0).sum()),
            "leads_ge_6_lost_at_90pct": int((ci["high"] < 0).sum()),
            "every_lead_ge_6": bool((ci["diff"] > 0).all()),
            "mean_diff_lead_ge_6": round(ci["mean_diff"], 4),
            "mean_diff_90pct_interval": [round(ci["mean_low"], 4), round(ci["mean_high"], 4)],
            "diff_by_lead": {k: round(float(d), 4) for k, d in zip(long, ci["diff"], strict=True)},
        }
    summary = {
        "n_starts": len(truth),
        "correlation": {str(m): _at(corr.sel({METHOD: m})) for m in corr[METHOD].values},
        "rmse": {str(m): _at(sc["rmse"].sel({METHOD: m})) for m in corr[METHOD].values},
        "optimal_correlation": _at(sc["optimal_correlation"]),
        "fraction_of_optimal": {
            str(m): _at(sc["fraction_of_optimal"].sel({METHOD: m}), sc[LEAD].values)
            for m in corr[METHOD].values
        },
        "longest_lead_above_0.5": longest_leads(sc),
        f"{system}_beats": beats,
    }
    return summary, sc


def long_test(
    n_years: int = LONG_TEST_YEARS, seed: int = LONG_TEST_SEED, task=None
) -> tuple[Series, np.ndarray]:
    """A long independent draw of the observed world and every start in it:
    ``(series, inits)``, for ``task`` (default :func:`tellus.enso.train.task_for`; its
    climatology is the whole draw's)."""
    from tellus.enso import train

    series = train.to_series(
        world.build_world("observed", n_years=n_years, seed=seed, progress=False), task=task
    )
    return series, train.inits_between(series, 0, series.n_time - 1)


def evaluate_ensemble(
    workdir: str | Path,
    model_ds: xr.Dataset,
    observed_ds: xr.Dataset,
    report: str | Path,
    *,
    explain_leads: Sequence[int] = (3, 6, 12, 18),
    explain_steps: int = 16,
    explain_cases: int = 32,
    with_pretrained: bool = True,
    long_test_years: int = LONG_TEST_YEARS,
) -> tuple[dict, xr.Dataset]:
    """Scores the trained ensemble on the observed test years against the baselines and the
    optimum, explains it, and writes ``skill_by_lead.png``, ``skill_by_season.png``,
    ``explanations.png`` and ``summary.json`` to ``report``; then scores it again on
    ``long_test_years`` of an independent draw of the observed world (0 to skip; baselines
    still fitted on the fine-tuning years only): ``skill_by_lead_long_test.png``,
    ``scores_long_test.nc`` and ``summary["long_test"]``.

    Returns:
      ``(summary, scores)``.
    """
    import json

    from tellus.enso import explain, train

    report = Path(report)
    report.mkdir(parents=True, exist_ok=True)
    info = json.loads((Path(workdir) / "ensemble.json").read_text())
    split = train.ObservedSplit(**info["split"])
    models = train.load_ensemble(workdir)
    cfg = models[0].config  # history and n_leads of the samples
    obs = train.to_series(observed_ds, task=train.task_for(cfg, split.base_period(observed_ds)))
    ft, te = split.finetune_inits(obs), split.test_inits(obs)
    test = gather(obs, te)
    fc = {"resonet": train.predict(models, test["x"], test["month"])}
    if with_pretrained:
        fc["resonet_pretrained_only"] = train.predict(
            train.load_ensemble(workdir, phase="pretrain"), test["x"], test["month"]
        )
    fc.update(baseline_forecasts(obs, ft, obs, te))
    # Not a baseline but a yardstick: the recharge oscillator's own linear forecast from the
    # modes read off the last input month's maps (the optimum knows them exactly).
    oracle = explain.optimal_linear_forecaster(n_leads=cfg.n_leads, history=cfg.history)

    def oracle_fc(x: np.ndarray, month: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [np.asarray(oracle(x[i : i + 256], month[i : i + 256])) for i in range(0, len(x), 256)]
        ).astype(np.float64)

    fc["oracle_from_fields"] = oracle_fc(test["x"], test["month"])
    years = te[:, 1] // MONTHS  # block bootstrap by start year
    summary, sc = compare(fc, test["y"].astype(np.float64), test["month"], years)
    plot_skill_by_lead(sc, report / "skill_by_lead.png")
    plot_skill_by_season(sc, "resonet", report / "skill_by_season.png")

    # The same comparison on a long independent draw of the observed world.
    long_info = None
    if long_test_years:
        lg, lte = long_test(long_test_years, task=train.task_for(cfg))
        lt = gather(lg, lte)
        lfc = {"resonet": train.predict(models, lt["x"], lt["month"])}
        lfc.update(baseline_forecasts(obs, ft, lg, lte))
        lfc["oracle_from_fields"] = oracle_fc(lt["x"], lt["month"])
        blocks = lte[:, 0] * 100_000 + lte[:, 1] // MONTHS
        long_info, long_sc = compare(lfc, lt["y"].astype(np.float64), lt["month"], blocks)
        long_info["years"] = long_test_years
        plot_skill_by_lead(
            long_sc,
            report / "skill_by_lead_long_test.png",
            title=f"{long_test_years} independent observed-world years",
        )
        long_sc.to_netcdf(report / "scores_long_test.nc")

    # Explanations: the ensemble mean is linear in the members, so are its attributions.
    parts = [
        explain.composites(m, obs, te, explain_leads, steps=explain_steps, max_cases=explain_cases)
        for m in models
    ]
    comp = explain.mean_composites(parts)
    explain.plot_composites(comp, report / "explanations.png")
    frac, fair = explain.box_fraction(comp["attribution"])
    comp.to_netcdf(report / "explanations.nc")

    summary = {
        "n_test": len(te),
        "n_finetune": len(ft),
        "members": len(models),
        "test_years": split.test_years,
        "gap_months": split.check(obs),
        **summary,
        "fraction_of_oracle_from_fields": _at(
            sc["correlation"].sel({METHOD: "resonet"})
            / sc["correlation"].sel({METHOD: "oracle_from_fields"}),
            sc[LEAD].values,
        ),
        "long_test": long_info,
        "explanation": {
            "method": comp.attrs["method"],
            "steps": explain_steps,
            "box": dataclasses.asdict(explain.WP_HEAT_BOX),
            "fair_share": round(fair, 4),
            "wp_heat_fraction": {
                str(ph): _at(frac.sel(phase=ph), explain_leads) for ph in frac["phase"].values
            },
            "n_cases": {
                str(ph): [int(v) for v in comp["n_cases"].sel(phase=ph).values]
                for ph in comp["phase"].values
            },
        },
    }
    summary["observed_check"] = observed_check_numbers()
    (report / "summary.json").write_text(json.dumps(summary, indent=1))
    sc.to_netcdf(report / "scores.nc")
    return summary, sc


def observed_check_numbers(n_years: int = 300) -> dict:
    """The real-data check: damped-persistence skill of the observed Nino1+2 and the
    generator's statistics beside the real ones (:mod:`tellus.enso.observed_check`)."""
    from tellus.enso import observed_check as oc

    try:
        real = oc.monthly_anomalies(oc.load_nino12(), ("1950", "1990"))
        dp = oc.damped_persistence_skill(real)
        stats = oc.compare_statistics(n_years=n_years)
    except Exception as e:  # the real series ships with statsmodels; report, do not fail
        return {"error": repr(e)}
    return {
        "damped_persistence_nino12_1991_2010": {
            str(k): v for k, v in dp.round(4).reset_index().to_dict(orient="list").items()
        },
        "statistics": stats.round(4).reset_index().to_dict(orient="records"),
    }


__all__ = [
    "SUMMARY_LEADS",
    "Lim",
    "baseline_forecasts",
    "compare",
    "correlation_by_target_month",
    "correlation_difference_interval",
    "current_index",
    "evaluate_ensemble",
    "fit_propagator",
    "forecast_dataset",
    "lim_operator",
    "long_test",
    "longest_lead_above",
    "longest_leads",
    "observed_check_numbers",
    "optimal_correlation",
    "plot_skill_by_lead",
    "plot_skill_by_season",
    "scores",
    "target_month",
]
