"""The atmosphere's entry in the Domain registry (:mod:`tellus.training.domains`).

The task: the Pangu variables (5 upper-air on the 13 WeatherBench2 pressure levels, 4 at the
surface, 3 static masks) of a 6-hourly store, one input time, one lead per model
(:func:`tellus.atmosphere.forecaster.task_for`); samples: :class:`tellus.data.sources.WindowSource`
windows through the shared loader (:func:`tellus.atmosphere.train.batches`); the model: the
Pangu adapter around the shared trunk (:class:`tellus.atmosphere.forecaster.Forecaster`);
the loss: Pangu's latitude- and variable-weighted MAE.
"""

from __future__ import annotations

from typing import Any

from tellus.atmosphere import forecaster as fc
from tellus.kernels import earth_trunk
from tellus.training import domains


def _trunk(cfg: dict[str, Any]) -> earth_trunk.TrunkConfig:
    return fc.ForecasterConfig.from_dict(cfg).model.trunk


DOMAIN = domains.Domain(
    name="atmosphere",
    summary="medium-range weather: a Pangu-style 3D Earth-specific transformer by lead time",
    kind=fc.KIND,
    build=fc.make_forecaster,
    loss_fn=fc.loss_fn,
    trunk_config=_trunk,
)
