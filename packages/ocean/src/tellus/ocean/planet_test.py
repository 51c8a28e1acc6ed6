"""The analytic planet: its geometry, its winds and its anomaly modes (plain numpy, no veros)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tellus.ocean import planet

GRID = planet.Grid()


def test_nino34_box_is_open_pacific_and_drake_passage_is_open():
    lat, lon = GRID.latitude, GRID.longitude
    mask = planet.ocean_mask(GRID) > 0
    box = np.ix_((lat > -5) & (lat < 5), (lon > 190) & (lon < 240))
    assert mask[box].all()
    # The Pacific: open ocean along the equator from 124E to 280E.
    equator = (lon > 124) & (lon < 280)
    assert mask[np.abs(lat) < 3][:, equator].all()
    # Drake Passage at 296E: three open rows (70S-58S), then the Americas.
    column = mask[:, list(lon).index(298.0)]
    assert column[lat < -58].all() and not column[(lat > -58) & (lat < 60)].any()
    # Every latitude south of 58S goes round the globe.
    assert mask[lat < -58].all()


def test_winds_have_trades_westerlies_and_a_seasonal_shift():
    p = planet.OceanParams()
    lat = np.linspace(-70, 70, 281)
    tau = planet.zonal_stress(lat, 3.5 / 12, p)  # mid-April: the patterns in their mean place
    assert tau[np.abs(lat) < 1].max() < -0.05  # easterly trades on the equator
    assert lat[np.argmax(np.where(lat < 0, tau, -1))] == pytest.approx(-50, abs=1)
    assert lat[np.argmax(np.where(lat > 0, tau, -1))] == pytest.approx(45, abs=1)
    # Negative curl (Ekman downwelling, a clockwise gyre) in the northern subtropics.
    band = (lat > 15) & (lat < 40)
    assert np.all(np.gradient(tau, lat)[band] > 0)
    # The northern westerlies are stronger in January than in July and shift north by July.
    january, july = planet.zonal_stress(lat, 0.5 / 12, p), planet.zonal_stress(lat, 6.5 / 12, p)
    north = lat > 20
    assert january[north].max() > july[north].max()
    assert lat[north][np.argmax(july[north])] > lat[north][np.argmax(january[north])]
    scaled = planet.OceanParams(wind_amplitude=1.1)
    np.testing.assert_allclose(
        planet.zonal_stress(lat, 0.3, scaled), 1.1 * planet.zonal_stress(lat, 0.3, p)
    )


def test_anomaly_series_is_an_ar1_with_its_memory():
    p = planet.OceanParams(anomaly_std=0.02, anomaly_memory_months=4.0, seed=3)
    a = planet.anomaly_series(p, 40_000)
    assert a.shape == (40_001, len(planet.MODES))
    np.testing.assert_allclose(a.std(axis=0), 0.02, rtol=0.03)
    lag1 = [np.corrcoef(a[:-1, k], a[1:, k])[0, 1] for k in range(a.shape[1])]
    np.testing.assert_allclose(lag1, math.exp(-1 / 4), atol=0.02)
    np.testing.assert_array_equal(planet.anomaly_series(p, 100), a[:101])  # seeded
    assert not np.array_equal(planet.anomaly_series(p, 100, stream=1), a[:101])


def test_anomaly_amplitudes_between_mid_months():
    series = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    np.testing.assert_array_equal(planet.anomaly_amplitudes(series, 0.2), series[0])
    np.testing.assert_array_equal(planet.anomaly_amplitudes(series, 0.5), series[0])
    np.testing.assert_allclose(planet.anomaly_amplitudes(series, 1.0), [1.0, 2.0])
    np.testing.assert_allclose(planet.anomaly_amplitudes(series, 2.25), [3.5, 4.5])


def test_volume_mean_and_restoring_targets():
    field = np.full((GRID.nz, GRID.ny, GRID.nx), 3.5)
    field[:, planet.ocean_mask(GRID) == 0] = np.nan
    assert planet.volume_mean(GRID, field) == pytest.approx(3.5)
    lat = GRID.latitude
    sst = planet.surface_temperature(lat, 0.25, planet.OceanParams())
    assert 27 < sst.max() < 28 and -1.5 < sst.min() < 0.5
    # 34.6 + 1.1 - 0.4 exp(-(22 / 6)^2) - 1.2 (22 / 70)^3 at 22N, the subtropical maximum
    assert planet.surface_salinity(np.array([22.0]))[0] == pytest.approx(35.6627, abs=1e-4)
