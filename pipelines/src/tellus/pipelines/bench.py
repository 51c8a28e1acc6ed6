"""``tellus bench`` (``just bench``): every model against this machine's own limits, in one
run, printed and written to JSON so that commits can be compared.

Parts (each a library's own benchmark, run in this one process so that every ratio uses the
matmul rate measured the same minute):

* ``atmosphere``: :mod:`tellus.atmosphere.bench` (the reference Pangu step and its target,
  GEMMs at the model's shapes, the CPU preset's training and inference, 10-day forecasts
  of 1 and 8 members);
* ``enso``: the ResoNet forecaster's training step and forward pass at its CPU preset;
* ``ocean``: :mod:`tellus.ocean.bench` (the ORCA-DL-style forecaster and the diffusion
  denoiser);
* ``earth``: the tiny Earth foundation model's training step on the demo's atmosphere task
  (32 x 64, 6 variables, 3 levels, a day ahead) and its ENSO index task (24 x 72, Nino3.4
  at 24 leads), built from their shapes (:func:`tellus.training.targets.earth`);
* ``loader``: :mod:`tellus.data.bench` (the grain loader's samples/s against raw Zarr read
  and decode of the same store, and against the atmosphere CPU step's consumption);
* ``pruning`` (not run unless named: it adds about 2 minutes): the attention layers' share
  of the atmosphere training step and the speedup of removing 40 % of them
  (:func:`tellus.atmosphere.prune.attention_share`), at the CPU preset (the blocks the
  entropy removes in ``just prune-study``) and at the reference shape (6 of 16 blocks
  spread through the trunk).

``--out`` (default ``runs/bench``) gets ``bench.json``; a ``bench.json`` already there is
kept as ``previous.json`` and every headline figure is printed with its ratio to it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tellus.pipelines import checks

PARTS = ("atmosphere", "enso", "ocean", "earth", "loader")
OPTIONAL = ("pruning",)
"""Parts run only when ``--parts`` names them."""
PRUNED_CPU = (1, 2, 4)
"""The blocks the entropy removes from the ``cpu`` preset's lead model at 40 %, one at a
time (``docs/performance.md``, the pruning table)."""


def enso_figures(peak: float, repeats: int = 3) -> dict[str, Any]:
    """The ResoNet CPU preset (``small``): training step (batch 32) and forward pass."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from tellus.enso import model, train
    from tellus.training import benchmarking

    cfg = model.preset("small")
    b = 32
    rng = np.random.default_rng(0)
    batch = {
        "x": rng.standard_normal((b, cfg.history, cfg.n_vars, cfg.n_lat, cfg.n_lon)).astype(
            np.float32
        ),
        "month": rng.integers(1, 13, b).astype(np.int32),
        "y": rng.standard_normal((b, cfg.n_leads)).astype(np.float32),
    }
    out = {
        "train": benchmarking.train_step_figures(
            model.make_model(cfg),
            lambda m, batch, rng=None: train.loss_fn(m, batch),
            batch,
            b,
            peak=peak,
            repeats=repeats,
        )
    }
    m = model.make_model(cfg)
    f = nnx.jit(lambda m, x, month: m(x, month))
    x, month = jnp.asarray(batch["x"]), jnp.asarray(batch["month"])
    jax.block_until_ready(f(m, x, month))
    t = benchmarking.time_calls(lambda: f(m, x, month), repeats=repeats, warmup=0)
    out["infer"] = {"samples_per_s": b / t["median_s"], "batch": b}
    return out


def earth_figures(peak: float, batch: int = 4, repeats: int = 3) -> dict[str, Any]:
    """The tiny Earth model's training step on two of the demo's tasks, from their shapes."""
    import dataclasses

    import numpy as np
    from flax import nnx

    from tellus.kernels import earth_model as em
    from tellus.pipelines import fm_tasks
    from tellus.training import benchmarking, targets

    stores = fm_tasks.study_stores(Path("data"), 300)
    tasks = {
        "atmosphere": (fm_tasks.pretraining_data(stores, "atmosphere")[0], (32, 64), 24.0),
        "enso": (fm_tasks.task_data("enso", stores), (24, 72), 0.0),
    }
    out = {}
    for name, (data, grid, lead_hours) in tasks.items():
        spec = {
            "name": name,
            "model": em.preset("tiny").to_dict(),
            "task": dataclasses.asdict(data),
            "grid": list(grid),
            "levels": {v: list(data.levels) for v in data.variables if data.levels},
            "lead_hours": lead_hours,
        }
        target = targets.earth(spec)
        with nnx.use_eager_sharding(False):
            model = target.make_model(False)
        rng = np.random.default_rng(0)
        sample = {
            k: rng.standard_normal(shape).astype(dtype)
            for k, (shape, dtype, _) in target.batch(batch).items()
        }
        out[name] = benchmarking.train_step_figures(
            model, target.loss_fn, sample, batch, peak=peak, repeats=repeats
        )
    return out


def loader_figures(consumed_per_s: float | None) -> dict[str, Any]:
    """The loader against raw Zarr on the embedded atmosphere store (or a mock one)."""
    from tellus.data import bench as data_bench
    from tellus.pipelines import paths

    store = paths.default_store("atmosphere")
    with tempfile.TemporaryDirectory() as tmp:
        if not store.exists():
            store = data_bench.mock_store(Path(tmp) / "mock.zarr")
        raw_mb, raw_s = data_bench.raw_read_throughput(store)
        samples_s, loader_mb_s = data_bench.loader_throughput(store, batches=20, batch_size=8)
    out = {
        "store": str(store),
        "raw_read_mb_per_s": raw_mb / raw_s,
        "loader_mb_per_s": loader_mb_s,
        "loader_samples_per_s": samples_s,
        "loader_over_raw": loader_mb_s / (raw_mb / raw_s),
    }
    if consumed_per_s:
        out["model_consumes_samples_per_s"] = consumed_per_s
        out["loader_over_consumption"] = samples_s / consumed_per_s
    return out


