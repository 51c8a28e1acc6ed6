"""Normalization of stacked arrays from per-variable statistics (as graphcast's).

:class:`NormalizationStats` is the format of the statistics (``tellus.data.statistics``
computes them and writes them next to a store): three Datasets with the data's variable
names, reduced over time, latitude and longitude, keeping ``level`` (or ``depth``) for 3D
variables:

* ``mean``, ``std``: of the values;
* ``diff_std``: of the one-step differences ``x(t + step) - x(t)`` (time-varying variables).

:class:`Normalizer` maps them into channel space through a
:class:`~tellus.data.stacking.ChannelLayout` and works on plain arrays ``[..., channel]``
(numpy or jax):

* inputs, forcings, statics: ``(x - mean) / std``;
* targets, as GraphCast's residual predictor: ``(y - x_last) / diff_std`` for target channels
  that are also inputs, with ``x_last`` the raw last input time; target channels that are not
  inputs (precipitation, say) fall back to ``(y - mean) / std``.

A standard deviation that is zero or not finite (a constant field such as a mask) is replaced
by 1, so that constant channels map to 0 rather than to NaN.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from tellus.data import stacking, tasks

_REDUCED_DIMS_ALLOWED = stacking.VERTICAL_DIMS


@dataclasses.dataclass(frozen=True, eq=False)
class NormalizationStats:
    """Per-variable statistics, reduced over time/latitude/longitude.

    Attributes:
      mean: mean of each variable; 3D variables keep their ``level``/``depth`` dim.
      std: standard deviation of each variable, same layout as ``mean``.
      diff_std: standard deviation of one-step differences (time-varying variables only).
    """

    mean: xr.Dataset
    std: xr.Dataset
    diff_std: xr.Dataset

    def __post_init__(self):
        for field in ("mean", "std", "diff_std"):
            ds = getattr(self, field)
            if not isinstance(ds, xr.Dataset):
                raise TypeError(f"{field} must be an xarray.Dataset, got {type(ds).__name__}")
            for name, da in ds.data_vars.items():
                extra = set(da.dims) - set(_REDUCED_DIMS_ALLOWED)
                if extra:
                    raise ValueError(
                        f"{field}[{name!r}] has dims {da.dims}: reduce over {sorted(extra)} first"
                    )
        if set(self.mean.data_vars) != set(self.std.data_vars):
            raise ValueError(
                f"mean and std have different variables: "
                f"{sorted(set(self.mean.data_vars) ^ set(self.std.data_vars))}"
            )
        extra = set(self.diff_std.data_vars) - set(self.mean.data_vars)
        if extra:
            raise ValueError(f"diff_std has variables without a mean/std: {sorted(extra)}")

    @classmethod
    def from_datasets(
        cls, mean: xr.Dataset, std: xr.Dataset, diff_std: xr.Dataset
    ) -> NormalizationStats:
        """Builds the statistics from three Datasets, loading them into memory.

        Args:
          mean: per-variable means.
          std: per-variable standard deviations.
          diff_std: per-variable standard deviations of one-step differences.

        Returns:
          The validated statistics.
        """
        return cls(mean=mean.load(), std=std.load(), diff_std=diff_std.load())

    @classmethod
    def from_store(cls, path: str) -> NormalizationStats:
        """Reads statistics written by :func:`tellus.data.statistics.write_statistics`.

        Args:
          path: the statistics store, e.g. ``statistics.stats_path("era5.zarr")``.

        Returns:
          The validated statistics.
        """
        from tellus.data import statistics

        groups = statistics.read_statistics(path)
        return cls.from_datasets(groups["mean"], groups["std"], groups["diff_std"])


def channel_values(
    stats: xr.Dataset, layout: stacking.ChannelLayout, by: str | None = None
) -> np.ndarray:
    """One statistic per channel of ``layout``, float32 ``[C]`` (or ``[n_by, C]``).

    Args:
      stats: a reduced statistic (``mean``, ``std`` or ``diff_std``).
      layout: the channel order.
      by: a dim every variable of ``stats`` has besides its vertical one (``"month"`` for
        :func:`tellus.data.statistics.compute_monthly_statistics`): one row per entry.

    Returns:
      The statistic of each channel (per entry of ``by``).

    Raises:
      KeyError: for a variable or level missing from ``stats``.
      ValueError: for a statistic with other dims than its vertical one (and ``by``).
    """
    out = []
    for v in layout.variables:
        if v.name not in stats.data_vars:
            raise KeyError(f"no statistics for {v.name!r} (have {sorted(stats.data_vars)})")
        da = stats[v.name]
        if by is not None:
            if by not in da.dims:
                raise ValueError(f"statistics of {v.name!r} have no {by!r} dim: {da.dims}")
            da = da.transpose(by, ...)
        lead = () if by is None else (da.sizes[by],)
        if v.vertical_dim is None:
            if da.ndim != len(lead):
                raise ValueError(f"statistics of 2D variable {v.name!r} have dims {da.dims}")
            out.append(np.asarray(da.values).reshape(*lead, 1))
        else:
            if v.vertical_dim not in da.dims:
                raise ValueError(f"statistics of {v.name!r} lack its {v.vertical_dim!r} dim")
            if da.ndim != len(lead) + 1:
                raise ValueError(f"statistics of {v.name!r} have dims {da.dims}")
            idx = stacking.level_indices(da[v.vertical_dim].values, v.levels)
            out.append(np.asarray(da.values)[..., idx])
    if not out:
        return np.zeros((0,) if by is None else (stats.sizes.get(by, 0), 0), np.float32)
    return np.concatenate(out, axis=-1).astype(np.float32)


def safe_scale(std: np.ndarray) -> np.ndarray:
    """``std`` with every zero or non-finite entry replaced by 1 (float32): a constant
    channel then normalizes to 0 instead of NaN."""
    return np.where(np.isfinite(std) & (std > 0), std, 1.0).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Normalizer:
    """Normalizes stacked arrays ``[..., channel]`` and maps them back.

    Build with :meth:`from_stats`. All methods accept numpy or jax arrays whose last axis is
    the channel axis of the matching layout.

    Attributes:
      input_mean, input_std: ``[C_in]``.
      target_mean, target_scale: ``[C_out]``; for residual channels the mean is unused and the
        scale is ``diff_std``.
      residual_input_index: ``[C_out]`` input channel of each target channel, -1 if none.
      forcing_mean, forcing_std: ``[C_f]`` (computed forcings: 0 and 1, already in [-1, 1]).
      static_mean, static_std: ``[C_s]``.
      fill_nan: replace NaN (land in ocean fields) by 0 after normalizing.
    """

    input_mean: np.ndarray
    input_std: np.ndarray
    target_mean: np.ndarray
    target_scale: np.ndarray
    residual_input_index: np.ndarray
    forcing_mean: np.ndarray
    forcing_std: np.ndarray
    static_mean: np.ndarray
    static_std: np.ndarray
    fill_nan: bool = False

    @classmethod
    def from_stats(
        cls,
        stats: NormalizationStats,
        input_layout: stacking.ChannelLayout,
        target_layout: stacking.ChannelLayout,
        forcing_layout: stacking.ChannelLayout | None = None,
        static_layout: stacking.ChannelLayout | None = None,
        *,
        fill_nan: bool = False,
    ) -> Normalizer:
        """Maps ``stats`` into the channels of the layouts.

        Args:
          stats: the statistics.
          input_layout, target_layout, forcing_layout, static_layout: channel orders (e.g. a
            :class:`~tellus.data.sources.WindowSource`'s).
          fill_nan: replace NaN by 0 (the mean, or no change) after normalizing.

        Returns:
          The normalizer.

        Raises:
          KeyError: for a variable or level without statistics.
        """
        empty = stacking.ChannelLayout(())
        forcing_layout = forcing_layout or empty
        static_layout = static_layout or empty

        input_channels = {ch: i for i, ch in enumerate(input_layout.channels)}
        residual = np.array(
            [input_channels.get(ch, -1) for ch in target_layout.channels], dtype=np.int64
        )
        target_mean = channel_values(stats.mean, target_layout)
        target_std = safe_scale(channel_values(stats.std, target_layout))
        if np.any(residual >= 0):
            residual_vars = stacking.ChannelLayout(
                tuple(
                    v
                    for v in target_layout.variables
                    if any(residual[target_layout.slices()[v.name]] >= 0)
                )
            )
            diff = dict(
                zip(
                    residual_vars.channels,
                    safe_scale(channel_values(stats.diff_std, residual_vars)),
                    strict=True,
                )
            )
            target_scale = np.array(
                [
                    diff[ch] if r >= 0 else s
                    for ch, r, s in zip(target_layout.channels, residual, target_std, strict=True)
                ],
                dtype=np.float32,
            )
        else:
            target_scale = target_std

        def forcing_stats(ds: xr.Dataset, default: float) -> np.ndarray:
            return np.concatenate(
                [
                    np.full(v.size, default, np.float32)
                    if v.name in tasks.COMPUTED_FORCINGS
                    else channel_values(ds, stacking.ChannelLayout((v,)))
                    for v in forcing_layout.variables
                ]
                or [np.zeros(0, np.float32)]
            )

        return cls(
            input_mean=channel_values(stats.mean, input_layout),
            input_std=safe_scale(channel_values(stats.std, input_layout)),
            target_mean=target_mean,
            target_scale=target_scale,
            residual_input_index=residual,
            forcing_mean=forcing_stats(stats.mean, 0.0),
            forcing_std=safe_scale(forcing_stats(stats.std, 1.0)),
            static_mean=channel_values(stats.mean, static_layout),
            static_std=safe_scale(channel_values(stats.std, static_layout)),
            fill_nan=fill_nan,
        )

    def _fill(self, x):
        if not self.fill_nan:
            return x
        if isinstance(x, np.ndarray):
            return np.nan_to_num(x, nan=0.0)
        import jax.numpy as jnp

        return jnp.nan_to_num(x, nan=0.0)

    def _target_offset(self, x_last):
        """``[..., C_out]``: ``x_last`` on residual channels, the mean elsewhere."""
        has_input = self.residual_input_index >= 0
        gathered = x_last[..., np.maximum(self.residual_input_index, 0)]
        if isinstance(gathered, np.ndarray):
            return np.where(has_input, gathered, self.target_mean)
        import jax.numpy as jnp

        return jnp.where(has_input, gathered, self.target_mean)

    def normalize_inputs(self, x):
        """``(x - mean) / std`` on input channels ``[..., C_in]``."""
        return self._fill((x - self.input_mean) / self.input_std)

    def denormalize_inputs(self, x):
        """Inverse of :meth:`normalize_inputs`."""
        return x * self.input_std + self.input_mean

    def normalize_targets(self, y, x_last):
        """Residual targets ``(y - x_last) / diff_std`` on target channels ``[..., C_out]``.

        Args:
          y: raw targets ``[..., C_out]``.
          x_last: raw inputs at the last input time ``[..., C_in]``, broadcastable to ``y``
            (e.g. ``inputs[..., -1:, :, :, :]`` against ``targets[..., n_leads, ...]``).

        Returns:
          Normalized targets.
        """
        return self._fill((y - self._target_offset(x_last)) / self.target_scale)

    def denormalize_targets(self, y, x_last):
        """Inverse of :meth:`normalize_targets`: ``x_last + diff_std * y``."""
        return y * self.target_scale + self._target_offset(x_last)

    def normalize_forcings(self, f):
        """``(f - mean) / std`` on forcing channels ``[..., C_f]``."""
        return self._fill((f - self.forcing_mean) / self.forcing_std)

    def normalize_statics(self, s):
        """``(s - mean) / std`` on static channels ``[..., C_s]``."""
        return self._fill((s - self.static_mean) / self.static_std)
