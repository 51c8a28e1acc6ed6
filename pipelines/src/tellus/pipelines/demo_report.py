"""The report folder of ``tellus demo``: the scorecard, the plots and the closing summary.

Everything here reads what :mod:`tellus.pipelines.demo` measured (a summary dict, the ENSO
scores, the runs' ``losses.jsonl`` and the domain maps) and writes files; nothing trains.

* ``scorecard.md`` / ``scorecard.png``: Nino3.4 correlation at 1-24 months of every system,
  the optimum's beside them, and the fine-tune against from scratch with its interval;
* ``skill_by_lead.png``, ``skill_by_season.png``: the ENSO package's plots;
* ``finetuning_curve.png``: training loss and held-out skill against fine-tuning steps;
* ``pretraining_losses.png``: each domain's loss through the three-domain pretraining;
* ``maps.png``: the pretrained model's forecast of a held-out state of each domain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SUMMARY_LEADS = (1, 3, 6, 9, 12, 18, 24)
# Display names, in the scorecard's order (others follow in their own order).
LABELS = {
    "finetuned_full": "fine-tuned (everything)",
    "finetuned_heads": "fine-tuned (heads only)",
    "finetuned_lora": "fine-tuned (low-rank)",
    "scratch": "from scratch",
    "lim": "linear inverse model",
    "damped_persistence": "damped persistence",
    "persistence": "persistence",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def systems(summary: Mapping[str, Any]) -> list[str]:
    """The scored systems, in :data:`LABELS` order."""
    have = list(summary["correlation"])
    return [k for k in LABELS if k in have] + [k for k in have if k not in LABELS]


def scorecard_markdown(summary: Mapping[str, Any]) -> str:
    """The ENSO scorecard and the fine-tune's difference to from scratch, as Markdown."""
    leads = SUMMARY_LEADS
    head = "| system | " + " | ".join(f"{k} mo" for k in leads) + " | mean 1-24 |"
    lines = [
        f"Nino3.4 correlation on {summary['test_years']} independent years of the observed "
        f"world ({summary['n_starts']} starts; higher is better)",
        "",
        head,
        "|---|" + "---:|" * (len(leads) + 1),
    ]
    for name in systems(summary):
        corr = summary["correlation"][name]
        cells = " | ".join(f"{corr[k]:.2f}" for k in leads)
        lines.append(
            f"| {LABELS.get(name, name)} | {cells} | {summary['mean_correlation'][name]:.3f} |"
        )
    opt = summary["optimal_correlation"]
    lines.append("| optimum of the world | " + " | ".join(f"{opt[k]:.2f}" for k in leads) + " | |")
    d = summary["finetuned_minus_scratch"]
    lo, hi = d["interval_90pct"]
    lines += [
        "",
        f"Fine-tuned (everything) minus from scratch, mean over leads 1-24: "
        f"{d['mean_correlation_diff']:+.3f}, 90 % block-bootstrap interval [{lo:+.3f}, {hi:+.3f}]"
        f" ({'better beyond it' if d['better_beyond_interval'] else 'not better beyond it'}).",
    ]
    return "\n".join(lines) + "\n"


def plot_scorecard(summary: Mapping[str, Any], path: Path) -> Path:
    """Correlation by system and lead as a coloured table, the optimum as its last row."""
    plt = _pyplot()
    names = systems(summary)
    rows = [[summary["correlation"][n][k] for k in SUMMARY_LEADS] for n in names]
    rows.append([summary["optimal_correlation"][k] for k in SUMMARY_LEADS])
    labels = [LABELS.get(n, n) for n in names] + ["optimum of the world"]
    values = np.asarray(rows, float)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.2))
    im = ax.imshow(values, cmap="RdYlBu_r", vmin=0.0, vmax=1.0, aspect="auto")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(SUMMARY_LEADS)), [f"{k} mo" for k in SUMMARY_LEADS])
    ax.set_yticks(range(len(labels)), labels)
    ax.set_title("Nino3.4 correlation by lead")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _smooth(values: Sequence[float], width: int) -> np.ndarray:
    v = np.asarray(values, float)
    width = max(1, min(width, len(v)))
    kernel = np.ones(width) / width
    return np.convolve(v, kernel, mode="valid")


