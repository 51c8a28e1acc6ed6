"""Which inputs a Nino3.4 forecast rests on: gradient x input and integrated gradients.

For a forecaster ``f(x, month) -> [B, n_leads]`` (K) and one lead:

* gradient x input: ``x * df/dx`` (exact for a linear model without intercept);
* integrated gradients (Sundararajan et al. 2017): ``(x - x0) * mean_k df/dx(x0 + a_k (x - x0))``
  over ``steps`` midpoints ``a_k``, from a baseline ``x0`` (zero anomaly, i.e. climatology,
  by default). Completeness: the attributions sum to ``f(x) - f(x0)`` up to the quadrature
  error, checked by :func:`completeness_gap`.

Composites average the attributions (summed over the input months) over the El Nino and
La Nina cases of a lead: the samples whose verifying index exceeds ``+threshold`` or falls
below ``-threshold`` standard deviations. :func:`box_fraction` is the share of the absolute
attribution that lies in one variable's box, to compare with the box's fair share of the
grid.

:func:`optimal_linear_forecaster` builds the linear forecaster that the recharge oscillator
implies (mode amplitudes read off the fields by least squares on the world's patterns, then
propagated exactly): its weights are known, so the attribution machinery can be checked
against them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from flax import nnx

from tellus.data import schema
from tellus.enso import indices, optimal_skill, world
from tellus.enso import recharge_oscillator as ro
from tellus.enso.train import HISTORY, N_LEADS, Series, gather

VARIABLES = (world.SST, world.HEAT)
# The equatorial western/central Pacific, where the recharged heat content that leads
# El Nino by a year or more sits (Jin 1997; Meinen & McPhaden 2000).
WP_HEAT_BOX = indices.Box("wp_heat", -10.0, 10.0, 120.0, 210.0)
Forecast = Callable[[jax.Array, jax.Array], jax.Array]


def _lead_fn(
    model: Forecast, month: jax.Array, lead: jax.Array
) -> Callable[[jax.Array], jax.Array]:
    return lambda x: jnp.sum(jnp.take(model(x, month), lead - 1, axis=1))


@functools.partial(jax.jit, static_argnums=(0, 6))
def _integrated(graphdef, state, x, x0, month, lead, steps: int) -> tuple[jax.Array, jax.Array]:
    """Integrated gradients and the forecast at ``lead`` (an array: one program for every
    lead)."""
    model = nnx.merge(graphdef, state)
    grad_fn = jax.grad(_lead_fn(model, month, lead))

    def body(acc, a):
        return acc + grad_fn(x0 + a * (x - x0)), None

    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps
    total, _ = jax.lax.scan(body, jnp.zeros_like(x), alphas)
    return (x - x0) * total / steps, jnp.take(model(x, month), lead - 1, axis=1)


@functools.partial(jax.jit, static_argnums=(0,))
def _gradient_x_input(graphdef, state, x, month, lead) -> tuple[jax.Array, jax.Array]:
    model = nnx.merge(graphdef, state)
    grad = jax.grad(_lead_fn(model, month, lead))(x)
    return x * grad, jnp.take(model(x, month), lead - 1, axis=1)


def _padded(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` with its last sample repeated to ``n`` samples (one program per batch size)."""
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), 0)]) if len(x) < n else x


def _explain(model, x, month, lead, method, steps, batch_size):
    """Attributions and the forecast at ``lead`` of ``x``, in batches of ``batch_size``
    (the last one padded)."""
    graphdef, state = nnx.split(model)
    n = len(x)
    x = jnp.asarray(_padded(np.asarray(x, np.float32), batch_size))
    month, lead = jnp.asarray(_padded(np.asarray(month), batch_size)), jnp.int32(lead)
    if method == "integrated_gradients":
        a, f = _integrated(graphdef, state, x, jnp.zeros_like(x), month, lead, int(steps))
    elif method == "gradient_x_input":
        a, f = _gradient_x_input(graphdef, state, x, month, lead)
    else:
        raise ValueError(f"unknown method {method!r}")
    return np.asarray(a)[:n], np.asarray(f)[:n]


def gradient_x_input(model: nnx.Module, x: np.ndarray, month: np.ndarray, lead: int) -> np.ndarray:
    """[B, history, var, lat, lon] attributions ``x * d f_lead / dx``."""
    graphdef, state = nnx.split(model)
    x = jnp.asarray(x, jnp.float32)
    return np.asarray(_gradient_x_input(graphdef, state, x, jnp.asarray(month), jnp.int32(lead))[0])


