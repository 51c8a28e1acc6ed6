"""The schedule, posteriors and guided sampler of tellus.ocean.diffusion, by hand.

The sampler tests use the exact denoiser of a standard normal prior: for x0 ~ N(0, I),
E[eps | x_t] = sqrt(1 - abar_t) x_t, so its clean estimate is sqrt(abar_t) x_t. Unguided,
its samples are standard normal (clipped to [-1, 1]); every pull towards the observations
comes from the guidance.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tellus.ocean import diffusion as d

# A tiny schedule: betas 0.1, 0.2, 0.3, 0.4 -> abar 0.9, 0.72, 0.504, 0.3024.
TINY = d.Schedule(np.array([0.1, 0.2, 0.3, 0.4]))
SHAPE = (1, 6, 8, 3)


def _exact_denoiser(sched):
    abar = jnp.asarray(sched.alphas_cumprod, jnp.float32)
    return lambda x, t: jnp.sqrt(1.0 - abar[t])[:, None, None, None] * x


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(0)
    ocean = np.ones(SHAPE, bool)
    ocean[0, 0, :3] = False  # land at every depth
    ocean[0, 5, 2:4, 2] = False  # land only at the deepest level
    y = rng.uniform(-0.8, 0.8, SHAPE).astype(np.float32)
    partial = rng.random(SHAPE) < 0.3
    return ocean, y, partial


def test_tiny_schedule_by_hand():
    np.testing.assert_allclose(TINY.alphas_cumprod, [0.9, 0.72, 0.504, 0.3024], rtol=1e-12)
    lin = d.linear_schedule(1000)
    assert lin.betas[0] == pytest.approx(1e-4) and lin.betas[-1] == pytest.approx(0.02)
    lin100 = d.linear_schedule(100)  # scaled by 1000 / 100
    assert lin100.betas[0] == pytest.approx(1e-3) and lin100.betas[-1] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="num_steps"):
        d.linear_schedule(4)
    with pytest.raises(ValueError, match="betas"):
        d.Schedule(np.array([0.1, 1.0]))


def test_timesteps():
    ts = d.timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0 and np.all(np.diff(ts) < 0)
    np.testing.assert_array_equal(d.timesteps(4, 4), [3, 2, 1, 0])
    np.testing.assert_array_equal(d.timesteps(4, 2), [3, 0])
    with pytest.raises(ValueError, match="steps"):
        d.timesteps(4, 5)


def test_q_sample_and_x0_by_hand():
    # t = 2: sqrt(0.504) * 0.5 + sqrt(0.496) * (-1) = 0.354965 - 0.704273 = -0.349308
    x0, noise, t = jnp.full((1, 1), 0.5), jnp.full((1, 1), -1.0), jnp.array([2])
    xt = d.q_sample(TINY, x0, t, noise)
    np.testing.assert_allclose(xt, [[-0.349308]], atol=1e-6)
    np.testing.assert_allclose(d.predict_x0(TINY, xt, t, noise), x0, atol=1e-6)
    np.testing.assert_allclose(d.predict_eps(TINY, xt, t, x0), noise, atol=1e-6)


def test_ddpm_posterior_by_hand():
    x0, xt = jnp.full((1, 1), 0.5), jnp.full((1, 1), -0.349308)
    # t = 2 -> 1: c0 = 0.3 sqrt(0.72) / 0.496 = 0.513223, ct = 0.28 sqrt(0.7) / 0.496 =
    # 0.472308, var = 0.3 * 0.28 / 0.496 = 0.169355; mean = 0.256611 - 0.164982 = 0.091630
    mean, var = d.posterior(TINY, x0, xt, jnp.array([2]))
    np.testing.assert_allclose(mean, [[0.091630]], atol=1e-6)
    np.testing.assert_allclose(var, [[0.169355]], atol=1e-6)
    # t = 0 -> the clean field: mean x0, variance 0
    mean, var = d.posterior(TINY, x0, xt, jnp.array([0]))
    np.testing.assert_allclose(mean, x0, atol=1e-7)
    np.testing.assert_allclose(var, [[0.0]], atol=1e-7)
    # respaced, t = 3 -> s = 1: beta' = 1 - 0.3024 / 0.72 = 0.58, c0 = 0.58 sqrt(0.72) /
    # 0.6976 = 0.705485, ct = 0.28 sqrt(0.42) / 0.6976 = 0.260121, var = 0.58 0.28 / 0.6976
    mean, var = d.posterior(TINY, x0, xt, jnp.array([3]), jnp.array([1]))
    np.testing.assert_allclose(mean, [[0.705485 * 0.5 - 0.260121 * 0.349308]], atol=1e-6)
    np.testing.assert_allclose(var, [[0.232798]], atol=1e-6)


def test_ddim_step_by_hand():
    xt, eps = jnp.full((1, 1), 0.2), jnp.full((1, 1), 0.5)
    # t = 3 -> 1, eta 0: x0 = (0.2 - sqrt(0.6976) 0.5) / sqrt(0.3024) = -0.395724;
    # x_s = sqrt(0.72) x0 + sqrt(0.28) 0.5 = -0.335783 + 0.264575 = -0.071208
    out = d.ddim_step(TINY, xt, jnp.array([3]), jnp.array([1]), eps)
    np.testing.assert_allclose(out, [[-0.071208]], atol=1e-6)
    # eta = 1 without noise is the DDPM posterior mean of the implied x0
    x0 = d.predict_x0(TINY, xt, jnp.array([2]), eps)
    out = d.ddim_step(
        TINY, xt, jnp.array([2]), jnp.array([1]), eps, eta=1.0, noise=jnp.zeros((1, 1))
    )
    np.testing.assert_allclose(out, d.posterior(TINY, x0, xt, jnp.array([2]))[0], atol=1e-6)
    with pytest.raises(ValueError, match="noise"):
        d.ddim_step(TINY, xt, jnp.array([2]), jnp.array([1]), eps, eta=0.5)


def test_temperature_scaling():
    t = jnp.array([-5.0, 40.0, 17.5, jnp.nan, 10.0])
    ocean = jnp.array([True, True, True, True, False])
    np.testing.assert_allclose(d.to_unit(t, ocean), [-1, 1, 0, 0, 0], atol=1e-6)
    back = d.from_unit(d.to_unit(t), ocean)
    # the NaN cell was 0 in the model's units (17.5 C): only the ocean mask makes land NaN
    np.testing.assert_allclose(back[:4], [-5, 40, 17.5, 17.5], atol=1e-5)
    assert np.isnan(back[4])


def test_gaussian_spread(field):
    ocean = field[0]
    k = d.gaussian_kernel(5, 1.0)
    assert k.shape == (5, 5) and k.sum() == pytest.approx(1.0) and k[2, 2] == k.max()
    g = np.zeros(SHAPE, np.float32)
    g[0, 3, 0, 0] = 1.0  # at longitude 0: wraps to the last columns
    g[0, 1, 2, 1] = -2.0  # next to land at row 0
    g[0, 4, 3, 2] = 1.5  # next to the deep level's land
    out = np.asarray(d.spread(jnp.asarray(g), ocean, k))
    assert np.all(out[~ocean] == 0.0)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), g.sum(axis=(1, 2)), atol=1e-6)
    # periodic in longitude: the source at column 0 reaches columns 7 and 6 as 1 and 2
    np.testing.assert_allclose(out[0, 3, 7, 0], out[0, 3, 1, 0], rtol=1e-6)
    np.testing.assert_allclose(out[0, 3, 6, 0], out[0, 3, 2, 0], rtol=1e-6)
    # away from land the source keeps the kernel's own weights
    np.testing.assert_allclose(out[0, 1:6, [6, 7, 0, 1, 2], 0].T, k, rtol=1e-5)


@functools.cache
def _guided(method: str, mode: str, steps: int, num_steps: int):
    """One compiled guided sampler per (method, mode, steps, schedule), the scale an argument."""
    sched = d.linear_schedule(num_steps)

    @jax.jit
    def run(y, mask, ocean, scale):
        g = d.Guidance(y, mask, scale, mode)
        return d.sample(
            _exact_denoiser(sched),
            SHAPE,
            jax.random.key(1),
            ocean,
            schedule=sched,
            steps=steps,
            method=method,
            guidance=g,
            samples=3,
        )

    return run


@pytest.mark.parametrize(
    ("method", "mode", "steps"),
    [("ddpm", "x0", 100), ("ddim", "x0", 20), ("ddim", "posterior", 20)],
)
def test_guidance_lowers_the_error_as_its_scale_rises(field, method, mode, steps):
    ocean, y, partial = field
    run = _guided(method, mode, steps, 100)
    y_nan = np.where(partial, y, np.nan)  # nothing but the observed points may matter
    errors = []
    for scale in (0.0, 1.0, 4.0, 16.0):
        x = run(y_nan, partial, ocean, scale)
        assert x.shape == (3, *SHAPE) and np.isfinite(x).all()
        assert np.all(np.asarray(x)[:, ~ocean] == 0.0)  # land is 0 in every sample
        errors.append(float(d.observation_mse(x, y, partial & ocean)))
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.1 * errors[0], errors


@pytest.mark.parametrize("mode", ["x0", "posterior"])
def test_every_point_observed_and_strong_guidance_returns_the_observations(field, mode):
    # The full 1 000-step DDPM chain at scale 4096: the last steps' variance is ~1e-4, so
    # the pull 2 * scale * var is ~1 there. Tolerance: MSE 1e-4 in [-1, 1] units (RMS 0.01,
    # 0.23 C), against ~0.6 unguided.
    ocean, y, _ = field
    everywhere = np.ones(SHAPE, bool)
    x = _guided("ddpm", mode, 1000, 1000)(y, everywhere, ocean, 4096.0)
    assert float(d.observation_mse(x, y, ocean)) < 1e-4
    assert np.all(np.asarray(x)[:, ~ocean] == 0.0)


def test_unguided_samples_differ_and_keep_land_zero(field):
    ocean = field[0]
    sched = d.linear_schedule(100)
    x = d.sample(
        _exact_denoiser(sched), SHAPE, jax.random.key(0), ocean, schedule=sched, steps=10, samples=2
    )
    assert x.shape == (2, *SHAPE)
    assert np.all(np.asarray(x)[:, ~ocean] == 0.0)
    assert float(jnp.abs(x[0] - x[1]).max()) > 0.1  # different noise, different samples


def test_the_clean_estimate_is_clipped_at_the_given_bound(field):
    """The last DDIM step returns its clean estimate: samples of the standard normal prior
    stay within the bound (1 by default), and exceed it without clipping."""
    ocean = field[0]
    sched = d.linear_schedule(100)

    def run(clip):
        x = d.sample(
            _exact_denoiser(sched),
            SHAPE,
            jax.random.key(3),
            ocean,
            schedule=sched,
            steps=10,
            samples=8,
            clip_x0=clip,
        )
        return float(jnp.abs(x).max())

    free = run(False)
    assert free > 2.0
    assert run(True) == pytest.approx(1.0) and run(1.5) == pytest.approx(1.5)
    assert run(2 * free) == pytest.approx(free, rel=1e-5)  # a bound never reached


def test_sample_argument_errors(field):
    ocean, y, partial = field
    fn = _exact_denoiser(TINY)
    with pytest.raises(ValueError, match="method"):
        d.sample(fn, SHAPE, jax.random.key(0), ocean, schedule=TINY, steps=4, method="euler")
    with pytest.raises(ValueError, match="ocean_mask"):
        d.sample(fn, SHAPE, jax.random.key(0), ocean[..., :2], schedule=TINY, steps=4)
    with pytest.raises(ValueError, match="steps"):
        d.sample(fn, SHAPE, jax.random.key(0), ocean, schedule=TINY, steps=5)
    with pytest.raises(ValueError, match="mode"):
        d.Guidance(y, partial, 1.0, "dps")
    with pytest.raises(ValueError, match="one shape"):
        d.Guidance(y, partial[..., :1])
