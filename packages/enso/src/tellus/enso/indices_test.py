"""Tests of the Nino and IOD indices against hand-computed values on tiny arrays."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.enso import indices

LAT = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])
LON = np.array([50.0, 100.0, 190.0, 200.0, 240.0, 275.0])


def _ds(values: np.ndarray, times=None, name="sea_surface_temperature_anomaly") -> xr.Dataset:
    times = (
        pd.date_range("1980-01-01", periods=values.shape[0], freq="MS") if times is None else times
    )
    return xr.Dataset(
        {name: (("time", "latitude", "longitude"), values, {"units": "K"})},
        coords={"time": times, "latitude": LAT, "longitude": LON},
    )


def test_box_mask_and_wrap():
    m = indices.NINO34.mask(LAT, LON)
    # 5S..5N x 190..240E inclusive: 3 latitudes x 3 longitudes.
    assert m.sum() == 9 and m[1:4, 2:5].all()
    wrap = indices.Box("wrap", -5, 5, 270.0, 60.0)
    np.testing.assert_array_equal(wrap.mask(LAT, LON)[2], [True, False, False, False, False, True])
    with pytest.raises(ValueError, match="no grid point"):
        indices.box_weights(indices.Box("empty", 50, 60, 0, 10), LAT, LON)


def test_box_mean_weighted_and_unweighted_by_hand():
    # 1 at 5S, 2 at the equator, 3 at 5N inside Nino3.4, 100 outside.
    field = np.full((1, 5, 6), 100.0)
    field[0, 1, :], field[0, 2, :], field[0, 3, :] = 1.0, 2.0, 3.0
    field[0, :, [0, 1, 5]] = 100.0
    da = _ds(field)["sea_surface_temperature_anomaly"]
    c5 = np.cos(np.deg2rad(5.0))
    want = (1.0 * c5 + 2.0 + 3.0 * c5) / (2 * c5 + 1.0)
    np.testing.assert_allclose(indices.box_mean(da, indices.NINO34).values, [want])
    np.testing.assert_allclose(indices.box_mean(da, indices.NINO34, weighted=False).values, [2.0])
    # A field equal to 1 inside the box, 0 outside: index 1 either way.
    ones = np.where(indices.NINO34.mask(LAT, LON), 1.0, 0.0)[None]
    for weighted in (True, False):
        got = indices.box_mean(
            _ds(ones)["sea_surface_temperature_anomaly"], indices.NINO34, weighted=weighted
        )
        np.testing.assert_allclose(got.values, [1.0])


def test_seasonal_cycle_removed_exactly_with_base_period():
    times = pd.date_range("1979-01-01", periods=48, freq="MS")
    seasonal = 26.0 + 2.0 * np.sin(2 * np.pi * np.arange(48) / 12)
    trend = np.where(times.year >= 1981, 0.0, 5.0)  # 1979-1980 warmer than the base period
    values = np.broadcast_to((seasonal + trend)[:, None, None], (48, 5, 6)).copy()
    ds = _ds(values, times, name="sea_surface_temperature")
    anom = indices.nino34(ds, base_period=("1981", "1982"))
    np.testing.assert_allclose(anom.values, trend, atol=1e-10)
    np.testing.assert_allclose(indices.nino34(ds).values, trend - trend.mean(), atol=1e-10)
    with pytest.raises(ValueError, match="base period"):
        indices.nino34(ds, base_period=("2050", "2051"))


def test_oni_running_mean_edges_are_nan():
    x = np.arange(6.0)
    values = np.broadcast_to(x[:, None, None], (6, 5, 6)).copy()
    ds = _ds(values)
    series = indices.box_mean(ds["sea_surface_temperature_anomaly"], indices.NINO34)
    rm = indices.running_mean(series).values
    assert np.isnan(rm[0]) and np.isnan(rm[-1])
    np.testing.assert_allclose(rm[1:-1], [1.0, 2.0, 3.0, 4.0])
    # ONI of a field without a seasonal cycle to remove (6 distinct months, one value each).
    oni = indices.oni(ds)
    assert np.isnan(oni.values[0]) and oni.name == "oni"


def test_dmi_and_all_indices():
    field = np.zeros((2, 5, 6))
    field[0, :, 0] = 1.0  # western box (50E) warm at time 0
    field[1, 0:3, 1] = 2.0  # south-eastern box (100E, 10S-0) warm at time 1
    ds = _ds(field)
    raw = indices.box_mean(
        ds["sea_surface_temperature_anomaly"], indices.IOD_WEST
    ) - indices.box_mean(ds["sea_surface_temperature_anomaly"], indices.IOD_EAST)
    np.testing.assert_allclose(raw.values, [1.0, -2.0])
    out = indices.all_indices(ds)
    assert set(out.data_vars) == {"nino34", "nino3", "nino4", "nino12", "oni", "dmi"}
    assert out["dmi"].attrs["units"] == "K"
    with pytest.raises(KeyError):
        indices.sst_field(xr.Dataset())
