"""The ocean's models in ``just bench``: training and inference throughput at a preset.

``python -m tellus.ocean.bench [--preset cpu] [--batch 2] [--json FILE]`` measures, in one
process and one minute, so that the ratios hold on a noisy machine:

* ``matmul``: the FLOP/s of a jitted 2048 x 2048 float32 matmul (the dense peak);
* ``forecaster_train``: one AdamW step of the ORCA-DL-style forecaster
  (:mod:`tellus.ocean.forecaster`, its six leads folded into the batch, the anomaly base
  on) on a batch of initial months: steps/s, samples/s (initial months), XLA's FLOPs per
  step, the achieved fraction of the matmul rate and the compiled memory;
* ``forecaster_forecast``: leads 1-6 of a batch of initial months (inference), months/s;
* ``denoiser_train``: one AdamW step of the diffusion denoiser (:mod:`tellus.ocean.unet`) of
  the same preset name on a batch of months.

The grid is the embedded ocean's (35 x 90, 15 depths, its analytic continents from
:mod:`tellus.ocean.planet`) with random fields: the step's cost does not depend on the
values. Compiling the forecaster's step takes minutes on 2 cores (the persistent compilation
cache of ``JAX_COMPILATION_CACHE_DIR`` serves a second run); the figures exclude it and
report it as ``compile_s``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.ocean import diffusion_loss, planet, unet
from tellus.ocean import forecaster as fc
from tellus.ocean import model as model_lib
from tellus.ocean.train import FORCING_MODES
from tellus.training import benchmarking


def _grid(net: model_lib.NetConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latitudes, depths and the ocean mask of the embedded ocean at the preset's size."""
    grid = planet.Grid()
    if (grid.ny, grid.nx) != (net.n_lat, net.n_lon):
        lat = np.linspace(-68.0, 68.0, net.n_lat)
        ocean = np.ones((net.n_lat, net.n_lon), bool)
        return lat, np.linspace(10.0, 4000.0, net.channels[0]), ocean
    return grid.latitude, grid.depth, planet.ocean_mask(grid) > 0.5


def forecaster_config(preset: str = "cpu") -> fc.ForecasterConfig:
    """The preset's forecaster on the embedded grid, unit statistics, the anomaly base with
    the wind response of ``tellus train ocean`` (its buffers zero: the cost is the same)."""
    net = model_lib.PRESETS[preset]
    lat, depth, _ = _grid(net)
    c, f = sum(net.channels), net.forcing_channels
    return fc.ForecasterConfig(
        net=net.to_dict(),
        variables=fc.VARIABLES,
        depths=tuple(float(d) for d in depth[: net.channels[0]]),
        latitude=tuple(float(v) for v in lat),
        mean=np.zeros((12, c)),
        std=np.ones((12, c)),
        forcing_mean=np.zeros((12, f)),
        forcing_std=np.ones((12, f)),
        residual=True,
        anomaly_base=True,
        forcing_modes=FORCING_MODES,  # the recipe's base, its wind response included
    )


def forecaster_batch(cfg: fc.ForecasterConfig, batch: int, seed: int = 0) -> dict[str, Any]:
    net = cfg.net_config
    _, _, ocean = _grid(net)
    rng = np.random.default_rng(seed)
    c, f, n = sum(net.channels), net.forcing_channels, len(cfg.leads)
    shape = (net.n_lat, net.n_lon)

    def field(*lead):
        return rng.standard_normal((batch, *lead, *shape)).astype(np.float32)

    return {
        "inputs": np.moveaxis(field(1, c), 2, -1),
        "targets": np.moveaxis(field(n, c), 2, -1),
        "forcings": np.moveaxis(field(1 + n, f), 2, -1),
        "statics": np.broadcast_to(ocean[None, ..., None], (batch, *shape, 1)).astype(np.float32),
        "month": (np.arange(batch) % 12 + 1).astype(np.int32),
    }


