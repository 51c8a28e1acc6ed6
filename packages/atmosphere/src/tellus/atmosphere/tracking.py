"""Tropical-cyclone-like vortex tracking on analyses and forecasts in the Tellus schema.

The detector follows the usual objective TC trackers (e.g. TempestExtremes, Ullrich & Zarzycki
2017, GMD 10, 1069; the ECMWF tracker, Van der Grijn 2002, ECMWF Tech. Memo. 386): at each time,

1. candidates are local minima of mean-sea-level pressure (``surface_pressure`` when there is
   no MSLP) over a ``neighbourhood`` of grid cells, periodic in longitude, inside a latitude
   band;
2. a minimum must lie at least ``min_depth_hpa`` below the mean pressure of a ring around it
   (a closed low, not a trough);
3. the relative vorticity of the 850 hPa winds (10 m winds without them) must be cyclonic
   (positive in the north, negative in the south) above ``vorticity_threshold`` somewhere
   within ``vorticity_radius_km``;
4. candidates closer than ``merge_km`` keep only the deepest.

Candidates are then linked across consecutive times by greedy nearest neighbour within a
search radius (``speed_km_per_6h`` scaled by the time step; great-circle distances, so a
vortex crossing 0/360 deg is one track), and tracks shorter than ``min_duration_hours`` are
dropped.

Inputs are analyses ``(time, [level,] latitude, longitude)`` or forecasts in the WeatherBench2
layout ``(time, prediction_timedelta, [realization,] ...)``, where each (init, member) is
tracked along its leads. The output is a :class:`pandas.DataFrame` (:data:`COLUMNS`);
:func:`match_tracks` pairs forecast tracks with observed ones and :func:`track_errors` gives
position and intensity errors by lead.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from tellus.data import constants, schema

LEAD_DIM = "prediction_timedelta"
MEMBER_DIM = "realization"
INIT = "init_time"
LEAD = "lead"
PRESSURE_VARIABLES = ("mean_sea_level_pressure", "surface_pressure")
UPPER_WINDS = ("u_component_of_wind", "v_component_of_wind")
SURFACE_WINDS = ("10m_u_component_of_wind", "10m_v_component_of_wind")
EARTH_RADIUS_KM = constants.EARTH_RADIUS / 1.0e3

COLUMNS = (
    "track_id",
    "time",
    INIT,
    LEAD,
    MEMBER_DIM,
    "lat",
    "lon",
    "min_pressure",
    "max_vorticity",
)


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """Detection and linking thresholds.

    Attributes:
      neighbourhood: size (grid cells, odd) of the square a minimum must be the lowest of.
      min_depth_hpa: the minimum must lie this far below the mean of the surrounding ring.
      ring_km: outer radius of the ring (from half of it to all of it); at least 1.5 grid
        spacings in latitude, so that a coarse grid still has a ring.
      lat_band: (south, north) degrees where centres may lie.
      vorticity_level: pressure level (hPa) of the winds for the vorticity check.
      vorticity_threshold: s-1, the cyclonic vorticity needed within ``vorticity_radius_km``.
      vorticity_radius_km: at least 1.5 grid spacings, as ``ring_km``.
      merge_km: of candidates closer than this only the deepest is kept.
      speed_km_per_6h: the linking search radius for a 6 h step (scaled by the step).
      min_duration_hours: shortest track kept (last minus first time).
    """

    neighbourhood: int = 5
    min_depth_hpa: float = 2.0
    ring_km: float = 600.0
    lat_band: tuple[float, float] = (-45.0, 45.0)
    vorticity_level: int = 850
    vorticity_threshold: float = 3.0e-5
    vorticity_radius_km: float = 300.0
    merge_km: float = 500.0
    speed_km_per_6h: float = 500.0
    min_duration_hours: float = 24.0

    def __post_init__(self):
        if self.neighbourhood < 3 or self.neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be odd and >= 3, got {self.neighbourhood}")
        if self.lat_band[0] >= self.lat_band[1]:
            raise ValueError(f"lat_band must be (south, north), got {self.lat_band}")


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance (km, haversine, mean Earth radius); broadcasts, degrees in."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _is_global(lon: np.ndarray) -> bool:
    d = np.diff(lon)
    return len(lon) > 2 and np.allclose(d, d[0]) and abs(len(lon) * d[0] - 360.0) < 1e-6 * 360


def relative_vorticity(
    u: np.ndarray, v: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> np.ndarray:
    """Relative vorticity (s-1) of winds ``[..., lat, lon]`` (m s-1) on the sphere.

    ``zeta = (dv/dlambda - d(u cos phi)/dphi) / (a cos phi)`` with centred differences
    (periodic in longitude on a global grid, one-sided at the latitude edges); NaN where
    ``cos phi`` vanishes (the poles).
    """
    phi, lam = np.radians(lat), np.radians(lon)
    cos = np.cos(phi)[:, None]
    if _is_global(lon):
        dlam = lam[1] - lam[0]
        dv = (np.roll(v, -1, axis=-1) - np.roll(v, 1, axis=-1)) / (2 * dlam)
    else:
        dv = np.gradient(v, lam, axis=-1)
    ducos = np.gradient(u * cos, phi, axis=-2)
    safe = np.where(cos > 1e-6, cos, np.nan)
    return (dv - ducos) / (constants.EARTH_RADIUS * safe)


def _spacing_km(lat: np.ndarray) -> float:
    return float(np.median(np.abs(np.diff(lat)))) * np.pi / 180.0 * EARTH_RADIUS_KM


def detect(
    pressure_hpa: np.ndarray,
    vorticity: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    config: TrackerConfig = TrackerConfig(),
) -> list[dict]:
    """Vortex centres in one field.

    Args:
      pressure_hpa: ``[lat, lon]`` pressure (hPa), latitude ascending.
      vorticity: ``[lat, lon]`` relative vorticity (s-1).
      lat, lon: the grid (degrees).
      config: thresholds.

    Returns:
      Candidates ``{'lat', 'lon', 'min_pressure', 'max_vorticity'}``, deepest first;
      ``max_vorticity`` is the most cyclonic value nearby, with its sign.
    """
    periodic = _is_global(lon)
    filled = np.where(np.isfinite(pressure_hpa), pressure_hpa, np.inf)
    mode = ("nearest", "wrap" if periodic else "nearest")
    low = ndimage.minimum_filter(filled, size=config.neighbourhood, mode=mode)
    # A flat neighbourhood is its own minimum everywhere; drop it before the costlier checks.
    high = ndimage.maximum_filter(filled, size=config.neighbourhood, mode=mode)
    band = (lat >= config.lat_band[0]) & (lat <= config.lat_band[1])
    ii, jj = np.nonzero((filled == low) & (high > low) & band[:, None] & np.isfinite(pressure_hpa))
    dy = _spacing_km(lat)
    ring_out = max(config.ring_km, 1.5 * dy)
    vort_r = max(config.vorticity_radius_km, 1.5 * dy)
    window = max(ring_out, vort_r) / EARTH_RADIUS_KM * 180.0 / np.pi
    found = []
    for i, j in sorted(zip(ii, jj, strict=True), key=lambda ij: filled[ij]):
        rows = np.nonzero(np.abs(lat - lat[i]) <= window + 1e-9)[0]
        d = great_circle_km(lat[i], lon[j], lat[rows][:, None], lon[None, :])
        p_rows = pressure_hpa[rows]
        ring = (d >= ring_out / 2) & (d <= ring_out) & np.isfinite(p_rows)
        if not ring.any() or p_rows[ring].mean() - pressure_hpa[i, j] < config.min_depth_hpa:
            continue
        sign = np.sign(lat[i])
        disc = (d <= vort_r) & np.isfinite(vorticity[rows])
        if sign == 0 or not disc.any():
            continue
        cyclonic = np.max(sign * vorticity[rows][disc])
        if cyclonic < config.vorticity_threshold:
            continue
        if any(
            great_circle_km(lat[i], lon[j], c["lat"], c["lon"]) < config.merge_km for c in found
        ):
            continue
        found.append(
            {
                "lat": float(lat[i]),
                "lon": float(lon[j]),
                "min_pressure": float(pressure_hpa[i, j]),
                "max_vorticity": float(sign * cyclonic),
            }
        )
    return found


def link(
    candidates: list[list[dict]],
    times: pd.DatetimeIndex,
    config: TrackerConfig = TrackerConfig(),
    min_radius_km: float = 0.0,
) -> list[list[tuple[int, dict]]]:
    """Links per-time candidates into tracks of ``(time index, candidate)``.

    Greedy nearest neighbour: at each step the closest (track end, candidate) pairs within
    the search radius are joined first; a track without a successor ends, a candidate
    without a track starts one. Tracks shorter than ``min_duration_hours`` are dropped.

    Args:
      candidates: per time, the output of :func:`detect`.
      times: valid times of ``candidates``.
      config: ``speed_km_per_6h`` and ``min_duration_hours``.
      min_radius_km: floor of the search radius; :func:`track` passes 1.5 grid spacings,
        since centres snap to grid points and a slow vortex may jump a whole (diagonal) cell.
    """
    tracks: list[list[tuple[int, dict]]] = []
    active: list[int] = []
    for k, cands in enumerate(candidates):
        new_active = []
        taken: set[int] = set()
        if k > 0 and active and cands:
            hours = (times[k] - times[k - 1]) / pd.Timedelta("1h")
            radius = max(config.speed_km_per_6h * hours / 6.0, min_radius_km)
            ends = [tracks[t][-1][1] for t in active]
            d = great_circle_km(
                np.array([e["lat"] for e in ends])[:, None],
                np.array([e["lon"] for e in ends])[:, None],
                np.array([c["lat"] for c in cands])[None, :],
                np.array([c["lon"] for c in cands])[None, :],
            )
            used_tracks: set[int] = set()
            for flat in np.argsort(d, axis=None, kind="stable"):
                a, c = np.unravel_index(flat, d.shape)
                if d[a, c] > radius:
                    break
                if a in used_tracks or c in taken:
                    continue
                used_tracks.add(a)
                taken.add(int(c))
                tracks[active[a]].append((k, cands[c]))
                new_active.append(active[a])
        for c, cand in enumerate(cands):
            if c not in taken:
                tracks.append([(k, cand)])
                new_active.append(len(tracks) - 1)
        active = new_active
    min_h = config.min_duration_hours
    return [t for t in tracks if (times[t[-1][0]] - times[t[0][0]]) / pd.Timedelta("1h") >= min_h]


def _fields(
    ds: xr.Dataset, config: TrackerConfig
) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    name = next((p for p in PRESSURE_VARIABLES if p in ds), None)
    if name is None:
        raise KeyError(
            f"tracking needs one of {PRESSURE_VARIABLES}; the dataset has "
            f"{sorted(map(str, ds.data_vars))}"
        )
    pressure = ds[name]
    scale = 1.0 if pressure.attrs.get("units") == "hPa" else 0.01  # schema: Pa
    pressure = pressure * scale
    if (
        all(w in ds for w in UPPER_WINDS)
        and schema.LEVEL in ds[UPPER_WINDS[0]].dims
        and config.vorticity_level in ds[schema.LEVEL].values
    ):
        u, v = (ds[w].sel({schema.LEVEL: config.vorticity_level}, drop=True) for w in UPPER_WINDS)
    elif all(w in ds for w in SURFACE_WINDS):
        u, v = ds[SURFACE_WINDS[0]], ds[SURFACE_WINDS[1]]
    else:
        raise KeyError(
            f"the vorticity check needs {UPPER_WINDS} at "
            f"{config.vorticity_level} hPa or {SURFACE_WINDS}; the dataset has "
            f"{sorted(map(str, ds.data_vars))}"
        )
    return pressure, u, v


def track(ds: xr.Dataset, config: TrackerConfig = TrackerConfig()) -> pd.DataFrame:
    """Vortex tracks in an analysis or a forecast.

    Args:
      ds: ``(time, latitude, longitude)`` fields (analysis), or the WeatherBench2 forecast
        layout ``(time, prediction_timedelta, [realization,] latitude, longitude)``, with
        ``mean_sea_level_pressure`` (or ``surface_pressure``) in Pa and 850 hPa (or 10 m)
        winds in m s-1; latitude ascending.
      config: thresholds.

    Returns:
      One row per track point with :data:`COLUMNS`: ``track_id`` (unique in the frame),
      ``time`` (valid time), ``init_time`` and ``lead`` (NaT for an analysis), ``realization``
      (-1 without members), ``lat``, ``lon`` (degrees), ``min_pressure`` (hPa),
      ``max_vorticity`` (s-1, the most cyclonic value nearby, with its sign).

    Raises:
      KeyError: the pressure or wind variables are missing (naming them).
    """
    pressure, u, v = _fields(ds, config)
    lat = np.asarray(ds[schema.LATITUDE].values, float)
    lon = np.asarray(ds[schema.LONGITUDE].values, float)
    forecast = LEAD_DIM in pressure.dims
    members = ds[MEMBER_DIM].values if MEMBER_DIM in pressure.dims else [None]
    # A forecast from one init may carry ``time`` as a scalar coordinate.
    init_dim = forecast and schema.TIME in pressure.dims
    inits = np.atleast_1d(ds[schema.TIME].values) if forecast else [None]
    along = LEAD_DIM if forecast else schema.TIME
    rows = []
    next_id = 0
    for init in inits:
        for member in members:
            sel = {}
            if init_dim:
                sel[schema.TIME] = init
            if member is not None:
                sel[MEMBER_DIM] = member
            fields = [
                f.sel(sel).transpose(along, schema.LATITUDE, schema.LONGITUDE).values
                for f in (pressure, u, v)
            ]
            if forecast:
                leads = pd.TimedeltaIndex(ds[LEAD_DIM].values)
                times = pd.Timestamp(init) + leads
            else:
                times = pd.DatetimeIndex(ds[schema.TIME].values)
            zeta = relative_vorticity(fields[1], fields[2], lat, lon)
            cands = [detect(fields[0][k], zeta[k], lat, lon, config) for k in range(len(times))]
            for tr in link(cands, times, config, 1.5 * _spacing_km(lat)):
                for k, c in tr:
                    rows.append(
                        {
                            "track_id": next_id,
                            "time": times[k],
                            INIT: pd.Timestamp(init) if forecast else np.datetime64("NaT", "ns"),
                            LEAD: leads[k] if forecast else np.timedelta64("NaT", "ns"),
                            MEMBER_DIM: -1 if member is None else int(member),
                            **c,
                        }
                    )
                next_id += 1
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    out[INIT] = pd.to_datetime(out[INIT])
    out[LEAD] = pd.to_timedelta(out[LEAD])
    return out.astype({"track_id": int, MEMBER_DIM: int})


def match_tracks(
    forecast_tracks: pd.DataFrame, truth_tracks: pd.DataFrame, max_distance_km: float = 300.0
) -> pd.DataFrame:
    """Pairs each forecast track with the observed track it starts on.

    A forecast track matches the truth track closest to it at its first valid time that
    both share, if within ``max_distance_km``; within one (init, member) each truth track is
    matched at most once (closest pairs first).

    Returns:
      Columns ``track_id`` (forecast), ``truth_track_id``, ``distance_km``.
    """
    pairs = []
    for _, group in forecast_tracks.groupby([INIT, MEMBER_DIM], dropna=False, sort=False):
        options = []
        for tid, fc in group.groupby("track_id", sort=False):
            both = fc.merge(truth_tracks, on="time", suffixes=("", "_truth"))
            if both.empty:
                continue
            first = both[both["time"] == both["time"].min()]
            d = great_circle_km(first["lat"], first["lon"], first["lat_truth"], first["lon_truth"])
            for dist, truth_id in zip(d, first["track_id_truth"], strict=True):
                if dist <= max_distance_km:
                    options.append((float(dist), int(tid), int(truth_id)))
        used_fc, used_truth = set(), set()
        for dist, tid, truth_id in sorted(options):
            if tid in used_fc or truth_id in used_truth:
                continue
            used_fc.add(tid)
            used_truth.add(truth_id)
            pairs.append({"track_id": tid, "truth_track_id": truth_id, "distance_km": dist})
    return pd.DataFrame(pairs, columns=["track_id", "truth_track_id", "distance_km"])


def track_errors(
    forecast_tracks: pd.DataFrame,
    truth_tracks: pd.DataFrame,
    max_distance_km: float = 300.0,
    matches: pd.DataFrame | None = None,
    by_lead: bool = True,
) -> pd.DataFrame:
    """Position and intensity errors of matched forecast tracks along the lead.

    Args:
      forecast_tracks: from :func:`track` on a forecast (an analysis's tracks count their
        lead from each track's first time).
      truth_tracks: from :func:`track` on the verifying analysis.
      max_distance_km: for :func:`match_tracks` when ``matches`` is not given.
      matches: pairs from :func:`match_tracks`.
      by_lead: average by lead (else one row per matched point).

    Returns:
      By lead: ``lead``, ``count``, ``position_error_km`` (mean great-circle distance),
      ``pressure_error_hpa`` (mean forecast minus truth), ``abs_pressure_error_hpa``,
      ``vorticity_error`` (mean forecast minus truth, s-1).
    """
    if matches is None:
        matches = match_tracks(forecast_tracks, truth_tracks, max_distance_km)
    fc = forecast_tracks.merge(matches[["track_id", "truth_track_id"]], on="track_id")
    if fc[LEAD].isna().all():
        fc[LEAD] = fc["time"] - fc.groupby("track_id")["time"].transform("min")
    truth = truth_tracks[["track_id", "time", "lat", "lon", "min_pressure", "max_vorticity"]]
    both = fc.merge(
        truth.rename(columns={"track_id": "truth_track_id"}),
        on=["truth_track_id", "time"],
        suffixes=("", "_truth"),
    )
    both["position_error_km"] = great_circle_km(
        both["lat"], both["lon"], both["lat_truth"], both["lon_truth"]
    )
    both["pressure_error_hpa"] = both["min_pressure"] - both["min_pressure_truth"]
    both["abs_pressure_error_hpa"] = both["pressure_error_hpa"].abs()
    both["vorticity_error"] = both["max_vorticity"] - both["max_vorticity_truth"]
    if not by_lead:
        return both
    metrics = [
        "position_error_km",
        "pressure_error_hpa",
        "abs_pressure_error_hpa",
        "vorticity_error",
    ]
    out = both.groupby(LEAD)[metrics].mean()
    out.insert(0, "count", both.groupby(LEAD).size())
    return out.reset_index()
