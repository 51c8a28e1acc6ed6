"""How sure a difference of skill is: block bootstrap intervals.

Forecasts started close together share most of their weather (or their ENSO event), so
resampling single starts understates the spread of a score. :func:`rmse_difference` and
:func:`correlation_difference` resample whole *blocks* of starts (a day, a month, a year)
with replacement, recompute both forecasts' score on the same resample, and give the
central interval of the difference. A difference whose interval excludes 0 is one the test
set can tell apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Interval:
    """A difference of scores and its bootstrap interval.

    Attributes:
      diff: the point estimate, score(a) - score(b), per lead (or a scalar).
      low, high: the central ``level`` interval of the resampled differences.
      mean_diff, mean_low, mean_high: the same for the mean over leads.
      level: the interval's central probability.
    """

    diff: np.ndarray
    low: np.ndarray
    high: np.ndarray
    mean_diff: float
    mean_low: float
    mean_high: float
    level: float

    @property
    def separated(self) -> bool:
        """Whether the mean difference's interval excludes 0."""
        return self.mean_low > 0 or self.mean_high < 0

    def to_dict(self) -> dict[str, object]:
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in dataclasses.asdict(self).items()
        }


Score = Callable[[np.ndarray], np.ndarray]  # the score under per-start weights [N]


def _interval(
    score_a: Score,
    score_b: Score,
    n: tuple[int, int],
    blocks: np.ndarray,
    n_boot: int,
    level: float,
    seed: int,
) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if len(blocks) != n[0] or n[0] != n[1]:
        raise ValueError(
            f"one block label per start: {len(blocks)} labels for {n[0]} and {n[1]} starts"
        )
    labels, inverse = np.unique(np.asarray(blocks), return_inverse=True)
    if len(labels) < 2:
        raise ValueError("a block bootstrap needs at least 2 blocks")
    ones = np.ones(n[0])
    diff = np.asarray(score_a(ones) - score_b(ones))
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, *diff.shape))
    for k in range(n_boot):
        counts = np.bincount(rng.integers(0, len(labels), len(labels)), minlength=len(labels))
        w = counts[inverse].astype(np.float64)  # a start's weight: its block's draws
        boot[k] = score_a(w) - score_b(w)
    q = ((1 - level) / 2, (1 + level) / 2)
    low, high = np.quantile(boot, q, axis=0)
    means = boot.reshape(n_boot, -1).mean(1)
    mean_low, mean_high = np.quantile(means, q)
    return Interval(
        diff, low, high, float(diff.mean()), float(mean_low), float(mean_high), float(level)
    )


def rmse_difference(
    sq_err_a: np.ndarray,
    sq_err_b: np.ndarray,
    blocks: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.9,
    seed: int = 0,
) -> Interval:
    """RMSE(a) - RMSE(b) with a block-bootstrap interval.

    Args:
      sq_err_a, sq_err_b: ``[N]`` or ``[N, L]``: each start's mean squared error (per lead).
      blocks: ``[N]`` the block label of each start.

    Raises:
      ValueError: mismatched lengths, fewer than 2 blocks, a level outside (0, 1).
    """

    def rmse(e: np.ndarray, w: np.ndarray) -> np.ndarray:
        w = w.reshape(-1, *([1] * (e.ndim - 1)))
        return np.sqrt((w * e).sum(0) / w.sum())

    a, b = np.asarray(sq_err_a, np.float64), np.asarray(sq_err_b, np.float64)
    return _interval(
        lambda w: rmse(a, w), lambda w: rmse(b, w), (len(a), len(b)), blocks, n_boot, level, seed
    )


def correlation_difference(
    forecast_a: np.ndarray,
    forecast_b: np.ndarray,
    truth: np.ndarray,
    blocks: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.9,
    seed: int = 0,
) -> Interval:
    """corr(a, truth) - corr(b, truth) per lead over starts, with a block-bootstrap interval.

    Args:
      forecast_a, forecast_b, truth: ``[N, L]`` (starts x leads).
      blocks: ``[N]`` the block label of each start (e.g. its year).
    """
    truth = np.asarray(truth, np.float64)

    def corr(f: np.ndarray, w: np.ndarray) -> np.ndarray:
        w = w[:, None] / w.sum()
        fm, tm = (w * f).sum(0), (w * truth).sum(0)
        cov = (w * (f - fm) * (truth - tm)).sum(0)
        return cov / np.sqrt((w * (f - fm) ** 2).sum(0) * (w * (truth - tm) ** 2).sum(0))

    a, b = np.asarray(forecast_a, np.float64), np.asarray(forecast_b, np.float64)
    return _interval(
        lambda w: corr(a, w), lambda w: corr(b, w), (len(a), len(b)), blocks, n_boot, level, seed
    )


__all__ = ["Interval", "correlation_difference", "rmse_difference"]
