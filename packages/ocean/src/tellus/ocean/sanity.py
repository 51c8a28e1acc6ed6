"""Physical sanity of an ocean store: gyres, Drake Passage, stratification, drift.

Each function takes a dataset in the schema (a store of :mod:`tellus.ocean.world`, or any
ocean store on a regular grid with ``ocean_mask``) and returns numbers in physical units;
:func:`check` compares them with thresholds and ``python -m tellus.ocean.sanity STORE...``
(``just check-ocean``) prints them and exits 1 when one fails:

* **gyres**: the depth-integrated flow's streamfunction integrated westward from each
  basin's eastern coast, psi(x) = -int_x^coast V dx' (V = int v dz, the Sverdrup transport
  streamfunction), whose extreme in the subtropical band of each hemisphere is positive
  (clockwise) in the north and negative (anticlockwise) in the south;
* **Drake Passage**: the time-mean eastward transport int int u dz dy across the meridian
  where the southern channel (from the southern edge to the first land) is narrowest, at
  least 50 Sv;
* **stratification**: the area-weighted mean temperature of each depth decreases with depth;
* **drift**: the linear trend of the volume-weighted global-mean temperature (of annual
  means when the store spans two years or more), under 0.1 K per decade in magnitude.

Cell sizes come from the coordinates on a sphere of radius ``RADIUS`` (veros's); layer
thicknesses from ``layer_thickness`` when the store has it, else from the depths (faces
midway between T points, the top face at 0, as veros builds its grid).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

import numpy as np
import xarray as xr

RADIUS = 6370e3  # m, veros's Earth radius
SV = 1e6  # m3 s-1 per sverdrup

TEMPERATURE = "sea_water_potential_temperature"
EASTWARD = "eastward_sea_water_velocity"
NORTHWARD = "northward_sea_water_velocity"


def layer_thickness(ds: xr.Dataset) -> np.ndarray:
    """[depth] layer thicknesses (m)."""
    if "layer_thickness" in ds:
        return np.asarray(ds["layer_thickness"].values, dtype=np.float64)
    d = np.asarray(ds["depth"].values, dtype=np.float64)
    faces = np.concatenate([[0.0], (d[1:] + d[:-1]) / 2])
    faces = np.concatenate([faces, [2 * d[-1] - faces[-1]]])
    return np.diff(faces)


def _spacing(x: np.ndarray) -> float:
    return float(np.median(np.diff(np.asarray(x, dtype=np.float64))))


def cell_sizes(ds: xr.Dataset) -> tuple[np.ndarray, float]:
    """Zonal widths [lat] and the meridional height (m) of the grid's cells."""
    lat = np.asarray(ds["latitude"].values, dtype=np.float64)
    dx = RADIUS * np.cos(np.deg2rad(lat)) * np.deg2rad(_spacing(ds["longitude"].values))
    return dx, RADIUS * np.deg2rad(_spacing(lat))


def _ocean(ds: xr.Dataset) -> np.ndarray:
    return np.asarray(ds["ocean_mask"].values) > 0.5


def _time_mean(da: xr.DataArray) -> np.ndarray:
    x = da.mean("time") if "time" in da.dims else da
    return np.asarray(x.values, dtype=np.float64)


def depth_integral(ds: xr.Dataset, name: str) -> np.ndarray:
    """[lat, lon] time mean of ``int name dz`` (m2 s-1 for a velocity), 0 over land."""
    x = np.nan_to_num(_time_mean(ds[name]))
    return np.tensordot(layer_thickness(ds), x, axes=(0, 0))


def eastern_boundary_streamfunction(ds: xr.Dataset) -> np.ndarray:
    """[lat, lon] psi = -int_x^coast V dx' (Sv) at each ocean T point, integrated along its
    latitude from the T point (half its own cell) east to the next land; NaN over land and
    in rows with no land (where there is no eastern coast)."""
    v = depth_integral(ds, NORTHWARD)
    ocean = _ocean(ds)
    dx, _ = cell_sizes(ds)
    psi = np.full(v.shape, np.nan)
    n_lon = v.shape[1]
    for j in range(v.shape[0]):
        land = np.flatnonzero(~ocean[j])
        if land.size == 0:
            continue
        acc = 0.0
        start = land[0]  # walk west from a land cell, cyclically, once around the row
        for step in range(1, n_lon + 1):
            i = (start - step) % n_lon
            if not ocean[j, i]:
                acc = 0.0
                continue
            psi[j, i] = -(acc + 0.5 * v[j, i] * dx[j]) / SV
            acc += v[j, i] * dx[j]
    return psi


def gyre_strengths(ds: xr.Dataset, band: tuple[float, float] = (15.0, 40.0)) -> dict[str, float]:
    """The subtropical gyres: the value of largest magnitude of
    :func:`eastern_boundary_streamfunction` between ``band`` degrees of latitude in each
    hemisphere (Sv): positive is clockwise, expected in the north; negative in the south."""
    psi = eastern_boundary_streamfunction(ds)
    lat = np.asarray(ds["latitude"].values)
    out = {}
    for name, rows in (
        ("north", (lat >= band[0]) & (lat <= band[1])),
        ("south", (lat <= -band[0]) & (lat >= -band[1])),
    ):
        values = psi[rows]
        values = values[np.isfinite(values)]
        out[name] = float(values[np.argmax(np.abs(values))]) if values.size else float("nan")
    return out


