"""Box means: the window a box touches, read alone, gives the mean over the whole grid."""

import numpy as np
import xarray as xr

from tellus.data import derived
from tellus.data.regions import Box


def test_box_mean_of_a_box_across_0_deg_is_the_weighted_mean_over_the_globe():
    lat, lon = np.linspace(-30.0, 30.0, 7), np.arange(0.0, 360.0, 30.0)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 7, 12))
    field = xr.DataArray(
        values,
        dims=("time", "latitude", "longitude"),
        coords={"latitude": lat, "longitude": lon},
    )
    box = Box("wrap", -10.0, 20.0, -40.0, 35.0)  # 320..360 and 0..35: columns 11, 0, 1
    inside = (lat >= -10) & (lat <= 20)
    cols = np.isin(lon, [330.0, 0.0, 30.0])
    w = np.cos(np.deg2rad(lat))[:, None] * (inside[:, None] & cols[None, :])
    expected = (values * w).sum(axis=(1, 2)) / w.sum()
    np.testing.assert_allclose(derived.box_mean(field, box).values, expected, rtol=1e-12)
    flat = derived.box_mean(field, box, weighted=False).values
    np.testing.assert_allclose(flat, values[:, inside][:, :, cols].mean(axis=(1, 2)))
