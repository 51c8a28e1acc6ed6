"""Tests of vortex tracking on idealized cyclones (tellus.atmosphere.tracking)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.atmosphere import tracking
from tellus.data import constants

# The 5.625 deg WeatherBench2 grid without poles: 32 x 64.
LAT = -87.1875 + 5.625 * np.arange(32)
LON = 5.625 * np.arange(64)
CELL = 5.625
A = constants.EARTH_RADIUS
TIMES = pd.date_range("2000-09-01", periods=6, freq="6h")


def _vortex(clat, clon, cyclonic=True, depth_pa=2000.0, vmax=30.0, rm=500e3):
    """An idealized cyclone centred at (clat, clon): a Gaussian pressure low and a modified
    Rankine wind (solid body inside ``rm``, ``r^-1/2`` outside, as Holland-like profiles),
    counter-clockwise in the north and clockwise in the south when ``cyclonic``."""
    dlon = (LON - clon + 180.0) % 360.0 - 180.0
    dx = A * np.cos(np.radians(clat)) * np.radians(dlon)[None, :]
    dy = A * np.radians(LAT - clat)[:, None]
    r = np.hypot(dx, dy)
    dp = -depth_pa * np.exp(-((r / 800e3) ** 2))
    speed = np.where(r < rm, vmax * r / rm, vmax * np.sqrt(rm / np.maximum(r, rm)))
    speed = speed * np.exp(-((r / 3000e3) ** 2))  # no wind from the far side of the globe
    s = np.sign(clat) * (1.0 if cyclonic else -1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(r > 0, -s * speed * dy / r, 0.0)
        v = np.where(r > 0, s * speed * dx / r, 0.0)
    return dp, u, v


def _analysis(paths, times=TIMES, winds="10m"):
    """Fields at ``times`` with one vortex per path ``[(lat, lon, cyclonic), ...]``."""
    shape = (len(times), len(LAT), len(LON))
    p, u, v = np.full(shape, 101000.0), np.zeros(shape), np.zeros(shape)
    for path in paths:
        for k, (clat, clon, cyclonic) in enumerate(path):
            dp, du, dv = _vortex(clat, clon % 360.0, cyclonic)
            p[k] += dp
            u[k] += du
            v[k] += dv
    dims = ("time", "latitude", "longitude")
    data = {"mean_sea_level_pressure": (dims, p, {"units": "Pa"})}
    if winds == "10m":
        data["10m_u_component_of_wind"] = (dims, u)
        data["10m_v_component_of_wind"] = (dims, v)
    else:  # 850 hPa winds, with a calm 500 hPa level beside them
        lvl = ("time", "level", "latitude", "longitude")
        data["u_component_of_wind"] = (lvl, np.stack([np.zeros(shape), u], axis=1))
        data["v_component_of_wind"] = (lvl, np.stack([np.zeros(shape), v], axis=1))
    coords = {"time": times, "latitude": LAT, "longitude": LON}
    if winds != "10m":
        coords["level"] = [500, 850]
    return xr.Dataset(data, coords=coords)


def _path(lat0, lon0, dlat, dlon, cyclonic=True):
    return [(lat0 + k * dlat, lon0 + k * dlon, cyclonic) for k in range(len(TIMES))]


def _lon_error(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


def _check_positions(points, path):
    lats = np.array([p[0] for p in path])
    lons = np.array([p[1] for p in path]) % 360.0
    assert np.all(np.abs(points["lat"].to_numpy() - lats) <= CELL)
    assert np.all(_lon_error(points["lon"].to_numpy(), lons) <= CELL)


@pytest.mark.parametrize("winds", ["10m", "850"])
def test_a_moving_cyclone_is_one_track_at_the_right_positions(winds):
    path = _path(15.0, 100.0, 1.0, 3.0)
    tracks = tracking.track(_analysis([path], winds=winds))
    assert tracks["track_id"].nunique() == 1
    assert len(tracks) == len(TIMES)
    assert list(tracks["time"]) == list(TIMES)
    _check_positions(tracks, path)
    assert (tracks["min_pressure"] < 1000.0).all()  # 1010 hPa less most of the 20 hPa low
    assert (tracks["max_vorticity"] > 3e-5).all()  # cyclonic in the north: positive
    assert tracks[tracking.INIT].isna().all() and (tracks[tracking.MEMBER_DIM] == -1).all()


def test_a_low_with_anticyclonic_circulation_is_rejected():
    ds = _analysis([_path(15.0, 100.0, 1.0, 3.0, cyclonic=False)])
    assert tracking.track(ds).empty
    # Without the vorticity check the same lows would be tracked.
    loose = tracking.TrackerConfig(vorticity_threshold=-np.inf)
    assert tracking.track(ds, loose)["track_id"].nunique() == 1


def test_two_cyclones_in_two_hemispheres_are_two_tracks():
    north, south = _path(15.0, 60.0, 1.0, 3.0), _path(-20.0, 200.0, -1.0, -3.0)
    tracks = tracking.track(_analysis([north, south]))
    assert tracks["track_id"].nunique() == 2
    for _, t in tracks.groupby("track_id"):
        assert len(t) == len(TIMES)
        if t["lat"].iloc[0] > 0:
            _check_positions(t, north)
            assert (t["max_vorticity"] > 0).all()
        else:
            _check_positions(t, south)
            assert (t["max_vorticity"] < 0).all()  # cyclonic in the south is clockwise


def test_a_cyclone_crossing_the_zero_meridian_stays_one_track():
    path = _path(20.0, 350.0, 0.5, 3.0)  # 350 -> 365 = 5 deg E
    tracks = tracking.track(_analysis([path]))
    assert tracks["track_id"].nunique() == 1 and len(tracks) == len(TIMES)
    _check_positions(tracks, path)
    assert tracks["lon"].iloc[0] > 340.0 and tracks["lon"].iloc[-1] < 10.0


def test_short_tracks_and_missing_variables():
    ds = _analysis([_path(15.0, 100.0, 1.0, 3.0)])
    assert tracking.track(ds, tracking.TrackerConfig(min_duration_hours=48.0)).empty
    with pytest.raises(KeyError, match="mean_sea_level_pressure"):
        tracking.track(ds.drop_vars("mean_sea_level_pressure"))
    with pytest.raises(KeyError, match="10m_u_component_of_wind"):
        tracking.track(ds.drop_vars("10m_u_component_of_wind"))
    sp = ds.rename({"mean_sea_level_pressure": "surface_pressure"})
    assert tracking.track(sp)["track_id"].nunique() == 1


def _forecast(ds, shift_cells=0):
    """A 2-member forecast from TIMES[0] whose leads are ``ds`` rolled in longitude."""
    leads = pd.to_timedelta(np.arange(len(TIMES)) * 6, unit="h")
    fc = ds.roll(longitude=shift_cells, roll_coords=False).rename(time="prediction_timedelta")
    fc = fc.assign_coords(prediction_timedelta=leads)
    fc = fc.expand_dims(realization=[0, 1], axis=0).expand_dims(time=[TIMES[0]], axis=0)
    return fc


def _chord_km(lat1, lon1, lat2, lon2):
    """Great-circle distance from the angle between unit vectors (independent formula)."""

    def xyz(lat, lon):
        la, lo = np.radians(lat), np.radians(lon)
        return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1)

    dot = np.clip(np.sum(xyz(lat1, lon1) * xyz(lat2, lon2), -1), -1.0, 1.0)
    return A / 1e3 * np.arccos(dot)


def test_forecast_tracks_match_truth_and_errors_along_the_lead():
    ds = _analysis([_path(15.0, 100.0, 1.0, 3.0)])
    truth = tracking.track(ds)
    same = tracking.track(_forecast(ds))
    assert same["track_id"].nunique() == 2  # one per member
    assert set(same[tracking.MEMBER_DIM]) == {0, 1}
    assert (same["time"] == same[tracking.INIT] + same[tracking.LEAD]).all()
    errors = tracking.track_errors(same, truth)
    assert list(errors[tracking.LEAD]) == list(pd.to_timedelta(np.arange(6) * 6, unit="h"))
    assert (errors["count"] == 2).all()
    np.testing.assert_allclose(
        errors[["position_error_km", "pressure_error_hpa", "vorticity_error"]].to_numpy(),
        0.0,
        atol=1e-9,
    )
    # One cell east: the error is the great-circle distance between the two grid points.
    east = tracking.track(_forecast(ds, shift_cells=1))
    points = tracking.track_errors(east, truth, by_lead=False)
    expected = _chord_km(
        points["lat_truth"], points["lon_truth"], points["lat"], points["lon_truth"] + CELL
    )
    np.testing.assert_allclose(points["position_error_km"], expected, rtol=1e-6)
    np.testing.assert_allclose(_lon_error(points["lon"], points["lon_truth"]), CELL)
    # One init as a scalar ``time`` coordinate, one member without a realization dim.
    single = tracking.track(_forecast(ds).isel(time=0, realization=0))
    assert single["track_id"].nunique() == 1 and (single[tracking.MEMBER_DIM] == -1).all()
    assert (single[tracking.INIT] == TIMES[0]).all()


def test_match_and_errors_on_hand_made_tracks():
    truth = pd.DataFrame(
        {
            "track_id": [7, 7, 7, 9, 9],
            "time": list(TIMES[:3]) + list(TIMES[:2]),
            "lat": [10.0, 11.0, 12.0, -30.0, -31.0],
            "lon": [359.0, 0.5, 2.0, 100.0, 101.0],
            "min_pressure": [990.0, 985.0, 980.0, 1000.0, 999.0],
            "max_vorticity": [1e-4, 1.2e-4, 1.4e-4, -5e-5, -6e-5],
        }
    )
    fc = truth.assign(**{tracking.INIT: TIMES[0], tracking.MEMBER_DIM: -1})
    fc[tracking.LEAD] = fc["time"] - TIMES[0]
    fc["track_id"] = fc["track_id"] + 100
    matches = tracking.match_tracks(fc, truth, max_distance_km=100.0)
    assert dict(zip(matches["track_id"], matches["truth_track_id"], strict=True)) == {
        107: 7,
        109: 9,
    }
    np.testing.assert_allclose(matches["distance_km"], 0.0, atol=1e-9)
    # One degree north and 2 hPa deeper: 1 deg of arc on the mean Earth radius.
    moved = fc.assign(lat=fc["lat"] + 1.0, min_pressure=fc["min_pressure"] - 2.0)
    errors = tracking.track_errors(moved, truth, max_distance_km=200.0)
    np.testing.assert_allclose(errors["position_error_km"], np.pi / 180.0 * A / 1e3, rtol=1e-9)
    np.testing.assert_allclose(errors["pressure_error_hpa"], -2.0)
    assert list(errors["count"]) == [2, 2, 1]
    # Too far to match: nothing to score.
    far = fc.assign(lat=fc["lat"] + 5.0)
    assert tracking.match_tracks(far, truth, max_distance_km=300.0).empty
    assert tracking.track_errors(far, truth, max_distance_km=300.0).empty


def test_relative_vorticity_of_solid_body_rotation():
    # u = U cos(phi) (solid-body super-rotation) has zeta = 2 U sin(phi) / a.
    u = 10.0 * np.cos(np.radians(LAT))[:, None] * np.ones((1, len(LON)))
    zeta = tracking.relative_vorticity(u, np.zeros_like(u), LAT, LON)
    expected = 2 * 10.0 * np.sin(np.radians(LAT))[:, None] / A
    np.testing.assert_allclose(
        zeta[1:-1], np.broadcast_to(expected, zeta.shape)[1:-1], rtol=1e-2, atol=1e-9
    )  # O(dphi^2) centred differences