def plot_finetuning_curve(
    losses: Mapping[str, Sequence[tuple[int, float]]],
    curves: Mapping[str, Sequence[tuple[int, float]]],
    path: Path,
) -> Path:
    """Left: each run's training loss (a running mean) by step; right: the held-out mean
    correlation at its checkpoints."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, pts in losses.items():
        if not pts:
            continue
        steps, loss = zip(*pts, strict=True)
        width = max(1, len(loss) // 20)
        a.plot(steps[width - 1 :], _smooth(loss, width), label=LABELS.get(name, name))
    a.set(xlabel="step", ylabel="loss (index units squared)", title="training loss", yscale="log")
    a.legend(fontsize=8)
    for name, pts in curves.items():
        if pts:
            steps, corr = zip(*pts, strict=True)
            b.plot(steps, corr, marker="o", label=LABELS.get(name, name))
    b.set(
        xlabel="fine-tuning step",
        ylabel="Nino3.4 correlation, mean of leads 1-24",
        title="held-out observed years",
    )
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pretraining_losses(losses: Mapping[str, Sequence[tuple[int, float]]], path: Path) -> Path:
    """Each domain's loss (a running mean) through the three-domain pretraining."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in losses.items():
        steps, loss = zip(*pts, strict=True)
        width = max(1, len(loss) // 20)
        ax.plot(steps[width - 1 :], _smooth(loss, width), label=name)
    ax.set(xlabel="step (all domains)", ylabel="loss (normalized)", yscale="log")
    ax.set_title("pretraining: one trunk, three domains")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _lead(hours: float) -> str:
    return f"{hours / 24:.0f} d" if hours < 24 * 28 else f"{hours / 730.5:.0f} mo"


def plot_maps(maps: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Per domain: the state at the start, the truth at the lead, the pretrained model's
    forecast and its error."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(maps), 4, figsize=(16, 2.9 * len(maps)), squeeze=False)
    for row, m in zip(axes, maps, strict=True):
        lat, lon = m["latitude"], m["longitude"]
        extent = (lon[0], lon[-1], lat[0], lat[-1])
        lo = np.nanmin([m["now"], m["truth"], m["forecast"]])
        hi = np.nanmax([m["now"], m["truth"], m["forecast"]])
        err = m["forecast"] - m["truth"]
        e = np.nanmax(np.abs(err)) or 1.0
        level = "" if m["level"] is None else f" at {m['level']:g} {m['level_units']}"
        lead = _lead(m["lead_hours"])
        panels = (
            (m["now"], f"{m['task']}: {m['variable']}{level}, start", "viridis", lo, hi),
            (m["truth"], f"truth, {lead} later", "viridis", lo, hi),
            (m["forecast"], f"forecast (RMSE {m['rmse']:.3g})", "viridis", lo, hi),
            (err, f"error (persistence RMSE {m['rmse_persistence']:.3g})", "RdBu_r", -e, e),
        )
        for ax, (field, title, cmap, vmin, vmax) in zip(row, panels, strict=True):
            im = ax.imshow(
                field, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto"
            )
            ax.set_title(title, fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("the pretrained Earth model on a held-out state of each domain")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def print_summary(summary: Mapping[str, Any], report: Path) -> None:
    """The closing table: skill by system, the fine-tune's gain, phase times."""
    from rich.console import Console
    from rich.table import Table

    enso = summary["enso"]
    table = Table(title="Nino3.4 correlation on the independent years")
    table.add_column("system")
    for k in (3, 6, 12, 24):
        table.add_column(f"{k} mo", justify="right")
    table.add_column("mean 1-24", justify="right")
    for name in systems(enso):
        corr = enso["correlation"][name]
        table.add_row(
            LABELS.get(name, name),
            *(f"{corr[k]:.2f}" for k in (3, 6, 12, 24)),
            f"{enso['mean_correlation'][name]:.3f}",
        )
    opt = enso["optimal_correlation"]
    table.add_row("optimum of the world", *(f"{opt[k]:.2f}" for k in (3, 6, 12, 24)), "")
    console = Console()
    console.print(table)
    d = enso["finetuned_minus_scratch"]
    lo, hi = d["interval_90pct"]
    console.print(
        f"fine-tuned minus from scratch: {d['mean_correlation_diff']:+.3f} "
        f"[{lo:+.3f}, {hi:+.3f}] (90 %); "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in summary["phase_seconds"].items())
        + f"; total {summary['seconds'] / 60:.1f} min"
    )
    console.print(f"report: {report}")
