"""Tests of normalization against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tellus.data import normalization, stacking, tasks

LEVEL = xr.DataArray([500, 850], dims="level", coords={"level": [500, 850]})


def _stats() -> normalization.NormalizationStats:
    def ds(t, t2m, tp, lsm):
        return xr.Dataset(
            {
                "temperature": ("level", np.array(t, float)),
                "2m_temperature": t2m,
                "total_precipitation_6hr": tp,
                "land_sea_mask": lsm,
            },
            coords={"level": [500, 850]},
        )

    return normalization.NormalizationStats.from_datasets(
        mean=ds([250.0, 280.0], 288.0, 0.001, 0.3),
        std=ds([10.0, 20.0], 5.0, 0.002, 0.0),  # A constant mask: std 0.
        diff_std=ds([1.0, 2.0], 0.5, 0.004, np.nan).drop_vars("land_sea_mask"),
    )


def _layouts():
    vc = stacking.VariableChannels
    inputs = stacking.ChannelLayout((vc("temperature", "level", (850, 500)), vc("2m_temperature")))
    targets = stacking.ChannelLayout(
        (vc("2m_temperature"), vc("total_precipitation_6hr"), vc("temperature", "level", (500,)))
    )
    forcings = stacking.ChannelLayout((vc(tasks.YEAR_PROGRESS_SIN), vc("2m_temperature")))
    statics = stacking.ChannelLayout((vc("land_sea_mask"),))
    return inputs, targets, forcings, statics


def test_channel_values_follow_layout_order():
    inputs, *_ = _layouts()
    np.testing.assert_array_equal(
        normalization.channel_values(_stats().mean, inputs), [280.0, 250.0, 288.0]
    )


def test_inputs_by_hand():
    norm = normalization.Normalizer.from_stats(_stats(), *_layouts())
    x = np.array([[300.0, 240.0, 298.0]])  # T850, T500, T2m.
    np.testing.assert_allclose(
        norm.normalize_inputs(x), [[(300 - 280) / 20, (240 - 250) / 10, (298 - 288) / 5]]
    )
    np.testing.assert_allclose(norm.denormalize_inputs(norm.normalize_inputs(x)), x, rtol=1e-6)


def test_residual_targets_by_hand():
    norm = normalization.Normalizer.from_stats(_stats(), *_layouts())
    x_last = np.array([300.0, 240.0, 298.0])  # T850, T500, T2m at the last input time.
    y = np.array(
        [
            [297.0, 0.005, 243.0],  # Lead 1: T2m, precipitation, T500.
            [299.0, 0.0, 238.0],
        ]
    )  # Lead 2.
    # T2m and T500 are inputs: residual over diff_std (0.5, 1). Precipitation is not: mean/std.
    want = [
        [(297 - 298) / 0.5, (0.005 - 0.001) / 0.002, (243 - 240) / 1.0],
        [(299 - 298) / 0.5, (0.0 - 0.001) / 0.002, (238 - 240) / 1.0],
    ]
    np.testing.assert_array_equal(norm.residual_input_index, [2, -1, 1])
    np.testing.assert_allclose(norm.normalize_targets(y, x_last), want, rtol=1e-6)
    np.testing.assert_allclose(
        norm.denormalize_targets(norm.normalize_targets(y, x_last), x_last), y, rtol=1e-6
    )


def test_forcings_statics_and_zero_std():
    norm = normalization.Normalizer.from_stats(_stats(), *_layouts())
    # The computed forcing passes through; the store forcing uses its mean/std.
    np.testing.assert_allclose(norm.normalize_forcings(np.array([0.5, 293.0])), [0.5, 1.0])
    # std 0 is replaced by 1: the constant mask maps to (x - mean).
    np.testing.assert_allclose(norm.normalize_statics(np.array([1.0])), [0.7], rtol=1e-6)


def test_broadcasts_over_batch_time_and_space():
    inputs, targets, *_ = _layouts()
    norm = normalization.Normalizer.from_stats(_stats(), inputs, targets)
    x = np.full((4, 2, 3, 5, 3), 250.0, np.float32)  # [batch, time, lat, lon, C_in]
    y = np.full((4, 2, 3, 5, 3), 250.0, np.float32)  # [batch, lead, lat, lon, C_out]
    out = norm.normalize_targets(y, x[:, -1:])
    assert out.shape == y.shape and out.dtype == np.float32
    np.testing.assert_allclose(
        out[0, 0, 0, 0], [(250 - 250) / 0.5, (250 - 0.001) / 0.002, (250 - 250) / 1.0], rtol=1e-6
    )


def test_works_on_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    norm = normalization.Normalizer.from_stats(_stats(), *_layouts()[:2], fill_nan=True)
    x = jnp.array([300.0, jnp.nan, 298.0])
    np.testing.assert_allclose(norm.normalize_inputs(x), [1.0, 0.0, 2.0])
    y = jnp.array([297.0, 0.005, 243.0])
    np.testing.assert_allclose(norm.normalize_targets(y, x), [-2.0, 2.0, 0.0], rtol=1e-6)  # f32


def test_fill_nan_and_errors():
    inputs, targets, *_ = _layouts()
    norm = normalization.Normalizer.from_stats(_stats(), inputs, targets, fill_nan=True)
    np.testing.assert_array_equal(
        norm.normalize_inputs(np.array([np.nan, 250.0, 288.0])), [0.0, 0.0, 0.0]
    )
    missing = stacking.ChannelLayout((stacking.VariableChannels("specific_humidity"),))
    with pytest.raises(KeyError, match="no statistics for 'specific_humidity'"):
        normalization.Normalizer.from_stats(_stats(), missing, targets)
    s = _stats()
    with pytest.raises(ValueError, match="reduce over"):
        normalization.NormalizationStats(s.mean.expand_dims(time=2), s.std, s.diff_std)
    with pytest.raises(ValueError, match="different variables"):
        normalization.NormalizationStats(s.mean, s.std.drop_vars("temperature"), s.diff_std)