def drake_longitude(ds: xr.Dataset) -> float:
    """The longitude where the southern channel is narrowest: the fewest ocean cells from
    the southern edge up to the first land (columns with no land are not passages)."""
    ocean = _ocean(ds)
    widths = np.array([np.argmin(col) if not col.all() else ocean.shape[0] + 1 for col in ocean.T])
    if np.all(widths > ocean.shape[0]):
        raise ValueError("no land south of the domain's northern edge: no passage to measure")
    return float(ds["longitude"].values[int(np.argmin(widths))])


def drake_passage_transport(ds: xr.Dataset, longitude: float | None = None) -> float:
    """Time-mean eastward transport (Sv) through the southern channel at ``longitude``
    (default :func:`drake_longitude`): ``int int u dz dy`` from the southern edge up to the
    first land."""
    lon = drake_longitude(ds) if longitude is None else longitude
    i = int(np.argmin(np.abs(np.asarray(ds["longitude"].values) - lon)))
    ocean = _ocean(ds)[:, i]
    n_channel = int(np.argmin(ocean)) if not ocean.all() else ocean.size
    u = depth_integral(ds, EASTWARD)[:n_channel, i]
    _, dy = cell_sizes(ds)
    return float(u.sum() * dy / SV)


def area_weights(ds: xr.Dataset) -> np.ndarray:
    """[lat, lon] cos(latitude) over ocean, 0 over land."""
    lat = np.asarray(ds["latitude"].values, dtype=np.float64)
    return np.cos(np.deg2rad(lat))[:, None] * _ocean(ds)


def mean_temperature_profile(ds: xr.Dataset) -> np.ndarray:
    """[depth] time-mean, area-weighted horizontal mean temperature over the ocean (degC)."""
    t = np.nan_to_num(_time_mean(ds[TEMPERATURE]))
    w = area_weights(ds)
    return (t * w).sum(axis=(-2, -1)) / w.sum()


def global_mean_temperature(ds: xr.Dataset) -> np.ndarray:
    """[time] volume-weighted global-mean temperature over the ocean (degC)."""
    t = np.nan_to_num(np.asarray(ds[TEMPERATURE].values, dtype=np.float64))
    w = area_weights(ds)[None] * layer_thickness(ds)[:, None, None]
    return (t * w).sum(axis=(-3, -2, -1)) / w.sum()


def temperature_drift(ds: xr.Dataset) -> float:
    """The linear trend of :func:`global_mean_temperature` (K per decade), fitted to the
    annual means of the whole years when there are two or more (so that the seasonal cycle
    does not bias it), else to the monthly values."""
    series = global_mean_temperature(ds)
    months = np.arange(series.size, dtype=np.float64)
    if series.size >= 24:
        years = series.size // 12
        series = series[: 12 * years].reshape(years, 12).mean(axis=1)
        months = 12 * np.arange(years) + 5.5
    if series.size < 2:
        return float("nan")
    slope = np.polyfit(months, series, 1)[0]  # K per month
    return float(slope * 120.0)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """What a sane ocean store shows.

    Attributes:
      gyre_sv: the least magnitude of each subtropical gyre (Sv), with its sign.
      drake_sv: the least eastward Drake Passage transport (Sv).
      drift_k_per_decade: the largest magnitude of the global-mean temperature trend.
    """

    gyre_sv: float = 5.0
    drake_sv: float = 50.0
    drift_k_per_decade: float = 0.1


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    value: str
    expected: str
    passed: bool

    def line(self) -> str:
        return f"{'pass' if self.passed else 'FAIL'}  {self.name}: {self.value} ({self.expected})"


def check(ds: xr.Dataset, thresholds: Thresholds = Thresholds()) -> list[Check]:
    """The four sanity checks of the module docstring on ``ds``."""
    t = thresholds
    gyres = gyre_strengths(ds)
    drake = drake_passage_transport(ds)
    profile = mean_temperature_profile(ds)
    drift = temperature_drift(ds)
    steps = np.diff(profile)
    return [
        Check(
            "north subtropical gyre",
            f"{gyres['north']:+.1f} Sv",
            f"clockwise, >= +{t.gyre_sv:g} Sv",
            bool(gyres["north"] >= t.gyre_sv),
        ),
        Check(
            "south subtropical gyre",
            f"{gyres['south']:+.1f} Sv",
            f"anticlockwise, <= -{t.gyre_sv:g} Sv",
            bool(gyres["south"] <= -t.gyre_sv),
        ),
        Check(
            "Drake Passage transport",
            f"{drake:.1f} Sv at {drake_longitude(ds):g} E",
            f">= {t.drake_sv:g} Sv",
            bool(drake >= t.drake_sv),
        ),
        Check(
            "temperature decreases with depth",
            f"{profile[0]:.2f} degC at {float(ds['depth'][0]):g} m to {profile[-1]:.2f} degC at "
            f"{float(ds['depth'][-1]):g} m, smallest decrease {-steps.max():.3f} K",
            "every level colder than the one above",
            bool(np.all(steps < 0)),
        ),
        Check(
            "global-mean temperature drift",
            f"{drift:+.3f} K per decade over {ds.sizes['time']} months",
            f"|drift| < {t.drift_k_per_decade:g} K per decade",
            bool(abs(drift) < t.drift_k_per_decade),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Checks each store given; prints one line per check; 1 if any fails, else 0."""
    from tellus.data import validation

    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m tellus.ocean.sanity STORE [STORE ...]", file=sys.stderr)
        return 2
    from tellus.data.errors import SchemaError

    failed = False
    for path in paths:
        try:
            ds = validation.open_dataset(path, check_values="none")
        except (FileNotFoundError, SchemaError) as e:
            print(f"{path}: {e} (build it with `just build-ocean`)", file=sys.stderr)
            return 2
        print(path)
        for c in check(ds):
            print("  " + c.line())
            failed |= not c.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
