"""Pretraining the Earth model on two stores of different domains, grids and vertical
coordinates at once: the tasks' grids, levels, valid cells and normalization against the
stores by hand, land never reaching the loss, and a short multi-task ``fit`` that logs each
task's loss, writes one checkpoint and resumes."""

from __future__ import annotations

import dataclasses
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from flax import nnx

from tellus.data import mock, schema
from tellus.kernels import earth_model as em
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as train_config
from tellus.training import finetuning as ft
from tellus.training import pretraining as pt
from tellus.training import step as step_lib

ATMOSPHERE = ("temperature", "2m_temperature")
OCEAN = ("sea_water_potential_temperature", "sea_surface_height")


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("pretrain")
    atmos = mock.mock_era5(
        times=pd.date_range("2000-01-01", periods=12, freq="6h"),
        upper_air=("temperature",),
        surface=("2m_temperature",),
        static=(),
    )
    ocean = mock.mock_ocean(times=pd.date_range("2000-01-01", periods=14, freq="MS"), n_lat=6)
    ocean.to_zarr(root / "ocean.zarr", zarr_format=3, consolidated=False)
    return {
        "atmosphere": mock.write_store(atmos, str(root / "atmos.zarr"), step="6h"),
        "ocean": str(root / "ocean.zarr"),
    }


def _data(stores) -> list[pt.StoreData]:
    return [
        pt.StoreData("atmos", "atmosphere", stores["atmosphere"], ATMOSPHERE, lead=1),
        pt.StoreData("ocean", "ocean", stores["ocean"], OCEAN, lead=1, weight=2.0),
    ]


def test_store_time_steps():
    assert pt.store_time_step(pd.date_range("2000-01-01", periods=3, freq="6h")) == "6h"
    assert pt.store_time_step(pd.date_range("2000-01-01", periods=3, freq="MS")) == "MS"
    with pytest.raises(ValueError, match="neither"):
        pt.store_time_step(pd.DatetimeIndex(["2000-01-01", "2000-01-02", "2000-01-04"]))


