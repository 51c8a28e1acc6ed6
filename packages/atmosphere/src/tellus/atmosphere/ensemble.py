"""Ensembles: perturbation functions for forecasts, and ensemble statistics of forecasts.

Two layers:

* :func:`member_perturber` turns a :class:`~tellus.atmosphere.perturbations.PerturbationConfig`
  into a pure ``(key, state [B, H, W, C], n_members) -> [M, B, H, W, C]`` on normalized
  states (jitted for Perlin and Gaussian noise).
* :func:`perturbation_fn` wraps it for :func:`tellus.atmosphere.forecast.forecast`: raw states
  in, raw members out, ``[N, H, W, C] -> [N * members, H, W, C]`` ordered init-major (all
  members of init 0, then init 1, ...) as the forecast's ``(time, realization)`` reshape
  expects. It normalizes with the lead models' statistics, so amplitudes are in channel stds,
  and breeds with the shortest lead model.

:func:`ensemble_mean`, :func:`ensemble_spread` and :func:`control` act on forecasts in the
WeatherBench2 layout with a ``realization`` dim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from tellus.atmosphere import perturbations
from tellus.atmosphere.perturbations import PerturbationConfig, StepFn

MEMBER_DIM = "realization"

# (key, normalized states [B, H, W, C], n_members) -> members [M, B, H, W, C].
MemberPerturber = Callable[[jax.Array, jax.Array, int], jax.Array]
# (raw states [N, H, W, C], members) -> raw members [N * members, H, W, C].
ForecastPerturber = Callable[[np.ndarray, int], np.ndarray]


def member_perturber(config: PerturbationConfig, step_fn: StepFn | None = None) -> MemberPerturber:
    """``(key, state, n_members) -> members [M, B, H, W, C]`` for ``config``.

    Args:
      config: the perturbation.
      step_fn: one model step on normalized states ``[N, H, W, C]`` (needed for ``bred``).

    Returns:
      A function of a PRNG key, normalized states ``[B, H, W, C]`` and the ensemble size
      (member 0 the control when ``config.include_control``). Perlin and Gaussian ones are
      jitted; bred ones call ``step_fn`` as given (jit it, or pass an ``nnx.jit`` model).
    """
    if config.kind == "bred":
        if step_fn is None:
            raise ValueError("bred perturbations need a model step_fn")

        def bred(key: jax.Array, state: jax.Array, n_members: int) -> jax.Array:
            return perturbations.perturb(key, state, n_members, config, step_fn)

        return bred

    def noise(key: jax.Array, state: jax.Array, n_members: int) -> jax.Array:
        return perturbations.perturb(key, state, n_members, config)  # jitted inside

    return noise


def perturbation_fn(
    system: Any,
    kind: str = "perlin",
    seed: int = 0,
    *,
    config: PerturbationConfig | None = None,
    static: np.ndarray | None = None,
) -> ForecastPerturber:
    """The ``perturb(x0, members)`` that :func:`tellus.atmosphere.forecast.forecast` takes.

    Args:
      system: a :class:`~tellus.atmosphere.forecast.ForecastSystem` (its ``config.mean`` and
        ``config.std`` normalize; its shortest lead model is the breeding step).
      kind: ``perlin``, ``gaussian`` or ``bred`` (overrides ``config.kind``).
      seed: PRNG seed; the same seed gives the same members.
      config: further settings (amplitude, octaves, ...); defaults otherwise.
      static: raw static fields ``[H, W, S]``, needed by the model step of ``bred``.

    Returns:
      ``perturb(x0 [N, H, W, C], members) -> [N * members, H, W, C]`` in raw units, init-major,
      member 0 of each init the unperturbed control (unless ``config.include_control`` is off).
    """
    config = dataclasses.replace(config or PerturbationConfig(), kind=kind)
    mean = jnp.asarray(system.config.mean, jnp.float32)
    std = jnp.asarray(system.config.std, jnp.float32)
    step_fn = None
    if config.kind == "bred":
        if static is None:
            raise ValueError(
                "bred perturbations step the model, which needs the static "
                "fields: pass static= (e.g. from forecast.read_initial_conditions)"
            )
        lead = min(system.leads)

        def step_fn(xn: jax.Array) -> jax.Array:
            for _, y in system.steps(xn * std + mean, static, [lead]):
                return (y - mean) / std
            raise AssertionError("unreachable: steps yields the requested lead")

    members_of = member_perturber(config, step_fn)
    key = jax.random.key(seed)

    def perturb(x0: np.ndarray, members: int) -> np.ndarray:
        x0 = jnp.asarray(x0, jnp.float32)
        out = members_of(key, (x0 - mean) / std, members) * std + mean  # [M, N, H, W, C]
        if config.include_control:
            out = out.at[0].set(x0)  # bit-exact control despite the round trip
        out = jnp.swapaxes(out, 0, 1)
        return np.asarray(out.reshape(-1, *x0.shape[1:]))

    return perturb


def ensemble_size(forecast: xr.Dataset | xr.DataArray) -> int:
    """Number of members (1 without a ``realization`` dim)."""
    return int(forecast.sizes.get(MEMBER_DIM, 1))


def ensemble_mean(forecast: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Mean over ``realization`` (a deterministic forecast is returned as is)."""
    if MEMBER_DIM not in forecast.dims:
        return forecast
    return forecast.mean(MEMBER_DIM, keep_attrs=True)


def ensemble_spread(
    forecast: xr.Dataset | xr.DataArray,
    ddof: int = 1,
) -> xr.Dataset | xr.DataArray:
    """Pointwise standard deviation over ``realization`` (unbiased with ``ddof=1``).

    Raises:
      ValueError: no ``realization`` dim, or fewer members than ``ddof + 1``.
    """
    m = ensemble_size(forecast)
    if MEMBER_DIM not in forecast.dims or m <= ddof:
        raise ValueError(
            f"spread needs a {MEMBER_DIM!r} dim with more than {ddof} members, got {m}"
        )
    return forecast.std(MEMBER_DIM, ddof=ddof, keep_attrs=True)


def control(forecast: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Member 0 (the unperturbed control of :func:`perturbation_fn`) without the dim."""
    if MEMBER_DIM not in forecast.dims:
        return forecast
    return forecast.isel({MEMBER_DIM: 0}, drop=True)
