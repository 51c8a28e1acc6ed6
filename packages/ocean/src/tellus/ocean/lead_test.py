import jax.numpy as jnp
import numpy as np
import pytest

from tellus.ocean import lead


def test_lead_month_m_uses_expert_m_minus_1_mod_6():
    months = jnp.array([1, 2, 6, 7, 12, 13, 24])
    np.testing.assert_array_equal(lead.expert_index(months, 6), [0, 1, 5, 0, 5, 0, 5])
    with pytest.raises(ValueError, match="n_experts"):
        lead.expert_index(months, 0)


def test_frequency_ladders_by_hand():
    np.testing.assert_allclose(lead.frequencies(4, "orca"), [1.0, 100.0])
    np.testing.assert_allclose(lead.frequencies(4, "rope"), [1.0, 0.01])
    with pytest.raises(ValueError, match="even width"):
        lead.frequencies(3)
    with pytest.raises(ValueError, match="one of"):
        lead.frequencies(4, "sine")


def test_rotation_by_hand():
    x = jnp.array([[[1.0, 0.0, 0.0, 2.0]], [[1.0, 0.0, 0.0, 2.0]]])  # [B=2, 1, D=4]
    y = np.asarray(lead.rotate(x, jnp.array([1, 3]), "rope"))
    np.testing.assert_allclose(y[0], [[1.0, 0.0, 0.0, 2.0]])  # lead 1: not rotated
    a, b = 2.0 * 1.0, 2.0 * 0.01  # lead 3: t = 2 months
    np.testing.assert_allclose(
        y[1], [[np.cos(a), np.sin(a), -2 * np.sin(b), 2 * np.cos(b)]], rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-6)


def test_forcing_mix_by_hand():
    z = jnp.array([[[3.0, 4.0]]])
    f = jnp.array([[[0.5, 0.0]]])
    out = np.asarray(lead.mix_forcing(z, f, jnp.array([1]), "orca"))
    np.testing.assert_allclose(out, [[[3.0 + 1.5 * 0.5, 4.0]]])  # z + (f . z) f
