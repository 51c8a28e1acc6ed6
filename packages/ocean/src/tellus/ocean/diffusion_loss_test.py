"""The diffusion loss ignores land; the EMA by hand."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.ocean import diffusion_loss as dl
from tellus.ocean import unet


@pytest.fixture(scope="module")
def setup():
    probe = unet.UNetConfig(7, 12, 3, unet.bottleneck_trunk((1, 1), 8, 2), 4, (1, 2), 1, 2)
    cfg = dataclasses.replace(probe, trunk=unet.bottleneck_trunk(probe.bottleneck, 8, 2))
    model = unet.make_denoiser(cfg)
    ocean = np.ones((1, 7, 12, 3), bool)
    ocean[0, 0] = False
    ocean[0, 3:5, 4:8, 2] = False  # land only at the deepest level
    temp = np.random.default_rng(0).uniform(0, 30, (2, 7, 12, 3)).astype(np.float32)

    @nnx.jit
    def loss_and_grad(model, temp, ocean):
        batch = {"temperature": temp, "ocean": ocean}
        return nnx.value_and_grad(lambda m: dl.diffusion_loss(m, batch, jax.random.key(5)))(model)

    return model, ocean, temp, loss_and_grad


# The loss compiled as one program per batch layout (eagerly, every operation of the network
# compiles alone).
_loss = nnx.jit(dl.diffusion_loss)


def test_loss_ignores_land(setup):
    model, ocean, temp, loss_and_grad = setup
    clean = np.where(ocean, temp, 0.0)
    ref_loss, ref_grad = loss_and_grad(model, clean, ocean)
    assert np.isfinite(ref_loss) and ref_loss > 0
    for poison in (np.nan, 1e30, -1e30):
        loss, grad = loss_and_grad(model, np.where(ocean, temp, poison).astype(np.float32), ocean)
        assert float(loss) == float(ref_loss)
        for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad), strict=True):
            np.testing.assert_array_equal(a, b)
    # without a mask, NaN alone marks land: the same loss
    nan_land = np.where(ocean, temp, np.nan).astype(np.float32)
    batch = {"temperature": nan_land}
    direct = {"temperature": nan_land, "ocean": ocean}
    key = jax.random.key(5)
    np.testing.assert_allclose(_loss(model, batch, key), _loss(model, direct, key), rtol=1e-6)


def test_a_field_in_model_units_is_the_clean_field_itself(setup):
    model, ocean, temp, _ = setup
    key = jax.random.key(5)
    by_temperature = _loss(model, {"temperature": temp, "ocean": ocean}, key)
    # x0 = to_unit(temperature), land NaN: the same loss
    x0 = np.where(ocean, 2.0 * (temp + 5.0) / 45.0 - 1.0, np.nan).astype(np.float32)
    by_x0 = _loss(model, {"x0": x0, "ocean": ocean}, key)
    np.testing.assert_allclose(by_x0, by_temperature, rtol=1e-5)


def test_batch_errors(setup):
    model = setup[0]
    with pytest.raises(ValueError, match="rng"):
        dl.diffusion_loss(model, {"temperature": np.zeros((1, 7, 12, 3))})
    with pytest.raises(ValueError, match="temperature"):
        dl.ocean_cells({"thetao": np.zeros((1, 7, 12, 3))})
    with pytest.raises(ValueError, match="ocean"):
        dl.ocean_cells({"temperature": np.zeros((1, 7, 12, 3)), "ocean": np.ones((1, 7, 11), bool)})


def test_ema_by_hand():
    ema = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(4.0)}}
    params = {"a": jnp.array([3.0, 2.0]), "b": {"c": jnp.array(0.0)}}
    out = dl.ema_update(ema, params, decay=0.75)  # 0.75 e + 0.25 p
    np.testing.assert_allclose(out["a"], [1.5, 2.0])
    np.testing.assert_allclose(out["b"]["c"], 3.0)
    # warm-up at step 0: min(0.9999, 1 / 10) = 0.1 -> 0.1 e + 0.9 p
    out = dl.ema_update(ema, params, step=0)
    np.testing.assert_allclose(out["a"], [2.8, 2.0], rtol=1e-6)
    assert dl.ema_decay_at(0.9999, None) == 0.9999
    with pytest.raises(ValueError, match="same tree"):
        dl.ema_update(ema, {"a": params["a"]})
    with pytest.raises(ValueError, match="decay"):
        dl.ema_update(ema, params, decay=1.0)
