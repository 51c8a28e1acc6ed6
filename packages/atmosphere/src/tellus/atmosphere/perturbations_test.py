"""Tests of the initial perturbations and the ensemble helpers (tellus.atmosphere.ensemble)."""

from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from tellus.atmosphere import ensemble
from tellus.atmosphere import perturbations as pt


def _keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


# 2 x 4 coarsest cells on 32 x 64: lattice points every 16 rows and columns.
SHAPE_HW, OCTAVES, CELLS = (32, 64), 3, (2, 4)


@pytest.fixture(scope="module")
def perlin_fields():
    """Twelve Perlin fields, periodic in longitude (one compile shared by the tests)."""
    make = jax.vmap(lambda k: pt.perlin_noise(k, SHAPE_HW, OCTAVES, CELLS, 0.5, True))
    return np.asarray(make(_keys(12)))


def test_perlin_is_zero_on_the_lattice_and_bounded(perlin_fields):
    # The finer octaves' lattices contain the coarsest one, so the sum vanishes there (the
    # defining property of gradient noise).
    np.testing.assert_allclose(perlin_fields[:, ::16, ::16], 0.0, atol=1e-6)
    assert np.abs(perlin_fields).max() <= math.sqrt(0.5) + 1e-6
    assert perlin_fields.std(axis=(1, 2)).min() > 0.05  # not trivially zero elsewhere


def _wrap_ratio(f):
    wrap = np.abs(f[..., 0] - f[..., -1]).mean()
    neighbour = np.abs(np.diff(f, axis=-1)).mean()
    return wrap / neighbour


def test_perlin_is_periodic_in_longitude(perlin_fields):
    # Across the seam the field changes like between any two neighbours...
    assert 0.5 < _wrap_ratio(perlin_fields) < 1.5
    # ... while a non-periodic field jumps there.
    open_ = np.asarray(
        jax.vmap(lambda k: pt.perlin_noise(k, SHAPE_HW, OCTAVES, CELLS, 0.5, False))(_keys(12))
    )
    assert _wrap_ratio(open_) > 3.0


def _low_wavenumber_fraction(f, kmax):
    power = np.abs(np.fft.rfft(f - f.mean(axis=-1, keepdims=True), axis=-1)) ** 2
    return power[..., 1 : kmax + 1].sum() / power[..., 1:].sum()


def test_perlin_spectrum_is_dominated_by_large_scales(perlin_fields):
    white = np.random.default_rng(0).normal(size=perlin_fields.shape)
    # Zonal wavenumbers 1..8 of 32: a quarter of white noise's variance, most of Perlin's.
    assert _low_wavenumber_fraction(white, 8) < 0.35
    assert _low_wavenumber_fraction(perlin_fields, 8) > 0.8


STATE = np.random.default_rng(3).normal(size=(2, 16, 32, 2)).astype(np.float32)
PERLIN = pt.PerturbationConfig(kind="perlin", amplitude=0.2, octaves=2, base_scale=4)


@pytest.fixture(scope="module")
def perlin_members():
    return pt.perturb(jax.random.key(0), jnp.asarray(STATE), 5, PERLIN)


@pytest.mark.parametrize("smoothing", [0.0, 2.0])
def test_gaussian_perturbations_have_the_amplitude_as_std(smoothing):
    state = jnp.asarray(STATE)
    # White noise without a control member, smoothed noise with one.
    cfg = pt.PerturbationConfig(
        kind="gaussian", amplitude=(0.1, 0.5), smoothing=smoothing, include_control=smoothing > 0
    )
    members = np.asarray(pt.perturb(jax.random.key(0), state, 33, cfg))
    assert members.shape == (33, 2, 16, 32, 2)
    if smoothing:
        np.testing.assert_array_equal(members[0], STATE)
        members = members[1:]
    assert not np.any(np.all(members == STATE[None], axis=(1, 2, 3, 4)))
    delta = members - STATE[None]
    if smoothing:
        delta = delta[:, :, 4:-4]  # away from the reflected latitude edges
    np.testing.assert_allclose(delta.std(axis=(0, 1, 2, 3)), [0.1, 0.5], rtol=0.06)
    if smoothing:  # smoothed noise is correlated between neighbours, white is not
        assert np.corrcoef(delta[..., 1:, 0].ravel(), delta[..., :-1, 0].ravel())[0, 1] > 0.8


def test_control_member_is_the_input_and_perlin_rms_is_the_amplitude(perlin_members):
    assert perlin_members.shape == (5, 2, 16, 32, 2)
    np.testing.assert_array_equal(perlin_members[0], STATE)
    delta = np.asarray(perlin_members[1:]) - STATE[None]
    np.testing.assert_allclose(np.sqrt((delta**2).mean(axis=(2, 3))), 0.2, rtol=1e-4)
    assert pt.perturb(jax.random.key(0), STATE, 1, PERLIN).shape == (1, 2, 16, 32, 2)


def test_perturb_is_jit_compatible(perlin_members):
    jitted = jax.jit(pt.perturb, static_argnums=(2, 3))(jax.random.key(0), STATE, 5, PERLIN)
    np.testing.assert_allclose(jitted, perlin_members, atol=1e-5)


