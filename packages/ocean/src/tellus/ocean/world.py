"""The embedded ocean: veros runs of the analytic planet, as two Zarr stores in the schema.

No ocean reanalysis can be downloaded where Tellus is built, so the ocean that the ocean
forecaster learns from is *generated*: veros (a primitive-equation ocean model in JAX and
numpy) runs the planet of :mod:`tellus.ocean.planet`, spun up from rest, then twice from
the spun-up state, as a climate model's run and "observations" (ORCA-DL trains on climate
models and is tested on reanalysis):

* ``model``: the planet's default parameters (``OceanConfig.model``);
* ``observed``: perturbed wind amplitude, mixing and anomaly noise, another seed.

Each store holds monthly means on the model's grid (``time, depth, latitude, longitude``):
``sea_water_potential_temperature`` (degC), ``sea_water_salinity`` (1e-3),
``eastward_sea_water_velocity`` and ``northward_sea_water_velocity`` (m s-1, the means of
the two faces of each T cell), and (``time, latitude, longitude``) ``sea_surface_height``
(m, the global ocean mean removed each month), ``sea_surface_temperature`` (K),
``surface_downward_eastward_stress`` and ``surface_downward_northward_stress`` (N m-2, the
stress veros was forced with), plus ``ocean_mask`` (1 ocean, 0 land) and
``layer_thickness`` (m, per depth). The bottom is flat, so ``ocean_mask`` holds at every
depth; every field is NaN over land and finite everywhere else.

Time: veros counts seconds on a 360-day calendar (twelve 30-day months, from the start of
the spin-up). The mean over model month ``M`` of model year ``Y`` is labelled with the
Gregorian month start ``(Y - Y0 + year of OceanConfig.start, M, 1)``, ``Y0`` the model year
of the run's first month, so seasons stay on their calendar months; the stores say so in
their ``calendar`` attribute (:func:`month_labels`).

Building: veros runs only in a subprocess (:mod:`tellus.ocean.veros_run`), because it
switches the process to 64-bit floats. :func:`build_spinup` runs the spin-up into
``DIR/spinup.h5`` (a veros restart, cached); :func:`build_runs` the two runs into
``DIR/model.zarr`` and ``DIR/observed.zarr``, one Zarr chunk per ``chunk_months`` months,
with the restarts of the chunk boundaries in ``DIR/<run>.veros/`` so that a killed build
resumes from its last written chunk and writes the same store. Builds hold
:func:`tellus.data.locking.store_lock` on what they write, report progress through
:mod:`tellus.data.progress` and keep veros's log in ``DIR/veros.log``. ``DEFAULT`` is the
4 deg ocean (30 spun-up years, 12 + 8 years of output); ``DEMO`` the same ocean after 10
years of spin-up, 6 + 1 years of output (``tellus demo``'s); ``TINY`` an 8 deg one of a few
months, built in seconds for the tests. The measured times are in the README.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import cftime
import gsw
import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import locking, schema, validation, writing
from tellus.data.progress import Progress
from tellus.ocean import planet, veros_run

Run = Literal["model", "observed"]
RUNS: tuple[Run, ...] = ("model", "observed")

TEMPERATURE = "sea_water_potential_temperature"
SALINITY = "sea_water_salinity"
EASTWARD = "eastward_sea_water_velocity"
NORTHWARD = "northward_sea_water_velocity"
SSH = "sea_surface_height"
SST = "sea_surface_temperature"
TAU_X = "surface_downward_eastward_stress"
TAU_Y = "surface_downward_northward_stress"
MASK = "ocean_mask"
THICKNESS = "layer_thickness"
FIELDS_3D = (TEMPERATURE, SALINITY, EASTWARD, NORTHWARD)
FIELDS_2D = (SSH, SST, TAU_X, TAU_Y)
KELVIN = 273.15


_GRID = planet.Grid()
_MODEL = planet.OceanParams()
# The "observed" ocean: 10 % stronger winds, 25 % stronger anomalies, more diapycnal and
# less isopycnal mixing, another seed.
_OBSERVED = planet.OceanParams(
    wind_amplitude=1.1, anomaly_std=0.025, kappa_h_min=3e-5, k_iso=800.0, seed=1
)


@dataclasses.dataclass(frozen=True)
class OceanConfig:
    """What the embedded ocean is and how long it runs.

    Attributes:
      name: preset name, recorded in the stores.
      grid: the model grid.
      model, observed: the parameters of the two runs (the spin-up uses ``model``'s).
      spinup_months, model_months, observed_months: lengths in model months (30 days).
      chunk_months: months per Zarr chunk, per restart and per resumable piece of work.
      backend: veros's backend, ``"jax"`` (faster after its compilation) or ``"numpy"``
        (no compilation: quicker for runs of seconds).
      start: Gregorian label of the runs' first month.
    """

    name: str = "default"
    grid: planet.Grid = _GRID
    model: planet.OceanParams = _MODEL
    observed: planet.OceanParams = _OBSERVED
    spinup_months: int = 30 * 12
    model_months: int = 12 * 12
    observed_months: int = 8 * 12
    chunk_months: int = 12
    backend: Literal["jax", "numpy"] = "jax"
    start: str = "2000-01-01"

    def params(self, run: Run) -> planet.OceanParams:
        return {"model": self.model, "observed": self.observed}[run]

    def months(self, run: Run) -> int:
        return {"model": self.model_months, "observed": self.observed_months}[run]

    @property
    def run_start(self) -> float:
        """Model time (s) at which both runs start: the end of the spin-up."""
        return self.spinup_months * planet.MONTH

    def spinup_json(self) -> str:
        """What the spin-up depends on (its restart is reused only if this matches)."""
        d = dataclasses.asdict(self)
        keep = ("grid", "model", "spinup_months", "chunk_months")
        return json.dumps({k: d[k] for k in keep}, sort_keys=True)

    def run_json(self, run: Run) -> str:
        """What a run's store depends on."""
        d = dataclasses.asdict(self)
        return json.dumps(
            {
                "spinup": json.loads(self.spinup_json()),
                "params": d[run],
                "months": self.months(run),
                "start": self.start,
            },
            sort_keys=True,
        )


DEFAULT = OceanConfig()
# The default ocean, shorter: what `tellus demo` builds when the default one is missing (10
# spun-up years: the deep ocean still drifts, so `just check-ocean` is for the default one).
DEMO = OceanConfig(name="demo", spinup_months=10 * 12, model_months=6 * 12, observed_months=12)
# 8 deg, 7 levels, 6-day tracer steps, numpy backend: a month of spin-up and two months of
# each run, built in seconds (for the tests: the gyres and the circumpolar current start to
# form, nothing is in equilibrium).
_TINY_PARAMS = planet.OceanParams(dt_mom=3600.0, dt_tracer=6 * planet.DAY)
TINY = OceanConfig(
    name="tiny",
    grid=planet.Grid(
        resolution=8.0, lat_edge=72.0, thickness=(100.0, 250.0, 400.0, 550.0, 700.0, 850.0, 1000.0)
    ),
    model=_TINY_PARAMS,
    observed=dataclasses.replace(_TINY_PARAMS, wind_amplitude=1.1, kappa_h_min=3e-5, seed=1),
    spinup_months=1,
    model_months=2,
    observed_months=2,
    chunk_months=1,
    backend="numpy",
)
PRESETS: Mapping[str, OceanConfig] = {c.name: c for c in (DEFAULT, DEMO, TINY)}


# --- Where things go ---------------------------------------------------------------------


def store_path(directory: str | os.PathLike, run: Run) -> Path:
    return Path(directory) / f"{run}.zarr"


def spinup_path(directory: str | os.PathLike) -> Path:
    """The veros restart at the end of the spin-up."""
    return Path(directory) / "spinup.h5"


def _state_dir(directory: str | os.PathLike, name: str) -> Path:
    return Path(directory) / f"{name}.veros"


# --- The calendar ------------------------------------------------------------------------


def model_date(seconds: float) -> cftime.Datetime360Day:
    """The model's date at ``seconds`` after the start of the spin-up (360-day calendar)."""
    return cftime.num2date(seconds / planet.DAY, "days since 0001-01-01", calendar="360_day")


def month_labels(first: float, n_months: int, start: str = "2000-01-01") -> np.ndarray:
    """The Gregorian labels (datetime64[ns]) of ``n_months`` monthly means from model time
    ``first`` (s, the start of a model month): model month M of model year Y becomes
    ``(Y - Y0 + year of start, M, 1)``, Y0 the model year of ``first``."""
    y0 = model_date(first).year
    base = pd.Timestamp(start).year
    out = []
    for k in range(n_months):
        d = model_date(first + k * planet.MONTH)
        out.append(pd.Timestamp(year=base + d.year - y0, month=d.month, day=1))
    return pd.DatetimeIndex(out).values.astype("datetime64[ns]")


def _calendar_text(config: OceanConfig) -> str:
    first = model_date(config.run_start)
    return (
        "Monthly means over the model's 360_day calendar (twelve 30-day months, counted from "
        f"the start of the spin-up). The run starts at model date {first.strftime('%Y-%m-%d')} "
        f"(360_day); model month M of model year Y is labelled with the Gregorian month start "
        f"({pd.Timestamp(config.start).year} + Y - {first.year})-M-01."
    )


# --- The store layout --------------------------------------------------------------------

_DESCRIPTIONS: Mapping[str, str] = {
    TEMPERATURE: "Potential temperature (reference pressure 0 dbar) from veros's prognostic "
    "TEOS-10 Conservative Temperature and Absolute Salinity (gsw.pt_from_CT of the monthly "
    "means).",
    SALINITY: "Practical salinity: veros's TEOS-10 Absolute Salinity times 35 / 35.16504 "
    "(reference-composition seawater).",
    EASTWARD: "Mean of the zonal velocity on the west and east faces of each T cell.",
    NORTHWARD: "Mean of the meridional velocity on the south and north faces of each T cell.",
    SSH: "veros's surface-pressure sea surface height (enable_streamfunction=False) minus "
    "its area-weighted global ocean mean of the month (the offset is arbitrary).",
    SST: "Potential temperature of the top layer, in K.",
    TAU_X: "The analytic wind stress veros was forced with (climatology with a seasonal "
    "cycle plus AR(1) anomaly modes), face means as for the velocity.",
    TAU_Y: "As surface_downward_eastward_stress, meridional.",
    MASK: "1 over ocean, 0 over land: box continents over a flat bottom, so it holds at every "
    "depth.",
    THICKNESS: "Thickness of each model layer (m); layer faces lie midway between the T-point "
    "depths, the top face at 0.",
}


def _attrs_of(name: str) -> dict[str, str]:
    if name == THICKNESS:
        return {"units": "m", "long_name": "layer thickness", "description": _DESCRIPTIONS[name]}
    spec = schema.VARIABLES[name]
    return {"units": spec.units, "long_name": spec.long_name, "description": _DESCRIPTIONS[name]}


def _coords(grid: planet.Grid, times: np.ndarray) -> dict:
    return {
        schema.TIME: times,
        schema.DEPTH: (
            schema.DEPTH,
            grid.depth,
            {"units": "m", "positive": "down", "long_name": "depth of the T points"},
        ),
        schema.LATITUDE: (
            schema.LATITUDE,
            grid.latitude,
            {"units": "degrees_north", "long_name": "latitude of the T points"},
        ),
        schema.LONGITUDE: (
            schema.LONGITUDE,
            grid.longitude,
            {"units": "degrees_east", "long_name": "longitude of the T points"},
        ),
    }


def template(config: OceanConfig, run: Run) -> xr.Dataset:
    """The dataset a run's store holds: the static fields, zero placeholders for the rest."""
    g = config.grid
    times = month_labels(config.run_start, config.months(run), config.start)
    shape3 = (len(times), g.nz, g.ny, g.nx)
    shape2 = (len(times), g.ny, g.nx)
    data = {
        name: (
            schema.VARIABLES[name].dims,
            # zero-stride placeholders: create_store writes only their metadata
            np.broadcast_to(np.float32(0), shape3 if name in FIELDS_3D else shape2),
            _attrs_of(name),
        )
        for name in (*FIELDS_3D, *FIELDS_2D)
    }
    data[MASK] = (
        schema.VARIABLES[MASK].dims,
        planet.ocean_mask(g).astype(np.float32),
        _attrs_of(MASK),
    )
    data[THICKNESS] = ((schema.DEPTH,), np.asarray(g.thickness, np.float32), _attrs_of(THICKNESS))
    return xr.Dataset(data, coords=_coords(g, times))


def chunk_dataset(grid: planet.Grid, times: np.ndarray, fields: Mapping[str, np.ndarray]):
    """The store's variables for monthly means ``fields`` at T points (from
    :mod:`tellus.ocean.veros_run`: ``temp``, ``salt``, ``u``, ``v`` [month, depth, lat, lon]
    top first, in veros's units; ``ssh``, ``taux``, ``tauy`` [month, lat, lon])."""
    land = planet.ocean_mask(grid) == 0

    def masked(x):
        return np.where(land, np.nan, x).astype(np.float32)

    ssh = fields["ssh"]
    w = planet.area_weights(grid)
    ssh = ssh - (ssh * w).sum(axis=(-2, -1), keepdims=True) / w.sum()
    # veros carries Conservative Temperature; the schema's variable is potential temperature.
    theta = gsw.pt_from_CT(np.asarray(fields["salt"], np.float64), fields["temp"])
    values = {
        TEMPERATURE: masked(theta),
        SALINITY: masked(fields["salt"] / planet.ABSOLUTE_PER_PRACTICAL),
        EASTWARD: masked(fields["u"]),
        NORTHWARD: masked(fields["v"]),
        SSH: masked(ssh),
        SST: masked(theta[:, 0] + KELVIN),
        TAU_X: masked(fields["taux"]),
        TAU_Y: masked(fields["tauy"]),
    }
    coords = _coords(grid, times)
    return xr.Dataset(
        {k: (schema.VARIABLES[k].dims, v, _attrs_of(k)) for k, v in values.items()},
        coords=coords,
    )


def _store_attrs(config: OceanConfig, run: Run) -> dict:
    p = config.params(run)
    return {
        "title": f"Tellus embedded ocean: veros {run} run ({config.name})",
        "source": f"veros {importlib.metadata.version('veros')} ({config.backend} backend) on the "
        "analytic planet of tellus.ocean.planet: box continents, flat bottom, TKE, EKE, "
        "isopycnal and GM skew diffusion, TEOS-10, surface-pressure free surface",
        "ocean_run": run,
        "ocean_preset": config.name,
        "ocean_config": config.run_json(run),
        "ocean_params": p.to_json(),
        "spinup_years": config.spinup_months / 12,
        "calendar": _calendar_text(config),
        "bottom": f"flat at {config.grid.bottom:g} m: ocean_mask holds at every depth",
        "forcing": "analytic zonal and meridional wind stress with a seasonal cycle plus "
        f"{len(planet.MODES)} AR(1) anomaly modes (memory {p.anomaly_memory_months:g} months, "
        f"seed {p.seed}); heat flux restoring SST to an analytic profile "
        f"({p.heat_restoring:g} W m-2 K-1); zero-mean salt flux restoring SSS "
        f"({p.salt_restoring_days:g} days)",
        "time_steps": f"momentum {p.dt_mom:g} s, tracers {p.dt_tracer:g} s",
    }


# --- Running veros -----------------------------------------------------------------------


def _job(config: OceanConfig, directory: Path, name: str, first: int) -> dict:
    """One job for :mod:`tellus.ocean.veros_run`: the spin-up or a run from chunk ``first``.
    Its paths are absolute: the subprocess runs in ``directory``."""
    directory = Path(directory).absolute()
    state_dir = _state_dir(directory, name)
    job = {
        "name": name,
        "grid": dataclasses.asdict(config.grid),
        "chunk_months": config.chunk_months,
        "first_chunk": first,
        "state_dir": str(state_dir),
        "stop_after": None,
    }
    if name == "spinup":
        restart = None if first == 0 else str(veros_run.restart_path(state_dir, first))
        return job | {
            "params": dataclasses.asdict(config.model),
            "n_months": config.spinup_months,
            "start_time": 0.0,
            "stream": 0,
            "restart_in": restart,
            "store": None,
            "final_restart": str(spinup_path(directory)),
        }
    run: Run = name  # type: ignore[assignment]
    restart = spinup_path(directory) if first == 0 else veros_run.restart_path(state_dir, first)
    times = month_labels(config.run_start, config.months(run), config.start)
    return job | {
        "params": dataclasses.asdict(config.params(run)),
        "n_months": config.months(run),
        "start_time": config.run_start,
        "stream": 1 + RUNS.index(run),
        "restart_in": str(restart),
        "store": str(store_path(directory, run)),
        "times": [str(t) for t in times.astype("datetime64[s]")],
        "final_restart": None,
    }


def _run_veros(config: OceanConfig, directory: Path, jobs: list[dict], progress: bool) -> None:
    """Runs ``jobs`` in one veros subprocess, showing each job's progress in months."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = {"backend": config.backend, "parent": os.getpid(), "jobs": jobs}
    log_path = directory / "veros.log"
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=directory, delete=False) as f:
        json.dump(spec, f)
    by_name = {j["name"]: j for j in jobs}
    bars = {
        j["name"]: Progress(
            f"ocean {j['name']} ({config.name})",
            j["n_months"],
            completed=j["first_chunk"] * config.chunk_months,
            unit="month",
            fields=("mean_temperature",),
            enabled=progress,
        )
        for j in jobs
    }
    with contextlib.ExitStack() as stack, open(log_path, "a") as log:
        stack.callback(os.unlink, f.name)
        proc = stack.enter_context(
            subprocess.Popen(
                [sys.executable, "-m", "tellus.ocean.veros_run", f.name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=directory,
            )
        )
        stack.callback(_stop, proc)  # first, if the build stops early: then Popen closes
        current = None
        try:
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("job") != current:
                    if current is not None:
                        bars[current].__exit__(None, None, None)
                    current = event["job"]
                    bars[current].__enter__()
                bar = bars[current]
                if "month" in event:
                    bar.update(max(bar.completed, event["month"]))
                if "means" in event:
                    _write_means(config, by_name[current], event["chunk"], Path(event["means"]))
                if "mean_temperature" in event:
                    bar.update(bar.completed, mean_temperature=event["mean_temperature"])
            rc = proc.wait()
        except BaseException as e:
            if current is not None:
                bars[current].__exit__(type(e), e, None)
            raise
        if current is not None:
            bars[current].__exit__(None if rc == 0 else RuntimeError, None, None)
    if rc != 0:
        tail = log_path.read_text().strip().splitlines()[-6:]
        raise RuntimeError(
            f"veros stopped with exit status {rc}; the end of {log_path}: " + " | ".join(tail)
        )


def _write_means(config: OceanConfig, job: dict, chunk: int, means: Path) -> None:
    """Writes a chunk's monthly means into its store, marks it complete, then deletes the
    means and the restart of the chunk's start (the one after it is kept)."""
    store = job["store"]
    if chunk not in writing.completed_chunks(store):
        with np.load(means) as f:
            fields = {k: f[k] for k in f.files}
        start = chunk * config.chunk_months
        times = np.asarray(job["times"], dtype="datetime64[ns]")[
            start : start + len(fields["temp"])
        ]
        with warnings.catch_warnings():  # zarr's note that v3 consolidation is an extension
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            writing.write_chunk(store, chunk, chunk_dataset(config.grid, times, fields))
    means.unlink(missing_ok=True)
    veros_run.restart_path(job["state_dir"], chunk).unlink(missing_ok=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- Building ----------------------------------------------------------------------------


def _check_spinup_config(directory: Path, config: OceanConfig) -> None:
    record = directory / "spinup.json"
    if record.exists() and json.loads(record.read_text()) != json.loads(config.spinup_json()):
        raise ValueError(
            f"{spinup_path(directory)} was (or is being) spun up with another configuration "
            f"({record.read_text().strip()}); remove {directory} or build to another folder"
        )


def _spinup_first_chunk(directory: Path, config: OceanConfig) -> int:
    """The chunk the spin-up resumes at: the last one with a saved restart."""
    state_dir = _state_dir(directory, "spinup")
    n = -(-config.spinup_months // config.chunk_months)
    return max(
        (c for c in range(1, n + 1) if veros_run.restart_path(state_dir, c).exists()), default=0
    )


def build_spinup(
    directory: str | os.PathLike, config: OceanConfig = DEFAULT, *, progress: bool = True
) -> Path:
    """Spins the ocean up from rest (``config.spinup_months``, ``config.model``'s
    parameters) into ``DIR/spinup.h5``; a finished spin-up is returned at once.

    Resumes from the last yearly (``chunk_months``) restart in ``DIR/spinup.veros/``.

    Raises:
      ValueError: ``DIR`` holds a spin-up of another configuration.
      LockedError: another process is spinning up into ``DIR``.
    """
    directory = Path(directory)
    _check_spinup_config(directory, config)
    target = spinup_path(directory)
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with locking.store_lock(target, f"spinning up the ocean ({config.name})"):
        if target.exists():
            return target
        (directory / "spinup.json").write_text(config.spinup_json())
        job = _job(config, directory, "spinup", _spinup_first_chunk(directory, config))
        _run_veros(config, directory, [job], progress)
    return target


def _run_first_chunk(directory: Path, config: OceanConfig, run: Run) -> int | None:
    """The chunk a run resumes at (None: the store is complete). Creates its store."""
    store = store_path(directory, run)
    ref = template(config, run)
    if store.exists():
        found = xr.open_zarr(store, consolidated=False).attrs.get("ocean_config")
        if found is not None and json.loads(found) != json.loads(config.run_json(run)):
            raise ValueError(
                f"{store} was built with another configuration ({found}); remove it (and "
                f"{_state_dir(directory, run)}) or build to another folder"
            )
    writing.create_store(
        store, ref, time_chunk=config.chunk_months, attrs=_store_attrs(config, run)
    )
    done = writing.completed_chunks(store)
    n = writing.expected_chunks(store)
    todo = [c for c in range(n) if c not in done]
    if not todo:
        return None
    state_dir = _state_dir(directory, run)
    # The last chunk at or before the first unwritten one whose starting state is saved.
    return max(
        (c for c in range(1, todo[0] + 1) if veros_run.restart_path(state_dir, c).exists()),
        default=0,
    )


def build_runs(
    directory: str | os.PathLike,
    config: OceanConfig = DEFAULT,
    runs: tuple[Run, ...] = RUNS,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[Run, Path]:
    """Builds the run stores from the spun-up state (spinning up first if needed).

    Complete stores are only checked. Otherwise each run continues from the restart of its
    first unwritten chunk (``DIR/<run>.veros/``), and the store ends bitwise the same as
    an uninterrupted build's.

    Args:
      directory: the folder of ``spinup.h5``, ``model.zarr`` and ``observed.zarr``.
      config: which ocean: :data:`DEFAULT`, :data:`TINY` or your own.
      runs: which runs.
      progress: show each run's progress and time left (months).
      stop_after: stop each run after this many chunks (for tests of the resume).

    Returns:
      The store of each run.

    Raises:
      ValueError: a store or the spin-up in ``DIR`` comes from another configuration.
      LockedError: another process is building one of the stores.
    """
    directory = Path(directory)
    _check_spinup_config(directory, config)
    stores = {run: store_path(directory, run) for run in runs}
    pending = [run for run in runs if not writing.is_complete(stores[run])]
    if not pending:
        return stores
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for run in pending:
            stack.enter_context(
                locking.store_lock(stores[run], f"building the ocean {run} run ({config.name})")
            )
        jobs = []
        if not spinup_path(directory).exists():
            stack.enter_context(locking.store_lock(spinup_path(directory), "spinning up"))
            (directory / "spinup.json").write_text(config.spinup_json())
            jobs.append(_job(config, directory, "spinup", _spinup_first_chunk(directory, config)))
        for run in pending:
            first = _run_first_chunk(directory, config, run)
            if first is not None:
                jobs.append(_job(config, directory, run, first) | {"stop_after": stop_after})
        if jobs:
            _run_veros(config, directory, jobs, progress)
    return stores


def build(
    directory: str | os.PathLike,
    config: OceanConfig = DEFAULT,
    *,
    spinup_only: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """The whole embedded ocean (or only its spin-up) in ``directory``; returns the paths
    (``spinup``, and ``model`` and ``observed`` unless ``spinup_only``). Cached and
    resumable: see :func:`build_spinup` and :func:`build_runs`."""
    if spinup_only:
        return {"spinup": build_spinup(directory, config, progress=progress)}
    stores = build_runs(directory, config, progress=progress)
    return {"spinup": spinup_path(directory), **stores}


def open_run(directory: str | os.PathLike, run: Run) -> xr.Dataset:
    """A built run's store, opened and validated (lazily)."""
    return validation.open_dataset(store_path(directory, run))
