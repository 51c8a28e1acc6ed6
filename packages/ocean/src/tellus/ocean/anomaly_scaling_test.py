"""The anomaly units by hand: the climatology and per-depth scale of a store's months, and
the round trip through them with land NaN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tellus.data import sources
from tellus.ocean import anomaly_scaling, recon_domain
from tellus.ocean.recon_test import make_store


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    store = make_store(tmp_path_factory.mktemp("scaling") / "run.zarr", months=24, seed=2)
    samples = recon_domain.Samples(store)
    samples.store = store
    return samples


def test_climatology_and_scale_by_hand(source):
    s = anomaly_scaling.AnomalyScaling.fit(source)
    field = np.asarray(source.field.values, np.float64)  # [time, lat, lon, depth]
    ocean = source.ocean
    # Two years: each calendar month's climatology is the mean of its two months.
    want = 0.5 * (field[2] + field[14])  # March
    np.testing.assert_allclose(np.moveaxis(s.climatology[2], 0, -1)[ocean], want[ocean], rtol=1e-6)
    assert np.all(np.isnan(np.moveaxis(s.climatology[2], 0, -1)[~ocean]))
    # The anomaly of a two-year climatology is +-half the difference of the two years.
    half = 0.5 * (field[:12] - field[12:])
    for k in range(field.shape[-1]):
        wet = ocean[..., k]
        rms = np.sqrt(np.mean(half[:, wet, k] ** 2))
        np.testing.assert_allclose(s.std[k], rms, rtol=1e-6)


def test_round_trip_and_units(source):
    s = anomaly_scaling.AnomalyScaling.fit(source)
    t = np.moveaxis(np.asarray(source.field.values[:3]), -1, 1)  # [time, depth, lat, lon]
    months = np.array([1, 2, 3])
    x = s.encode(t, months)
    ocean = np.moveaxis(source.ocean, -1, 0)
    assert np.all(x[:, ~ocean] == 0.0)  # land is 0
    back = s.decode(x, months)
    np.testing.assert_allclose(back[:, ocean], t[:, ocean], atol=1e-4)
    assert np.all(np.isnan(back[:, ~ocean]))
    # One standard deviation of level k is 1 / width.
    one = s.climatology[:3] + s.std[None, :, None, None]
    np.testing.assert_allclose(s.encode(one, months)[:, ocean], 1.0 / s.width, rtol=1e-5)
    # The sampler's bound is CLIP_STD standard deviations in any width.
    assert s.width == 1.0 and s.clip == anomaly_scaling.CLIP_STD
    assert dataclasses.replace(s, width=8.0).clip == anomaly_scaling.CLIP_STD / 8.0
    sample = anomaly_scaling.AnomalySamples(source, s)[0]
    np.testing.assert_allclose(np.moveaxis(sample["x0"], -1, 0), x[0], atol=1e-6)
    with pytest.raises(ValueError, match="calendar months"):
        s.encode(t, np.array([0, 1, 2]))
    # Another's scale: the climatology is this source's, the scale the one given.
    given = anomaly_scaling.AnomalyScaling.fit(source, std=2.0 * s.std)
    np.testing.assert_array_equal(given.climatology, s.climatology)
    np.testing.assert_allclose(given.std, 2.0 * s.std)


def test_save_load_and_missing_months(source, tmp_path):
    s = anomaly_scaling.AnomalyScaling.fit(source)
    s.save(tmp_path / anomaly_scaling.FILE)
    back = anomaly_scaling.AnomalyScaling.of(tmp_path)
    np.testing.assert_array_equal(back.climatology, s.climatology)
    np.testing.assert_array_equal(back.std, s.std)
    assert anomaly_scaling.AnomalyScaling.of(tmp_path / "none") is None
    short = recon_domain.Samples(source.store, sources.DateRange("2001-01-01", "2001-07-01"))
    with pytest.raises(ValueError, match="every calendar month"):
        anomaly_scaling.AnomalyScaling.fit(short)
