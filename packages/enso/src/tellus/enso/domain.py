"""ENSO's entry in the Domain registry (:mod:`tellus.training.domains`).

The task: Nino3.4 (its centred 3-month mean) at leads 1-24 months from three months of SST
and heat-content anomaly maps and the calendar month. Its own model is the ResoNet of
:mod:`tellus.enso.model` (checkpoint kind ``enso.resonet``); on a shared trunk it is the
adapter of :mod:`tellus.enso.trunk_model`. The loader: the ensemble as a
:class:`tellus.enso.forecast.Predictor` (what ``tellus.load`` returns).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tellus.enso import model, trunk_model
from tellus.kernels import earth_trunk
from tellus.training import domains


def _trunk(cfg: dict[str, Any]) -> earth_trunk.TrunkConfig:
    return trunk_model.TrunkForecasterConfig.from_dict(cfg).trunk_config


def load(path: str | Path, *, phase: str = "finetune"):
    """The ResoNet member(s) at ``path`` as a :class:`tellus.enso.forecast.Predictor`.

    Args:
      path: an ensemble (``member_*`` folders: ``tellus train enso --workdir``), one
        ``member_{k}`` folder, or one ``fit`` workdir (or its ``checkpoints`` folder).
      phase: the members' training phase to load, ``finetune`` or ``pretrain`` (for an
        ensemble or a member folder).

    Raises:
      FileNotFoundError: a member without a complete checkpoint of ``phase``.
    """
    from tellus.enso import forecast, train

    path = Path(path)
    if path.name == domains.CHECKPOINTS:
        path = path.parent
    if (path / domains.CHECKPOINTS).is_dir():
        models = [train.load_member(path)]
    elif any(path.glob("member_*")):
        models = train.load_ensemble(path, phase=phase)
    elif (path / phase / domains.CHECKPOINTS).is_dir():
        models = [train.load_member(path / phase)]
    else:  # (a Checkpointer would create the folder it is given)
        raise FileNotFoundError(
            f"no ENSO model in {str(path)!r}: no checkpoints/, member_* or "
            f"{phase}/checkpoints in it"
        )
    return forecast.Predictor(models)


def is_v0(cfg: Mapping[str, Any]) -> bool:
    """A ResoNet config from before the envelope: a ``ResoNetConfig`` dict under ``model``."""
    model = cfg.get("model")
    return isinstance(model, Mapping) and {"n_leads", "input_std", "target_std"} <= set(model)


DOMAIN = domains.Domain(
    name="enso",
    summary="seasonal climate: Nino3.4 at 1-24 months from SST and heat-content maps",
    kind=model.KIND,
    build=trunk_model.make_trunk_forecaster,
    loss_fn=trunk_model.loss_fn,
    trunk_config=_trunk,
    load=load,
    is_v0=is_v0,
)
