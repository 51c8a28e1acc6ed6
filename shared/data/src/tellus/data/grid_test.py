"""Latitude cell bounds and area weights against hand-computed values."""

import numpy as np
import pytest

from tellus.data import grid


def test_two_rows_by_hand():
    # Rows at -30 and 60: cell bounds -90, 15, 90; areas sin(15) + 1 and 1 - sin(15).
    lat = np.array([-30.0, 60.0])
    lower, upper = grid.latitude_cell_bounds(lat)
    np.testing.assert_array_equal(lower, [-90.0, 15.0])
    np.testing.assert_array_equal(upper, [15.0, 90.0])
    s15 = np.sin(np.deg2rad(15))
    np.testing.assert_allclose(grid.latitude_weights(lat), [1 + s15, 1 - s15])


def test_pole_grid_hand_computed():
    # Rows at -90, 0, 90: bounds [-90,-45], [-45,45], [45,90].
    lat = np.array([-90.0, 0.0, 90.0])
    s45 = np.sin(np.pi / 4)
    area = np.array([1 - s45, 2 * s45, 1 - s45])
    np.testing.assert_allclose(grid.latitude_weights(lat), area / area.mean(), rtol=1e-6)
    # Descending order gives the same weights reversed; poles are not zero.
    np.testing.assert_allclose(
        grid.latitude_weights(lat[::-1]), (area / area.mean())[::-1], rtol=1e-6
    )
    lower, upper = grid.latitude_cell_bounds(lat[::-1])
    np.testing.assert_array_equal(lower, [45.0, -45.0, -90.0])
    np.testing.assert_array_equal(upper, [90.0, 45.0, -45.0])


def test_regular_grid_with_poles():
    lat = np.linspace(-90, 90, 7)
    w = grid.latitude_weights(lat)
    assert w.mean() == pytest.approx(1.0)
    ratio = w[1:-1] / np.cos(np.deg2rad(lat[1:-1]))
    np.testing.assert_allclose(ratio, ratio[0])  # Interior: proportional to cos(lat).
    # A pole's half cell: 1 - sin(75 deg), small but nonzero.
    assert w[0] == w[-1] > 0
    assert w[0] / w[3] == pytest.approx((1 - np.sin(np.deg2rad(75))) / (2 * np.sin(np.deg2rad(15))))
    assert w[0] < 0.1 * w[3]


def test_mean_one_and_close_to_cosine_on_fine_grid():
    lat = np.linspace(-90, 90, 721)
    w = grid.latitude_weights(lat)
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
    cos = np.cos(np.deg2rad(lat[1:-1]))
    np.testing.assert_allclose(w[1:-1] / w[360], cos, atol=1e-4)
    assert 0 < w[0] < w[1]


def test_grid_without_poles_cells_are_half_a_spacing_wide():
    # 0.25 deg cell centres: the end cells reach the poles, half a spacing from their rows.
    lat = np.linspace(-89.875, 89.875, 720)
    lower, upper = grid.latitude_cell_bounds(lat)
    np.testing.assert_allclose(upper - lower, 0.25, atol=1e-9)


def test_a_grid_short_of_the_poles_ends_half_a_spacing_beyond_its_rows():
    # The 4 deg ocean grid, -68 .. 68: cells -70 .. 70, every one 4 deg wide, so the weights
    # are 2 sin(2 deg) cos(lat) for every row, the outer ones included.
    lat = np.arange(-68.0, 68.1, 4.0)
    lower, upper = grid.latitude_cell_bounds(lat)
    assert lower[0] == -70.0 and upper[-1] == 70.0
    np.testing.assert_allclose(upper - lower, 4.0)
    w = grid.latitude_weights(lat)
    cos = np.cos(np.deg2rad(lat))
    np.testing.assert_allclose(w, cos / cos.mean(), rtol=1e-12)
    # One end short of its pole, the other within a spacing of it: only the first is cut.
    lower, upper = grid.latitude_cell_bounds(np.array([-20.0, 0.0, 20.0, 40.0, 60.0, 80.0]))
    assert lower[0] == -30.0 and upper[-1] == 90.0


@pytest.mark.parametrize(
    "lat", [[0.0, 0.0, 1.0], [0.0, 2.0, 1.0], [[0.0, 1.0]], [], [-91.0, 0.0], [0.0, 90.5]]
)
def test_bad_latitude_rejected(lat):
    with pytest.raises(ValueError):
        grid.latitude_weights(np.array(lat))
