"""The foundation-model study's data: the stores of the embedded worlds it reads (and the
two it adds, a coarsened atmosphere and a long independent ENSO draw), its pretraining
and fine-tuning tasks at a share of their training periods, and a model's forecasts on
them for scoring (:mod:`tellus.pipelines.fm_study` runs the study; ``tellus demo`` and
``tellus bench`` use the same tasks).

Variables are WeatherBench2 / CF names; levels in hPa (atmosphere) or m (ocean); the
fine-tuning tasks' ``share`` is the first share of the training period, at least two
steps.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer

ATMOSPHERE = (
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
    "2m_temperature",
    "mean_sea_level_pressure",
)
OCEAN = ("sea_water_potential_temperature", "sea_water_salinity", "sea_surface_height")
ENSO = ("sea_surface_temperature_anomaly", "ocean_heat_content_anomaly")
ATMOSPHERE_LEVELS = (250.0, 500.0, 850.0)
OCEAN_LEVELS = (31.5, 157.5, 409.5, 580.5)
ATMOSPHERE_TRAIN_END, ATMOSPHERE_TEST_START = "2000-09-30", "2000-10-28"
OCEAN_TRAIN = ("2000-01-01", "2003-12-01")
OCEAN_TEST_INITS = ("2005-01-01", "2006-12-01")
ENSO_TRAIN = ("1850-01-01", "1949-12-01")
ENSO_LEADS = 24
OCEAN_LEADS = 12


def study_stores(data: Path, long_years: int) -> dict[str, str]:
    """The stores of the study under ``data`` (the embedded worlds' and the study's own)."""
    return {
        "atmosphere": str(data / "atmosphere.zarr"),
        "atmosphere_coarse": str(data / "fm_study" / "atmosphere_coarse.zarr"),
        "ocean_model": str(data / "ocean" / "model.zarr"),
        "ocean_observed": str(data / "ocean" / "observed.zarr"),
        "enso_model": str(data / "enso" / "model.zarr"),
        "enso_observed": str(data / "enso" / "observed.zarr"),
        "enso_long": str(data / "fm_study" / f"enso_long_test_{long_years}y.zarr"),
    }


def prepare_stores(stores: dict[str, str], long_years: int) -> None:
    """Builds what the study adds to the embedded data: the coarsened atmosphere and the
    long independent ENSO draw (each once)."""
    from tellus.data import validation, writing

    coarse = Path(stores["atmosphere_coarse"])
    if not coarse.exists():
        ds = validation.open_dataset(stores["atmosphere"])
        ds = ds.coarsen(latitude=2, longitude=2).mean(keep_attrs=True)
        for v in ds.variables.values():
            v.encoding = {}
        tmp = coarse.with_suffix(".tmp.zarr")
        ds.chunk({"time": 64}).to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
        tmp.rename(coarse)
        typer.echo(f"wrote {coarse}: {dict(ds.sizes)}")
    long = Path(stores["enso_long"])
    if not (long.exists() and writing.is_complete(long)):  # a killed build resumes
        from tellus.enso import skill, world

        world.build_world(
            "observed", long_years, seed=skill.LONG_TEST_SEED, path=long, progress=True
        )


def _share_stop(start: str, stop: str, share: float, freq: str) -> str:
    times = pd.date_range(start, stop, freq=freq)
    n = max(round(share * len(times)), 2)
    return str(times[min(n, len(times)) - 1].date())


def task_data(name: str, stores: dict[str, str], share: float = 1.0):
    """The :class:`StoreData` of a fine-tuning task at a share of its training data."""
    from tellus.training.pretraining import StoreData

    if name == "enso":
        stop = _share_stop(*ENSO_TRAIN, share, "MS")
        return StoreData(
            "enso",
            "enso",
            stores["enso_observed"],
            ENSO,
            lead=ENSO_LEADS,
            index="nino34",
            start=ENSO_TRAIN[0],
            stop=stop,
        )
    if name == "ocean":
        stop = _share_stop(*OCEAN_TRAIN, share, "MS")
        return StoreData(
            "ocean",
            "ocean",
            stores["ocean_observed"],
            OCEAN,
            OCEAN_LEVELS,
            1,
            start=OCEAN_TRAIN[0],
            stop=stop,
        )
    if name == "atmosphere_coarse":
        stop = _share_stop("2000-01-01", ATMOSPHERE_TRAIN_END, share, "6h")
        return StoreData(
            "atmosphere_coarse",
            "atmosphere",
            stores["atmosphere_coarse"],
            ATMOSPHERE,
            ATMOSPHERE_LEVELS,
            4,
            start="2000-01-01",
            stop=stop,
        )
    raise ValueError(f"unknown study task {name!r}")


def pretraining_data(stores: dict[str, str], only: str | None = None):
    """The pretraining tasks (``only``: one domain's, for a control)."""
    from tellus.training.pretraining import StoreData

    data = {
        "atmosphere": StoreData(
            "atmosphere",
            "atmosphere",
            stores["atmosphere"],
            ATMOSPHERE,
            ATMOSPHERE_LEVELS,
            4,
            stop=ATMOSPHERE_TRAIN_END,
        ),
        "ocean": StoreData("ocean", "ocean", stores["ocean_model"], OCEAN, OCEAN_LEVELS, 1),
        "enso": StoreData("enso", "enso", stores["enso_model"], ENSO, lead=1),
    }
    return [data[only]] if only else list(data.values())


_JITTED: dict[int, Callable] = {}


def predict_task(model, task, batches) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """The task's (normalized) predictions and targets of every batch, on the host (one
    compiled program per task object: every checkpoint of a run reuses it)."""
    from flax import nnx

    run = _JITTED.setdefault(id(task), nnx.jit(lambda m, b: task(m, b)))
    out = []
    for b in batches:
        pred, target = run(model, b)
        out.append(
            (
                {k: np.asarray(v) for k, v in pred.items()},
                {k: np.asarray(v) for k, v in target.items()},
            )
        )
    return out


_TASKS: dict[str, Any] = {}


def open_task(data, norms):
    """The EarthTask of ``data`` with ``norms``, opened once per study process."""
    from tellus.training import pretraining as pt

    key = json.dumps([dataclasses.asdict(data), norms], sort_keys=True, default=str)
    if key not in _TASKS:
        (_TASKS[key],) = pt.open_tasks([data], {data.name: norms})
    return _TASKS[key]


def window_batches(task, indices: np.ndarray, batch: int, keys: tuple[str, ...]):
    """Batches of the task's windows ``indices`` (the last one padded by repetition; the
    caller drops the padding)."""
    import jax.numpy as jnp

    for i in range(0, len(indices), batch):
        idx = list(indices[i : i + batch])
        idx += [idx[-1]] * (batch - len(idx))
        samples = [task.source[int(j)] for j in idx]
        yield {k: jnp.asarray(np.stack([s[k] for s in samples])) for k in keys}


def enso_forecasts(model, norms, stores, years: int | None = None):
    """Nino3.4 forecasts ``[N, 24]`` (K), the truth and the start years on the long draw."""
    from tellus.training import pretraining as pt

    data = dataclasses.replace(
        task_data("enso", stores), store=stores["enso_long"], start=None, stop=None
    )
    task = open_task(data, norms)  # once per run: its checkpoints share one program
    inits = task.source.init_times
    idx = np.arange(len(task.source))
    if years is not None:
        idx = idx[inits.year < inits.year[0] + years]
    out = predict_task(model, task, window_batches(task, idx, 64, (pt.INPUTS, pt.DERIVED)))
    fc = np.concatenate([p["enso"] for p, _ in out])[: len(idx)] * task.index_std
    truth = np.concatenate([t["enso"] for _, t in out])[: len(idx)] * task.index_std
    return fc, truth, np.asarray(inits.year)[idx]


def field_errors(model, norms, data, inits: tuple[str, str], leads: int):
    """Each start's latitude-weighted MSE over the valid cells in normalized units at leads
    1..``leads`` (a rollout of the one-step task; ``model`` None: persistence),
    ``[N, leads]``; the same per channel in physical units, ``[N, leads, C]``; the start
    times."""
    import jax.numpy as jnp
    from flax import nnx

    from tellus.training import pretraining as pt

    whole = dataclasses.replace(data, start=None, stop=None)
    by_lead = [
        pt.open_tasks([dataclasses.replace(whole, lead=data.lead * k)], {data.name: norms})[0]
        for k in range(1, leads + 1)
    ]
    task = by_lead[0]
    lo, hi = (pd.Timestamp(t) for t in inits)
    starts = [t for t in task.source.init_times if lo <= t <= hi]
    where = [{t: i for i, t in enumerate(tk.source.init_times)} for tk in by_lead]
    w_lat = jnp.asarray(task.latitude_weights)[:, None]

    @nnx.jit
    def step(m, x):  # normalized state -> the state one task lead later (land zero)
        b = next(iter(x.values())).shape[0]
        pred = m(
            x,
            task.grid,
            levels=task.levels,
            lead_hours=jnp.full((b,), task.lead_hours, jnp.float32),
            domain=task.data.domain,
            mask=task.mask,
            cell_masks=task.cell_masks(),
        )
        return {k: jnp.where(jnp.asarray(task.valid[k])[None], v, 0.0) for k, v in pred.items()}

    @jax_jit
    def mse(p, t):
        total, count, channels = 0.0, 0.0, []
        # The layout's order, as task.std's (a dict through jit comes back with sorted keys).
        for k in task.layout.slices():
            w = jnp.asarray(task.valid[k], jnp.float32) * w_lat
            sq = w * (p[k] - t[k]) ** 2
            total = total + jnp.sum(sq, axis=tuple(range(1, p[k].ndim)))
            count = count + jnp.sum(w)
            if p[k].ndim == 4:
                channels.append(sq.sum((2, 3)) / w.sum((1, 2)))
            else:
                channels.append((sq.sum((1, 2)) / w.sum())[:, None])
        return total / count, jnp.concatenate(channels, 1)

    errs, per_channel = [], []
    for i in range(0, len(starts), 8):
        chunk = starts[i : i + 8]
        n = len(chunk)
        chunk = chunk + [chunk[-1]] * (8 - n)  # one batch shape: one compile
        x = task.fields(
            jnp.asarray(np.stack([task.source[where[0][t]][pt.INPUTS][0] for t in chunk]))
        )
        e, c = [], []
        for k, tk in enumerate(by_lead):
            x = step(model, x) if model is not None else x
            y = np.stack([tk.source[where[k][t]][pt.TARGETS][0] for t in chunk])
            total, channels = mse(x, tk.fields(jnp.asarray(y)))
            e.append(np.asarray(total)[:n])
            c.append(np.asarray(channels)[:n] * task.std**2)
        errs.append(np.stack(e, 1))
        per_channel.append(np.stack(c, 1))
    return np.concatenate(errs), np.concatenate(per_channel), pd.DatetimeIndex(starts)


def jax_jit(fn):
    """``jax.jit``, imported when first needed (the CLI starts without JAX)."""
    import jax

    return jax.jit(fn)


__all__ = [
    "ATMOSPHERE",
    "ATMOSPHERE_LEVELS",
    "ATMOSPHERE_TEST_START",
    "ATMOSPHERE_TRAIN_END",
    "ENSO",
    "ENSO_LEADS",
    "ENSO_TRAIN",
    "OCEAN",
    "OCEAN_LEADS",
    "OCEAN_LEVELS",
    "OCEAN_TEST_INITS",
    "OCEAN_TRAIN",
    "enso_forecasts",
    "field_errors",
    "jax_jit",
    "open_task",
    "predict_task",
    "prepare_stores",
    "pretraining_data",
    "study_stores",
    "task_data",
    "window_batches",
]
