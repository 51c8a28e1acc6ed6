import numpy as np
import pytest

from tellus.evaluation import bootstrap


def test_rmse_difference_by_hand_and_its_interval():
    # Two blocks of two starts: resamples weight each block 0, 1 or 2 times.
    a = np.array([1.0, 1.0, 4.0, 4.0])  # squared errors
    b = np.array([1.0, 1.0, 1.0, 1.0])
    out = bootstrap.rmse_difference(a, b, np.array([0, 0, 1, 1]), n_boot=400, level=0.9)
    assert out.diff == pytest.approx(np.sqrt(2.5) - 1.0)
    # The only resampled values: both blocks the first (0), both the second (1), one each.
    assert out.mean_low == pytest.approx(0.0) and out.mean_high == pytest.approx(1.0)
    assert not out.separated
    sure = bootstrap.rmse_difference(a + 1, b, np.array([0, 0, 1, 1]), n_boot=200)
    assert sure.separated and sure.mean_low > 0


def test_correlation_difference_against_numpy():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((60, 3))
    fa = truth + 0.5 * rng.standard_normal((60, 3))
    fb = truth + 1.5 * rng.standard_normal((60, 3))
    blocks = np.repeat(np.arange(12), 5)
    out = bootstrap.correlation_difference(fa, fb, truth, blocks, n_boot=300, seed=3)
    corr = lambda f: np.array([np.corrcoef(f[:, k], truth[:, k])[0, 1] for k in range(3)])  # noqa: E731
    np.testing.assert_allclose(out.diff, corr(fa) - corr(fb), rtol=1e-10)
    assert np.all(out.low <= out.diff) and np.all(out.diff <= out.high)
    assert out.separated and out.mean_low > 0  # 0.9 against 0.55: 60 starts tell them apart


def test_bad_blocks_are_refused():
    with pytest.raises(ValueError, match="one block label per start"):
        bootstrap.rmse_difference(np.ones(3), np.ones(3), np.zeros(2))
    with pytest.raises(ValueError, match="at least 2 blocks"):
        bootstrap.rmse_difference(np.ones(3), np.ones(3), np.zeros(3))
