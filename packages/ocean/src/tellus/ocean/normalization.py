"""Normalization by calendar month: each month of the year has its own mean and std.

ORCA-DL (Guo et al. 2024) normalizes every field with statistics of its calendar month, so
that the seasonal cycle of the mean and of the spread is taken out before the network sees
a state. The statistics are the data layer's
(:func:`tellus.data.statistics.compute_monthly_statistics`: per variable, depth level and
calendar month, over the ocean of the training months), mapped into the channel order of a
:class:`~tellus.data.stacking.ChannelLayout` by :func:`tellus.data.normalization.channel_values`.

A field of month ``m`` (1 = January) is normalized as ``(x - mean[m]) / std[m]``; the state
``k`` months after month ``m`` belongs to month :func:`month_after` ``(m, k)``, so a target
at lead ``k`` is normalized with the statistics of its own month.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from tellus.data import normalization, stacking, statistics

MONTHS = 12


def month_after(month: jax.Array, months: jax.Array | int) -> jax.Array:
    """The calendar month (1..12) ``months`` after ``month`` (1..12)."""
    return jnp.mod(jnp.asarray(month, jnp.int32) - 1 + jnp.asarray(months, jnp.int32), 12) + 1


@dataclasses.dataclass(frozen=True, eq=False)
class MonthlyNormalizer:
    """Per calendar month and channel statistics.

    Attributes:
      mean: ``[12, C]``, row ``m - 1`` for month ``m``.
      std: ``[12, C]``, zero or non-finite entries replaced by 1.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, np.float32)
        std = normalization.safe_scale(np.asarray(self.std, np.float32))
        if mean.ndim != 2 or mean.shape[0] != MONTHS or mean.shape != std.shape:
            raise ValueError(
                f"monthly statistics must be [12, channels] both; got {mean.shape}, {std.shape}"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_stats(
        cls, stats: dict[str, xr.Dataset], layout: stacking.ChannelLayout
    ) -> MonthlyNormalizer:
        """From :func:`tellus.data.statistics.compute_monthly_statistics`, in ``layout``'s
        channel order.

        Raises:
          KeyError: for a variable or level without statistics.
        """
        by = statistics.MONTH
        for group in ("mean", "std"):
            months = stats[group][by].values.tolist()
            if months != list(range(1, MONTHS + 1)):
                raise ValueError(f"{group} must hold the months 1..12 in order, got {months}")
        return cls(
            normalization.channel_values(stats["mean"], layout, by=by),
            normalization.channel_values(stats["std"], layout, by=by),
        )

    @classmethod
    def from_dataset(
        cls,
        ds: xr.Dataset,
        layout: stacking.ChannelLayout,
        time_range: tuple[str, str] | None = None,
    ) -> MonthlyNormalizer:
        """Computes the statistics of ``layout``'s variables over ``time_range`` of ``ds``."""
        stats = statistics.compute_monthly_statistics(
            ds, time_range=time_range, variables=layout.names
        )
        return cls.from_stats(stats, layout)

    @classmethod
    def from_lists(cls, mean: Sequence[Sequence[float]], std: Sequence[Sequence[float]]):
        return cls(np.asarray(mean, np.float32), np.asarray(std, np.float32))

    def to_lists(self) -> tuple[list[list[float]], list[list[float]]]:
        """``(mean, std)`` as nested lists (for a JSON config)."""
        return self.mean.tolist(), self.std.tolist()

    @property
    def channels(self) -> int:
        return int(self.mean.shape[1])

    def _rows(self, month: jax.Array, ndim: int) -> tuple[jax.Array, jax.Array]:
        index = jnp.asarray(month, jnp.int32) - 1
        shape = index.shape + (1,) * (ndim - index.ndim - 1) + (self.channels,)
        return (
            jnp.asarray(self.mean)[index].reshape(shape),
            jnp.asarray(self.std)[index].reshape(shape),
        )

    def normalize(self, x: jax.Array, month: jax.Array) -> jax.Array:
        """``(x - mean[month]) / std[month]`` for ``x [*M, ..., C]`` and calendar months
        ``month [*M]`` (1..12), the leading dims of ``x``."""
        mean, std = self._rows(month, x.ndim)
        return (x - mean) / std

    def denormalize(self, x: jax.Array, month: jax.Array) -> jax.Array:
        """Inverse of :meth:`normalize`."""
        mean, std = self._rows(month, x.ndim)
        return x * std + mean


__all__ = ["MONTHS", "MonthlyNormalizer", "month_after"]
