import numpy as np
import pytest
import scipy.linalg
import xarray as xr

from tellus.enso import skill, train, world


def test_correlation_by_target_month():
    n = 48
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((n, 2))
    init_month = (np.arange(n) % 12) + 1
    fc = truth.copy()
    # Target month 3 at lead 1 comes from init month 2: make those forecasts anti-correlated.
    fc[init_month == 2, 0] *= -1
    ds = skill.forecast_dataset({"a": fc}, truth, init_month)
    by = skill.correlation_by_target_month(ds["forecast"], ds["truth"], ds["init_month"])
    assert by.sizes == {"system": 1, "target_month": 12, "lead": 2}
    assert float(by.sel(system="a", target_month=3, lead=1)) == pytest.approx(-1.0)
    assert float(by.sel(system="a", target_month=4, lead=1)) == pytest.approx(1.0)
    assert np.allclose(by.sel(system="a", lead=2), 1.0)


def test_longest_lead_above():
    c = np.array([0.9, 0.8, 0.6, 0.51, 0.45, 0.6, 0.3])
    assert skill.longest_lead_above(c) == 4
    assert skill.longest_lead_above(np.array([0.4, 0.9])) == 0
    assert skill.longest_lead_above(np.array([0.9, 0.8])) == 2
    da = xr.DataArray(c, dims="lead", coords={"lead": np.arange(3, 10)})
    assert skill.longest_lead_above(da) == 6


def test_lim_recovers_a_known_propagator():
    rng = np.random.default_rng(2)
    lop = np.array([[-0.1, 0.3], [-0.3, -0.05]])  # a damped oscillator, per month
    g1 = scipy.linalg.expm(lop)
    x = np.zeros((40_000, 2))
    for i in range(1, len(x)):
        x[i] = g1 @ x[i - 1] + rng.standard_normal(2)
    # two segments: lag pairs must not cross them
    est = skill.fit_propagator([x[:20_000], x[20_000:]])
    np.testing.assert_allclose(est, g1, atol=0.02)
    np.testing.assert_allclose(skill.lim_operator(est), lop, atol=0.03)


@pytest.fixture(scope="module")
def small_world():
    obs = world.build_world("observed", 60, progress=False)
    return train.to_series(obs)


def test_baselines_on_a_small_world(small_world, tmp_path):
    s = small_world
    tr = train.inits_between(s, 0, 359)
    te = train.inits_between(s, 420, s.n_time - 1)
    fc = skill.baseline_forecasts(s, tr, s, te, n_eofs=6)
    truth = train.gather(s, te)["y"]
    assert all(v.shape == truth.shape for v in fc.values())
    ds = skill.forecast_dataset(fc, truth, s.months[te[:, 1]])
    sc = skill.scores(ds)
    corr = sc["correlation"]
    # Every baseline is skilful at lead 1; the optimum is near 1 there.
    assert (corr.sel(lead=1) > 0.7).all()
    assert float(sc["optimal_correlation"].sel(lead=1)) > 0.9
    assert set(skill.longest_leads(sc)) == {"persistence", "damped_persistence", "lim", "optimal"}
    for png in (
        skill.plot_skill_by_lead(sc, tmp_path / "lead.png"),
        skill.plot_skill_by_season(sc, "lim", tmp_path / "season.png"),
    ):
        assert png.stat().st_size > 1000


def test_correlation_difference_interval():
    rng = np.random.default_rng(1)
    n_years, per_year, leads = 40, 12, 3
    truth = rng.standard_normal((n_years * per_year, leads))
    blocks = np.repeat(np.arange(n_years), per_year)
    good = truth + 0.5 * rng.standard_normal(truth.shape)
    bad = truth + 2.0 * rng.standard_normal(truth.shape)
    ci = skill.correlation_difference_interval(good, bad, truth, blocks, n_boot=300)
    # the point estimate is the plain difference of correlations ...
    expected = [
        np.corrcoef(good[:, k], truth[:, k])[0, 1] - np.corrcoef(bad[:, k], truth[:, k])[0, 1]
        for k in range(leads)
    ]
    np.testing.assert_allclose(ci["diff"], expected, rtol=1e-10)
    # ... inside its interval; a clearly better forecast is better at 90 %, by every lead
    assert (ci["low"] <= ci["diff"]).all() and (ci["diff"] <= ci["high"]).all()
    assert (ci["low"] > 0).all() and ci["mean_low"] > 0
    # identical forecasts: no difference and no spread
    same = skill.correlation_difference_interval(good, good, truth, blocks, n_boot=50)
    np.testing.assert_allclose([same["low"], same["high"]], 0.0, atol=1e-12)
    # two equally good forecasts: the interval straddles zero
    twin = truth + 0.5 * rng.standard_normal(truth.shape)
    tie = skill.correlation_difference_interval(good, twin, truth, blocks, n_boot=300)
    assert tie["mean_low"] < 0 < tie["mean_high"]


def test_compare_counts_leads_won_and_lost():
    rng = np.random.default_rng(3)
    n, leads = 2400, 24
    signal = rng.standard_normal((n, 1)) * np.ones((1, leads))
    truth = signal + rng.standard_normal((n, leads))
    # "resonet" sees the signal at every lead; "lim" only at leads 1..12, noise after.
    good = signal + 0.1 * rng.standard_normal((n, leads))
    half = good.copy()
    half[:, 12:] = rng.standard_normal((n, leads - 12))
    summary, sc = skill.compare(
        {"resonet": good, "lim": half}, truth, (np.arange(n) % 12) + 1, np.arange(n) // 12
    )
    b = summary["resonet_beats"]["lim"]
    assert b["of"] == 19 and b["leads_ge_6_won_at_90pct"] == 12
    assert b["leads_ge_6_lost_at_90pct"] == 0
    # corr(signal, signal + unit noise) = 1 / sqrt(2) at every lead
    assert summary["correlation"]["resonet"][9] == pytest.approx(2**-0.5, abs=0.03)
    frac = summary["fraction_of_optimal"]["resonet"]
    assert frac[9] == pytest.approx(
        summary["correlation"]["resonet"][9] / summary["optimal_correlation"][9], abs=1e-3
    )
    assert set(sc["system"].values) == {"resonet", "lim"}