def integrated_gradients(
    model: nnx.Module,
    x: np.ndarray,
    month: np.ndarray,
    lead: int,
    baseline: np.ndarray | None = None,
    steps: int = 32,
) -> np.ndarray:
    """[B, history, var, lat, lon] integrated gradients of lead ``lead`` from ``baseline``
    (default zeros: the climatology of anomalies), midpoint rule with ``steps`` points."""
    x = jnp.asarray(x, jnp.float32)
    x0 = (
        jnp.zeros_like(x)
        if baseline is None
        else jnp.broadcast_to(jnp.asarray(baseline, jnp.float32), x.shape)
    )
    graphdef, state = nnx.split(model)
    a, _ = _integrated(graphdef, state, x, x0, jnp.asarray(month), jnp.int32(lead), int(steps))
    return np.asarray(a)


def completeness_gap(
    model: Forecast,
    x: np.ndarray,
    month: np.ndarray,
    lead: int,
    attributions: np.ndarray,
    baseline: np.ndarray | None = None,
) -> np.ndarray:
    """[B] ``sum(attributions) - (f(x) - f(baseline))`` per sample."""
    x0 = np.zeros_like(x) if baseline is None else np.broadcast_to(baseline, x.shape)
    fx = np.asarray(model(jnp.asarray(x, jnp.float32), jnp.asarray(month)))[:, lead - 1]
    f0 = np.asarray(model(jnp.asarray(x0, jnp.float32), jnp.asarray(month)))[:, lead - 1]
    return attributions.reshape(len(x), -1).sum(-1) - (fx - f0)


def composites(
    model: Forecast,
    series: Series,
    inits: np.ndarray,
    leads: Sequence[int] = (3, 6, 12, 18),
    *,
    method: str = "integrated_gradients",
    threshold: float = 0.5,
    steps: int = 16,
    max_cases: int = 64,
    batch_size: int = 16,
) -> xr.Dataset:
    """Mean attribution maps over the El Nino and La Nina cases of each lead.

    Args:
      model: the forecaster (``model(x, month) -> [B, n_leads]``).
      series, inits: the samples to explain (e.g. the test period).
      leads: leads (months) to explain.
      method: ``integrated_gradients`` or ``gradient_x_input``.
      threshold: a case is El Nino (La Nina) if its verifying index is above (below)
        ``+threshold`` (``-threshold``) standard deviations of the index over ``inits``.
      steps: integration points of integrated gradients.
      max_cases: at most this many cases per phase and lead (the strongest).

    Returns:
      Dataset with ``attribution`` (phase, lead, variable, latitude, longitude) summed over
      the input months, ``n_cases`` (phase, lead), ``forecast`` (phase, lead) mean forecast.
    """
    data = gather(series, inits)
    y = data["y"]
    std = float(np.nanstd(y))
    phases = ("el_nino", "la_nina")
    n_lat, n_lon = data["x"].shape[-2:]
    out = np.zeros((2, len(leads), len(VARIABLES), n_lat, n_lon))
    n_cases = np.zeros((2, len(leads)), int)
    mean_fc = np.full((2, len(leads)), np.nan)
    for j, lead in enumerate(leads):
        target = y[:, lead - 1]
        for i, sign in enumerate((1.0, -1.0)):
            idx = np.flatnonzero(sign * target > threshold * std)
            idx = idx[np.argsort(-sign * target[idx])][:max_cases]
            n_cases[i, j] = len(idx)
            if not len(idx):
                continue
            maps, fcs = [], []
            for b in range(0, len(idx), batch_size):
                sl = idx[b : b + batch_size]
                a, f = _explain(
                    model, data["x"][sl], data["month"][sl], lead, method, steps, batch_size
                )
                maps.append(a.sum(1))
                fcs.append(f)
            out[i, j] = np.concatenate(maps).mean(0)
            mean_fc[i, j] = float(np.concatenate(fcs).mean())
    return xr.Dataset(
        {
            "attribution": (("phase", "lead", "variable", *schema.SPATIAL_DIMS), out),
            "n_cases": (("phase", "lead"), n_cases),
            "forecast": (("phase", "lead"), mean_fc),
        },
        coords={
            "phase": list(phases),
            "lead": list(leads),
            "variable": list(VARIABLES),
            schema.LATITUDE: world.LATITUDES,
            schema.LONGITUDE: world.LONGITUDES,
        },
        attrs={"method": method, "threshold_std": threshold, "index_std": std},
    )


