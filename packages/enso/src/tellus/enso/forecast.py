"""ENSO forecasts from Datasets: the ensemble's Nino3.4 by lead from given init months.

The inputs are what the ResoNet reads (:mod:`tellus.enso.model`): the SST and heat-content
anomaly maps of the init month and the :data:`~tellus.enso.train.HISTORY` - 1 months before
it, on the model's grid, and the init month's calendar month. The output is the target the
members were trained on, the centred 3-month mean of the Nino3.4 anomaly (K) at leads 1-24
months, as a Dataset::

    nino34          ([realization,] init_time, lead)            the ensemble mean
    nino34_members  (member, [realization,] init_time, lead)    each member's
    valid_time      (init_time, lead)                           the month each lead is for

``realization`` appears when the input has it (a model world cut into segments).
:class:`Predictor` is what ``tellus.load`` returns for ENSO checkpoints; ``tellus forecast
enso`` runs it on init months of a world store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import schema
from tellus.enso import model as model_lib
from tellus.enso import world

INIT_TIME = "init_time"
LEAD = "lead"
MEMBER = "member"
VALID_TIME = "valid_time"
NINO34 = "nino34"
MEMBERS = "nino34_members"
INPUTS = (world.SST, world.HEAT)


def _months(ds: xr.Dataset) -> pd.PeriodIndex:
    if schema.TIME not in ds.dims:
        raise KeyError(f"the dataset has no {schema.TIME!r} dimension (monthly maps)")
    return pd.DatetimeIndex(ds.indexes[schema.TIME]).to_period("M")


def init_positions(
    ds: xr.Dataset,
    init_times: str | pd.Timestamp | Sequence[str | pd.Timestamp] | None = None,
    history: int = model_lib.ResoNetConfig.history,
    where: str = "the dataset",
) -> np.ndarray:
    """The time positions in ``ds`` of ``init_times`` (months, matched by year and month;
    default: the last month), each with the ``history - 1`` months before it.

    Raises:
      KeyError: an init month is not in ``ds``, naming the months it holds.
      ValueError: an init month without the months before it that the model reads, or
        ``ds`` not monthly.
    """
    months = _months(ds)
    if not len(months):
        raise KeyError(f"{where} holds no month")
    if months.has_duplicates:
        raise ValueError(
            f"{where} holds several times in a month ({months[months.duplicated()][0]}); "
            f"the model reads monthly maps"
        )
    if init_times is None:
        wanted = [months[-1]]
    elif isinstance(init_times, str | pd.Timestamp | np.datetime64):
        wanted = [pd.Timestamp(init_times).to_period("M")]
    else:
        wanted = [pd.Timestamp(t).to_period("M") for t in init_times]
    span = f"{months[0]} .. {months[-1]}"
    missing = [str(m) for m in wanted if m not in months]
    if missing:
        raise KeyError(f"init months {missing} are not in {where} ({span})")
    out = []
    for m in wanted:
        i = int(months.get_loc(m))
        before = [m - k for k in range(history - 1, 0, -1)]
        if i < history - 1 or list(months[i - history + 1 : i]) != before:
            raise ValueError(
                f"init month {m} needs the {history - 1} months before it "
                f"({', '.join(str(b) for b in before)}): the model reads {history} months of "
                f"maps, and {where} ({span}) does not hold them"
            )
        out.append(i)
    return np.asarray(out, np.int64)


def check_inputs(ds: xr.Dataset, where: str = "the dataset") -> None:
    """``ds`` holds the variables the model reads.

    Raises:
      KeyError: naming the missing ones.
    """
    absent = [v for v in INPUTS if v not in ds]
    if absent:
        raise KeyError(f"{where} lacks {absent}; the model reads {list(INPUTS)}")


def inputs(ds: xr.Dataset, positions: np.ndarray, history: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` [realization, N, history, 2, lat, lon] (realization 1 without the dim) and the
    calendar month [N] of the inits at ``positions``."""
    check_inputs(ds)
    fields = xr.concat([ds[v] for v in INPUTS], dim="variable")
    if world.REALIZATION not in fields.dims:
        fields = fields.expand_dims(world.REALIZATION)
    fields = fields.transpose(world.REALIZATION, schema.TIME, "variable", *schema.SPATIAL_DIMS)
    rows = positions[:, None] + np.arange(-history + 1, 1)[None]  # [N, history]
    x = np.asarray(fields.isel({schema.TIME: rows.ravel()}).values, np.float32)
    x = x.reshape(x.shape[0], *rows.shape, *x.shape[2:])
    month = ds[schema.TIME].dt.month.values[positions].astype(np.int32)
    return x, month


