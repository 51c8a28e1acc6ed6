"""Tests of sigma_to_pressure against analytic columns and dinosaur's own geopotential."""

from __future__ import annotations

import numpy as np
import pytest
from dinosaur import primitive_equations, sigma_coordinates

from tellus.data import constants, sigma_to_pressure

R, G, GAMMA = constants.DRY_AIR_GAS_CONSTANT, constants.GRAVITY, constants.STANDARD_LAPSE_RATE
A = R * GAMMA / G  # T ~ p ** A in a constant-lapse-rate atmosphere
SIGMA = np.asarray(sigma_coordinates.SigmaCoordinates.equidistant(24).centers, np.float64)


def lapse_rate_column(t_surface, p_surface, phi_surface, p):
    """The exact constant-lapse-rate atmosphere: T(p) and phi(p)."""
    t = t_surface * (p / p_surface) ** A
    return t, phi_surface + G * (t_surface - t) / GAMMA


@pytest.fixture
def columns():
    """Three columns side by side: sea level, a 1.5 km plateau, a deep low over the sea."""
    ps = np.array([[101325.0, 84000.0, 96000.0]])
    phi_s = np.array([[0.0, G * 1500.0, 0.0]])
    t_s = np.array([[288.0, 278.0, 281.0]])
    p = SIGMA[:, None, None] * ps
    t, _ = lapse_rate_column(t_s, ps, phi_s, p)
    return ps, phi_s, t_s, t


def test_geopotential_of_a_lapse_rate_atmosphere(columns):
    ps, phi_s, t_s, t = columns
    phi = sigma_to_pressure.geopotential_on_sigma(t, phi_s, SIGMA)
    _, exact = lapse_rate_column(t_s, ps, phi_s, SIGMA[:, None, None] * ps)
    # The trapezoid rule in ln p integrates T ~ p**0.19 to well under 1 m of height in the
    # troposphere; across the wide top layers (ln-p steps up to 1.1) to 0.1 %.
    troposphere = SIGMA > 0.2
    np.testing.assert_allclose(phi[troposphere], exact[troposphere], atol=5.0)
    np.testing.assert_allclose(phi, exact, rtol=1e-3)
    assert np.all(np.diff(phi, axis=0) < 0)  # falls towards the surface


def test_layer_thicknesses_match_dinosaur():
    """Same discretisation as dinosaur between levels; only the lowest half-layer differs."""
    rng = np.random.default_rng(0)
    t = 220.0 + 70.0 * SIGMA[:, None, None] + rng.normal(0, 3, (24, 4, 5))
    ours = sigma_to_pressure.geopotential_on_sigma(t, np.zeros((4, 5)), SIGMA)
    theirs = np.asarray(
        primitive_equations.get_geopotential_on_sigma(
            t,
            nodal_orography=np.zeros((4, 5)),
            sigma=sigma_coordinates.SigmaCoordinates.equidistant(24),
            gravity_acceleration=G,
            ideal_gas_constant=R,
        )
    )
    np.testing.assert_allclose(np.diff(ours, axis=0), np.diff(theirs, axis=0), rtol=1e-5)
    # dinosaur takes the lowest half-layer as isothermal; ours has the standard lapse rate.
    np.testing.assert_allclose(ours[-1], theirs[-1], atol=5.0)


