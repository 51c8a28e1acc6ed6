import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import stacking
from tellus.ocean import normalization


def _tiny() -> xr.Dataset:
    """Two years of months t = 0..23 at two ocean cells (t and t + 2, times 10 at the second
    depth) and one land cell (NaN); SSH is 5 t at both ocean cells."""
    times = pd.date_range("2001-01-01", periods=24, freq="MS")
    t = np.arange(24.0)[:, None, None, None]
    cells = np.array([0.0, 2.0, np.nan])[None, None, None, :]
    theta = (t + cells) * np.array([1.0, 10.0])[None, :, None, None]
    ssh = 5.0 * t[:, 0] + 0.0 * cells[:, 0]
    ssh[..., :2] = 5.0 * t[:, 0, :, :1]
    return xr.Dataset(
        {
            "sea_water_potential_temperature": (("time", "depth", "latitude", "longitude"), theta),
            "sea_surface_height": (("time", "latitude", "longitude"), ssh),
        },
        coords={"time": times, "depth": [10.0, 100.0], "latitude": [0.0], "longitude": [0, 4, 8]},
    )


def test_monthly_statistics_and_normalization_by_hand():
    ds = _tiny()
    layout = stacking.ChannelLayout.from_dataset(
        ds, ["sea_water_potential_temperature", "sea_surface_height"], [100.0, 10.0]
    )
    norm = normalization.MonthlyNormalizer.from_dataset(ds, layout)
    # Month m (1..12) holds t = m - 1 and m + 11: theta values {t, t + 2} for both t, so
    # mean m + 6 and std sqrt(((-7)^2 + (-5)^2 + 5^2 + 7^2) / 4) = sqrt(37); x10 at 100 m,
    # which the layout puts first; SSH {5 (m - 1), 5 (m + 11)}: mean 5 (m + 5), std 30.
    m = np.arange(1, 13.0)
    np.testing.assert_allclose(norm.mean, np.stack([10 * (m + 6), m + 6, 5 * (m + 5)], -1))
    np.testing.assert_allclose(
        norm.std, np.broadcast_to([10 * np.sqrt(37.0), np.sqrt(37.0), 30.0], (12, 3)), rtol=1e-6
    )
    x = jnp.array([[[[1.0, 2.0, 3.0]]], [[[1.0, 2.0, 3.0]]]])  # [B=2, 1, 1, C]
    y = np.asarray(norm.normalize(x, jnp.array([1, 12])))
    np.testing.assert_allclose(
        y[0, 0, 0], [(1 - 70) / (10 * np.sqrt(37)), (2 - 7) / np.sqrt(37), (3 - 30) / 30], rtol=1e-5
    )
    np.testing.assert_allclose(
        y[1, 0, 0],
        [(1 - 180) / (10 * np.sqrt(37)), (2 - 18) / np.sqrt(37), (3 - 85) / 30],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        np.asarray(norm.denormalize(jnp.asarray(y), jnp.array([1, 12]))), x, rtol=1e-5
    )
    again = normalization.MonthlyNormalizer.from_lists(*norm.to_lists())
    np.testing.assert_array_equal(again.mean, norm.mean)


def test_month_after():
    np.testing.assert_array_equal(
        normalization.month_after(jnp.array([1, 11, 12, 12]), jnp.array([0, 1, 1, 13])),
        [1, 12, 1, 1],
    )


def test_statistics_must_be_monthly():
    with pytest.raises(ValueError, match=r"\[12, channels\]"):
        normalization.MonthlyNormalizer(np.zeros((11, 2)), np.ones((11, 2)))
    norm = normalization.MonthlyNormalizer(np.zeros((12, 1)), np.zeros((12, 1)))
    np.testing.assert_array_equal(norm.std, 1.0)  # a zero std becomes 1
