"""``just bench-data``: loader samples/s beside raw sequential Zarr read throughput.

Usage: ``python -m tellus.data.bench [STORE] [--batches N] [--batch-size B] [--workers W]``.
Without a store it uses ``data/atmosphere.zarr`` when built, else writes a mock store of the same
layout (64x128, 13 levels, 5 upper-air + 4 surface variables, 200 six-hourly times) to a
temporary folder. Both figures come from the same store in the same run, so the loader's
overhead over reading bytes off disk can be read directly.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import zarr
from pandas.tseries.frequencies import to_offset

from tellus.data import loader, mock, schema, sources, tasks, validation


def mock_store(path: Path) -> Path:
    """Writes the default benchmark store (WeatherBench2-like 64x128 layout)."""
    times = pd.date_range("2000-01-01", periods=200, freq="6h")
    ds = mock.mock_era5(
        times=times,
        levels=schema.PRESSURE_LEVELS_13,
        n_lat=64,
        n_lon=128,
        upper_air=tasks.ATMOSPHERE_UPPER_AIR,
        surface=tasks.ATMOSPHERE_SURFACE,
    )
    ds.chunk({"time": 1}).to_zarr(path, zarr_format=3, consolidated=False)
    return path


def raw_read_throughput(store: Path) -> tuple[float, float]:
    """Reads every array of the store write chunk by write chunk along time (a shard where the
    store has them, else a chunk); returns (MB, seconds)."""
    group = zarr.open_group(str(store), mode="r")
    total, start = 0, time.perf_counter()
    for _, array in group.arrays():
        if array.ndim < 3:
            continue
        step = (array.shards or array.chunks)[0]
        for i in range(0, array.shape[0], step):
            total += array[i : i + step].nbytes
    return total / 1e6, time.perf_counter() - start


def loader_throughput(
    store: Path, *, batches: int, batch_size: int, workers: int = 0
) -> tuple[float, float]:
    """Draws ``batches`` shuffled batches of atmosphere windows; returns (samples/s, MB/s)."""
    # The store's own step, so that hourly and 6-hourly stores both work.
    step = validation.time_step(sources.open_metadata(store)[schema.TIME].values)
    task = tasks.TaskConfig.atmosphere(
        time_step=to_offset(step).freqstr, lead_times=(step,), history=2, history_spacing=step
    )
    source = sources.WindowSource(store, task)
    config = loader.LoaderConfig(global_batch_size=batch_size, seed=0, worker_count=workers)
    it = iter(loader.make_loader(source, config, shard_index=0, shard_count=1))
    next(it)  # open readers, warm up
    nbytes, start = 0, time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        nbytes += sum(v.nbytes for v in batch.values())
    elapsed = time.perf_counter() - start
    del it  # Stops any worker processes now rather than at exit.
    return batches * batch_size / elapsed, nbytes / 1e6 / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", type=Path)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="grain worker processes")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            default = Path("data/atmosphere.zarr")
            store = default if default.exists() else mock_store(Path(tmp) / "bench.zarr")
        print(f"store: {store}")
        mb, seconds = raw_read_throughput(store)
        print(
            f"raw sequential zarr read: {mb:,.0f} MB in {seconds:.1f} s = {mb / seconds:,.0f} MB/s"
        )
        samples, rate = loader_throughput(
            store, batches=args.batches, batch_size=args.batch_size, workers=args.workers
        )
        print(
            f"grain loader (batch {args.batch_size}, shuffled, {args.workers} workers): "
            f"{samples:,.1f} samples/s = {rate:,.0f} MB/s of arrays"
        )
        print(f"loader / raw throughput: {rate / (mb / seconds):.2f}")


if __name__ == "__main__":
    main()
