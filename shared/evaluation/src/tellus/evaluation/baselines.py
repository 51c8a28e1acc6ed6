"""Reference forecasts built from the truth itself, in the forecast layout.

Both baselines come out as ordinary forecasts (``time`` = init, ``prediction_timedelta`` =
lead), so the same metric code scores them as any model:

* :func:`persistence`: the analysis at the init time, repeated at every lead;
* :func:`climatology_forecast`: the climatology at each valid time (WeatherBench2's
  "climatology" baseline; its ACC is undefined as its anomaly is zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from tellus.evaluation import metrics

TIME = metrics.TIME
LEAD = metrics.LEAD


def _leads(leads) -> np.ndarray:
    if metrics.is_monthly(leads):  # whole months (monthly forecasts)
        return np.asarray(leads)
    return pd.TimedeltaIndex(np.asarray(leads)).values


def persistence(
    truth: xr.Dataset, init_times: Sequence | np.ndarray, leads: Sequence | np.ndarray
) -> xr.Dataset:
    """The state at each init time, held constant over every lead.

    Args:
      truth: analysis layout (``time`` = valid time); static variables (no ``time``) are
        dropped.
      init_times: init times, each in ``truth.time``.
      leads: lead times (timedeltas or strings such as ``"6h"``; integers: months).

    Returns:
      Forecast layout ``(time, prediction_timedelta, ...)``.
    """
    truth = truth[[v for v in truth.data_vars if TIME in truth[v].dims]]
    init = truth.sel({TIME: pd.DatetimeIndex(np.asarray(init_times)).values})
    out = init.expand_dims({LEAD: _leads(leads)}).transpose(TIME, LEAD, ...)
    return out


def climatology_forecast(
    climatology: xr.Dataset,
    init_times: Sequence | np.ndarray,
    leads: Sequence | np.ndarray,
    template: xr.Dataset | None = None,
) -> xr.Dataset:
    """The climatology at each valid time ``init + lead``.

    Args:
      climatology: dims ``(dayofyear, [hour], ...)`` or ``(month, ...)``, see
        :func:`metrics.climatology_at`.
      init_times: init times.
      leads: lead times.
      template: a dataset to match (normally the truth): only its time-dependent variables
        and levels are kept and each variable takes its dtype.

    Returns:
      Forecast layout ``(time, prediction_timedelta, ...)``.
    """
    if template is not None:
        names = [
            v for v in template.data_vars if TIME in template[v].dims and v in climatology.data_vars
        ]
        climatology = climatology[names]
        if metrics.LEVEL in template.dims and metrics.LEVEL in climatology.dims:
            climatology = climatology.sel({metrics.LEVEL: template[metrics.LEVEL].values})
    valid = metrics.valid_times(init_times, _leads(leads))
    out = metrics.climatology_at(climatology, valid)
    out = out.transpose(TIME, LEAD, ...)
    if template is not None:
        out = xr.Dataset(
            {v: out[v].astype(template[v].dtype) for v in out.data_vars}, attrs=out.attrs
        )
        for v in out.data_vars:
            out[v].attrs = dict(template[v].attrs)
    return out
