"""The embedded atmosphere dataset: Held-Suarez runs of dinosaur, on WeatherBench2 levels.

No reanalysis can be downloaded where Tellus is built, so the dataset that tests, examples and
small trainings read is *generated*: dinosaur (NeuralGCM's JAX spectral dynamical core) solves
the dry primitive equations on sigma levels under the Held & Suarez (1994, BAMS 75, 1825)
forcing (Newtonian cooling to a zonally symmetric equilibrium temperature, Rayleigh drag in
the boundary layer), spun up from rest to statistical equilibrium, then sampled. Its jets and
baroclinic eddies are real fluid dynamics; there is no seasonal or diurnal cycle, and the
calendar of the time axis is nominal. Added to the textbook case, and said so in the attributes:

* a *passive* humidity tracer (Held-Suarez is dry), advected by the model and relaxed towards
  the Manabe & Wetherald (1967, JAS 24, 241) profile ``RH = 0.77 (sigma - 0.02) / 0.98`` of
  saturation, with faster removal of supersaturation; it does not act on the dynamics;
* smooth idealised mountains on idealised continents, so that surface and sea-level pressure
  differ; the land-sea mask and soil type are stand-ins with no effect on the dynamics.

The additions live in :mod:`tellus.data.idealized_planet`;
:mod:`tellus.data.sigma_to_pressure` turns each model state into pressure levels and surface
fields on an equiangular grid without poles. :func:`build` writes the store through
:mod:`tellus.data.writing`, one time chunk per model segment, keeping the model state at the
chunk boundaries in ``<store stem>.sim-state/`` beside the store, so that a killed build
resumes where it stopped and writes bitwise the same data.

``DEFAULT`` (T21, 200-day spin-up, 365 days 6-hourly) takes minutes on a CPU, about half of
it the spin-up; ``TINY`` takes seconds, so tests build it. The measured times are in
``docs/performance.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import dinosaur
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr
from dinosaur import (
    coordinate_systems,
    primitive_equations,
    primitive_equations_states,
    scales,
    sigma_coordinates,
    spherical_harmonic,
    time_integration,
    xarray_utils,
)

from tellus.data import constants, locking, schema, sigma_to_pressure, writing
from tellus.data import idealized_planet as planet
from tellus.data.idealized_planet import HUMIDITY
from tellus.data.progress import Progress

_UNITS = scales.units


@dataclasses.dataclass(frozen=True)
class HeldSuarezConfig:
    """How the Held-Suarez dataset is generated.

    Attributes:
      name: preset name, recorded in the store.
      truncation: triangular spectral truncation of the model (21 is T21).
      layers: equidistant sigma layers.
      time_step_minutes: model time step; must divide ``output_interval_hours``.
      spinup_days: model days run from rest before the first sample (rounded up to whole
        chunks).
      output_days: model days of samples.
      output_interval_hours: time between samples.
      time_chunk: samples per Zarr chunk and per model segment between saved states.
      n_lat, n_lon: output grid, equiangular without poles (cell centres), lon from 0.
      start_time: nominal time of the first sample.
      pressure_levels: output levels, hPa.
      hyperdiffusion_hours: e-folding time of the highest total wavenumber under the
        del^8 hyperdiffusion.
      max_orography_m: height of the highest idealised mountain; 0 for a flat planet.
      surface_relative_humidity: relative humidity target at sigma = 1.
      humidity_relaxation_days: time scale of the relaxation towards the target.
      condensation_hours: time scale on which supersaturation is removed.
      surface_pressure_perturbation_pa: amplitude of the initial perturbation that breaks
        the symmetry of the state of rest.
      seed: seed of that perturbation.
    """

    name: str = "default"
    truncation: int = 21
    layers: int = 24
    time_step_minutes: float = 30.0
    spinup_days: float = 200.0
    output_days: float = 365.0
    output_interval_hours: int = 6
    time_chunk: int = 20
    n_lat: int = 32
    n_lon: int = 64
    start_time: str = "2000-01-01T00:00"
    pressure_levels: tuple[int, ...] = schema.PRESSURE_LEVELS_13
    hyperdiffusion_hours: float = 2.4
    max_orography_m: float = 2000.0
    surface_relative_humidity: float = 0.77
    humidity_relaxation_days: float = 1.0
    condensation_hours: float = 2.0
    surface_pressure_perturbation_pa: float = 1000.0
    seed: int = 0

    @property
    def steps_per_sample(self) -> int:
        steps = self.output_interval_hours * 60 / self.time_step_minutes
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError(
                f"time step {self.time_step_minutes} min does not divide the "
                f"output interval {self.output_interval_hours} h"
            )
        return round(steps)

    @property
    def n_times(self) -> int:
        return round(self.output_days * 24 / self.output_interval_hours)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_times // self.time_chunk)

    @property
    def spinup_chunks(self) -> int:
        chunk_days = self.time_chunk * self.output_interval_hours / 24
        return math.ceil(self.spinup_days / chunk_days - 1e-9)

    def times(self) -> pd.DatetimeIndex:
        return pd.date_range(
            self.start_time, periods=self.n_times, freq=f"{self.output_interval_hours}h"
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


DEFAULT = HeldSuarezConfig()
# A few days on a T10 grid after a 40-day spin-up: built in seconds, yet with jets.
TINY = HeldSuarezConfig(
    name="tiny",
    truncation=10,
    layers=12,
    time_step_minutes=60.0,
    spinup_days=40.0,
    output_days=3.0,
    time_chunk=4,
    n_lat=16,
    n_lon=32,
    hyperdiffusion_hours=6.0,
)
PRESETS: Mapping[str, HeldSuarezConfig] = {c.name: c for c in (DEFAULT, TINY)}


# --- The model --------------------------------------------------------------------------


def physics_specs() -> primitive_equations.PrimitiveEquationsSpecs:
    """dinosaur's nondimensional units built from :mod:`tellus.data.constants`."""
    u = _UNITS
    return primitive_equations.PrimitiveEquationsSpecs.from_si(
        radius_si=constants.EARTH_RADIUS * u.m,
        angular_velocity_si=constants.EARTH_ANGULAR_VELOCITY / u.s,
        gravity_acceleration_si=constants.GRAVITY * u.m / u.s**2,
        ideal_gas_constant_si=constants.DRY_AIR_GAS_CONSTANT * u.J / u.kg / u.degK,
        water_vapor_gas_constant_si=constants.WATER_VAPOUR_GAS_CONSTANT * u.J / u.kg / u.degK,
        kappa_si=constants.KAPPA * u.dimensionless,
    )


