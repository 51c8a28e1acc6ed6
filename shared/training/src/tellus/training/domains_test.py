"""Finding a checkpoint's domain by the kind in its envelope (no domain package needed)."""

from __future__ import annotations

import numpy as np
import pytest

from tellus.training import checkpoint, domains, toy_model
from tellus.training.config import warmup_cosine


def _domain(name: str, kind: str, is_v0=None) -> domains.Domain:
    return domains.Domain(
        name=name,
        summary=name,
        kind=checkpoint.Kind(kind, 1, toy_model.model_from_dict),
        build=lambda cfg, trunk: toy_model.model_from_dict(cfg),
        loss_fn=toy_model.loss_fn,
        trunk_config=lambda cfg: None,
        is_v0=is_v0,
    )


KNOWN = {
    "toy": _domain("toy", "toy.mlp", is_v0=lambda cfg: "channels" in cfg["model"]),
    "other": _domain("other", "other.net"),
}


def _save(directory, kind: str | None) -> None:
    """A checkpoint at ``directory/checkpoints`` of ``kind`` (None: a version-0 config)."""
    cfg = checkpoint.config_dict(
        {"channels": 2}, warmup_cosine(1, 1, 1e-3), kind=kind or "model", version=1
    )
    if kind is None:
        cfg = {"model": cfg["model"], "train": cfg["train"]}
    ck = checkpoint.Checkpointer(directory / "checkpoints", async_save=False)
    ck.save(1, {"w": np.zeros(2, np.float32)}, cfg)
    ck.wait()
    ck.close()


def test_a_checkpoint_folder_and_folders_of_several_find_their_domain(tmp_path):
    _save(tmp_path / "one", "toy.mlp")
    for k in (0, 1):
        _save(tmp_path / "ensemble" / f"member_{k}" / "finetune", "toy.mlp")
    _save(tmp_path / "legacy", None)
    for path in ("one", "one/checkpoints", "ensemble", "ensemble/member_1", "legacy"):
        assert domains.for_checkpoint(tmp_path / path, KNOWN).name == "toy", path
    assert domains.checkpoint_folders(tmp_path / "ensemble") == [
        tmp_path / "ensemble" / f"member_{k}" / "finetune" / "checkpoints" for k in (0, 1)
    ]


def test_a_folder_that_is_not_a_checkpoint_or_of_an_unknown_kind_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is not a Tellus checkpoint"):
        domains.for_checkpoint(tmp_path / "empty", KNOWN)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        domains.for_checkpoint(tmp_path / "nowhere", KNOWN)
    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        domains.for_checkpoint(tmp_path / "unfinished", KNOWN)
    _save(tmp_path / "ocean", "ocean.model")
    with pytest.raises(checkpoint.CheckpointKindError, match=r"'ocean\.model' checkpoint.*toy"):
        domains.for_checkpoint(tmp_path / "ocean", KNOWN)
    _save(tmp_path / "legacy", None)
    with pytest.raises(checkpoint.CheckpointKindError, match="no registered domain recognizes"):
        domains.for_checkpoint(tmp_path / "legacy", {"other": KNOWN["other"]})
    _save(tmp_path / "mixed" / "a", "toy.mlp")
    _save(tmp_path / "mixed" / "b", "other.net")
    with pytest.raises(checkpoint.CheckpointKindError, match="several kinds"):
        domains.for_checkpoint(tmp_path / "mixed", KNOWN)
