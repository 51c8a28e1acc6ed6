"""Forecaster wrapper, training of the lead models, and forecasts, on a small mock store.

One module so that each lead model compiles once: the trained models are a module fixture
that the forecast tests reuse.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from flax import nnx

from tellus.atmosphere import config, forecast, train
from tellus.atmosphere import forecaster as fc
from tellus.atmosphere.conftest import N_LAT, N_LON
from tellus.data import schema, sources
from tellus.training import config as train_config

LEADS = (6, 24)
# The trained models: one block in the first and last stages only (the least to
# compile; the middle stages' down- and up-sampling stay), without stochastic depth,
# so that the training step's loss is the evaluation's.
SMALL = {"depths": (1, 0, 0, 1), "drop_path": 0.0}


def test_split_merge_roundtrip_and_layout():
    cfg = config.preset("tiny", lat=4, lon=8)
    c = cfg.upper_vars * cfg.levels + cfg.surface_vars
    x = jnp.arange(2 * 4 * 8 * c, dtype=jnp.float32).reshape(2, 4, 8, c)
    up, sf = fc.split_channels(x, cfg)
    assert up.shape == (2, 13, 4, 8, 5) and sf.shape == (2, 4, 8, 4)
    # Stacked channels are variable-major: channel v * 13 + level.
    np.testing.assert_array_equal(np.asarray(up[0, 3, 1, 2, 2]), np.asarray(x[0, 1, 2, 2 * 13 + 3]))
    np.testing.assert_array_equal(np.asarray(fc.merge_channels(up, sf)), np.asarray(x))
    with pytest.raises(ValueError, match="channels"):
        fc.split_channels(x[..., :-1], cfg)


def test_channel_weights_reproduce_pangu_loss():
    cfg = config.preset("tiny")
    w = fc.channel_weights(cfg)
    n_up = 65
    # An error of 1 in every upper-air channel only: the mean over variables of Pangu's
    # upper-air weights; in the surface only: 0.25 x the mean surface weight.
    err_up = np.r_[np.ones(n_up), np.zeros(4)]
    err_sf = np.r_[np.zeros(n_up), np.ones(4)]
    np.testing.assert_allclose((w * err_up).mean(), (3.0 + 0.6 + 1.5 + 0.77 + 0.54) / 5)
    np.testing.assert_allclose((w * err_sf).mean(), 0.25 * (1.5 + 0.77 + 0.66 + 3.0) / 4)


@pytest.fixture(scope="module")
def fcfg(pangu_store):
    cfg = config.preset("tiny", lat=N_LAT, lon=N_LON, **SMALL)
    splits = train.Splits.for_store(pangu_store)
    return train.make_forecaster_config(pangu_store, 6, cfg, splits.train)


def test_forecaster_config_from_store(pangu_store, fcfg):
    ds = xr.open_zarr(pangu_store, consolidated=False)
    # Channel 13 * 2 + 5: temperature at the sixth level; its mean over every time and
    # grid point of the store (the statistics cover the whole store).
    t = ds["temperature"].isel(level=5).values.astype(np.float64)
    np.testing.assert_allclose(fcfg.mean[2 * 13 + 5], t.mean(), rtol=1e-5)
    np.testing.assert_allclose(fcfg.std[2 * 13 + 5], t.std(), rtol=1e-4)
    assert fcfg.static_mean[0] == pytest.approx(float(ds["land_sea_mask"].mean()), rel=1e-5)
    assert all(s > 0 for s in fcfg.increment_scale)
    assert fc.ForecasterConfig.from_dict(fcfg.to_dict()) == fcfg
    with pytest.raises(ValueError, match="grid"):
        train.make_forecaster_config(
            pangu_store, 6, config.preset("tiny"), train.Splits.for_store(pangu_store).train
        )


def test_loss_is_zero_for_the_models_own_forecast(pangu_store, fcfg):
    model = fc.make_forecaster(fcfg)
    src = sources.WindowSource(pangu_store, fc.task_for(6), None)
    s = src[0]
    x = jnp.asarray(s["inputs"])[None]
    static = jnp.asarray(s["statics"])[None]
    y = forecast._jitted_call(model, x[:, -1], static)
    loss = nnx.jit(fc.loss_fn)
    batch = {"inputs": x, "targets": y[:, None], "statics": static}
    assert float(loss(model, batch)) < 1e-4
    batch["targets"] = jnp.asarray(s["targets"])[None]
    assert float(loss(model, batch)) > 1e-2


def test_rollout_loss_matches_one_step_loss_and_vanishes_on_own_rollout(pangu_store, fcfg):
    model = fc.make_forecaster(fcfg)
    src = sources.WindowSource(pangu_store, fc.task_for(6, rollout=2), None)
    s = src[0]
    assert s["targets"].shape[0] == 2
    x = jnp.asarray(s["inputs"])[None]
    static = jnp.asarray(s["statics"])[None]
    one = {"inputs": x, "targets": jnp.asarray(s["targets"])[None, :1], "statics": static}
    two = {"inputs": x, "targets": jnp.asarray(s["targets"])[None], "statics": static}
    l1, r1 = nnx.jit(fc.loss_fn), nnx.jit(fc.rollout_loss_fn(1))
    np.testing.assert_allclose(float(r1(model, one)), float(l1(model, one)), rtol=1e-5)
    y1 = forecast._jitted_call(model, x[:, -1], static)
    y2 = forecast._jitted_call(model, y1, static)
    own = {"inputs": x, "targets": jnp.stack([y1, y2], axis=1), "statics": static}
    r2 = nnx.jit(fc.rollout_loss_fn(2))
    assert float(r2(model, own)) < 1e-4
    assert float(r2(model, two)) > 1e-2
    with pytest.raises(ValueError, match="2 targets"):
        r2(model, one)


@pytest.fixture(scope="module")
def trained(pangu_store, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("atmos_train")
    plan = train.TrainPlan(
        store=pangu_store,
        workdir=str(workdir),
        leads=LEADS,
        model=config.preset("tiny", lat=N_LAT, lon=N_LON, **SMALL),
        train=train_config.warmup_cosine(4, 2, train.PEAK_LEARNING_RATE),
        splits=train.Splits.for_store(pangu_store),
    )
    histories = train.train_models(plan, show_progress=False)
    return plan, histories, train.load_models(workdir)


def test_train_models_writes_one_resumable_model_per_lead(trained):
    plan, histories, models = trained
    assert set(histories) == set(LEADS) == set(models)
    for lead, hist in histories.items():
        assert [s for s, _ in hist] == [0, 1, 2, 3]
        assert all(np.isfinite(v) for _, v in hist)
        assert models[lead].config.lead_hours == lead
    # Running the plan again resumes at the end: nothing more to do.
    again = train.train_models(plan, show_progress=False)
    assert all(h == [] for h in again.values())


def test_available_leads(pangu_store):
    assert train.available_leads(pangu_store) == (6, 24)
    with pytest.raises(ValueError, match="multiple"):
        train.available_leads(pangu_store, (1, 3))


def test_hierarchical_and_naive_compose_the_lead_models(pangu_store, trained):
    _, _, models = trained
    system = forecast.ForecastSystem(models)
    naive = forecast.ForecastSystem(models, naive=True)
    assert len(system.calls([168])) == 7 and len(naive.calls([168])) == 28
    assert [c.lead for c in system.calls([30])] == [24, 6]
    x0, static, _, _ = forecast.read_initial_conditions(
        pangu_store, ["2000-01-02T00"], system.config
    )
    hier = dict(system.steps(x0, static, [24, 30]))
    st, q = jnp.asarray(static), list(fc.nonnegative_channels(system.config.model))
    std = np.asarray(system.config.std)

    def call(model, x, static):  # one model call, humidity clipped at zero as every step is
        y = forecast._jitted_call(model, x, static)
        return y.at[..., q].set(jnp.maximum(y[..., q], 0.0))

    def close(a, b):  # in units of each channel's std: float32 rounding differs by path
        np.testing.assert_allclose(np.asarray(a) / std, np.asarray(b) / std, atol=1e-4)

    ref24 = call(models[24], jnp.asarray(x0), st)
    close(hier[24], ref24)
    close(hier[30], call(models[6], ref24, st))
    nv = dict(naive.steps(x0, static, [24]))
    y = jnp.asarray(x0)
    for _ in range(4):
        y = call(models[6], y, st)
    close(nv[24], y)


def test_forecast_layout_and_streaming(pangu_store, trained, tmp_path):
    _, _, models = trained
    system = forecast.ForecastSystem(models)
    inits = ["2000-01-02T00", "2000-01-03T12"]
    leads = forecast.output_leads("2d", "12h")
    assert leads == [12, 24, 36, 48]
    mem = forecast.forecast(system, pangu_store, inits, leads, show_progress=False)
    assert mem["temperature"].dims == (
        schema.TIME,
        forecast.LEAD_DIM,
        schema.LEVEL,
        schema.LATITUDE,
        schema.LONGITUDE,
    )
    assert list(mem[forecast.LEAD_DIM].values) == list(pd.to_timedelta(leads, unit="h"))
    assert list(mem[schema.TIME].values) == list(pd.DatetimeIndex(inits).values)
    out = tmp_path / "fc.zarr"
    disk = forecast.forecast(system, pangu_store, inits, leads, out=out, show_progress=False)
    assert not (tmp_path / "fc.zarr.partial").exists()
    xr.testing.assert_allclose(disk.load(), mem.load(), rtol=1e-6, atol=1e-6)
    with pytest.raises(KeyError, match="1999-01-01"):
        forecast.forecast(system, pangu_store, ["1999-01-01"], leads, show_progress=False)


def test_ensemble_forecast_has_realizations(pangu_store, trained):
    _, _, models = trained
    system = forecast.ForecastSystem(models)

    def perturb(x0, members):
        noise = np.random.default_rng(0).normal(size=(x0.shape[0], members, *x0.shape[1:]))
        noise[:, 0] = 0.0
        return (x0[:, None] * (1 + 1e-3 * noise)).reshape(-1, *x0.shape[1:])

    ens = forecast.forecast(
        system,
        pangu_store,
        ["2000-01-02T00"],
        [6, 24],
        members=3,
        perturb=perturb,
        show_progress=False,
    )
    assert ens.sizes[forecast.MEMBER_DIM] == 3
    det = forecast.forecast(system, pangu_store, ["2000-01-02T00"], [6, 24], show_progress=False)
    np.testing.assert_allclose(
        ens["2m_temperature"].isel(realization=0).values, det["2m_temperature"].values, rtol=1e-5
    )
    assert float(ens["2m_temperature"].std(forecast.MEMBER_DIM).max()) > 0
    with pytest.raises(ValueError, match="perturbation"):
        forecast.forecast(
            system, pangu_store, ["2000-01-02T00"], [6], members=2, show_progress=False
        )


def test_evaluate_writes_report_and_scores_persistence_by_hand(pangu_store, trained, tmp_path):
    from tellus.atmosphere import evaluate

    plan, _, _ = trained
    cfg = evaluate.EvalConfig(
        max_lead="1d", every="6h", init_every="6h", map_leads=("1d",), rollout_days=2
    )
    summary = evaluate.run(pangu_store, plan.workdir, tmp_path / "report", cfg, show_progress=False)
    report = tmp_path / "report"
    for name in (
        "scores.csv",
        "scorecard_rmse.md",
        "scorecard_acc.csv",
        "rmse_vs_lead.png",
        "acc_vs_lead.png",
        "maps_Z500_1d.png",
        "summary.json",
        "forecast.zarr",
        "verdict.csv",
        "rollout_2d.csv",
        "tracks_forecast.csv",
        "tracks_truth.csv",
        "tracks_errors.csv",
    ):
        assert (report / name).exists(), name
    assert summary["model_calls_per_forecast"] == {evaluate.MODEL: 4, evaluate.NAIVE: 4}
    df = pd.read_csv(report / "scores.csv")
    assert set(df["model"]) == {evaluate.MODEL, evaluate.NAIVE, "persistence", "climatology"}
    # Persistence RMSE of T2M at 12 h, by hand: cell-area weights (cells bounded by the
    # midpoints between rows and by the poles) normalized to mean 1, same init times.
    splits = train.Splits.for_store(pangu_store)
    inits = evaluate.evaluation_init_times(pangu_store, splits, "1d", "6h")
    t2m = xr.open_zarr(pangu_store, consolidated=False)["2m_temperature"].load()
    lat = np.deg2rad(t2m["latitude"].values)
    edges = np.r_[-np.pi / 2, (lat[:-1] + lat[1:]) / 2, np.pi / 2]
    w = np.diff(np.sin(edges))
    w = w / w.mean()
    errs = [
        ((t2m.sel(time=t + pd.Timedelta("12h")) - t2m.sel(time=t)) ** 2 * w[:, None]).mean().item()
        for t in inits
    ]
    got = df[
        (df.model == "persistence")
        & (df.metric == "rmse")
        & (df.region == "global")
        & (df.variable == "2m_temperature")
        & (pd.to_timedelta(df["lead"]) == pd.Timedelta("12h"))
    ]["value"]
    assert got.item() == pytest.approx(np.sqrt(np.mean(errs)), rel=1e-5)
    v = evaluate.verdict(df)
    assert set(v["variable"]) == set(evaluate.VERDICT_VARIABLES) and len(v) == 3 * 4


def test_training_climatology_is_the_training_mean(pangu_store):
    from tellus.atmosphere import evaluate

    splits = train.Splits.for_store(pangu_store)
    clim = evaluate.training_climatology(pangu_store, splits, ["2m_temperature"])
    t2m = xr.open_zarr(pangu_store, consolidated=False)["2m_temperature"]
    n_train = int((pd.DatetimeIndex(t2m["time"].values) < pd.Timestamp(splits.train.stop)).sum())
    want = t2m.isel(time=slice(0, n_train)).mean("time").values
    np.testing.assert_allclose(
        clim["2m_temperature"].sel(dayofyear=200, hour=6).values, want, rtol=1e-6
    )


class _Amplifier(nnx.Module):
    """A stand-in 24 h model: ``mean + factor * (x - mean)`` (persistence for factor 1)."""

    def __init__(self, cfg: fc.ForecasterConfig, factor: float):
        self.config = dataclasses.replace(cfg, lead_hours=24)
        self.factor = factor

    def __call__(self, x, static):
        mean = jnp.asarray(self.config.mean)
        return mean + self.factor * (x - mean)


def test_long_rollout_flags_what_leaves_the_bounds(pangu_store, fcfg):
    from tellus.atmosphere import evaluate

    def check(factor):
        system = forecast.ForecastSystem({24: _Amplifier(fcfg, factor)})
        return evaluate.long_rollout(
            system, pangu_store, "2000-01-02T00", days=30, show_progress=False
        )

    steady = check(1.0)
    assert len(steady) == 5 * 13 + 4  # every variable and level
    # Persistence of a training-period state never leaves the training period's range.
    assert steady["bounded"].all() and (steady["range_ratio"] <= 1.0 + 1e-6).all()
    assert (steady["days_in_range"] == 30).all()
    # Growing 10 % a day, anomalies reach 1.1^30 = 17 x their size: finite, not bounded.
    growing = check(1.1)
    assert growing["finite"].all() and not growing["bounded"].any()
    assert (growing["range_ratio"] > 1.5).all()
    # Day k (1-based) has ratio 1.1^k r0, r0 the persisted state's: it leaves the range on
    # the first k with 1.1^k r0 > 1.5, after k - 1 days in range.
    r0 = steady["range_ratio"].to_numpy()
    first_out = np.floor(np.log(1.5 / r0) / np.log(1.1)) + 1
    np.testing.assert_allclose(growing["days_in_range"], first_out - 1, atol=1)


class _Shift(_Amplifier):
    """A stand-in 24 h model that subtracts ``factor`` from every channel."""

    def __call__(self, x, static):
        return x - self.factor


def test_rollout_never_feeds_back_negative_humidity(pangu_store, fcfg):
    x0, static, layout, _ = forecast.read_initial_conditions(pangu_store, ["2000-01-02T00"], fcfg)
    system = forecast.ForecastSystem({24: _Shift(fcfg, 0.5)})
    steps = dict(system.steps(x0, static, [24, 48]))
    q = fc.nonnegative_channels(fcfg.model)
    # the layout's own channel names agree with the config's indices
    names = [v.name for v in layout.variables for _ in range(v.size)]
    assert len(q) == 13 and {names[i] for i in q} == {"specific_humidity"}
    other = np.setdiff1d(np.arange(x0.shape[-1]), q)
    # humidity (< 0.5 kg/kg everywhere) is clipped to 0 at each step, the rest just shifts
    np.testing.assert_array_equal(np.asarray(steps[24])[..., q], 0.0)
    np.testing.assert_array_equal(np.asarray(steps[48])[..., q], 0.0)
    np.testing.assert_allclose(
        np.asarray(steps[48])[..., other], x0[..., other] - 1.0, rtol=1e-6, atol=1e-3
    )


def test_rollout_phase_starts_from_the_trained_model_and_is_what_loads(pangu_store, trained):
    plan, _, models = trained
    phase = train.RolloutPhase(lead=24, rollout=2, steps=2)
    longer = dataclasses.replace(plan, finetune=(phase,))
    hist = train.train_models(longer, show_progress=False)
    # The main phases are done (resumed, nothing to run); the rollout phase ran its 2 steps.
    assert hist[6] == [] and [s for s, _ in hist[24]] == [0, 1]
    workdir = train.lead_dir(plan.workdir, 24)
    assert train.final_phase(workdir) == phase.directory(plan.workdir)
    assert train.final_phase(train.lead_dir(plan.workdir, 6)) == train.lead_dir(plan.workdir, 6)
    # Its first loss is the trained 24 h model's 2-step rollout loss on the same batch: the
    # phase starts from the trained weights, not from a fresh initialization.
    task = fc.task_for(24, "6h", rollout=2)
    src = sources.WindowSource(pangu_store, task, plan.splits.train)
    batch = next(train.batches(src, plan.train.batch_size, seed=plan.train.seed + 2))
    want = float(
        nnx.jit(fc.rollout_loss_fn(2))(models[24], {k: jnp.asarray(v) for k, v in batch.items()})
    )
    fresh = float(
        nnx.jit(fc.rollout_loss_fn(2))(
            fc.make_forecaster(models[24].config.to_dict()),
            {k: jnp.asarray(v) for k, v in batch.items()},
        )
    )
    np.testing.assert_allclose(hist[24][0][1], want, rtol=1e-5)
    assert abs(fresh - want) > 20 * 2e-3 * want, (fresh, want)
    # The 24 h model that loads now is the fine-tuned one.
    tuned = train.load_models(plan.workdir)[24]
    a = jax.tree.leaves(nnx.state(tuned, nnx.Param))
    b = jax.tree.leaves(nnx.state(models[24], nnx.Param))
    assert any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))
    assert train.train_models(longer, show_progress=False) == {6: [], 24: []}
    with pytest.raises(ValueError, match="does not train"):
        dataclasses.replace(plan, leads=(6,), finetune=(phase,))
    with pytest.raises(ValueError, match="must grow"):  # the last phase must be the longest
        dataclasses.replace(plan, finetune=(train.RolloutPhase(24, 4, 1), phase))


def test_per_lead_steps_scale_the_schedule(pangu_store):
    plan = train.TrainPlan(
        store=pangu_store,
        workdir="unused",
        leads=LEADS,
        model=config.preset("tiny", lat=N_LAT, lon=N_LON, **SMALL),
        train=train_config.warmup_cosine(400, 2, train.PEAK_LEARNING_RATE),
        splits=train.Splits.for_store(pangu_store),
        steps_by_lead=((6, 100),),
    )
    assert plan.train_config(24) == plan.train
    six = plan.train_config(6)
    assert (six.num_steps, six.optimizer.decay_steps, six.checkpoint_every) == (100, 100, 25)
    assert six.optimizer.warmup_steps == 10 and six.batch_size == 2
    with pytest.raises(ValueError, match=r"\[3\] h models"):
        dataclasses.replace(plan, steps_by_lead=((3, 100),))


def test_a_teachers_targets_blend_its_own_rollout_into_the_analyses(pangu_store, trained):
    from tellus.atmosphere import prune

    plan, _, models = trained
    model = models[6]
    src = sources.WindowSource(pangu_store, fc.task_for(6, "6h", rollout=2), plan.splits.train)
    batch = next(train.batches(src, 2, seed=0))
    step = nnx.jit(lambda m, x, s: m(x, s))
    one = np.asarray(step(model, batch["inputs"][:, -1], batch["statics"]))
    two = np.asarray(step(model, one, batch["statics"]))
    own = prune.teacher_targets(model, 2, 1.0)(batch)
    np.testing.assert_allclose(own["targets"], np.stack([one, two], axis=1), rtol=1e-5, atol=1e-5)
    half = prune.teacher_targets(model, 2, 0.25)(batch)["targets"]
    np.testing.assert_allclose(half, 0.75 * batch["targets"] + 0.25 * own["targets"], rtol=1e-5)
    np.testing.assert_array_equal(
        prune.teacher_targets(model, 2, 0.0)(batch)["inputs"], batch["inputs"]
    )
    # A model trained towards its own forecasts alone starts at zero loss.
    loss = nnx.jit(fc.rollout_loss_fn(2))(model, {k: jnp.asarray(v) for k, v in own.items()})
    assert float(loss) < 1e-6
    with pytest.raises(ValueError, match="forecasts 3 steps; the batch has 2"):
        prune.teacher_targets(model, 3, 0.5)(batch)


def test_one_at_a_time_measures_the_entropy_again_on_what_each_round_leaves(
    pangu_store, trained, tmp_path
):
    from tellus.atmosphere import prune
    from tellus.training import entropy, pruning

    plan, _, _ = trained
    source = train.lead_dir(plan.workdir, 6)
    pp = prune.PrunePlan(
        source=source,
        out=tmp_path / "one",
        store=pangu_store,
        spec=pruning.PruneSpec(fraction=1.0, anneal=0.5),
        steps=5,
        batch_size=2,
        measure_batches=2,
    )
    record = prune.prune_one_at_a_time(pp, show_progress=False)
    first, second = record["rounds"]
    # Round 1 ranks both layers on the trained model and removes the one that adds least;
    # round 2 measures the one left again, on round 1's fine-tuned model, and removes it.
    assert first["source"] == str(train.final_phase(source)) and first["steps"] == 2
    assert first["removed"] == [first["ranking"][0]["path"]] and len(first["ranking"]) == 2
    ((left,),) = [[r for r in first["ranking"] if r["path"] not in first["removed"]]]
    (again,) = second["ranking"]
    assert again["path"] == left["path"] and second["removed"] == [left["path"]]
    assert again["added"] != left["added"]  # measured on another model
    assert second["steps"] == 3  # the remainder of the 5 steps
    assert second["source"] == str(train.final_phase(tmp_path / "one" / "rounds" / "1" / "lead_6h"))
    assert record["removed"] == [first["removed"][0], left["path"]]
    assert record["pruned"] == [0, 1] and record["max_difference_from_lambda_zero"] == 0.0
    (round1,) = train.load_models(tmp_path / "one" / "rounds" / "1").values()
    assert round1.config.model.pruned == (first["ranking"][0]["index"],)
    (lead,) = train.load_models(pp.out).values()
    assert lead.config.model.pruned == (0, 1)
    assert all(b.attn is None for b in entropy.blocks(lead).values())
    # Resumed (every round finished): the same record, nothing trained again.
    assert prune.prune_one_at_a_time(pp, show_progress=False) == record
    saved = json.loads((pp.out / "lead_6h" / "prune.json").read_text())
    assert saved["rounds"] == record["rounds"]
    with pytest.raises(ValueError, match="named layers are removed together"):
        prune.prune_one_at_a_time(
            dataclasses.replace(pp, spec=pruning.PruneSpec(layers=(0, 1))), show_progress=False
        )
    with pytest.raises(ValueError, match="1 fine-tuning steps cannot be shared among 2 rounds"):
        prune.prune_one_at_a_time(
            dataclasses.replace(pp, steps=1, out=tmp_path / "x"), show_progress=False
        )


def test_pruning_removes_the_attention_that_adds_least_and_the_result_loads(
    pangu_store, trained, tmp_path
):
    from tellus.atmosphere import prune
    from tellus.training import entropy, pruning

    plan, _, models = trained
    source = train.lead_dir(plan.workdir, 6)
    pp = prune.PrunePlan(
        source=source,
        out=tmp_path / "pruned",
        store=pangu_store,
        spec=pruning.PruneSpec(fraction=0.5, anneal=0.5),
        steps=4,
        batch_size=2,
        measure_batches=2,
        distill=0.5,  # the teacher: the source model itself
    )
    record = prune.prune_lead(pp, show_progress=False)
    assert record["distill"] == {"weight": 0.5, "teacher": str(source)}
    # Two blocks (one per stage); the one whose attention adds the least entropy goes.
    ranking = record["ranking"]
    assert [r["index"] for r in sorted(ranking, key=lambda r: r["index"])] == [0, 1]
    assert ranking[0]["added"] <= ranking[1]["added"]
    assert record["removed"] == [ranking[0]["path"]] and record["pruned"] == [ranking[0]["index"]]
    assert record["anneal_steps"] == 2 and [s for s, _ in record["losses"]] == [0, 1, 2, 3]
    # Step 0 runs at lambda = 1: its loss is the trained model's on the same batch, towards
    # targets halfway between the analyses and its own forecasts.
    task = fc.task_for(6, "6h")
    src = sources.WindowSource(pangu_store, task, plan.splits.train)
    batch = next(train.batches(src, 2, seed=0))
    forecast = np.asarray(
        nnx.jit(lambda m, x, s: m(x, s))(models[6], batch["inputs"][:, -1], batch["statics"])
    )
    batch["targets"] = 0.5 * batch["targets"] + 0.5 * forecast[:, None]
    want = float(nnx.jit(fc.loss_fn)(models[6], {k: jnp.asarray(v) for k, v in batch.items()}))
    np.testing.assert_allclose(record["losses"][0][1], want, rtol=1e-5)
    # The pruned model computes the lambda = 0 one's forecasts exactly, loads as a lead model
    # of its run folder, and has lost that attention's parameters and bias table only.
    assert record["max_difference_from_lambda_zero"] == 0.0
    (lead,) = train.load_models(pp.out).values()
    assert lead.config.model.pruned == tuple(record["pruned"])
    attention = [b.attn is not None for b in entropy.blocks(lead).values()]
    assert attention == [i not in record["pruned"] for i in range(2)]
    removed = record["removed"][0]
    stage, block = int(removed.split("/")[2][-1]) - 1, removed.split("/")[4]
    assert {d.rsplit("/", 1)[0] for d in record["dropped_parameters"]} == {
        f"{removed}/attn",
        f"net/adapter/bias/stages/{stage}/{block}",
    }
    x = jnp.asarray(batch["inputs"][:, -1])
    out = np.asarray(nnx.jit(lambda m, x, s: m(x, s))(lead, x, jnp.asarray(batch["statics"])))
    assert np.isfinite(out).all()