def denoiser_batch(cfg: unet.UNetConfig, batch: int, seed: int = 0) -> dict[str, Any]:
    grid = planet.Grid()
    ocean = planet.ocean_mask(grid) > 0.5
    if ocean.shape != (cfg.n_lat, cfg.n_lon):
        ocean = np.ones((cfg.n_lat, cfg.n_lon), bool)
    ocean3 = np.broadcast_to(ocean[..., None], (cfg.n_lat, cfg.n_lon, cfg.depths))
    rng = np.random.default_rng(seed)
    temp = 10.0 + 5.0 * rng.standard_normal((batch, *ocean3.shape)).astype(np.float32)
    return {
        diffusion_loss.TEMPERATURE: np.where(ocean3, temp, np.nan).astype(np.float32),
        diffusion_loss.OCEAN: np.broadcast_to(ocean3, (batch, *ocean3.shape)).copy(),
    }


def run(preset: str = "cpu", batch: int = 2, repeats: int = 3) -> dict[str, Any]:
    """Every figure of the module docstring as a dict (``seconds``: the whole run)."""
    t0 = time.perf_counter()
    peak = benchmarking.matmul_rate()
    out: dict[str, Any] = {
        "preset": preset,
        "batch": batch,
        "device": str(jax.devices()[0]),
        "matmul_flops_per_s": peak,
    }
    cfg = forecaster_config(preset)
    model = fc.make_forecaster(cfg)
    data = forecaster_batch(cfg, batch)
    out["forecaster_parameters"] = model_lib.count_parameters(cfg.net_config)
    out["forecaster_train"] = benchmarking.train_step_figures(
        model, fc.loss_fn, data, batch, peak=peak, repeats=repeats
    )
    ocean = data["statics"][..., 0]

    def forecast(m, x, f, month):
        return m.forecast(x, f, month, ocean)

    # The training step donated its state, which shares the first model's arrays.
    model = fc.make_forecaster(cfg)
    fn = nnx.jit(forecast)
    x, f = jnp.asarray(data["inputs"][:, 0]), jnp.asarray(data["forcings"][:, 0])
    month = jnp.asarray(data["month"])
    c0 = time.perf_counter()
    jax.block_until_ready(fn(model, x, f, month))
    compile_s = time.perf_counter() - c0
    timing = benchmarking.time_calls(lambda: fn(model, x, f, month), repeats=repeats, warmup=0)
    out["forecaster_forecast"] = {
        "compile_s": compile_s,
        "call_s": timing["median_s"],
        "init_months_per_s": batch / timing["median_s"],
        "lead_months_per_s": batch * len(cfg.leads) / timing["median_s"],
    }
    if preset in unet.PRESETS:
        ucfg = unet.PRESETS[preset]
        out["denoiser_parameters"] = unet.count_parameters(ucfg)
        out["denoiser_train"] = benchmarking.train_step_figures(
            unet.make_denoiser(ucfg),
            diffusion_loss.diffusion_loss,
            denoiser_batch(ucfg, batch),
            batch,
            peak=peak,
            repeats=repeats,
        )
    out["seconds"] = time.perf_counter() - t0
    return out


def _line(name: str, f: dict[str, Any], peak: float) -> str:
    flops = f.get("flops_per_step")
    frac = f.get("fraction_of_peak")
    return (
        f"{name:22s} {f['step_s']:.3f} s/step ({f['samples_per_s']:.2f} samples/s), "
        f"{(flops or 0) / 1e9:.1f} GFLOP/step, {frac * 100 if frac else float('nan'):.0f} % of "
        f"the matmul rate, compile {f['compile_s']:.0f} s, "
        f"temp {f['memory'].get('temp_size_in_bytes', 0) / 2**20:.0f} MiB"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tellus.ocean.bench", description=__doc__)
    p.add_argument("--preset", default="cpu", choices=sorted(model_lib.PRESETS))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error(f"--batch must be >= 1, got {args.batch}")
    out = run(args.preset, args.batch, args.repeats)
    peak = out["matmul_flops_per_s"]
    print(f"ocean bench, preset {args.preset}, batch {args.batch}, on {out['device']}")
    print(f"matmul 2048^2 float32  {peak / 1e9:.1f} GFLOP/s")
    print(_line("forecaster train", out["forecaster_train"], peak))
    fcast = out["forecaster_forecast"]
    print(
        f"forecaster forecast    {fcast['call_s']:.3f} s per {args.batch} initial months "
        f"(leads 1-6: {fcast['lead_months_per_s']:.1f} lead-months/s)"
    )
    if "denoiser_train" in out:
        print(_line("denoiser train", out["denoiser_train"], peak))
    print(f"({out['seconds']:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