class Simulator:
    """The compiled model of one configuration: its segments and its diagnostics.

    Attributes:
      config: the configuration.
      coords: dinosaur's model coordinates (Gaussian grid, sigma levels).
      output_grid: the same spectral basis sampled on the equiangular output grid.
      modal_orography: the model's (truncated) orography, nondimensional.
    """

    def __init__(self, config: HeldSuarezConfig):
        self.config = config
        self.specs = specs = physics_specs()
        gaussian_nodes = math.ceil((3 * config.truncation + 1) / 4)
        grid = spherical_harmonic.Grid.construct(
            max_wavenumber=config.truncation, gaussian_nodes=gaussian_nodes, radius=specs.radius
        )
        self.coords = coordinate_systems.CoordinateSystem(
            grid, sigma_coordinates.SigmaCoordinates.equidistant(config.layers)
        )
        self.output_grid = spherical_harmonic.Grid(
            longitude_wavenumbers=grid.longitude_wavenumbers,
            total_wavenumbers=grid.total_wavenumbers,
            longitude_nodes=config.n_lon,
            latitude_nodes=config.n_lat,
            latitude_spacing="equiangular",
            radius=specs.radius,
        )
        self.sigma = np.asarray(self.coords.vertical.centers, dtype=np.float64)

        lon, sin_lat = grid.nodal_mesh
        height = planet.orography(
            np.rad2deg(np.arcsin(sin_lat)), np.rad2deg(lon), config.max_orography_m
        )
        initial_fn, aux = primitive_equations_states.isothermal_rest_atmosphere(
            self.coords,
            specs,
            p0=constants.REFERENCE_PRESSURE * _UNITS.pascal,
            p1=config.surface_pressure_perturbation_pa * _UNITS.pascal,
            surface_height=height * _UNITS.meter,
        )
        self.reference_temperature = np.asarray(aux[xarray_utils.REF_TEMP_KEY])
        self.modal_orography = primitive_equations.truncated_modal_orography(
            aux[xarray_utils.OROGRAPHY], self.coords
        )
        dynamics = primitive_equations.PrimitiveEquationsSigma(
            self.reference_temperature, self.modal_orography, self.coords, specs
        )
        self.forcing = planet.MoistHeldSuarezForcing(
            self.coords,
            specs,
            self.reference_temperature,
            surface_relative_humidity=config.surface_relative_humidity,
            relaxation_days=config.humidity_relaxation_days,
            condensation_hours=config.condensation_hours,
        )
        dt = specs.nondimensionalize(config.time_step_minutes * _UNITS.minute)
        step = time_integration.imex_rk_sil3(
            time_integration.compose_equations([dynamics, self.forcing]), dt
        )
        tau = specs.nondimensionalize(config.hyperdiffusion_hours * _UNITS.hour)
        step = time_integration.step_with_filters(
            step, [time_integration.horizontal_diffusion_step_filter(grid, dt, tau, order=4)]
        )
        # One compiled program for every segment, spin-up included, so a resumed build runs
        # exactly the computation an uninterrupted one does.
        self._segment = jax.jit(
            time_integration.trajectory_from_step(
                step,
                outer_steps=config.time_chunk,
                inner_steps=config.steps_per_sample,
                start_with_input=True,
            )
        )
        self._nodal = jax.jit(jax.vmap(self._nodal_one))

        dry = initial_fn(jax.random.PRNGKey(config.seed))
        q0 = planet.relative_humidity_target(self.sigma, config.surface_relative_humidity)[
            :, None, None
        ] * self.forcing.saturation(dry)
        self._initial = dry.replace(tracers={HUMIDITY: grid.to_modal(q0)})

        to_si = lambda unit: float(specs.dimensionalize(1.0, unit).magnitude)  # noqa: E731
        self._metre, self._speed = to_si(_UNITS.meter), to_si(_UNITS.meter / _UNITS.second)
        self._kelvin, self._pascal = to_si(_UNITS.degK), to_si(_UNITS.pascal)
        self.surface_geopotential = np.asarray(
            self._swap(self.output_grid.to_nodal(self.modal_orography))
            * self._metre
            * constants.GRAVITY,
            dtype=np.float32,
        )

    # -- state ---------------------------------------------------------------------------

    def initial_state(self) -> primitive_equations.State:
        """The perturbed isothermal state of rest (288 K) with humidity at its target."""
        return self._initial

    def advance(self, state: primitive_equations.State):
        """Runs one segment of ``time_chunk`` samples.

        Returns:
          ``(final_state, samples)``: the state ``time_chunk`` samples later, and the states
          at the start of each sampling interval (the first is ``state`` itself), stacked.
        """
        return self._segment(state)

    # -- diagnostics ---------------------------------------------------------------------

    @staticmethod
    def _swap(x):
        """dinosaur's nodal (..., lon, lat) to the schema's (..., lat, lon)."""
        return jnp.swapaxes(x, -1, -2)

    def _nodal_one(self, state: primitive_equations.State) -> dict[str, jax.Array]:
        """Temperature, winds, humidity (level, lat, lon) and p_s of one state, SI units."""
        grid = self.output_grid
        u, v = spherical_harmonic.vor_div_to_uv_nodal(grid, state.vorticity, state.divergence)
        temperature = (
            self.reference_temperature[:, None, None] + grid.to_nodal(state.temperature_variation)
        ) * self._kelvin
        return {
            "t": self._swap(temperature),
            "u": self._swap(u) * self._speed,
            "v": self._swap(v) * self._speed,
            "q": self._swap(jnp.maximum(grid.to_nodal(state.tracers[HUMIDITY]), 0.0)),
            "ps": self._swap(jnp.exp(grid.to_nodal(state.log_surface_pressure))[0]) * self._pascal,
        }

    def diagnose(self, samples: primitive_equations.State) -> dict[str, np.ndarray]:
        """Schema variables (SI, float32) of stacked model states, on the output grid."""
        nodal = {k: np.asarray(v, np.float64) for k, v in self._nodal(samples).items()}
        t, ps, sigma = nodal["t"], nodal["ps"], self.sigma
        phi_s = self.surface_geopotential.astype(np.float64)
        phi = sigma_to_pressure.geopotential_on_sigma(t, phi_s, sigma)
        pressure = [100.0 * p for p in self.config.pressure_levels]
        t_p, phi_p, other = sigma_to_pressure.interpolate_to_pressure(
            {k: nodal[k] for k in "uvq"}, t, phi, ps, sigma, pressure
        )
        t_low = t[..., -1, :, :]
        t_surface = sigma_to_pressure.surface_air_temperature(t_low, sigma[-1])
        out = {
            "geopotential": phi_p,
            "temperature": t_p,
            "u_component_of_wind": other["u"],
            "v_component_of_wind": other["v"],
            "specific_humidity": other["q"],
            "mean_sea_level_pressure": sigma_to_pressure.mean_sea_level_pressure(
                ps, phi_s, t_low, sigma[-1]
            ),
            "surface_pressure": ps,
            "2m_temperature": t_surface - constants.STANDARD_LAPSE_RATE * 2.0,
            "10m_u_component_of_wind": nodal["u"][..., -1, :, :],
            "10m_v_component_of_wind": nodal["v"][..., -1, :, :],
        }
        return {k: v.astype(np.float32) for k, v in out.items()}