def mean_composites(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """The composites of an ensemble mean from its members' (same cases): attributions are
    linear in the forecast, so they average."""
    out = parts[0].copy()
    for k in ("attribution", "forecast"):
        out[k] = sum(p[k] for p in parts) / len(parts)
    return out


def box_fraction(
    attribution: xr.DataArray, box: indices.Box = WP_HEAT_BOX, variable: str = world.HEAT
) -> tuple[xr.DataArray, float]:
    """The share of the absolute attribution in ``variable`` within ``box``, and the box's
    fair share (its grid points over every point of every variable).

    Args:
      attribution: (..., variable, latitude, longitude).
    """
    mask = box.mask(attribution[schema.LATITUDE], attribution[schema.LONGITUDE]) > 0
    a = np.abs(attribution)
    inside = a.sel(variable=variable).where(mask, 0.0).sum(schema.SPATIAL_DIMS)
    total = a.sum(("variable", *schema.SPATIAL_DIMS))
    fair = float(mask.sum()) / (mask.size * attribution.sizes["variable"])
    return inside / total, fair


class LinearForecaster(nnx.Module):
    """``f(x, month)[:, l] = sum(weights[month - 1, l] * x)``: weights [12, n_leads,
    history, var, lat, lon]."""

    def __init__(self, weights: np.ndarray):
        self.weights = nnx.Variable(jnp.asarray(weights, jnp.float32))

    def __call__(self, x: jax.Array, month: jax.Array) -> jax.Array:
        w = self.weights[...][jnp.asarray(month) - 1]  # [B, L, h, v, lat, lon]
        return jnp.einsum("blhvyx,bhvyx->bl", w, x)


def optimal_linear_forecaster(
    params: ro.RecParams | None = None,
    config: world.WorldConfig | None = None,
    n_leads: int = N_LEADS,
    history: int = HISTORY,
) -> LinearForecaster:
    """The recharge oscillator's linear forecast of the centred 3-month mean Nino3.4.

    The modes at month t are read off the last input month by least squares on the world's
    patterns (T from SST on ``enso``, IOD on ``iod``; h from heat content on ``recharge``
    after the tilt, which is T's); they are propagated with the exact monthly operators
    (red-noise states, unknowable from the fields, set to zero) and the Nino3.4 weights of
    the noise-free SST are applied. Its inputs are ``history`` months (only the last is
    read) and its leads 1..``n_leads``, as a model config's.
    """
    params = params or ro.RecParams.observed()
    config = config or world.WorldConfig.observed()
    p = world.patterns(config)
    k = world.K_PER_M
    # fields (SST, heat) = P @ (T, h, IOD); its pseudo-inverse reads the modes off a map.
    shape = (2, *p["enso"].shape)
    cols = np.zeros((3, *shape))
    cols[0, 0], cols[0, 1] = p["enso"], k * config.tilt_m_per_k * p["tilt"]
    cols[1, 1] = k * p["recharge"]
    cols[2, 0] = p["iod"]
    read = np.linalg.pinv(cols.reshape(3, -1).T)  # [3, 2 * lat * lon]
    c = np.array(world.index_weights(config, indices.NINO34))
    m, _ = ro.monthly_operators(params)
    weights = np.zeros((12, n_leads, history, *shape))
    for month in range(1, 13):
        for lead in range(1, n_leads + 1):
            g = (
                sum(
                    optimal_skill.propagator(m, month, s)[:3, :3].T @ c
                    for s in (lead - 1, lead, lead + 1)
                )
                / 3.0
            )
            weights[month - 1, lead - 1, -1] = (g @ read).reshape(shape)
    return LinearForecaster(weights)


def plot_composites(comp: xr.Dataset, path: str | Path) -> Path:
    """A grid of maps: rows (phase, variable), columns leads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    leads = comp["lead"].values
    rows = [(ph, v) for ph in comp["phase"].values for v in comp["variable"].values]
    fig, axes = plt.subplots(
        len(rows), len(leads), figsize=(3.2 * len(leads), 1.6 * len(rows)), squeeze=False
    )
    lon, lat = comp[schema.LONGITUDE].values, comp[schema.LATITUDE].values
    for r, (ph, v) in enumerate(rows):
        for c, lead in enumerate(leads):
            a = comp["attribution"].sel(phase=ph, variable=v, lead=lead).values
            vmax = float(np.abs(comp["attribution"].sel(phase=ph, lead=lead)).max()) or 1.0
            ax = axes[r, c]
            ax.pcolormesh(lon, lat, a, cmap="RdBu_r", vmin=-vmax, vmax=vmax, shading="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            short = "SST" if v == world.SST else "HC"
            n = int(comp["n_cases"].sel(phase=ph, lead=lead))
            ax.set_title(f"{ph} {short} lead {lead} (n={n})", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


__all__ = [
    "WP_HEAT_BOX",
    "LinearForecaster",
    "box_fraction",
    "completeness_gap",
    "composites",
    "gradient_x_input",
    "integrated_gradients",
    "mean_composites",
    "optimal_linear_forecaster",
    "plot_composites",
]