def headline(res: dict[str, Any]) -> dict[str, float]:
    """The figures compared across runs: ``{name: value}`` (higher is better for rates,
    lower for times)."""
    out: dict[str, float] = {"matmul GFLOP/s": res["matmul_flops_per_s"] / 1e9}
    a = res.get("atmosphere")
    if a:
        r = a["reference_train"]
        out["reference step s"] = r["best_step_s"]
        out["reference step / target"] = r["step_over_target"]
        out["reference fraction of matmul"] = r.get("fraction_of_peak", 0.0)
        if "reference_train_bf16" in a:
            low = a["reference_train_bf16"]
            out["reference step bf16 s"] = low["best_step_s"]
            out["bf16 matmul GFLOP/s"] = low["matmul_flops_per_s"] / 1e9
        out["atmosphere cpu train samples/s"] = a["cpu_train"]["samples_per_s"]
        out["atmosphere cpu infer samples/s"] = a["cpu_infer"]["samples_per_s"]
        for f in a["forecast_10d"]:
            out[f"10-day forecast, {f['members']} member(s), s"] = f["wall_s"]
    if res.get("enso"):
        out["enso train samples/s"] = res["enso"]["train"]["samples_per_s"]
        out["enso infer samples/s"] = res["enso"]["infer"]["samples_per_s"]
    o = res.get("ocean")
    if o:
        out["ocean forecaster train samples/s"] = o["forecaster_train"]["samples_per_s"]
        if "denoiser_train" in o:
            out["ocean denoiser train samples/s"] = o["denoiser_train"]["samples_per_s"]
    for name, f in res.get("earth", {}).items():
        out[f"earth {name} train samples/s"] = f["samples_per_s"]
    if res.get("loader"):
        out["loader samples/s"] = res["loader"]["loader_samples_per_s"]
    for name, f in res.get("pruning", {}).items():
        k, n = len(f["removed"]), f["blocks"]
        out[f"{name}: attention share of the step"] = f["share"]
        out[f"{name}: {k} of {n} attention layers removed, train speedup"] = f["speedup"]
    return out


def run(parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Every part in ``parts``; ``seconds``: the whole run."""
    import jax

    from tellus.training import benchmarking

    t0 = time.perf_counter()
    peak = benchmarking.matmul_rate()
    res: dict[str, Any] = {
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "matmul_flops_per_s": peak,
    }
    if "atmosphere" in parts:
        typer.echo("-- atmosphere (reference step, CPU preset, 10-day forecasts)")
        from tellus.atmosphere import bench as atmosphere_bench

        res["atmosphere"] = atmosphere_bench.run()
    if "enso" in parts:
        typer.echo("-- ENSO (ResoNet, small)")
        res["enso"] = enso_figures(peak)
    if "ocean" in parts:
        typer.echo("-- ocean (forecaster and denoiser, cpu)")
        from tellus.ocean import bench as ocean_bench

        res["ocean"] = ocean_bench.run()
    if "earth" in parts:
        typer.echo("-- the Earth model (tiny: atmosphere and ENSO index tasks)")
        res["earth"] = earth_figures(peak)
    if "loader" in parts:
        typer.echo("-- loader against raw Zarr")
        consumed = res.get("atmosphere", {}).get("cpu_train", {}).get("samples_per_s")
        res["loader"] = loader_figures(consumed)
    if "pruning" in parts:
        typer.echo("-- attention's share of the atmosphere step, and 40 % of it removed")
        from tellus.atmosphere import bench as atmosphere_bench
        from tellus.atmosphere import config as atmosphere_config
        from tellus.atmosphere import prune

        ref = atmosphere_bench.REFERENCE
        res["pruning"] = {
            "cpu preset": prune.attention_share(atmosphere_config.preset("cpu"), PRUNED_CPU),
            "reference": prune.attention_share(ref, prune.spread(sum(ref.depths), 6), batch_size=1),
        }
    res["seconds"] = time.perf_counter() - t0
    return res


def bench(
    out: Annotated[
        Path,
        typer.Option(
            help="Folder of bench.json (and previous.json).", callback=checks.writable_dir_option
        ),
    ] = Path("runs/bench"),
    parts: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated parts to run, of {', '.join(PARTS + OPTIONAL)} "
            f"({', '.join(OPTIONAL)} only when named)."
        ),
    ] = ",".join(PARTS),
) -> None:
    """Benchmark every model against this machine's matmul rate; write runs/bench/bench.json
    and compare it with the previous run's."""
    from rich.console import Console
    from rich.table import Table

    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    unknown = sorted(set(chosen) - set(PARTS + OPTIONAL))
    if unknown or not chosen:
        raise typer.BadParameter(
            f"{unknown or parts!r}: choose from {', '.join(PARTS + OPTIONAL)}",
            param_hint="--parts",
        )
    res = run(chosen)
    out.mkdir(parents=True, exist_ok=True)
    current, previous = out / "bench.json", out / "previous.json"
    before = None
    if current.exists():
        current.replace(previous)
        before = headline(json.loads(previous.read_text()))
    current.write_text(json.dumps(res, indent=1, default=str))
    table = Table(title=f"tellus bench ({res['device']}, {res['seconds'] / 60:.1f} min)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("/ previous", justify="right")
    for name, value in headline(res).items():
        ratio = "" if not before or not before.get(name) else f"{value / before[name]:.2f}"
        table.add_row(name, f"{value:.3g}", ratio)
    Console().print(table)
    typer.echo(f"wrote {current}")
