"""The atmosphere's entry in the Domain registry (:mod:`tellus.training.domains`).

The task: the Pangu variables (5 upper-air on the 13 WeatherBench2 pressure levels, 4 at the
surface, 3 static masks) of a 6-hourly store, one input time, one lead per model
(:func:`tellus.atmosphere.forecaster.task_for`); samples: :class:`tellus.data.sources.WindowSource`
windows through the shared loader (:func:`tellus.atmosphere.train.batches`); the model: the
Pangu adapter around the shared trunk (:class:`tellus.atmosphere.forecaster.Forecaster`);
the loss: Pangu's latitude- and variable-weighted MAE; the loader: the lead models of a run
as a :class:`tellus.atmosphere.forecast.Predictor` (what ``tellus.load`` returns).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tellus.atmosphere import forecaster as fc
from tellus.kernels import earth_trunk
from tellus.training import domains


def _trunk(cfg: dict[str, Any]) -> earth_trunk.TrunkConfig:
    return fc.ForecasterConfig.from_dict(cfg).model.trunk


def load(path: str | Path, *, naive: bool = False):
    """The lead models at ``path`` as a :class:`tellus.atmosphere.forecast.Predictor`.

    Args:
      path: a run folder of ``lead_{H}h`` models (``tellus train atmosphere --workdir``),
        one ``lead_{H}h`` folder (its last phase: :func:`tellus.atmosphere.train.final_phase`)
        or one ``fit`` workdir (or its ``checkpoints`` folder).
      naive: step only the shortest lead model (the baseline of hierarchical aggregation).

    Raises:
      FileNotFoundError: a lead folder without a complete checkpoint.
      ValueError: lead models of different grids or channels.
    """
    from tellus.atmosphere import forecast, train

    path = Path(path)
    if path.name == domains.CHECKPOINTS:
        path = path.parent
    if any(path.glob("lead_*h")):
        models = train.load_models(path)
    elif (path / domains.CHECKPOINTS).is_dir():
        model = train.load_forecaster(path)
        models = {model.config.lead_hours: model}
    else:  # (a Checkpointer would create the folder it is given)
        raise FileNotFoundError(f"no atmosphere model in {str(path)!r}: no lead_*h or checkpoints/")
    return forecast.Predictor(forecast.ForecastSystem(models, naive=naive))


def is_v0(cfg: Mapping[str, Any]) -> bool:
    """A lead model's config from before the envelope: a ``ForecasterConfig`` dict (the
    network's config under ``model``, a ``lead_hours``)."""
    model = cfg.get("model")
    return isinstance(model, Mapping) and {"model", "lead_hours", "mean"} <= set(model)


DOMAIN = domains.Domain(
    name="atmosphere",
    summary="medium-range weather: a Pangu-style 3D Earth-specific transformer by lead time",
    kind=fc.KIND,
    build=fc.make_forecaster,
    loss_fn=fc.loss_fn,
    trunk_config=_trunk,
    load=load,
    is_v0=is_v0,
)
