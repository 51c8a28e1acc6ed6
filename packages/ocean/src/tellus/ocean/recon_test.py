"""The ocean diffusion model's training and reconstruction on a tiny synthetic store: a
killed training resumes to the uninterrupted run's losses and EMA, the EMA is what loads,
and a reconstruction guided at every point returns the observations, with NaN over land."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import profile_grid, profiles
from tellus.ocean import diffusion, recon, recon_domain, unet

NY, NX, NZ, NT = 8, 16, 3, 12
STEPS = 6  # checkpoints every 2 (warmup_cosine's three)
RECIPE = recon.Recipe(
    steps=STEPS, batch_size=2, learning_rate=3e-3, ema_decay=0.5, timesteps=100, finetune_steps=0
)


def make_store(path, months: int = NT, seed: int = 0) -> str:
    """Monthly temperature on an 8 x 16 grid of 3 depths (5, 100, 1000 m): a latitude and
    depth structure, a seasonal cycle and noise; land (NaN, ocean_mask 0) in a 2 x 4 corner at
    every depth and a shelf row below the top level."""
    rng = np.random.default_rng(seed)
    mask = np.ones((NZ, NY, NX), np.float32)
    mask[:, :2, :4] = 0.0
    mask[1:, -1, :] = 0.0
    lat = -70.0 + 20.0 * np.arange(NY)
    t, k, j, i = np.meshgrid(
        np.arange(months), np.arange(NZ), np.arange(NY), np.arange(NX), indexing="ij"
    )
    v = (
        22.0 * np.cos(np.radians(lat[j])) * np.exp(-np.array([5.0, 100.0, 1000.0])[k] / 400.0)
        + 2.0
        + np.sin(2 * np.pi * t / 12) * np.cos(2 * np.pi * i / NX) * (k == 0)
        + 0.3 * rng.standard_normal(t.shape)
    )
    v = np.where(mask[None] > 0, v, np.nan).astype(np.float32)
    ds = xr.Dataset(
        {
            recon_domain.TEMPERATURE_VARIABLE: (
                ("time", "depth", "latitude", "longitude"),
                v,
                {"units": "degC"},
            ),
            "ocean_mask": (("depth", "latitude", "longitude"), mask, {"units": "1"}),
        },
        coords={
            "time": pd.date_range("2001-01-01", periods=months, freq="MS"),
            "depth": ("depth", [5.0, 100.0, 1000.0], {"units": "m", "positive": "down"}),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", 11.25 + 22.5 * np.arange(NX), {"units": "degrees_east"}),
        },
    )
    ds.to_zarr(path, consolidated=True)
    return str(path)


def tiny_config(store) -> unet.UNetConfig:
    src = recon_domain.Samples(store)
    return recon_domain.make_config(
        src, unet.PRESETS["cpu"], base=8, groups=4, timesteps=RECIPE.timesteps, mults=(1,)
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("recon")
    store = make_store(root / "model.zarr")
    workdir = root / "run"
    info = recon.train_recon(
        workdir, store, recipe=RECIPE, config=tiny_config(store), show_progress=False
    )
    return store, workdir, info


def test_training_writes_its_info_and_a_killed_run_resumes_to_the_same_state(trained, tmp_path):
    store, workdir, info = trained
    history = info["histories"][recon.PRETRAIN]
    assert list(info["histories"]) == [recon.PRETRAIN]  # no fine-tuning in this recipe
    assert [s for s, _ in history] == list(range(STEPS))
    assert np.all(np.isfinite([loss for _, loss in history]))
    saved = json.loads((workdir / recon.RUN_INFO).read_text())
    assert saved["recipe"]["ema_decay"] == 0.5 and saved["grid"] == [NY, NX, NZ]
    assert saved["preset"] == "custom" and saved["n_months"] == NT

    class Killed(Exception):
        pass

    def kill(step, _):
        if step == 4:  # after the checkpoint of step 4, before that of step 6
            raise Killed

    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        recon.train_recon(
            killed,
            store,
            recipe=RECIPE,
            config=tiny_config(store),
            show_progress=False,
            on_step=kill,
        )
    assert not (killed / recon.RUN_INFO).exists()
    with pytest.raises(FileNotFoundError, match=r"recon\.json missing"):
        recon.read_info(killed)
    resumed = recon.train_recon(
        killed, store, recipe=RECIPE, config=tiny_config(store), show_progress=False
    )
    assert resumed["histories"][recon.PRETRAIN] == history[4:]
    # The resumed run's EMA (what loads) is the uninterrupted one's, bit for bit.
    for x, y in zip(
        jax_leaves(recon.load_denoiser(workdir)),
        jax_leaves(recon.load_denoiser(killed)),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)


def jax_leaves(model) -> list[np.ndarray]:
    import jax
    from flax import nnx

    return [np.asarray(v) for v in jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param)))]


def test_the_ema_weights_are_what_loads_and_fine_tuning_starts_from_them(trained, tmp_path):
    store, workdir, _ = trained
    ema, raw = recon.load_denoiser(workdir), recon.load_denoiser(workdir, ema=False)
    differ = [
        not np.array_equal(x, y) for x, y in zip(jax_leaves(ema), jax_leaves(raw), strict=True)
    ]
    assert any(differ)
    # Fine-tuned on the observed run's first year with decay 0: its average is its last
    # weights, and the finetune phase is what loads. (The pretraining is the fixture's,
    # copied: it resumes finished.)
    observed = make_store(tmp_path / "observed.zarr", months=24, seed=1)
    tuned = tmp_path / "tuned"
    shutil.copytree(workdir / recon.PRETRAIN, tuned / recon.PRETRAIN)
    recipe = dataclasses.replace(RECIPE, finetune_steps=2, finetune_years=1, ema_decay=0.0)
    info = recon.train_recon(
        tuned, store, observed, recipe=recipe, config=tiny_config(store), show_progress=False
    )
    assert info["finetune_months"] == ["2001-01", "2001-12", 12]
    assert info["histories"][recon.PRETRAIN] == []  # nothing left to pretrain
    assert [s for s, _ in info["histories"][recon.FINETUNE]] == [0, 1]
    assert recon.find_phase(tuned) == tuned / recon.FINETUNE
    # The fine-tuning's units: the observed year's climatology, the pretraining's scale.
    pre, ft = recon.load_scaling(tuned / recon.PRETRAIN), recon.load_scaling(tuned)
    np.testing.assert_array_equal(ft.std, pre.std)
    assert not np.allclose(ft.climatology, pre.climatology, equal_nan=True)
    for x, y in zip(
        jax_leaves(recon.load_denoiser(tuned)),
        jax_leaves(recon.load_denoiser(tuned, ema=False)),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
    pretrained = jax_leaves(recon.load_denoiser(tuned / recon.PRETRAIN))
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(pretrained, jax_leaves(recon.load_denoiser(tuned)), strict=True)
    )
    with pytest.raises(ValueError, match="observed run's store"):
        recon.train_recon(tmp_path / "x", store, recipe=recipe, config=tiny_config(store))
    with pytest.raises(ValueError, match="fewer than the 3 years"):
        recon.train_recon(
            tmp_path / "x",
            store,
            observed,
            recipe=dataclasses.replace(recipe, finetune_years=3),
            config=tiny_config(store),
        )


def test_recipe_checks():
    with pytest.raises(ValueError, match="initial weights"):
        recon.Recipe(steps=100, ema_decay=0.9999).check()
    with pytest.raises(KeyError, match="huge"):
        recon.Recipe(preset="huge").check()
    recon.Recipe().check()  # the CPU recipe runs
    assert recon.train_config(recon.Recipe()).optimizer.ema_decay == recon.Recipe().ema_decay


def test_missing_training_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        recon.load_denoiser(tmp_path)


@pytest.fixture(scope="module")
def observed(trained):
    """Every ocean point of the store's last two months, observed, and its grid."""
    store, _, _ = trained
    ds = xr.open_zarr(store).load()
    months = ds["time"].values[-2:]
    table = profiles.sample_profiles(
        ds, recon_domain.TEMPERATURE_VARIABLE, 1.0, seed=0, times=months
    )
    grid = ds.sel(time=months)
    obs = profile_grid.to_grid(table, grid)
    ocean = (ds["ocean_mask"] > 0.5).to_numpy()
    truth = grid[recon_domain.TEMPERATURE_VARIABLE].transpose(
        "time", "depth", "latitude", "longitude"
    )
    return obs, ocean, truth.to_numpy()


