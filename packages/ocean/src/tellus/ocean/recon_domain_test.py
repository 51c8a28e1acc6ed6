"""The ocean diffusion domain: its samples are the store's months (land NaN and out of the
mask), it is in the registry, and a few ``fit`` steps of a tiny denoiser on its batches lower
the denoising loss from the untrained model's and write an ``ocean.diffusion`` checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import sources
from tellus.ocean import recon_domain, unet
from tellus.training import config as config_lib
from tellus.training import domains, trainer

NY, NX, NZ, NT = 8, 16, 3, 6


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Months of a smooth field plus a month-dependent anomaly; land in a 2 x 4 corner at
    every depth and below the first level in the last row (a shelf)."""
    mask = np.ones((NZ, NY, NX), np.float32)
    mask[:, :2, :4] = 0.0
    mask[1:, -1, :] = 0.0
    t, k, j, i = np.meshgrid(
        np.arange(NT), np.arange(NZ), np.arange(NY), np.arange(NX), indexing="ij"
    )
    v = 20.0 - 5.0 * k + 0.5 * np.sin(2 * np.pi * i / NX) * np.cos(t) + 0.1 * j
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
            "time": pd.date_range("2001-01-01", periods=NT, freq="MS"),
            "depth": ("depth", [5.0, 100.0, 1000.0], {"units": "m", "positive": "down"}),
            "latitude": ("latitude", -70.0 + 20.0 * np.arange(NY), {"units": "degrees_north"}),
            "longitude": ("longitude", 11.25 + 22.5 * np.arange(NX), {"units": "degrees_east"}),
        },
    )
    path = tmp_path_factory.mktemp("recon") / "ocean.zarr"
    ds.to_zarr(path, consolidated=True)
    return path, ds


def test_samples_are_the_stores_months_with_land_masked(store):
    path, ds = store
    src = recon_domain.Samples(path, sources.DateRange("2001-03-01", "2001-06-01"))
    assert len(src) == 3 and list(src.times.month) == [3, 4, 5]
    s = src[1]  # April
    want = (
        ds[recon_domain.TEMPERATURE_VARIABLE]
        .isel(time=3)
        .transpose("latitude", "longitude", "depth")
    )
    assert s["temperature"].shape == (NY, NX, NZ) and s["temperature"].dtype == np.float32
    np.testing.assert_allclose(s["temperature"], want.values, equal_nan=True)
    # 8 corner columns at 3 depths and the 16-cell shelf row below the top: 24 + 2 * 16.
    assert int((~s["ocean"]).sum()) == 24 + 2 * 16
    assert np.all(np.isnan(s["temperature"][~s["ocean"]]))
    assert np.all(np.isfinite(s["temperature"][s["ocean"]]))


def test_bad_stores_and_ranges(store):
    path, _ = store
    with pytest.raises(ValueError, match="sea_water_salinity"):
        recon_domain.Samples(path, variable="sea_water_salinity")
    with pytest.raises(ValueError, match="no month"):
        recon_domain.Samples(path, sources.DateRange("1990-01-01", "1991-01-01"))


def test_registered_and_a_few_fit_steps_lower_the_loss(store, tmp_path):
    path, _ = store
    assert domains.get(recon_domain.NAME).kind.name == "ocean.diffusion"
    src = recon_domain.Samples(path)
    cfg = recon_domain.make_config(
        src, unet.PRESETS["cpu"], base=8, groups=4, timesteps=100, mults=(1,)
    )
    assert (cfg.n_lat, cfg.n_lon, cfg.depths) == (NY, NX, NZ)
    tcfg = config_lib.warmup_cosine(20, 2, 3e-3, checkpoints=20)
    dom = trainer.TrainDomain(
        "ocean_recon", recon_domain.DOMAIN.loss_fn, recon_domain.batches(src, 4, seed=0)
    )
    history = trainer.fit(
        unet.make_denoiser,
        cfg,
        tcfg,
        dom,
        tmp_path,
        envelope=trainer.Envelope(kind=recon_domain.KIND.name, version=recon_domain.KIND.version),
        show_progress=False,
    )
    losses = np.array([loss for _, loss in history])
    assert len(losses) == 20 and np.all(np.isfinite(losses))
    # The untrained output convolution is zero: eps_hat = 0 and the loss is E[eps^2] = 1 on
    # the ocean cells; training brings it down.
    assert abs(losses[0] - 1.0) < 0.15
    assert losses[-5:].mean() < 0.8 * losses[:3].mean()
    meta = next(tmp_path.glob("checkpoints/*/"))
    assert meta.exists()
    text = json.dumps(domains.for_checkpoint(tmp_path).name)
    assert "ocean_recon" in text
