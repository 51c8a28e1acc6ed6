"""The embedded ENSO world: recharge-oscillator modes projected onto global monthly fields.

The modes of :mod:`tellus.enso.recharge_oscillator` (T, h, IOD) become two schema variables
on a 5 deg grid (latitudes 55S-60N, longitudes 0-355E, no land):

* ``sea_surface_temperature_anomaly`` (K) = T * P_enso + IOD * P_iod + noise, with P_enso a
  Gaussian centred on the equatorial eastern/central Pacific, scaled so that its Nino3 mean is
  1 (T is the Nino3 SST anomaly), and P_iod a west-east dipole in the Indian Ocean, scaled so
  that its DMI is 1;
* ``ocean_heat_content_anomaly`` (K, the 0-300 m mean temperature anomaly) =
  alpha * (h * P_eq + tilt * T * P_tilt) + noise: the recharge (h spread along the equatorial
  Pacific band) and the west-east seesaw of the thermocline that goes with T; alpha converts
  thermocline displacement (m) to 0-300 m mean temperature (K, see ``K_PER_M``).

The noise is white in time and spatially smoothed (Gaussian kernel), of fixed pointwise
standard deviation. The mode series are stored beside the fields as the extra variable
``enso_modes`` (time, [realization,] mode), which the schema ignores, so the optimal forecast
(:mod:`tellus.enso.optimal_skill`) can be scored on exactly the same samples.

Time axes: the observed run starts 1850-01. The schema's time axis is ``datetime64[ns]``
(validation converts to it), which spans 1678-2262 only, so a model run longer than
``MAX_SEGMENT_YEARS`` is cut into consecutive segments stacked along a ``realization`` dim,
each labelled 1700-01 onwards (segment r+1 continues the run where segment r stops).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Literal

import dask.array as da
import numpy as np
import pandas as pd
import scipy.ndimage
import xarray as xr

from tellus.data import locking, schema, validation, writing
from tellus.enso import indices
from tellus.enso import recharge_oscillator as ro

SST = "sea_surface_temperature_anomaly"
HEAT = "ocean_heat_content_anomaly"
MODES_VARIABLE = "enso_modes"
REALIZATION = "realization"
MODE = "mode"
MAX_SEGMENT_YEARS = 400
LATITUDES = np.arange(-55.0, 60.0 + 1e-9, 5.0)
LONGITUDES = np.arange(0.0, 360.0, 5.0)

# K m-1. 0-300 m mean temperature change per metre of thermocline displacement: a
# thermocline separating waters ~10 K apart, shifted by 1 m, changes the mean temperature of a
# 300 m column by about 10 K * 1 m / 300 m. An order-of-magnitude estimate, not a fitted value.
K_PER_M = 10.0 / 300.0

Kind = Literal["model", "observed"]


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """How the modes become fields.

    Attributes:
      enso_lon: longitude (deg E) of the centre of the ENSO SST pattern.
      enso_lat_width, enso_lon_width: Gaussian e-folding half-widths (deg) of that pattern.
      tilt_m_per_k: thermocline tilt (m of east-west seesaw amplitude per K of T).
      sst_noise, heat_noise: pointwise standard deviation of the noise (K).
      noise_length: e-folding scale of the noise's spatial correlation (deg).
      start: first month of the run (a segment's first month for long model runs).
    """

    enso_lon: float = 240.0
    enso_lat_width: float = 10.0
    enso_lon_width: float = 40.0
    tilt_m_per_k: float = 15.0
    sst_noise: float = 0.25
    heat_noise: float = 0.1
    noise_length: float = 7.5
    start: str = "1850-01-01"

    @classmethod
    def observed(cls) -> WorldConfig:
        return cls()

    @classmethod
    def model(cls) -> WorldConfig:
        """A coupled model's biases: ENSO centred too far west (the cold-tongue bias)."""
        return dataclasses.replace(cls(), enso_lon=220.0, enso_lon_width=45.0, start="1700-01-01")


def _gaussian(
    lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float, lat_w: float, lon_w: float
) -> np.ndarray:
    dlon = (lon[None, :] - lon0 + 180.0) % 360.0 - 180.0
    return np.exp(-(((lat[:, None] - lat0) / lat_w) ** 2) - (dlon / lon_w) ** 2)


def patterns(
    config: WorldConfig, lat: np.ndarray = LATITUDES, lon: np.ndarray = LONGITUDES
) -> dict[str, np.ndarray]:
    """The spatial patterns [lat, lon]: ``enso`` and ``iod`` (SST, K per K), ``recharge`` and
    ``tilt`` (thermocline displacement, m per m of h and per m of tilt)."""
    enso = _gaussian(lat, lon, 0.0, config.enso_lon, config.enso_lat_width, config.enso_lon_width)
    enso /= (indices.box_weights(indices.NINO3, lat, lon) * enso).sum()
    iod = _gaussian(lat, lon, 0.0, 60.0, 10.0, 12.0) - _gaussian(lat, lon, -5.0, 100.0, 8.0, 12.0)
    dmi = (indices.box_weights(indices.IOD_WEST, lat, lon) * iod).sum() - (
        indices.box_weights(indices.IOD_EAST, lat, lon) * iod
    ).sum()
    iod /= dmi
    # The equatorial Pacific waveguide, 130E-280E with smooth ends.
    band = np.exp(-((lat[:, None] / 8.0) ** 2)) * np.clip(
        np.minimum(lon[None, :] - 125.0, 285.0 - lon[None, :]) / 20.0, 0.0, 1.0
    )
    seesaw = np.clip((lon[None, :] - 205.0) / 60.0, -1.0, 1.0)
    return {"enso": enso, "iod": iod, "recharge": band, "tilt": band * seesaw}


def index_weights(config: WorldConfig, box: indices.Box) -> tuple[float, float, float]:
    """Weights c over (T, h, IOD) such that the noise-free SST box mean is c^T x."""
    p = patterns(config)
    w = indices.box_weights(box, LATITUDES, LONGITUDES)
    return float((w * p["enso"]).sum()), 0.0, float((w * p["iod"]).sum())


def _smooth(white: np.ndarray, config: WorldConfig) -> np.ndarray:
    """Spatially smooths white noise [..., lat, lon] (periodic in longitude), unit variance."""
    sigma = config.noise_length / 5.0 / np.sqrt(2.0)  # e-folding scale -> Gaussian sigma, points
    axes = (white.ndim - 2, white.ndim - 1)
    out = scipy.ndimage.gaussian_filter(white, sigma, mode=("nearest", "wrap"), axes=axes)
    # Normalize with the exact pointwise std of the filter (same weights at every interior point).
    impulse = np.zeros((len(LATITUDES), len(LONGITUDES)))
    impulse[len(LATITUDES) // 2, 0] = 1.0
    kernel = scipy.ndimage.gaussian_filter(impulse, sigma, mode=("nearest", "wrap"))
    return out / np.sqrt((kernel**2).sum())


def index_noise_variance(config: WorldConfig, box: indices.Box, *, variable: str = SST) -> float:
    """Variance of the noise of ``variable`` averaged over ``box`` (cos-lat weights), K^2.

    Exact for the linear noise filter: Var(w^T S e) = ||S^T w||^2 for white e, with S built
    column by column from impulses.
    """
    n_lat, n_lon = len(LATITUDES), len(LONGITUDES)
    impulses = np.eye(n_lat * n_lon).reshape(n_lat * n_lon, n_lat, n_lon)
    s = _smooth(impulses, config).reshape(n_lat * n_lon, -1)  # row k: S e_k
    w = indices.box_weights(box, LATITUDES, LONGITUDES).ravel()
    amp = config.sst_noise if variable == SST else config.heat_noise
    return float(amp**2 * np.sum((s @ w) ** 2))


@dataclasses.dataclass(frozen=True)
class _Plan:
    kind: Kind
    params: ro.RecParams
    config: WorldConfig
    n_segments: int
    segment_months: int
    seed: int

    @property
    def times(self) -> np.ndarray:
        return pd.date_range(self.config.start, periods=self.segment_months, freq="MS").values

    def modes(self) -> np.ndarray:
        """[time, segment, mode]."""
        states = ro.simulate(self.params, self.n_segments * self.segment_months // 12, self.seed)
        return states.reshape(self.n_segments, self.segment_months, ro.N_MODES).transpose(1, 0, 2)


def _plan(kind: Kind, n_years: int | None, seed: int | None) -> _Plan:
    if kind not in ("model", "observed"):
        raise ValueError(f"kind must be 'model' or 'observed', got {kind!r}")
    n_years = n_years or (1200 if kind == "model" else 150)
    seed = (0 if kind == "model" else 1) if seed is None else seed
    params = ro.RecParams.model() if kind == "model" else ro.RecParams.observed()
    config = WorldConfig.model() if kind == "model" else WorldConfig.observed()
    n_seg = -(-n_years // MAX_SEGMENT_YEARS)
    if n_years % n_seg:
        raise ValueError(
            f"n_years={n_years} above {MAX_SEGMENT_YEARS} must split into equal "
            f"segments of at most {MAX_SEGMENT_YEARS} years"
        )
    return _Plan(kind, params, config, n_seg, n_years // n_seg * 12, seed)


def _fields(plan: _Plan, modes: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """SST and heat content [time, segment, lat, lon] for the modes [time, segment, 3]."""
    p = patterns(plan.config)
    t, h, iod = modes[..., 0, None, None], modes[..., 1, None, None], modes[..., 2, None, None]
    rng = np.random.default_rng([plan.seed, chunk])
    shape = (*modes.shape[:2], len(LATITUDES), len(LONGITUDES))
    sst = (
        t * p["enso"]
        + iod * p["iod"]
        + plan.config.sst_noise * _smooth(rng.standard_normal(shape), plan.config)
    )
    heat = K_PER_M * (h * p["recharge"] + plan.config.tilt_m_per_k * t * p["tilt"])
    heat = heat + plan.config.heat_noise * _smooth(rng.standard_normal(shape), plan.config)
    return sst.astype(np.float32), heat.astype(np.float32)


def _dataset(plan: _Plan, times: np.ndarray, sst, heat, modes) -> xr.Dataset:
    seg = plan.n_segments > 1
    field_dims = (
        (schema.TIME, REALIZATION, *schema.SPATIAL_DIMS) if seg else schema.VARIABLES[SST].dims
    )
    mode_dims = (schema.TIME, REALIZATION, MODE) if seg else (schema.TIME, MODE)
    if not seg:
        sst, heat, modes = sst[:, 0], heat[:, 0], modes[:, 0]
    coords = {
        schema.TIME: times,
        schema.LATITUDE: LATITUDES,
        schema.LONGITUDE: LONGITUDES,
        MODE: list(ro.MODES),
    }
    if seg:
        coords[REALIZATION] = np.arange(plan.n_segments)
    ds = xr.Dataset(
        {
            SST: (
                field_dims,
                sst,
                {
                    "units": schema.VARIABLES[SST].units,
                    "long_name": schema.VARIABLES[SST].long_name,
                },
            ),
            HEAT: (
                field_dims,
                heat,
                {
                    "units": schema.VARIABLES[HEAT].units,
                    "long_name": schema.VARIABLES[HEAT].long_name,
                },
            ),
            MODES_VARIABLE: (
                mode_dims,
                modes,
                {
                    "units": "K, m, K",
                    "long_name": "recharge-oscillator modes: Nino3 SST "
                    "anomaly T, western Pacific thermocline depth h, IOD index",
                },
            ),
        },
        coords=coords,
    )
    ds[schema.LATITUDE].attrs.update(units="degrees_north")
    ds[schema.LONGITUDE].attrs.update(units="degrees_east")
    return ds


def _attrs(plan: _Plan) -> dict:
    return {
        "title": f"Tellus ENSO world ({plan.kind} run)",
        "source": "tellus.enso.world: extended recharge oscillator projected on patterns",
        "enso_kind": plan.kind,
        "enso_seed": plan.seed,
        "enso_rec_params": json.dumps(dataclasses.asdict(plan.params)),
        "enso_world_config": json.dumps(dataclasses.asdict(plan.config)),
        "enso_segments": plan.n_segments,
        "nino34_noise_variance": index_noise_variance(plan.config, indices.NINO34),
    }


def build_world(
    kind: Kind = "model",
    n_years: int | None = None,
    seed: int | None = None,
    path: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    time_chunk: int = 120,
) -> xr.Dataset:
    """Builds the ENSO world, in memory or resumably into a Zarr store.

    Args:
      kind: ``"model"`` (CMIP-like parameters and pattern biases, 1200 years by default,
        starting 1700-01 and cut into segments along ``realization`` above
        ``MAX_SEGMENT_YEARS``) or ``"observed"`` (the calibrated "real" world, 150 years from
        1850-01).
      n_years: length (default 1200 for model, 150 for observed).
      seed: random seed (default 0 for model, 1 for observed): the same seed gives the same
        world, chunk by chunk, so a killed build rerun to the same path finishes identically.
      path: Zarr store to write (with :mod:`tellus.data.writing`); None builds in memory.
        While it writes, it holds :func:`tellus.data.locking.store_lock` on the store, so a
        second build of it refuses with a one-line :class:`~tellus.data.errors.LockedError`.
      progress: show a progress bar while writing.
      time_chunk: months per Zarr chunk.

    Returns:
      The dataset (opened and validated from ``path`` if given): ``sea_surface_temperature_
      anomaly`` and ``ocean_heat_content_anomaly`` (time, [realization,] latitude, longitude)
      and ``enso_modes`` (time, [realization,] mode).
    """
    plan = _plan(kind, n_years, seed)
    modes = plan.modes()
    times = plan.times
    n_chunks = writing.n_chunks(len(times), time_chunk)

    def chunk(i: int) -> xr.Dataset:
        sl = slice(i * time_chunk, (i + 1) * time_chunk)
        sst, heat = _fields(plan, modes[sl], i)
        return _dataset(plan, times[sl], sst, heat, modes[sl])

    if path is None:
        parts = [chunk(i) for i in range(n_chunks)]
        ds = xr.concat(
            parts,
            dim=schema.TIME,
            data_vars="all",
            coords="minimal",
            compat="override",
            join="override",
        )
        ds.attrs.update(_attrs(plan))
        return validation.validate(ds, source=f"ENSO world ({kind})")

    # float32 fields (by keyword: dask ignores a positional dtype, so worlds built before
    # this was noticed hold the same float32 values as float64, and are read as they are).
    dtype = np.float32
    if writing.is_complete(path):
        with xr.open_zarr(path, consolidated=False) as old:
            dtype = old[SST].dtype
    template = _dataset(
        plan,
        times,
        *(
            da.zeros(
                (len(times), plan.n_segments, len(LATITUDES), len(LONGITUDES)),
                dtype=dtype,
                chunks=(time_chunk, -1, -1, -1),
            )
            for _ in range(2)
        ),
        da.zeros(modes.shape, dtype=np.float64, chunks=(time_chunk, -1, -1)),
    )
    # A complete store is only checked (create_store compares its template), unlocked.
    building = not writing.is_complete(path)
    lock = locking.store_lock(path, f"building the ENSO {kind} world")
    with lock if building else contextlib.nullcontext():
        writing.create_store(path, template, time_chunk=time_chunk, attrs=_attrs(plan))
        done = writing.completed_chunks(path)
        todo = [i for i in range(n_chunks) if i not in done]
        for i in writing.track(
            todo, description=f"ENSO world ({kind})", enabled=progress and bool(todo)
        ):
            writing.write_chunk(path, i, chunk(i))
    return validation.open_dataset(path)


def main() -> None:
    """Builds both worlds under a directory and prints build time and store size."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="directory for model.zarr and observed.zarr")
    parser.add_argument("--model-years", type=int, default=1200)
    parser.add_argument("--observed-years", type=int, default=150)
    args = parser.parse_args()
    for kind, years in (("model", args.model_years), ("observed", args.observed_years)):
        path = os.path.join(args.out, f"{kind}.zarr")
        start = time.perf_counter()
        ds = build_world(kind, years, path=path)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
        print(
            f"{kind}: {dict(ds.sizes)} in {time.perf_counter() - start:.1f} s, "
            f"{size / 2**20:.1f} MiB at {path}"
        )


if __name__ == "__main__":
    main()
