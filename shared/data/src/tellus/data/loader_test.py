"""Tests of the grain pipeline: epochs, determinism, sharding, resuming."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tellus.data import loader, mock, sources, tasks


class _IndexSource:
    """Sample ``i`` is ``{"init_time": i, "x": [i, -i]}``: which sample came out is visible."""

    def __init__(self, n: int):
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int):
        return {"init_time": np.int64(i), "x": np.array([i, -i], np.float32)}

    def __repr__(self) -> str:
        return f"_IndexSource({self._n})"


def _ids(batches) -> list[list[int]]:
    return [b["init_time"].tolist() for b in batches]


def _take(it, n: int) -> list[dict]:
    return [next(it) for _ in range(n)]


def test_one_epoch_visits_every_sample_once():
    cfg = loader.LoaderConfig(global_batch_size=4, seed=3, num_epochs=1)
    batches = list(loader.make_loader(_IndexSource(24), cfg, shard_index=0, shard_count=1))
    assert len(batches) == loader.steps_per_epoch(24, 4) == 6
    ids = np.concatenate(_ids(batches))
    assert sorted(ids) == list(range(24))
    assert ids.tolist() != list(range(24))  # Shuffled.
    np.testing.assert_array_equal(batches[0]["x"][:, 1], -batches[0]["init_time"])
    assert batches[0]["x"].shape == (4, 2)


def test_same_seed_same_order_and_epochs_reshuffle():
    def order(seed):
        cfg = loader.LoaderConfig(global_batch_size=4, seed=seed, num_epochs=2)
        return _ids(loader.make_loader(_IndexSource(12), cfg, shard_index=0, shard_count=1))

    a = order(7)
    assert a == order(7)
    assert a != order(8)
    first, second = np.concatenate(a[:3]), np.concatenate(a[3:])
    assert sorted(first) == sorted(second) == list(range(12))
    assert first.tolist() != second.tolist()


def test_two_processes_split_each_global_batch():
    cfg = loader.LoaderConfig(global_batch_size=6, seed=1, num_epochs=1)
    source = _IndexSource(30)
    whole = _ids(loader.make_loader(source, cfg, shard_index=0, shard_count=1))
    shards = [_ids(loader.make_loader(source, cfg, shard_index=i, shard_count=2)) for i in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(whole) == 5
    for step, global_batch in enumerate(whole):
        a, b = shards[0][step], shards[1][step]
        assert len(a) == len(b) == 3
        assert not set(a) & set(b)
        assert set(a) | set(b) == set(global_batch)
    seen = [i for s in shards for batch in s for i in batch]
    assert sorted(seen) == list(range(30))


def test_resume_from_saved_state_continues_on_the_same_batches():
    cfg = loader.LoaderConfig(global_batch_size=4, seed=5)  # Endless.
    source = _IndexSource(10)
    it = iter(loader.make_loader(source, cfg, shard_index=1, shard_count=2))
    _take(it, 7)  # Crosses an epoch boundary.
    state = it.get_state()
    expected = _ids(_take(it, 5))
    resumed = iter(loader.make_loader(source, cfg, shard_index=1, shard_count=2))
    resumed.set_state(state)
    assert _ids(_take(resumed, 5)) == expected


def test_config_errors():
    with pytest.raises(ValueError, match="does not divide"):
        loader.make_loader(
            _IndexSource(8), loader.LoaderConfig(global_batch_size=3), shard_index=0, shard_count=2
        )
    with pytest.raises(ValueError, match="both shard_index and shard_count"):
        loader.shard_options(shard_index=0)
    with pytest.raises(ValueError, match="seed"):
        loader.LoaderConfig(global_batch_size=1, seed=-1)


def test_default_sharding_follows_jax():
    options = loader.shard_options()
    assert (options.shard_index, options.shard_count) == (0, 1)  # A single JAX process.


def test_window_source_batches_resume(tmp_path):
    ds = mock.mock_era5(times=pd.date_range("2020-01-01", periods=20, freq="6h"), n_lat=4, n_lon=8)
    ds.to_zarr(tmp_path / "s.zarr", consolidated=False)
    task = tasks.TaskConfig(
        input_variables=("temperature", "2m_temperature"),
        target_variables=("temperature",),
        levels=(500, 850),
        forcing_variables=(tasks.YEAR_PROGRESS_SIN,),
        static_variables=("land_sea_mask",),
        time_step="6h",
        history_steps=2,
        lead_steps=(1, 2),
    )
    source = sources.WindowSource(tmp_path / "s.zarr", task)
    cfg = loader.LoaderConfig(global_batch_size=4, seed=0)
    it = iter(loader.make_loader(source, cfg, shard_index=0, shard_count=1))
    batch = next(it)
    assert batch["inputs"].shape == (4, 2, 4, 8, 3)
    assert batch["targets"].shape == (4, 2, 4, 8, 2)
    assert batch["forcings"].shape == (4, 4, 4, 8, 1)
    assert batch["statics"].shape == (4, 4, 8, 1)
    assert batch["init_time"].dtype == np.int64
    for k, t in enumerate(batch["init_time"]):
        i = int(np.flatnonzero(source.init_times.asi8 == t)[0])
        np.testing.assert_array_equal(batch["inputs"][k], source[i]["inputs"])
    state = it.get_state()
    want = next(it)
    resumed = iter(loader.make_loader(source, cfg, shard_index=0, shard_count=1))
    resumed.set_state(state)
    got = next(resumed)
    for key in sources.SAMPLE_KEYS:
        np.testing.assert_array_equal(got[key], want[key])