def test_every_point_observed_and_strong_guidance_return_the_observations(trained, observed):
    _, workdir, _ = trained
    obs, ocean, truth = observed
    assert obs.mask.sum() == 2 * ocean.sum()  # every ocean point, both months
    model = recon.load_denoiser(workdir)
    scaling = recon.load_scaling(workdir)
    assert scaling is not None  # the recipe's anomaly units
    months = np.array([11, 12])  # the store's last two months
    # DDIM's last step moves the clean estimate by f = 2 scale (1 - abar_0) / sqrt(abar_0)
    # of its residual at the observed points; f = 1 lands on the observations.
    abar0 = float(diffusion.linear_schedule(RECIPE.timesteps).alphas_cumprod[0])
    strong = np.sqrt(abar0) / (2.0 * (1.0 - abar0))
    run = recon.Reconstructor(model, ocean, steps=20, samples=2, batch=2, scaling=scaling)
    x = run(obs.values, obs.mask, [0.0, strong], seed=3, months=months)
    assert x.shape == (2, 2, NZ, NY, NX) and x.dtype == np.float32
    land = ~ocean
    assert np.all(np.isnan(x[:, :, land])) and np.all(np.isfinite(x[:, :, ocean]))
    err = (x - truth[None]) ** 2
    unguided, guided = (float(np.mean(err[s][:, ocean])) for s in (0, 1))
    assert guided < 1e-3, guided  # deg C^2 against the truth the profiles were sampled from
    assert unguided > 100 * guided, (unguided, guided)
    # The one-call form gives the same guided samples (same seed, one batch).
    y = recon.reconstruct(
        model, obs, ocean, steps=20, samples=2, scale=strong, seed=3, scaling=scaling
    )
    np.testing.assert_allclose(y[1], x[1], atol=1e-4)


def test_reconstructor_argument_errors(trained, observed):
    _, workdir, _ = trained
    obs, ocean, _ = observed
    model = recon.load_denoiser(workdir)
    with pytest.raises(ValueError, match="ocean must be"):
        recon.Reconstructor(model, ocean[0])
    with pytest.raises(ValueError, match="steps"):
        recon.Reconstructor(model, ocean, steps=0)
    with pytest.raises(ValueError, match="mode"):
        recon.Reconstructor(model, ocean, mode="dps")
    run = recon.Reconstructor(model, ocean, scaling=recon.load_scaling(workdir), batch=2)
    with pytest.raises(ValueError, match="calendar month"):
        run(obs.values, obs.mask, 1.0)