def simulator(config: HeldSuarezConfig) -> Simulator:
    """The :class:`Simulator` of ``config``, compiled once per process.

    Configurations that differ only in name, spin-up, output length or start time share it.
    """
    return _simulator(
        dataclasses.replace(config, name="", spinup_days=0.0, output_days=0.0, start_time="")
    )


@functools.lru_cache(maxsize=4)
def _simulator(physics: HeldSuarezConfig) -> Simulator:
    return Simulator(physics)


# --- The dataset ------------------------------------------------------------------------

_DESCRIPTIONS: Mapping[str, str] = {
    "geopotential": "Model temperature integrated hypsometrically from the surface "
    "(trapezoid in ln p between sigma levels), interpolated to pressure levels; below the "
    "lowest model level (and below ground) a standard-lapse-rate column anchored there.",
    "temperature": "Model temperature, linear in ln p between sigma levels; below the lowest "
    "model level extrapolated with the standard lapse rate; isothermal above the top level.",
    "u_component_of_wind": "Model wind (from spectral vorticity and divergence), linear in "
    "ln p between sigma levels, lowest-level value below.",
    "v_component_of_wind": "As u_component_of_wind.",
    "specific_humidity": "Passive tracer (Held-Suarez is dry): advected by the model, relaxed "
    "to the Manabe-Wetherald relative-humidity profile times Bolton saturation, "
    "supersaturation removed; clipped at 0; interpolated like the winds.",
    "mean_sea_level_pressure": "Surface pressure reduced hypsometrically to sea level through "
    "a standard-lapse-rate column starting from the lowest-level temperature brought down to "
    "the surface; equals surface_pressure where the ground is at sea level.",
    "surface_pressure": "Model surface pressure (exp of spectral log surface pressure).",
    "2m_temperature": "Stand-in: lowest model level temperature brought down to 2 m above "
    "ground with the standard lapse rate (no surface-layer physics in Held-Suarez).",
    "10m_u_component_of_wind": "Stand-in: eastward wind at the lowest model level (sigma = "
    "{sigma:.3f}, about {height:.0f} m above ground), not reduced to 10 m.",
    "10m_v_component_of_wind": "Stand-in: northward wind at the lowest model level (sigma = "
    "{sigma:.3f}, about {height:.0f} m above ground), not reduced to 10 m.",
    "land_sea_mask": "Stand-in: idealised continents (1 land, 0 sea); no effect on the dynamics.",
    "geopotential_at_surface": "The model's orography (smooth idealised mountains, "
    "spectrally truncated) times g; small ripples over the sea come from the truncation.",
    "soil_type": "Stand-in: ERA5 soil categories by latitude band over land, 0 over sea; no "
    "effect on the dynamics.",
}