def test_interpolation_to_pressure_levels(columns):
    ps, phi_s, t_s, t = columns
    phi = sigma_to_pressure.geopotential_on_sigma(t, phi_s, SIGMA)
    levels = [5000.0, 25000.0, 50000.0, 85000.0, 100000.0]
    u = np.broadcast_to(np.log(SIGMA)[:, None, None], t.shape)  # linear in ln sigma
    t_p, phi_p, other = sigma_to_pressure.interpolate_to_pressure(
        {"u": u}, t, phi, ps, SIGMA, levels
    )
    p = np.asarray(levels)[:, None, None]
    t_exact, phi_exact = lapse_rate_column(t_s, ps, phi_s, p)
    np.testing.assert_allclose(t_p[1:], t_exact[1:], rtol=1e-3)
    np.testing.assert_allclose(t_p[0], t_exact[0], rtol=5e-3)  # 50 hPa: in the wide top layer
    np.testing.assert_allclose(phi_p[1:], phi_exact[1:], atol=8.0)
    np.testing.assert_allclose(phi_p[0], phi_exact[0], rtol=1e-3)
    # A field linear in ln p comes back exactly between levels and constant beyond them.
    expected_u = np.clip(np.log(p / ps), np.log(SIGMA[0]), np.log(SIGMA[-1]))
    np.testing.assert_allclose(other["u"], expected_u, atol=1e-12)


def test_model_levels_are_reproduced(columns):
    ps, phi_s, _, t = columns
    phi = sigma_to_pressure.geopotential_on_sigma(t, phi_s, SIGMA)
    k = 10
    col = (0, 1)  # one column; interpolate to its own level-k pressure
    target = [float(SIGMA[k] * ps[col])]
    t_p, phi_p, _ = sigma_to_pressure.interpolate_to_pressure(
        {},
        t[:, col[0] : col[0] + 1, col[1] : col[1] + 1],
        phi[:, col[0] : col[0] + 1, col[1] : col[1] + 1],
        ps[col[0] : col[0] + 1, col[1] : col[1] + 1],
        SIGMA,
        target,
    )
    np.testing.assert_allclose(t_p[0, 0, 0], t[k][col], rtol=1e-12)
    np.testing.assert_allclose(phi_p[0, 0, 0], phi[k][col], rtol=1e-12)


def test_isothermal_above_the_top_level():
    sigma = np.asarray(sigma_coordinates.SigmaCoordinates.equidistant(8).centers, np.float64)
    t = np.full((8, 1, 1), 230.0)
    ps = np.full((1, 1), 1e5)
    phi = sigma_to_pressure.geopotential_on_sigma(t, np.zeros((1, 1)), sigma)
    t_p, phi_p, _ = sigma_to_pressure.interpolate_to_pressure({}, t, phi, ps, sigma, [1000.0])
    assert t_p[0, 0, 0] == 230.0
    np.testing.assert_allclose(
        phi_p[0, 0, 0] - phi[0, 0, 0], R * 230.0 * np.log(sigma[0] * 1e5 / 1000.0), rtol=1e-12
    )


def test_mean_sea_level_pressure(columns):
    ps, phi_s, t_s, t = columns
    mslp = sigma_to_pressure.mean_sea_level_pressure(ps, phi_s, t[-1], SIGMA[-1])
    # At sea level nothing to reduce; on the plateau the textbook barometric formula.
    np.testing.assert_allclose(mslp[phi_s == 0], ps[phi_s == 0], rtol=1e-12)
    t_sea = t_s + GAMMA * phi_s / G
    np.testing.assert_allclose(mslp, ps * (t_sea / t_s) ** (1 / A), rtol=1e-8)
    assert 1.0e5 < mslp[0, 1] < 1.03e5
    # The column's geopotential reaches 0 exactly at the reduced pressure.
    phi = sigma_to_pressure.geopotential_on_sigma(t, phi_s, SIGMA)
    for j in range(3):
        one = (slice(None), slice(0, 1), slice(j, j + 1))
        _, phi_p, _ = sigma_to_pressure.interpolate_to_pressure(
            {}, t[one], phi[one], ps[:, j : j + 1], SIGMA, [float(mslp[0, j])]
        )
        assert abs(phi_p[0, 0, 0]) < 1e-6


def test_surface_air_temperature():
    np.testing.assert_allclose(
        sigma_to_pressure.surface_air_temperature(np.array(280.0), 0.9), 280.0 * 0.9**-A
    )