def _linear_system(n=16, seed=0):
    """A = Q diag(lam) Q^T with one dominant growing mode q1 (eigenvalue 2)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    lam = np.concatenate([[2.0, 1.2], np.linspace(1.0, 0.3, n - 2)])
    return (q * lam) @ q.T, q[:, 0]


def test_bred_vectors_align_with_the_leading_eigenvector():
    a, q1 = _linear_system()
    a_t = jnp.asarray(a.T, jnp.float32)

    def step(x):  # x -> A x on each flattened [4, 4, 1] state
        return (x.reshape(x.shape[0], -1) @ a_t).reshape(x.shape)

    state = jax.random.normal(jax.random.key(1), (2, 4, 4, 1))
    delta = pt.breed(jax.random.key(2), state, step, n_members=3, cycles=30, amplitude=0.3)
    assert delta.shape == (3, 2, 4, 4, 1)
    flat = np.asarray(delta).reshape(6, -1)
    np.testing.assert_allclose(np.sqrt((flat**2).mean(axis=1)), 0.3, rtol=1e-4)
    cos = np.abs(flat @ q1) / np.linalg.norm(flat, axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-3)
    # One cycle is not yet converged: (1.2 / 2)^1 leaves the other modes in.
    early = np.asarray(pt.breed(jax.random.key(2), state, step, 3, 1, 0.3)).reshape(6, -1)
    assert (np.abs(early @ q1) / np.linalg.norm(early, axis=1)).min() < 0.99
    # Through perturb and member_perturber: the control plus bred members.
    cfg = pt.PerturbationConfig(kind="bred", amplitude=0.3, cycles=30)
    members = ensemble.member_perturber(cfg, step)(jax.random.key(2), state, 4)
    np.testing.assert_array_equal(members[0], state)
    np.testing.assert_allclose(members[1:] - state[None], delta, atol=1e-5)
    with pytest.raises(ValueError, match="step_fn"):
        pt.perturb(jax.random.key(0), state, 2, cfg)


class _LinearSystem:
    """Duck-typed ForecastSystem: ``steps`` applies x -> mean + A (x - mean)."""

    def __init__(self, a, mean, std):
        self.config = types.SimpleNamespace(mean=tuple(mean), std=tuple(std))
        self.leads = (6,)
        self._a = jnp.asarray(a, jnp.float32)
        self._mean = jnp.asarray(mean, jnp.float32)

    def steps(self, x0, static, lead_hours):
        d = (x0 - self._mean).reshape(x0.shape[0], -1) @ self._a.T
        yield 6, d.reshape(x0.shape) + self._mean


def test_forecast_perturbation_fn_is_init_major_in_raw_units():
    mean, std = np.array([280.0, 1.0e5]), np.array([10.0, 1000.0])
    system = _LinearSystem(np.eye(4 * 8 * 2), mean, std)
    x0 = np.asarray(mean + std * np.random.default_rng(0).normal(size=(3, 4, 8, 2)), np.float32)
    cfg = pt.PerturbationConfig(amplitude=0.1, base_scale=2)
    perturb = ensemble.perturbation_fn(system, "gaussian", seed=1, config=cfg)
    out = perturb(x0, 4)
    assert out.shape == (12, 4, 8, 2)
    members = out.reshape(3, 4, 4, 8, 2)
    np.testing.assert_array_equal(members[:, 0], x0)  # the controls, bit for bit
    delta = members[:, 1:] - x0[:, None]
    ratio = delta.std(axis=(0, 1, 2, 3)) / std
    np.testing.assert_allclose(ratio, 0.1, rtol=0.2)  # amplitude in channel stds
    np.testing.assert_array_equal(perturb(x0, 4), out)  # same seed, same members
    assert perturb(x0, 1).shape == (3, 4, 8, 2)
    with pytest.raises(ValueError, match="static"):
        ensemble.perturbation_fn(system, "bred")


def test_forecast_bred_perturbations_grow_along_the_model_mode():
    a, q1 = _linear_system()  # on [4, 4, 1] states, as above (the same compiled shapes)
    system = _LinearSystem(a, [0.0], [2.0])
    x0 = np.zeros((2, 4, 4, 1), np.float32)
    cfg = pt.PerturbationConfig(amplitude=0.1, cycles=30)
    out = ensemble.perturbation_fn(system, "bred", config=cfg, static=np.zeros((4, 4, 1)))(x0, 4)
    delta = (out.reshape(2, 4, 16)[:, 1:] - x0.reshape(2, 1, 16)).reshape(6, 16)
    cos = np.abs(delta @ q1) / np.linalg.norm(delta, axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-3)
    np.testing.assert_allclose(np.sqrt((delta**2).mean(axis=1)), 0.1 * 2.0, rtol=1e-3)


def test_ensemble_mean_spread_and_control():
    values = np.array([1.0, 2.0, 6.0])[None, :, None] * np.ones((2, 3, 4))
    fc = xr.Dataset(
        {"2m_temperature": (("time", "realization", "latitude"), values)},
        coords={"realization": [0, 1, 2]},
    )
    np.testing.assert_allclose(ensemble.ensemble_mean(fc)["2m_temperature"], 3.0)
    np.testing.assert_allclose(
        ensemble.ensemble_spread(fc)["2m_temperature"],
        np.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2),
    )
    np.testing.assert_allclose(ensemble.control(fc)["2m_temperature"], 1.0)
    assert ensemble.ensemble_size(fc) == 3
    det = fc.isel(realization=0, drop=True)
    assert ensemble.ensemble_size(det) == 1 and ensemble.ensemble_mean(det) is det
    with pytest.raises(ValueError, match="realization"):
        ensemble.ensemble_spread(det)
