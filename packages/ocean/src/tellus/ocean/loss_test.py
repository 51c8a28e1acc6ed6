import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tellus.data import grid
from tellus.ocean import loss


def test_layer_thickness_by_hand():
    # Centres 5, 15, 55 m: bounds 0, 10, 35 and 75 (as far below the last as above it).
    np.testing.assert_allclose(loss.layer_thickness([5.0, 15.0, 55.0]), [10.0, 25.0, 40.0])
    np.testing.assert_allclose(loss.layer_thickness([5.0]), [10.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        loss.layer_thickness([10.0, 5.0])


def test_area_and_thickness_weighted_mse_over_the_ocean_by_hand():
    latitude = [-45.0, 0.0, 45.0]
    depths = [5.0, 25.0]  # thickness 15 and 20 m
    rng = np.random.default_rng(0)
    target = rng.normal(size=(2, 3, 2, 3)).astype(np.float32)  # [N, lat, lon, C]
    error = rng.normal(size=target.shape).astype(np.float32)
    ocean = np.ones((1, 3, 2), bool)
    ocean[0, 1, 1] = False
    poisoned = target.copy()
    poisoned[:, 1, 1] = np.nan  # the data is NaN over land
    pred = target + error

    a = grid.latitude_weights(np.asarray(latitude))[None, :, None] * ocean  # [1, lat, lon]
    a = np.broadcast_to(a, error.shape[:3])

    def area_mean(e2):
        return (a * e2).sum() / a.sum()

    theta = (15 * area_mean(error[..., 0] ** 2) + 20 * area_mean(error[..., 1] ** 2)) / 35
    sst = area_mean(error[..., 2] ** 2)
    total, per_variable = loss.ocean_mse(
        jnp.asarray(pred), jnp.asarray(poisoned), ocean, latitude, (2, 1), depths
    )
    np.testing.assert_allclose(np.asarray(per_variable), [theta, sst], rtol=1e-5)
    np.testing.assert_allclose(float(total), (theta + sst) / 2, rtol=1e-5)

    g = jax.grad(
        lambda p: loss.ocean_mse(p, jnp.asarray(poisoned), ocean, latitude, (2, 1), depths)[0]
    )(jnp.asarray(pred))
    g = np.asarray(g)
    assert np.isfinite(g).all() and (g[:, 1, 1] == 0).all()


def test_given_thicknesses_replace_the_depths_rule():
    (w,) = loss.level_weights((2,), (5.0, 25.0), thickness=(10.0, 30.0))
    np.testing.assert_allclose(w, [0.5, 1.5])
    with pytest.raises(ValueError, match="3 channels with 2 depths"):
        loss.level_weights((3,), (5.0, 25.0))
    with pytest.raises(ValueError, match="one positive thickness per depth"):
        loss.level_weights((2,), (5.0, 25.0), thickness=(10.0,))