class Predictor:
    """An ensemble of ResoNet members as ``tellus.load`` returns it: monthly anomaly maps in
    a Dataset in, Nino3.4 by lead out.

    Args:
      models: the members (:func:`tellus.enso.train.load_ensemble`), all of one grid.
    """

    def __init__(self, models: Sequence[model_lib.Forecaster]):
        if not models:
            raise ValueError("no ensemble members given")
        self.models = list(models)
        first = self.models[0].config
        for m in self.models[1:]:
            c = m.config
            if (c.n_lat, c.n_lon, c.history, c.n_leads) != (
                first.n_lat,
                first.n_lon,
                first.history,
                first.n_leads,
            ):
                raise ValueError("the ensemble's members have different grids or leads")

    @property
    def config(self) -> model_lib.ResoNetConfig:
        return self.models[0].config

    def __repr__(self) -> str:
        c = self.config
        return (
            f"enso Predictor({len(self.models)} member(s); {c.history} months of "
            f"{c.n_lat} x {c.n_lon} maps -> Nino3.4 at leads 1-{c.n_leads} months)"
        )

    def forecast(
        self,
        ds: xr.Dataset,
        *,
        init_time: str | pd.Timestamp | Sequence[str | pd.Timestamp] | None = None,
        where: str = "the dataset",
    ) -> xr.Dataset:
        """Nino3.4 at every lead from the init month(s) of ``ds``.

        Args:
          ds: monthly ``sea_surface_temperature_anomaly`` and ``ocean_heat_content_anomaly``
            (K) on the model's grid, ``(time, [realization,] latitude, longitude)``, holding
            each init month and the ``history - 1`` months before it (3 months in all).
          init_time: the init month(s) (``"1990-12"``); default the last month of ``ds``.
          where: how errors name ``ds`` (a store's path).

        Returns:
          ``nino34`` ([realization,] init_time, lead), ``nino34_members`` (member,
          [realization,] init_time, lead) and ``valid_time`` (init_time, lead).

        Raises:
          KeyError: an init month not in ``ds``, or a variable missing.
          ValueError: an init month without its history, or ``ds`` on another grid.
        """
        from tellus.enso import train

        cfg = self.config
        check_inputs(ds, where)
        positions = init_positions(ds, init_time, cfg.history, where)
        grid = (ds.sizes.get(schema.LATITUDE), ds.sizes.get(schema.LONGITUDE))
        if grid != (cfg.n_lat, cfg.n_lon):
            raise ValueError(
                f"{where} is on a {grid[0]} x {grid[1]} grid; the model reads {cfg.n_lat} x "
                f"{cfg.n_lon} maps"
            )
        x, month = inputs(ds, positions, cfg.history)
        n_real, n_init = x.shape[:2]
        flat = x.reshape(n_real * n_init, *x.shape[2:])
        months = np.tile(month, n_real)
        each = np.stack([train.predict([m], flat, months) for m in self.models])
        each = each.reshape(len(self.models), n_real, n_init, cfg.n_leads)
        inits = pd.DatetimeIndex(ds[schema.TIME].values[positions], name=INIT_TIME)
        leads = np.arange(1, cfg.n_leads + 1)
        valid = np.stack(
            [(inits.to_period("M") + int(k)).to_timestamp().values for k in leads], axis=1
        )
        dims: tuple[str, ...] = (INIT_TIME, LEAD)
        coords = {INIT_TIME: inits, LEAD: leads, MEMBER: np.arange(len(self.models))}
        if world.REALIZATION in ds.dims:
            dims = (world.REALIZATION, *dims)
            coords[world.REALIZATION] = ds[world.REALIZATION].values
        else:
            each = each[:, 0]
        attrs = {"units": "K", "long_name": "Nino3.4 SST anomaly, centred 3-month mean"}
        out = xr.Dataset(
            {
                NINO34: (dims, each.mean(0).astype(np.float32), attrs),
                MEMBERS: ((MEMBER, *dims), each.astype(np.float32), attrs),
            },
            coords={**coords, VALID_TIME: ((INIT_TIME, LEAD), valid)},
        )
        out[LEAD].attrs.update(units="months", long_name="months after the init month")
        out[INIT_TIME].attrs.update(long_name="the last of the input months")
        out.attrs.update(
            title="Tellus ENSO forecast: ResoNet ensemble",
            members=len(self.models),
            inputs=f"{', '.join(INPUTS)} of the init month and the {cfg.history - 1} before",
        )
        return out


__all__ = [
    "INIT_TIME",
    "LEAD",
    "MEMBER",
    "MEMBERS",
    "NINO34",
    "VALID_TIME",
    "Predictor",
    "check_inputs",
    "init_positions",
    "inputs",
]
