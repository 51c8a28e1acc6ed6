"""ENSO's entry in the Domain registry (:mod:`tellus.training.domains`).

The task: Nino3.4 (its centred 3-month mean) at leads 1-24 months from three months of SST
and heat-content anomaly maps and the calendar month. Its own model is the ResoNet of
:mod:`tellus.enso.model` (checkpoint kind ``enso.resonet``); on a shared trunk it is the
adapter of :mod:`tellus.enso.trunk_model`.
"""

from __future__ import annotations

from typing import Any

from tellus.enso import model, trunk_model
from tellus.kernels import earth_trunk
from tellus.training import domains


def _trunk(cfg: dict[str, Any]) -> earth_trunk.TrunkConfig:
    return trunk_model.TrunkForecasterConfig.from_dict(cfg).trunk_config


DOMAIN = domains.Domain(
    name="enso",
    summary="seasonal climate: Nino3.4 at 1-24 months from SST and heat-content maps",
    kind=model.KIND,
    build=trunk_model.make_trunk_forecaster,
    loss_fn=trunk_model.loss_fn,
    trunk_config=_trunk,
)