def _global_attrs(config: HeldSuarezConfig) -> dict[str, Any]:
    chunk_days = config.time_chunk * config.output_interval_hours / 24
    return {
        "title": f"Tellus embedded atmosphere: Held-Suarez ({config.name})",
        "source": f"dinosaur {dinosaur.__version__} primitive equations on "
        f"{config.layers} equidistant sigma levels, T{config.truncation} Gaussian grid, "
        f"{config.time_step_minutes:g} min IMEX SIL3 steps, del^8 hyperdiffusion",
        "forcing": "Held & Suarez (1994, BAMS 75, 1825): Newtonian cooling to a zonally "
        "symmetric equilibrium temperature and boundary-layer Rayleigh drag. No seasonal or "
        "diurnal cycle; the calendar of the time axis is nominal.",
        "humidity": "specific_humidity is a passive tracer added to the dry Held-Suarez case; "
        "it has no effect on the dynamics. See its description.",
        "orography": f"Idealised smooth mountains up to {config.max_orography_m:g} m on "
        "idealised continents; land_sea_mask and soil_type are stand-ins.",
        "spinup_days": config.spinup_chunks * chunk_days,
        "grid": f"equiangular {config.n_lat}x{config.n_lon} cell centres without poles "
        "(latitude ascending), sampled from the model's spectral fields",
        "tellus_config": config.to_json(),
    }


