"""Checkpoints written before the envelope (version 0) load through the migrations and give
the forecasts they gave then (tests/fixtures/legacy_v0)."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from tellus.atmosphere import forecaster as fc
from tellus.atmosphere import train as atmos_train
from tellus.enso import model as enso_model
from tellus.enso import train as enso_train
from tellus.training import checkpoint as ckpt_lib

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_v0"


def test_version_0_atmosphere_checkpoint_migrates_and_reproduces_its_forecast():
    ck = ckpt_lib.Checkpointer(FIXTURES / "atmosphere" / "checkpoints", async_save=False)
    cfg, _ = ck.read_json(ck.latest_step())
    ck.close()
    assert "kind" not in cfg  # really a version-0 checkpoint
    model = atmos_train.load_forecaster(FIXTURES / "atmosphere")
    # The arrays moved: the bias tables into the adapter, the stages into the trunk.
    assert model.net.adapter.bias.stages[0][0].table.shape[0] > 0
    ref = np.load(FIXTURES / "atmosphere" / "forecast.npz")
    y = np.asarray(model(jnp.asarray(ref["x"]), jnp.asarray(ref["static"])))
    np.testing.assert_allclose(y, ref["y"], rtol=1e-5, atol=1e-5 * np.abs(ref["y"]).max())


def test_version_0_enso_checkpoint_migrates_and_reproduces_its_forecast():
    model = enso_train.load_member(FIXTURES / "enso")
    assert model.config.lead_rank == 4  # the field it was saved with, not a default
    ref = np.load(FIXTURES / "enso" / "forecast.npz")
    y = np.asarray(model(jnp.asarray(ref["x"]), jnp.asarray(ref["month"])))
    np.testing.assert_allclose(y, ref["y"], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_another_kind_or_version_is_refused_in_one_line():
    ck = ckpt_lib.Checkpointer(FIXTURES / "enso" / "checkpoints", async_save=False)
    step = ck.latest_step()
    no_path = ckpt_lib.Kind(enso_model.KIND.name, 1, enso_model.make_model)
    with pytest.raises(ckpt_lib.CheckpointKindError, match="no migration from version 0"):
        ckpt_lib.rebuild(ck, step, no_path)
    ck.close()
    cfg, applied = enso_model.KIND.migrate({"model": {}, "train": {}}, "x")
    assert cfg["kind"] == "enso.resonet" and cfg["version"] == 1 and len(applied) == 1
    with pytest.raises(ckpt_lib.CheckpointKindError, match=r"not a 'atmosphere\.forecaster'"):
        fc.KIND.migrate(cfg, "runs/enso/member_0")
    with pytest.raises(ckpt_lib.CheckpointKindError, match="upgrade Tellus"):
        enso_model.KIND.migrate(dict(cfg, version=7), "runs/enso/member_0")
