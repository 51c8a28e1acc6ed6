"""Tests of the reconstruction MSEs on a 2 x 2 x 3 grid worked out by hand, with NaN and
1e30 over land, and of the spread-error relation against exact small cases and an
exchangeable ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tellus.evaluation import reconstruction

DIMS = ("time", "depth", "latitude", "longitude")
COORDS = {
    "time": np.array(["2000-01-01"], dtype="datetime64[ns]"),
    "depth": [10.0, 100.0],
    "latitude": [-10.0, 10.0],
    "longitude": [0.0, 120.0, 240.0],
}


def _da(values) -> xr.DataArray:
    return xr.DataArray(np.asarray(values, float)[None], dims=DIMS, coords=COORDS)


def _ocean() -> xr.DataArray:
    m = np.ones((2, 2, 3))
    m[:, 0, 0] = 0.0  # land at every depth
    m[1, 1, 2] = 0.0  # and under (10, 240) below the first level
    return xr.DataArray(m, dims=DIMS[1:], coords={k: COORDS[k] for k in DIMS[1:]})


def _obs(cells, values=None) -> xr.Dataset:
    mask = np.zeros((1, 2, 2, 3), bool)
    value = np.full((1, 2, 2, 3), np.nan)
    for n, (k, j, i) in enumerate(cells):
        mask[0, k, j, i] = True
        value[0, k, j, i] = 0.0 if values is None else values[n]
    return xr.Dataset({"value": (DIMS, value), "mask": (DIMS, mask)}, coords=COORDS)


@pytest.mark.parametrize("land", [np.nan, 1e30])
def test_the_three_mses_by_hand(land):
    ocean = _ocean().values
    truth = np.where(ocean > 0, 0.0, land)
    error = np.array([[[0, 1, 2], [3, -1, 0]], [[0, 2, 0], [0, 1, 0]]], float)
    field = np.where(ocean > 0, error, land)
    # Guidance: (0,0,1) obs 0, (0,1,1) obs 0.5, (1,0,1) obs 0, and a "point" on land
    # (0,0,0) with a huge value that must be ignored. Withheld: (0,1,0).
    guidance = _obs([(0, 0, 1), (0, 1, 1), (1, 0, 1), (0, 0, 0)], [0.0, 0.5, 0.0, 1e6])
    withheld = _obs([(0, 1, 0)])
    s = reconstruction.reconstruction_mse(
        _da(field), _da(truth), guidance, withheld, ocean=_ocean()
    )
    # Depth 10: ocean errors 1, 2, 3, -1, 0. Guidance: 1 and (-1 - 0.5) -> (1 + 2.25) / 2.
    # Withheld: 3 -> 9. Unobserved: 2, 3, 0 -> 13 / 3. Field: 15 / 5. Share 2 / 5.
    # Depth 100: ocean errors 2, 0, 0, 1. Guidance 2 -> 4; withheld none; unobserved
    # 0, 0, 1 -> 1 / 3; field 5 / 4; share 1 / 4.
    np.testing.assert_allclose(s.mse_guidance, [1.625, 4.0])
    np.testing.assert_allclose(s.mse_withheld, [9.0, np.nan])
    np.testing.assert_allclose(s.mse_unobserved, [13 / 3, 1 / 3])
    np.testing.assert_allclose(s.mse_field, [3.0, 1.25])
    np.testing.assert_allclose(s.share_guidance, [0.4, 0.25])
    np.testing.assert_allclose(s.total, [0.4 * 1.625 + 0.6 * 13 / 3, 0.25 * 4 + 0.75 / 3])
    np.testing.assert_array_equal(s.n_ocean, [5, 4])
    np.testing.assert_array_equal(s.n_guidance, [2, 1])
    pooled = reconstruction.reconstruction_mse(
        _da(field), _da(truth), guidance, withheld, ocean=_ocean(), per_depth=False
    )
    assert float(pooled.mse_guidance) == pytest.approx(7.25 / 3)
    assert float(pooled.mse_field) == pytest.approx(20 / 9)
    assert float(pooled.mse_withheld) == 9.0


def test_total_is_the_field_mse_when_observations_are_the_truth():
    rng = np.random.default_rng(0)
    ocean = _ocean().values
    truth = np.where(ocean > 0, rng.normal(size=ocean.shape), np.nan)
    field = np.where(ocean > 0, truth + rng.normal(size=ocean.shape), 1e30)
    cells = [(0, 0, 1), (0, 1, 2), (1, 1, 0)]
    guidance = _obs(cells, [truth[c] for c in cells])
    s = reconstruction.reconstruction_mse(
        _da(field), _da(truth), guidance, _obs([]), ocean=_ocean()
    )
    np.testing.assert_allclose(s.total, s.mse_field)
    # ReconMOST's reported split: 0.925 x 0.680 + 0.075 x 0.049 = 0.633.
    assert 0.925 * 0.680 + 0.075 * 0.049 == pytest.approx(0.633, abs=5e-4)


def test_a_nan_over_the_ocean_is_an_error_not_a_point_left_out():
    field = np.where(_ocean().values > 0, 0.0, np.nan)
    field[1, 0, 1] = np.nan
    with pytest.raises(ValueError, match="not finite at 1 ocean points"):
        reconstruction.reconstruction_mse(
            _da(field), _da(np.zeros_like(field)), _obs([]), _obs([]), ocean=_ocean()
        )


def _members(values) -> xr.DataArray:
    """[member, ...] samples on the tiny grid."""
    v = np.asarray(values, float)[:, None]
    return xr.DataArray(v, dims=("realization", *DIMS), coords=COORDS)


def test_spread_error_by_hand():
    ocean = _ocean().values
    truth = np.where(ocean > 0, 0.0, 1e30)
    a = np.where(ocean > 0, 1.0, 1e30)  # members 1 and 3 at every ocean point: variance 2
    b = np.where(ocean > 0, 3.0, np.nan)  # (ddof 1), ensemble mean 2, error 2
    s = reconstruction.spread_error(_members([a, b]), _da(truth), ocean=_ocean())
    np.testing.assert_allclose(s.spread, np.sqrt(2.0))
    np.testing.assert_allclose(s.rmse, 2.0)
    np.testing.assert_allclose(s.ratio, np.sqrt(1.5) * np.sqrt(2.0) / 2.0)
    np.testing.assert_array_equal(s.n, [5, 4])
    with pytest.raises(ValueError, match="at least 2 members"):
        reconstruction.spread_error(_members([a]), _da(truth), ocean=_ocean())


def test_an_exchangeable_ensemble_has_ratio_one():
    rng = np.random.default_rng(1)
    shape = (1, 2, 100, 150)
    coords = {
        "time": COORDS["time"],
        "depth": [10.0, 100.0],
        "latitude": np.linspace(-60, 60, 100),
        "longitude": np.arange(150) * 2.4,
    }
    sigma = rng.uniform(0.1, 2.0, size=shape)  # each point's own uncertainty
    truth = xr.DataArray(rng.normal(size=shape) * sigma, dims=DIMS, coords=coords)
    m = 4
    samples = xr.DataArray(
        rng.normal(size=(m, *shape)) * sigma, dims=("realization", *DIMS), coords=coords
    )
    ocean = xr.DataArray(np.ones(shape[1:]), dims=DIMS[1:], coords={k: coords[k] for k in DIMS[1:]})
    s = reconstruction.spread_error(samples, truth, ocean=ocean)
    np.testing.assert_allclose(s.ratio, 1.0, atol=0.04)  # 15 000 points a level
    # Binned by the ensemble's own spread, a few members' noisy spread selects points
    # (low bins: spread underestimated), so check the bins where it is accurate: three
    # classes of uncertainty, far apart, and 20 members.
    sigma = rng.permutation(np.repeat([0.2, 1.0, 5.0], sigma.size // 3)).reshape(shape)
    truth = truth.copy(data=rng.normal(size=shape) * sigma)
    m = 20
    samples = xr.DataArray(
        rng.normal(size=(m, *shape)) * sigma, dims=("realization", *DIMS), coords=coords
    )
    b = reconstruction.spread_error_bins(samples, truth, ocean=ocean, bins=3)
    np.testing.assert_array_equal(b.n, [10000] * 3)
    np.testing.assert_allclose(b.spread, [0.2, 1.0, 5.0], rtol=0.03)
    np.testing.assert_allclose(b.rmse / b.spread, np.sqrt((m + 1) / m), rtol=0.05)