def template(config: HeldSuarezConfig, sim: Simulator | None = None) -> xr.Dataset:
    """The dataset that :func:`build` writes: static fields filled, the rest lazy zeros."""
    sim = sim or simulator(config)
    lat = np.rad2deg(np.arcsin(sim.output_grid.nodal_axes[1]))
    lon = np.rad2deg(sim.output_grid.nodal_axes[0])
    times = config.times()
    shapes = {
        "upper_air": (len(times), len(config.pressure_levels), len(lat), len(lon)),
        "surface": (len(times), len(lat), len(lon)),
    }
    data_vars = {}
    for name in (*schema.UPPER_AIR, *schema.SURFACE):
        if name in _DESCRIPTIONS:
            var = schema.VARIABLES[name]
            data = da.zeros(shapes[var.kind], dtype=np.float32, chunks=-1)
            data_vars[name] = (var.dims, data)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    static = {
        "land_sea_mask": planet.land_sea_mask(lat2, lon2),
        "geopotential_at_surface": sim.surface_geopotential,
        "soil_type": planet.soil_type(lat2, lon2),
    }
    for name, values in static.items():
        data_vars[name] = (schema.VARIABLES[name].dims, values.astype(np.float32))
    ds = xr.Dataset(
        data_vars,
        coords={
            schema.TIME: times,
            schema.LEVEL: np.asarray(config.pressure_levels, dtype=np.int64),
            schema.LATITUDE: lat,
            schema.LONGITUDE: lon,
        },
    )
    sigma = sim.sigma[-1]  # the lowest level, about H ln(1 / sigma) above ground
    height = constants.DRY_AIR_GAS_CONSTANT * 288.0 / constants.GRAVITY * np.log(1 / sigma)
    for name in ds.data_vars:
        var = schema.VARIABLES[name]
        ds[name].attrs.update(
            units=var.units,
            long_name=var.long_name,
            description=_DESCRIPTIONS[name].format(sigma=sigma, height=height),
        )
    ds[schema.LEVEL].attrs.update(units="hPa", long_name="pressure level")
    ds[schema.LATITUDE].attrs.update(units="degrees_north", long_name="latitude")
    ds[schema.LONGITUDE].attrs.update(units="degrees_east", long_name="longitude")
    return ds


def _chunk_dataset(
    config: HeldSuarezConfig, index: int, values: Mapping[str, np.ndarray], ref: xr.Dataset
) -> xr.Dataset:
    start = index * config.time_chunk
    stop = min(start + config.time_chunk, config.n_times)
    times = ref[schema.TIME].values[start:stop]
    data_vars = {
        name: (schema.VARIABLES[name].dims, values[name][: stop - start]) for name in values
    }
    return xr.Dataset(
        data_vars,
        coords={
            schema.TIME: times,
            **{d: ref[d] for d in (schema.LEVEL, schema.LATITUDE, schema.LONGITUDE)},
        },
    )


# --- Building, resumably ----------------------------------------------------------------


def _state_dir(store: Path) -> Path:
    return store.parent / f"{store.stem}.sim-state"


def _save_state(path: Path, state: primitive_equations.State, **meta: int) -> None:
    """Saves the model state exactly (as the arrays it is), atomically."""
    arrays = {k: v for k, v in state.asdict().items() if k != "tracers"}
    arrays |= {f"tracers/{k}": v for k, v in state.tracers.items()}
    arrays |= {f"meta/{k}": v for k, v in meta.items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, path)  # a kill leaves the old file or the new one


def _load_state(path: Path) -> tuple[primitive_equations.State, dict[str, int]]:
    with np.load(path) as f:
        groups: dict[str, dict[str, np.ndarray]] = {"": {}, "tracers": {}, "meta": {}}
        for key in f.files:
            group, _, name = key.rpartition("/")
            groups[group][name] = f[key]
    state = primitive_equations.State(
        **{k: jnp.asarray(v) for k, v in groups[""].items()},
        tracers={k: jnp.asarray(v) for k, v in groups["tracers"].items()},
    )
    return state, {k: int(v) for k, v in groups["meta"].items()}


