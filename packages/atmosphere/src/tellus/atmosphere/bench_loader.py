"""Does loading overlap the training step? ``just bench-loader``.

Trains the same atmosphere model for the same steps three times in one run and prints the
wall time of the steady-state steps (the compiled step's first call excluded):

* ``memory``: batches already in memory (a fixed set of stacked host arrays, cycled);
* ``loader, in the loop``: the shared grain loader read in the training loop (``fit``'s
  ``prefetch=0``: how training read its batches before the read-ahead thread);
* ``loader, read ahead``: the same loader read two batches ahead in a background thread
  and placed on the device there (``fit``'s default).

The issue's bar: the read-ahead run within 5 % of the in-memory one. Figures go to
``docs/performance.md``; ``--json`` writes them for comparison across commits.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tellus.atmosphere import config, train
from tellus.atmosphere import forecaster as fc
from tellus.data import mock, schema, sources
from tellus.training import config as train_config
from tellus.training import trainer


class InMemory:
    """A stream cycling through batches held in memory; its state is the next index."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches = batches
        self.i = 0

    def __next__(self) -> dict[str, np.ndarray]:
        b = self.batches[self.i % len(self.batches)]
        self.i += 1
        return b

    def state_dict(self) -> dict[str, Any]:
        return {"i": self.i}

    def load_state_dict(self, state) -> None:
        self.i = int(state["i"])


def mock_store(path: Path, n_lat: int = 32, n_lon: int = 64, n_times: int = 240) -> str:
    """A 6-hourly mock store with every Pangu variable on the 13 levels."""
    ds = mock.mock_era5(
        times=pd.date_range("2000-01-01", periods=n_times, freq="6h"),
        levels=schema.PRESSURE_LEVELS_13,
        n_lat=n_lat,
        n_lon=n_lon,
        upper_air=fc.UPPER_VARIABLES,
        surface=fc.SURFACE_VARIABLES,
        static=fc.STATIC_VARIABLES,
        noise=0.02,
    )
    ds["specific_humidity"] = ds["specific_humidity"].clip(0.0, 0.02)
    return mock.write_store(ds, str(path), step="6h")


def run(store: str, steps: int, batch: int, preset: str, workdir: Path) -> dict[str, Any]:
    """The three timings (seconds for ``steps`` steady-state steps) and their ratios."""
    model = config.preset(preset)
    splits = train.Splits.for_store(store)
    fcfg = train.make_forecaster_config(store, 24, model, splits.train, n_increment_samples=32)
    task = fc.task_for(24, train.store_time_step(store))
    src = sources.WindowSource(store, task, splits.train)
    tcfg = train_config.warmup_cosine(steps + 1, batch, train.PEAK_LEARNING_RATE, checkpoints=1)
    rng = np.random.default_rng(0)
    held = [
        {
            k: np.stack([src[int(j)][k] for j in rng.choice(len(src), batch, replace=False)])
            for k in train.BATCH_KEYS
        }
        for _ in range(8)
    ]
    runs = {
        "memory": (lambda: InMemory(held), 2),
        "loader, in the loop": (lambda: train.batches(src, batch, seed=0), 0),
        "loader, read ahead": (lambda: train.batches(src, batch, seed=0), 2),
    }
    seconds = {}
    for name, (make, depth) in runs.items():
        marks: list[float] = []
        trainer.fit(
            fc.make_forecaster,
            fcfg,
            tcfg,
            trainer.TrainDomain("atmosphere", fc.loss_fn, make(), batch_size=batch),
            workdir / name.replace(" ", "_").replace(",", ""),
            show_progress=False,
            prefetch=depth,
            on_step=lambda step, m, marks=marks: marks.append(time.perf_counter()),
        )
        seconds[name] = marks[-1] - marks[0]  # steps 1..steps: the first call compiles
        print(
            f"{name:22s} {seconds[name]:7.2f} s for {steps} steps "
            f"({seconds[name] / steps * 1e3:.0f} ms a step)",
            flush=True,
        )
    base = seconds["memory"]
    out = {
        "store": store,
        "preset": preset,
        "batch": batch,
        "steps": steps,
        "windows": len(src),
        "seconds": seconds,
        "ratio_to_memory": {k: v / base for k, v in seconds.items()},
    }
    for k, v in out["ratio_to_memory"].items():
        print(f"{k:22s} {v:6.3f} x the in-memory time")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", help="a Pangu store (default: the embedded one, or a mock)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = a.store
        if store is None:
            default = Path("data/atmosphere.zarr")
            store = str(default) if default.exists() else mock_store(Path(tmp) / "mock.zarr")
        out = run(store, a.steps, a.batch, a.preset, Path(tmp))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
