"""``tellus.load(checkpoint)``: any trained Tellus model, found by its checkpoint's kind.

::

    import tellus.load

    model = tellus.load("runs/atmosphere")  # every lead_*h model of a run
    fc = model.forecast(analysis.sel(time=["2000-10-28T00"]), lead="5d", every="6h")

    ensemble = tellus.load("runs/enso")  # the member_* of an ensemble
    nino = ensemble.forecast(world_ds, init_time="1990-12")

    ocean = tellus.load("runs/ocean")  # the fine-tuned ORCA-DL-style forecaster
    states = ocean.forecast(observed_ds, init_time="2006-01", months=12)

    earth = tellus.load("runs/pretrain")  # the Earth model: a pretraining or a fine-tune
    fc = earth.forecast(ocean_ds, task="ocean", init_time=["2006-01-01"])

``tellus`` is a namespace package split over several distributions, so it has no
``__init__.py`` to hold a function; this module is callable instead (its class is a
:class:`types.ModuleType` whose ``__call__`` is :func:`load`), and ``from tellus.load import
load`` works as well. It sits with ``tellus.pipelines`` in the top layer of the import
contract: it reaches the domain packages only through the registry
(:func:`tellus.training.domains.for_checkpoint`, entry points ``tellus.domains``), and the
Earth foundation model, which is no single domain's, through
:mod:`tellus.training.earth_forecast`.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

from tellus.training import checkpoint as ckpt_lib
from tellus.training import domains, earth_forecast


def load(checkpoint: str | os.PathLike, **options: Any) -> domains.Predictor:
    """The trained model(s) at ``checkpoint``, of whichever registered domain reads its kind.

    Args:
      checkpoint: a training workdir (``checkpoints/`` in it) or a folder of several: an
        atmosphere run of ``lead_*h`` models, an ENSO ensemble of ``member_*``; or the
        workdir of ``tellus pretrain`` or ``tellus finetune`` (the Earth model).
      **options: for the domain's loader (``naive=`` for the atmosphere, ``phase=`` for
        ENSO; see each ``tellus.<domain>.domain.load``).

    Returns:
      An object whose ``forecast(ds: xarray.Dataset, ...)`` returns an ``xarray.Dataset``:
      for the atmosphere (:class:`tellus.atmosphere.forecast.Predictor`) the state at an
      init time in the schema -> the forecast in the WeatherBench2 layout; for ENSO
      (:class:`tellus.enso.forecast.Predictor`) three months of SST and heat-content
      anomaly maps -> Nino3.4 by lead; for the Earth model
      (:class:`tellus.training.earth_forecast.EarthPredictor`) one of its tasks' states ->
      that task's forecast at its lead (or its index by lead).

    Raises:
      FileNotFoundError: ``checkpoint`` is not a checkpoint folder, or holds no complete
        checkpoint.
      tellus.training.checkpoint.CheckpointKindError: its kind is one no registered domain
        reads (or its version one this Tellus cannot read).
    """
    if earth_forecast.is_earth_model(checkpoint):
        if options:
            raise TypeError(f"the Earth model's loader takes no options, got {sorted(options)}")
        return earth_forecast.load(checkpoint)
    domain = domains.for_checkpoint(checkpoint)
    if domain.load is None:
        raise ckpt_lib.CheckpointKindError(
            f"{str(checkpoint)!r} holds a {domain.kind.name!r} checkpoint of the domain "
            f"{domain.name!r}, which has no loader"
        )
    return domain.load(checkpoint, **options)


class _CallableModule(types.ModuleType):
    """``tellus.load(...)`` after ``import tellus.load``."""

    def __call__(self, checkpoint: str | os.PathLike, **options: Any) -> domains.Predictor:
        return load(checkpoint, **options)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["load"]