def test_a_task_is_its_store(stores):
    atmos, ocean = pt.open_tasks(_data(stores))
    # Grids, levels with units and leads as the stores have them.
    assert atmos.grid.shape == (8, 16) and ocean.grid.shape == (6, 16)
    assert atmos.levels == {"temperature": pt.Levels((500.0, 850.0), "hPa")}
    assert ocean.levels == {OCEAN[0]: pt.Levels((5.0, 50.0, 200.0), "m")}
    assert (atmos.lead_hours, ocean.lead_hours) == (6.0, 730.5)
    assert (len(atmos.source), len(ocean.source)) == (11, 13)
    # The ocean mock's land is its first two longitudes, at every depth.
    land = np.zeros((6, 16), bool)
    land[:, :2] = True
    np.testing.assert_array_equal(ocean.valid[OCEAN[0]], np.broadcast_to(~land, (3, 6, 16)))
    np.testing.assert_array_equal(ocean.mask, ~land)
    assert atmos.mask is None
    # Normalization: every window's input (fewer than NORM_WINDOWS), over ocean cells only.
    x = np.stack([ocean.source[i][pt.INPUTS][0] for i in range(len(ocean.source))])
    np.testing.assert_allclose(ocean.mean, np.nanmean(x, axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(ocean.std, np.nanstd(x, axis=(0, 1, 2)), rtol=1e-4)
    with pytest.raises(ValueError, match="distinct names"):
        pt.open_tasks([_data(stores)[0], _data(stores)[0]])


@pytest.fixture(scope="module")
def tiny() -> em.EarthModelConfig:
    """The tiny preset with one block per stage (half the compile) and no stochastic depth."""
    cfg = em.preset("tiny")
    trunk = dataclasses.replace(cfg.trunk, depths=(1, 0, 0, 1), drop_path=0.0)
    return dataclasses.replace(cfg, trunk=trunk)


def test_land_never_reaches_the_loss(stores, tiny):
    (ocean,) = pt.open_tasks(_data(stores)[1:])
    model = em.make_earth_model(tiny.with_inputs(OCEAN, ["ocean"]))
    sample = ocean.source[3]
    batch = {k: jnp.asarray(sample[k])[None] for k in (pt.INPUTS, pt.TARGETS)}
    loss_and_grad = nnx.jit(nnx.value_and_grad(ocean.loss))
    ref, ref_grad = loss_and_grad(model, batch)
    assert np.isfinite(float(ref)) and float(ref) > 0
    poisoned = {k: jnp.where(jnp.isnan(v), 1e30, v) for k, v in batch.items()}
    loss, grad = loss_and_grad(model, poisoned)
    assert float(loss) == float(ref)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def pretrained(stores, tiny, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    train = train_config.warmup_cosine(6, 2, 1e-3)
    out = pt.pretrain(tiny, _data(stores), workdir, train, show_progress=False)
    return workdir, train, out


def test_pretraining_interleaves_the_tasks_and_writes_one_model(pretrained, stores, tiny):
    workdir, train, out = pretrained
    assert [s for s, _ in out["history"]] == list(range(6))
    steps = {name: [s for s, _ in h] for name, h in out["by_task"].items()}
    assert sorted(steps["atmos"] + steps["ocean"]) == list(range(6)) and all(steps.values())
    assert all(np.isfinite(v) for h in out["by_task"].values() for _, v in h)
    # One checkpoint of the whole model, of kind earth.model, with both tasks' config.
    model, saved = pt.load(workdir)
    assert [t["name"] for t in saved["tasks"]] == ["atmos", "ocean"]
    assert set(saved["norms"]) == {"atmos", "ocean"}
    ck = ckpt_lib.Checkpointer(workdir / "checkpoints", async_save=False)
    assert ck.read_json(ck.latest_step())[0]["kind"] == "earth.model"
    ck.close()
    # The encoder has an embedding for every variable of both stores, the preset's too.
    names = set(nnx.to_pure_dict(nnx.state(model.encoder.embeddings, nnx.Param)))
    assert set(ATMOSPHERE + OCEAN) <= names
    assert set(tiny.encoder.variables) <= set(model.config.encoder.variables)
    # The loaded model is the trained one: the loss of a batch is not the fresh model's.
    (ocean,) = pt.open_tasks(_data(stores)[1:], saved["norms"])
    batch = {k: jnp.asarray(ocean.source[0][k])[None] for k in (pt.INPUTS, pt.TARGETS)}
    fresh = em.make_earth_model(model.config)
    loss = nnx.jit(ocean.loss)
    assert float(loss(model, batch)) != float(loss(fresh, batch))
    # A second run finds the training done.
    again = pt.pretrain(tiny, _data(stores), workdir, train, show_progress=False)
    assert again["history"] == [] and again["by_task"] == {"atmos": [], "ocean": []}


def _enso_like(path) -> str:
    """Monthly SST anomalies on a 5 deg x 15 deg tropical grid (the Nino3.4 box holds 3 x 4
    of its points): a variable and a domain the pretraining never saw."""
    name = "sea_surface_temperature_anomaly"
    var = schema.VARIABLES[name]
    times = pd.date_range("1900-01-01", periods=16, freq="MS")
    lat, lon = np.arange(-20.0, 21.0, 5.0), np.arange(0.0, 360.0, 15.0)
    rng = np.random.default_rng(4)
    x = np.cumsum(rng.standard_normal((16, 9, 24)), axis=0).astype(np.float32) * 0.3
    ds = xr.Dataset(
        {name: (var.dims, x, {"units": var.units})},
        coords={"time": times, "latitude": lat, "longitude": lon},
    )
    ds.to_zarr(path, zarr_format=3, consolidated=False)
    return str(path)


def test_fine_tuning_on_a_third_domain_restores_all_but_the_new_heads(pretrained, tmp_path):
    workdir, _, _ = pretrained
    store = _enso_like(tmp_path / "enso.zarr")
    data = pt.StoreData("enso", "enso", store, ("sea_surface_temperature_anomaly",))
    out = ft.finetune(
        workdir,
        data,
        tmp_path / "ft",
        train_config.warmup_cosine(2, 2, 1e-3),
        mode="heads",
        show_progress=False,
    )
    assert [s for s, _ in out["history"]] == [0, 1]
    # Fresh: exactly the new variable's embedding and decoder head; the rest restored.
    report = json.loads((tmp_path / "ft" / ft.RESTORE_REPORT).read_text())
    new = "sea_surface_temperature_anomaly"
    slash = lambda keys: ["/".join(re.findall(r"\['?([^'\]]+)'?\]", k)) for k in keys]  # noqa: E731
    assert sorted(slash(report["initialized"])) == sorted(out["new"])
    assert out["new"] and all(
        p.startswith((f"encoder/embeddings/{new}/", f"decoder/heads/{new}/")) for p in out["new"]
    )
    assert any(p.startswith("trunk/") for p in slash(report["loaded"]))
    # Heads only: every frozen parameter is the pretrained one bitwise; the new ones moved.
    base, _ = pt.load(workdir)
    tuned, _ = ft.load(tmp_path / "ft")  # the base checkpoint and the saved heads
    before = step_lib.flat_params(nnx.to_pure_dict(nnx.state(base, nnx.Param)))
    after = step_lib.flat_params(nnx.to_pure_dict(nnx.state(tuned, nnx.Param)))
    assert out["frozen"] and not any(p.startswith(f"decoder/heads/{new}/") for p in out["frozen"])
    for p in out["frozen"]:
        np.testing.assert_array_equal(after[p], before[p], err_msg=p)
    fresh = em.make_earth_model(tuned.config)
    init = step_lib.flat_params(nnx.to_pure_dict(nnx.state(fresh, nnx.Param)))
    assert any(not np.array_equal(after[p], init[p]) for p in out["new"])
    with pytest.raises(ValueError, match="mode"):
        ft.finetune(
            workdir, data, tmp_path / "x", train_config.warmup_cosine(2, 2, 1e-3), mode="all"
        )


def test_low_rank_fine_tuning_of_an_index_saves_only_the_adapters(pretrained, tmp_path):
    workdir, _, _ = pretrained
    store = _enso_like(tmp_path / "enso.zarr")
    name = "sea_surface_temperature_anomaly"
    data = pt.StoreData("nino", "enso", store, (name,), lead=3, index="nino34")
    assert data.index_variable == name
    train = train_config.warmup_cosine(2, 2, 1e-3)
    run = tmp_path / "lora"
    out = ft.finetune(
        workdir,
        data,
        run,
        train,
        mode="lora",
        lora_rank=2,
        keep_checkpoints=True,
        show_progress=False,
    )
    assert [s for s, _ in out["history"]] == [0, 1]
    # Every step's loss is on disk too, under the task's name, as the fit returned it.
    assert pt.read_losses(run) == {"nino": [(s, pytest.approx(v)) for s, v in out["history"]]}
    lora = [p for p in out["new"] if p.rsplit("/", 1)[-1] in ("lora_a", "lora_b")]
    # Four adapter pairs per block (qkv, proj, fc1, fc2), two blocks.
    assert len(lora) == 2 * 4 * 2 and all(p.startswith("trunk/") for p in lora)
    # Fresh: the adapters, the index head, the new variable's embedding and head.
    assert {p for p in out["new"] if p not in lora} == {
        p
        for p in out["trainable"]
        if p.startswith(("indices/nino/", f"encoder/embeddings/{name}/", f"decoder/heads/{name}/"))
    }
    assert any(p.startswith("indices/nino/") for p in out["new"])
    # The adapter file holds the trained arrays only: no trunk kernel, nothing frozen.
    with np.load(out["adapters"]) as f:
        assert sorted(f.files) == sorted(out["trainable"])
    assert not set(out["trainable"]) & set(out["frozen"])
    assert "trunk/stage1/blocks/0/attn/qkv_kernel" in out["frozen"]
    # The model rebuilt from the base checkpoint and the adapters is the trained one.
    (run.parent / "full").mkdir()
    (run / "checkpoints").rename(run.parent / "full" / "checkpoints")
    full, _ = pt.load(run.parent / "full")
    rebuilt, cfg = ft.load(run)
    assert cfg["model"]["trunk"]["lora_rank"] == 2
    a = step_lib.flat_params(nnx.to_pure_dict(nnx.state(full, nnx.Param)))
    b = step_lib.flat_params(nnx.to_pure_dict(nnx.state(rebuilt, nnx.Param)))
    assert a.keys() == b.keys()
    for p in a:
        np.testing.assert_array_equal(b[p], a[p], err_msg=p)
    # Its Nino3.4 forecast: three leads, in units of the index's standard deviation.
    (task,) = pt.open_tasks([data], cfg["norms"])
    sample = task.source[0]
    batch = {k: jnp.asarray(sample[k])[None] for k in (pt.INPUTS, pt.DERIVED)}
    pred, target = nnx.jit(task)(rebuilt, batch)
    assert pred["nino"].shape == target["nino"].shape == (1, 3)
    np.testing.assert_allclose(
        np.asarray(target["nino"])[0], sample[pt.DERIVED][:, 0] / task.index_std, rtol=1e-6
    )
    # Done: a second call trains nothing; adapters on another base are refused.
    assert ft.finetune(workdir, data, run, train, mode="lora", lora_rank=2)["history"] == []
    meta = json.loads((run / ft.ADAPTER_CONFIG).read_text())
    (run / ft.ADAPTER_CONFIG).write_text(json.dumps({**meta, "base_fingerprint": "0" * 64}))
    with pytest.raises(ValueError, match="not the base"):
        ft.load(run)


def test_read_losses_keeps_the_last_record_of_a_step_run_again(tmp_path):
    lines = [
        {"step": 0, "task": "a", "loss": 3.0},
        {"step": 1, "task": "b", "loss": 2.0},
        {"step": 1, "task": "b", "loss": 1.5},  # after a resume from step 1
        {"step": 2, "task": "a", "loss": 1.0},
    ]
    (tmp_path / pt.LOSSES).write_text("".join(json.dumps(r) + "\n" for r in lines) + "\n")
    assert pt.read_losses(tmp_path) == {"a": [(0, 3.0), (2, 1.0)], "b": [(1, 1.5)]}
    assert pt.read_losses(tmp_path / "none") == {}
