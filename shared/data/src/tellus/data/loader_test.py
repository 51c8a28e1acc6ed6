"""The grain loader: determinism, process sharding, checkpointable position."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tellus.data import loader, mock, sources, tasks


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> sources.WindowSource:
    times = pd.date_range("2020-01-01", periods=40, freq="6h")
    ds = mock.mock_era5(times=times, levels=(500, 850), n_lat=4, n_lon=8)
    path = tmp_path_factory.mktemp("loader") / "era5.zarr"
    ds.chunk({"time": 4}).to_zarr(path, consolidated=False, zarr_format=3)
    task = tasks.TaskConfig(
        input_variables=("temperature", "2m_temperature"),
        target_variables=("temperature",), static_variables=("land_sea_mask",),
        levels=(500, 850), time_step="6h", history_steps=1, history_spacing=1,
        lead_steps=(1,))
    return sources.WindowSource(path, task)


def _init_times(batches) -> list[list[int]]:
    return [b["init_time"].tolist() for b in batches]


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_batches_are_shaped_and_seeded(source):
    config = loader.LoaderConfig(global_batch_size=4, seed=7, num_epochs=1)
    a = list(loader.make_loader(source, config, shard_index=0, shard_count=1))
    b = list(loader.make_loader(source, config, shard_index=0, shard_count=1))
    assert len(a) == loader.steps_per_epoch(len(source), 4) == len(source) // 4
    assert a[0]["inputs"].shape == (4, 1, 4, 8, 2 + 1)
    assert a[0]["targets"].shape == (4, 1, 4, 8, 2)
    assert _init_times(a) == _init_times(b)  # same seed, same order
    other = list(loader.make_loader(source, loader.LoaderConfig(4, seed=8, num_epochs=1),
                                    shard_index=0, shard_count=1))
    assert _init_times(a) != _init_times(other)
    # One epoch visits distinct windows, in a shuffled (not the stored) order.
    seen = np.concatenate([x["init_time"] for x in a])
    assert len(set(seen.tolist())) == len(seen)
    assert not np.all(np.diff(seen) > 0)


def test_two_processes_split_each_global_batch(source):
    config = loader.LoaderConfig(global_batch_size=4, seed=3, num_epochs=1)
    whole = list(loader.make_loader(source, config, shard_index=0, shard_count=1))
    parts = [list(loader.make_loader(source, config, shard_index=p, shard_count=2))
             for p in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for k, batch in enumerate(whole):
        p0, p1 = parts[0][k]["init_time"], parts[1][k]["init_time"]
        assert len(p0) == len(p1) == 2
        assert not set(p0.tolist()) & set(p1.tolist())  # disjoint
        assert sorted(p0.tolist() + p1.tolist()) == sorted(batch["init_time"].tolist())
    with pytest.raises(ValueError, match="global_batch_size 5 does not divide among 2"):
        loader.make_loader(source, loader.LoaderConfig(5), shard_index=0, shard_count=2)


def test_restored_iterator_continues_on_the_same_batch(source):
    config = loader.LoaderConfig(global_batch_size=2, seed=11, num_epochs=3)
    it = iter(loader.make_loader(source, config, shard_index=0, shard_count=1))
    _take(it, 5)
    state = it.get_state()
    expected = _take(it, 6)  # crosses into the next epoch
    fresh = iter(loader.make_loader(source, config, shard_index=0, shard_count=1))
    fresh.set_state(state)
    got = _take(fresh, 6)
    assert _init_times(got) == _init_times(expected)
    np.testing.assert_array_equal(got[-1]["inputs"], expected[-1]["inputs"])


def test_bad_config():
    with pytest.raises(ValueError, match="global_batch_size must be >= 1"):
        loader.LoaderConfig(0)
    with pytest.raises(ValueError, match="give both shard_index and shard_count"):
        loader.shard_options(0, None)
