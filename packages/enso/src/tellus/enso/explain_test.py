import numpy as np
import pytest
import xarray as xr

from tellus.enso import explain, train, world
from tellus.enso import model as model_lib


@pytest.fixture(scope="module")
def obs():
    return train.to_series(world.build_world("observed", 60, seed=3, progress=False))


@pytest.fixture(scope="module")
def linear():
    return explain.optimal_linear_forecaster()


def test_linear_attributions_recover_the_known_weights(obs, linear):
    inits = train.inits_between(obs, 0, obs.n_time - 1)[::37][:6]
    data = train.gather(obs, inits)
    x, month = data["x"], data["month"]
    w = np.asarray(linear.weights[...])[month - 1, 11]  # lead 12
    expected = w * x
    gxi = explain.gradient_x_input(linear, x, month, 12)
    ig = explain.integrated_gradients(linear, x, month, 12, steps=4)
    np.testing.assert_allclose(gxi, expected, atol=1e-5)
    np.testing.assert_allclose(ig, expected, atol=1e-5)
    # The linear forecaster is the recharge oscillator's: from the noise-free modes' fields,
    # it reads the modes back exactly (heat content carries h).
    gap = explain.completeness_gap(linear, x, month, 12, ig)
    assert np.abs(gap).max() < 1e-4


def test_linear_forecaster_is_skilful(obs, linear):
    inits = train.inits_between(obs, 0, obs.n_time - 1)
    data = train.gather(obs, inits)
    pred = np.asarray(linear(data["x"], data["month"]))
    corr = [np.corrcoef(pred[:, k], data["y"][:, k])[0, 1] for k in (0, 5, 11)]
    assert corr[0] > 0.85 and corr[1] > 0.6 and corr[2] > 0.3


def test_long_lead_attribution_sits_in_western_pacific_heat_content(obs, linear, tmp_path):
    inits = train.inits_between(obs, 0, obs.n_time - 1)
    comp = explain.composites(linear, obs, inits, leads=(3, 18), steps=2, max_cases=32)
    assert (comp["n_cases"] > 5).all()
    frac, fair = explain.box_fraction(comp["attribution"])
    long = frac.sel(lead=18)
    assert (long > 5 * fair).all(), (long.values, fair)
    # ... and more so than at a short lead, where the SST pattern carries the forecast.
    assert (long > frac.sel(lead=3)).all()
    # Two identical members average to the same composites, case counts kept.
    mean = explain.mean_composites([comp, comp])
    xr.testing.assert_allclose(mean, comp)
    explain.plot_composites(mean, tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 1000


def test_integrated_gradients_completeness_on_resonet():
    m = model_lib.make_model(model_lib.preset("tiny"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 2, 24, 72)).astype(np.float32) * 0.5
    month = np.array([1, 7])
    base = np.full_like(x, 0.1)
    ig = explain.integrated_gradients(m, x, month, 6, baseline=base, steps=64)
    gap = explain.completeness_gap(m, x, month, 6, ig, baseline=base)
    fx = np.asarray(m(x, month))[:, 5]
    f0 = np.asarray(m(base, month))[:, 5]
    assert np.all(np.abs(gap) <= 0.02 * np.abs(fx - f0) + 1e-4), (gap, fx - f0)