def _check_config(store: Path, state_dir: Path, config: HeldSuarezConfig) -> None:
    """Refuses to resume or reuse a store made with another configuration."""
    sources = []
    if (state_dir / "config.json").exists():
        sources.append((state_dir / "config.json").read_text())
    if store.exists():
        sources.append(xr.open_zarr(store, consolidated=False).attrs.get("tellus_config"))
    for found in sources:
        if found is not None and json.loads(found) != json.loads(config.to_json()):
            raise ValueError(
                f"{store} (or {state_dir}) was built with another configuration "
                f"({found}); remove both or build to another path"
            )


def build(
    store_path: str | os.PathLike, config: HeldSuarezConfig = DEFAULT, *, progress: bool = True
) -> Path:
    """Generates the Held-Suarez dataset of ``config`` into a Zarr store, resumably.

    A complete store is returned at once. Otherwise the build continues from the last saved
    model state (the spun-up state, or the state at the start of the first unwritten chunk),
    kept in ``<store stem>.sim-state/`` next to the store, and the result is bitwise the same
    as an uninterrupted build. While it builds, it holds
    :func:`tellus.data.locking.store_lock` on the store, so a second build of the same store
    refuses at once with a one-line :class:`~tellus.data.errors.LockedError`.

    Args:
      store_path: where the Zarr store goes, e.g. ``data/atmosphere.zarr``.
      config: which dataset; :data:`DEFAULT` or :data:`TINY` or your own.
      progress: show the progress (with the time left) of spin-up and output: bars on a
        terminal, a line every 30 s in a log (see :mod:`tellus.data.progress`).

    Returns:
      The path of the store.

    Raises:
      ValueError: the store or its saved states come from another configuration.
      LockedError: another process is building the store.
    """
    store = Path(store_path)
    state_dir = _state_dir(store)
    _check_config(store, state_dir, config)
    if _is_built(store, config):
        return store
    with locking.store_lock(store, "building the Held-Suarez dataset"):
        if _is_built(store, config):  # finished by another build just now
            return store
        return _build_locked(store, state_dir, config, progress)


def _is_built(store: Path, config: HeldSuarezConfig) -> bool:
    done = writing.completed_chunks(store) if store.exists() else set()
    return done >= set(range(config.n_chunks))


def _build_locked(store: Path, state_dir: Path, config: HeldSuarezConfig, progress: bool) -> Path:
    """The rest of :func:`build`, run under the store's lock."""
    sim = simulator(config)
    ref = template(config, sim)
    writing.create_store(store, ref, time_chunk=config.time_chunk, attrs=_global_attrs(config))
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "config.json").write_text(config.to_json())
    todo = [i for i in range(config.n_chunks) if i not in writing.completed_chunks(store)]

    # The state at the start of output chunk `first`, or the nearest saved one before it.
    first = todo[0]
    start = max(
        (i for i in range(first + 1) if (state_dir / f"chunk_{i:06d}.npz").exists()),
        default=None,
    )
    if start is None:
        spin = state_dir / "spinup.npz"
        state, meta = _load_state(spin) if spin.exists() else (sim.initial_state(), {"chunks": 0})
        with Progress(
            "Held-Suarez spin-up",
            config.spinup_chunks,
            completed=meta["chunks"],
            unit="chunk",
            enabled=progress,
        ) as bar:
            for k in range(meta["chunks"], config.spinup_chunks):
                state, _ = sim.advance(state)
                _save_state(spin, state, chunks=k + 1)
                bar.advance()
        _save_state(state_dir / "chunk_000000.npz", state)
        spin.unlink(missing_ok=True)
        start = 0
    else:
        state, _ = _load_state(state_dir / f"chunk_{start:06d}.npz")

    with Progress(
        "Held-Suarez output",
        config.n_chunks,
        completed=config.n_chunks - len(todo),
        unit="chunk",
        enabled=progress,
    ) as bar:
        for index in range(start, config.n_chunks):
            next_state, samples = sim.advance(state)
            if index + 1 < config.n_chunks:
                _save_state(state_dir / f"chunk_{index + 1:06d}.npz", next_state)
            if index in todo:
                values = sim.diagnose(samples)
                writing.write_chunk(store, index, _chunk_dataset(config, index, values, ref))
                bar.advance()
            if index > 0:  # keep the spun-up state and the latest one only
                (state_dir / f"chunk_{index:06d}.npz").unlink(missing_ok=True)
            state = next_state
    return store
