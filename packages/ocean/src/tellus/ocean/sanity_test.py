"""The sanity measures on hand-made fields whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.ocean import sanity

THICKNESS = np.array([100.0, 200.0, 300.0, 400.0, 500.0])
# veros's T points of these layers (faces at 0, 100, 300, 600, 1000, 1500 m): the bottom one
# at its layer's centre, each one above reflected through the face between them.
DEPTH = np.array([50.0, 150.0, 450.0, 750.0, 1250.0])
LAT = -70.0 + 4.0 * (np.arange(35) + 0.5)
LON = 4.0 * (np.arange(90) + 0.5)
H = THICKNESS.sum()
DLAT = np.deg2rad(4.0)


def ocean(mask: np.ndarray, months: int = 1, **fields) -> xr.Dataset:
    """A dataset in the store's layout: zero fields but those given (time, depth, lat, lon)."""
    shape = (months, DEPTH.size, LAT.size, LON.size)
    data = {}
    for name in (sanity.TEMPERATURE, sanity.EASTWARD, sanity.NORTHWARD):
        values = np.broadcast_to(fields.get(name, 0.0), shape).astype(np.float64)
        data[name] = (("time", "depth", "latitude", "longitude"), np.where(mask, values, np.nan))
    data["ocean_mask"] = (("latitude", "longitude"), mask.astype(np.float32))
    data["layer_thickness"] = (("depth",), THICKNESS)
    coords = {
        "time": pd.date_range("2000-01-01", periods=months, freq="MS"),
        "depth": DEPTH,
        "latitude": LAT,
        "longitude": LON,
    }
    return xr.Dataset(data, coords=coords)


def continents() -> np.ndarray:
    """A meridional wall at 280-312E from 58S northwards (Drake Passage: three rows)."""
    lat, lon = np.meshgrid(LAT, LON, indexing="ij")
    return ~((lon >= 280) & (lon < 312) & (lat >= -58))


def test_thickness_from_depths_alone():
    ds = ocean(continents()).drop_vars("layer_thickness")
    np.testing.assert_allclose(sanity.layer_thickness(ds), THICKNESS)


def test_drake_transport_of_a_solid_body_rotation():
    """u = U0 cos(lat) (rotation about the polar axis) in the channel: the transport is
    U0 H R dlat sum(cos lat) over its three rows, and nothing north of the channel counts."""
    mask = continents()
    lat = LAT[None, :, None]
    u = np.where(lat < -58, 0.1 * np.cos(np.deg2rad(lat)), 0.3)  # 0.3 m/s north: not counted
    ds = ocean(mask, 2, **{sanity.EASTWARD: u[None]})
    assert sanity.drake_longitude(ds) == 282.0  # the first column of the wall
    rows = LAT[LAT < -58]
    expected = 0.1 * H * sanity.RADIUS * DLAT * np.cos(np.deg2rad(rows)).sum() / 1e6
    assert sanity.drake_passage_transport(ds) == pytest.approx(expected, rel=1e-12)
    # 0.1 m/s x 1500 m x 444.7 km x (cos 68 + cos 64 + cos 60 = 1.3130)
    assert expected == pytest.approx(87.58, abs=0.01)


def basin_gyre(amplitude_sv: float, south: float, north: float) -> tuple[np.ndarray, np.ndarray]:
    """A closed basin 124-280E between two walls, with psi = A sin(pi x') sin(pi y') and the
    depth-integrated V = dpsi/dx spread evenly over the depth: returns (mask, v)."""
    lat, lon = np.meshgrid(LAT, LON, indexing="ij")
    west, east = 124.0, 280.0
    inside = (lon > west) & (lon < east)
    mask = inside | (lat < south - 4) | (lat > north + 4)  # land west and east of the basin
    x = (lon - west) / (east - west)
    y = np.clip((lat - south) / (north - south), 0, 1)
    width = sanity.RADIUS * np.cos(np.deg2rad(lat)) * np.deg2rad(east - west)
    dpsi_dx = amplitude_sv * 1e6 * np.pi / width * np.cos(np.pi * x) * np.sin(np.pi * y)
    return mask, np.where(inside, dpsi_dx / H, 0.0)


def test_gyres_of_an_analytic_streamfunction():
    """psi integrated from the eastern coast recovers A sin(pi x') sin(pi y') (to the grid's
    accuracy), with its sign: +20 Sv clockwise in the north, -15 Sv in the south."""
    mask_n, v_n = basin_gyre(20.0, 10.0, 46.0)
    mask_s, v_s = basin_gyre(-15.0, -46.0, -10.0)
    north = LAT[:, None] > 0
    mask = np.where(north, mask_n, mask_s)
    ds = ocean(mask, **{sanity.NORTHWARD: np.where(north, v_n, v_s)[None, None]})
    gyres = sanity.gyre_strengths(ds)
    assert gyres["north"] == pytest.approx(20.0, rel=0.01)
    assert gyres["south"] == pytest.approx(-15.0, rel=0.01)
    psi = sanity.eastern_boundary_streamfunction(ds)
    assert np.isnan(psi[~mask]).all()
    # The row at 28N, 202E (the basin's middle): A sin(pi / 2) sin(pi / 2) = A.
    assert psi[list(LAT).index(28.0), list(LON).index(202.0)] == pytest.approx(20.0, rel=0.01)


def test_stratification_and_drift():
    mask = continents()
    t = 2.0 + 18.0 * np.exp(-DEPTH / 300.0)
    months = 36
    trend = 0.05 / 12 * np.arange(months)  # 0.05 K a year: 0.5 K per decade
    season = 0.3 * np.sin(2 * np.pi * np.arange(months) / 12)
    series = (trend + season)[:, None, None, None]
    ds = ocean(mask, months, **{sanity.TEMPERATURE: t[None, :, None, None] + series})
    assert np.all(np.diff(sanity.mean_temperature_profile(ds)) < 0)
    assert sanity.temperature_drift(ds) == pytest.approx(0.5, rel=1e-9)
    checks = {c.name: c for c in sanity.check(ds, sanity.Thresholds(drake_sv=0.0, gyre_sv=0.0))}
    assert checks["temperature decreases with depth"].passed
    assert not checks["global-mean temperature drift"].passed
    inverted = ds.copy(deep=True)
    inverted[sanity.TEMPERATURE][:, 2] = inverted[sanity.TEMPERATURE][:, 1] + 0.1
    assert not np.all(np.diff(sanity.mean_temperature_profile(inverted)) < 0)
    steady = ocean(
        mask, months, **{sanity.TEMPERATURE: t[None, :, None, None] + season[:, None, None, None]}
    )
    assert abs(sanity.temperature_drift(steady)) < 1e-9
