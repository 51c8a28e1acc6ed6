"""Forecasts of a trained ocean forecaster, as Datasets in the schema.

:class:`Predictor` (what ``tellus.load`` returns for an ocean checkpoint) takes a Dataset in
the schema holding the initial month(s): the forecaster's variables on its depths, the wind
stress and ``ocean_mask`` (a store opened with :func:`tellus.data.validation.open_dataset`),
and returns the monthly forecast layout::

    (time, prediction_timedelta, [depth], latitude, longitude)

``time`` the init month, ``prediction_timedelta`` the lead in whole months (integers 1 ..
``months``, attribute ``units: months``; :mod:`tellus.evaluation.metrics` adds them as
calendar months), ``valid_time`` a coordinate, NaN over land. Leads 1-6 come from one call
of the network; longer ones restart from every sixth month
(:func:`tellus.ocean.forecaster.rollout`). With ``observed_forcing`` the wind stress of every
lead's month is read from the Dataset too.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import schema, stacking
from tellus.evaluation import metrics
from tellus.ocean import forecaster as fc

LEAD = metrics.LEAD
TIME = schema.TIME
MASK = "ocean_mask"


class Predictor:
    """A trained :class:`~tellus.ocean.forecaster.OceanForecaster` that forecasts from
    Datasets (module docstring).

    Attributes:
      model: the forecaster.
      batch_size: init months per network call.
    """

    def __init__(self, model: fc.OceanForecaster, batch_size: int = 8):
        self.model = model
        self.batch_size = int(batch_size)

    @property
    def config(self) -> fc.ForecasterConfig:
        return self.model.config

    def layouts(self, ds: xr.Dataset) -> tuple[stacking.ChannelLayout, stacking.ChannelLayout]:
        """The state's and the forcing's channel layouts in ``ds``.

        Raises:
          KeyError: a variable or depth of the forecaster missing from ``ds``.
        """
        cfg = self.config
        if MASK not in ds.variables:
            raise KeyError(f"the dataset has no {MASK!r}")
        state = stacking.ChannelLayout.from_dataset(ds, cfg.variables, cfg.depths)
        forcing = stacking.ChannelLayout.from_dataset(ds, cfg.forcings)
        return state, forcing

    def forecast(
        self,
        ds: xr.Dataset,
        /,
        *,
        init_time: Sequence | np.ndarray | pd.DatetimeIndex | str | None = None,
        months: int = 6,
        restart_forcing: bool = False,
    ) -> xr.Dataset:
        """The states 1 .. ``months`` months after each init month.

        Args:
          ds: a Dataset in the schema holding the init months (and, with
            ``observed_forcing``, the wind stress of every forecast month).
          init_time: the init months (default: every month of ``ds``).
          months: how many months ahead.
          restart_forcing: every 6-month block after the first starts from the forecast
            with the observed wind stress of its own first month, which ``ds`` must hold (a
            run driven by observed winds: :func:`tellus.ocean.forecaster.rollout`).

        Returns:
          The forecast layout (module docstring), float32.

        Raises:
          KeyError: an init month (or, with observed forcing, a forecast month) not in
            ``ds``, or a variable missing.
          ValueError: ``months`` < 1, or ``ds``'s grid is not the forecaster's.
        """
        cfg = self.config
        if months < 1:
            raise ValueError(f"months must be >= 1, got {months}")
        state_layout, forcing_layout = self.layouts(ds)
        if ds.sizes[schema.LATITUDE] != len(cfg.latitude) or not np.allclose(
            ds[schema.LATITUDE].values, cfg.latitude
        ):
            raise ValueError("the dataset's latitudes are not the forecaster's")
        times = pd.DatetimeIndex(ds[TIME].values)
        inits = times if init_time is None else pd.DatetimeIndex(np.atleast_1d(init_time))
        pos = times.get_indexer(inits)
        if np.any(pos < 0):
            raise KeyError(
                f"init month(s) {list(inits[pos < 0].strftime('%Y-%m'))} not in the data"
            )
        ocean = np.asarray(ds[MASK].values) > 0.5
        if ocean.ndim == 3:  # a mask by depth: the forecaster's is the top level's
            ocean = ocean[0]
        out = []
        for i in range(0, len(pos), self.batch_size):
            p = pos[i : i + self.batch_size]
            n = len(p)
            if 0 < i and n < self.batch_size:  # the last of several batches, padded with
                p = np.concatenate([p, np.full(self.batch_size - n, p[-1])])  # its last init:
                # one compiled program for every batch
            sub = ds.isel({TIME: p})
            x = stacking.dataset_to_stacked(sub[list(state_layout.names)], state_layout)
            if cfg.observed_forcing:
                idx = p[:, None] + np.arange(1, months + 1)[None]
                if idx.max() >= len(times):
                    raise KeyError("observed forcing: the forecast runs past the data's months")
                f = stacking.dataset_to_stacked(
                    ds[list(forcing_layout.names)].isel({TIME: idx.ravel()}), forcing_layout
                ).reshape(len(p), months, *ocean.shape, -1)
            elif restart_forcing:
                idx = p[:, None] + np.arange(0, months, fc.RESTART)[None]
                if idx.max() >= len(times):
                    raise KeyError("restart forcing: the forecast runs past the data's months")
                f = stacking.dataset_to_stacked(
                    ds[list(forcing_layout.names)].isel({TIME: idx.ravel()}), forcing_layout
                ).reshape(len(p), idx.shape[1], *ocean.shape, -1)
            else:
                f = stacking.dataset_to_stacked(sub[list(forcing_layout.names)], forcing_layout)
            month = np.asarray(times[p].month, np.int32)
            out.append(
                fc.rollout(
                    self.model,
                    jnp.asarray(np.nan_to_num(x), jnp.float32),
                    jnp.asarray(np.nan_to_num(f), jnp.float32),
                    jnp.asarray(month),
                    jnp.asarray(ocean[None]),
                    months,
                    restart_forcing=restart_forcing,
                )[:n]
            )
        values = np.concatenate(out, axis=0)
        result = stacking.stacked_to_dataset(
            values,
            state_layout,
            leading_dims=(TIME, LEAD),
            coords={
                TIME: inits.values,
                LEAD: np.arange(1, months + 1),
                schema.LATITUDE: ds[schema.LATITUDE].values,
                schema.LONGITUDE: ds[schema.LONGITUDE].values,
            },
        )
        result[LEAD].attrs["units"] = "months"
        valid = metrics.valid_times(inits, np.arange(1, months + 1))
        result = result.assign_coords(valid_time=((TIME, LEAD), valid.values))
        for name in result.data_vars:
            result[name].attrs = dict(ds[name].attrs)
        result.attrs = {"source": "tellus.ocean forecaster", "kind": fc.KIND.name}
        return result


__all__ = ["LEAD", "Predictor"]
