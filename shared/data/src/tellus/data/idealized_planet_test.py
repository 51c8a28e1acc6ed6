"""Tests of the idealised planet against known values and analytic properties."""

from __future__ import annotations

import numpy as np

from tellus.data import idealized_planet as planet

LAT, LON = np.meshgrid(np.linspace(-89.5, 89.5, 180), np.arange(360.0), indexing="ij")


def test_saturation_matches_tables():
    # Saturation vapour pressure over water at 20 degC is 23.39 hPa (Smithsonian/WMO tables);
    # q_sat = 0.622 e / (p - 0.378 e).
    e = 2339.0
    expected = 0.622 * e / (1e5 - 0.378 * e)
    q = float(planet.saturation_specific_humidity(np.float64(293.15), np.float64(1e5)))
    np.testing.assert_allclose(q, expected, rtol=3e-3)
    # At -53 degC, 200 hPa, by hand: e_s = 611.2 exp(17.67 * -53.15 / 190.35) = 4.4 Pa.
    cold = float(planet.saturation_specific_humidity(np.float64(220.0), np.float64(2e4)))
    np.testing.assert_allclose(cold, 0.622 * 4.4 / 2e4, rtol=0.03)


def test_manabe_wetherald_profile():
    rh = planet.relative_humidity_target(np.array([0.01, 0.02, 0.51, 1.0]), 0.77)
    np.testing.assert_allclose(rh, [0.0, 0.0, 0.385, 0.77])


def test_continents_and_mountains():
    mask = planet.land_sea_mask(LAT, LON)
    weights = np.cos(np.deg2rad(LAT))
    land = (mask * weights).sum() / weights.sum()
    assert 0.2 < land < 0.4  # Earth: 0.29
    height = planet.orography(LAT, LON, 2000.0)
    assert 1900.0 < height.max() <= 2000.0
    assert height[mask == 0].max() < 0.1 * 2000.0  # mountains stand on land (and coasts)
    np.testing.assert_array_equal(planet.orography(LAT, LON, 0.0), 0.0)
    soil = planet.soil_type(LAT, LON)
    assert set(np.unique(soil[mask == 1])) == {1.0, 2.0, 6.0, 7.0}
    assert np.all(soil[mask == 0] == 0)
