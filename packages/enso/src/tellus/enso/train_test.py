import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from tellus.data import sources
from tellus.enso import indices, train, world
from tellus.enso import model as model_lib
from tellus.training import checkpoint as ckpt_lib


def _build(kind, years, path):
    return world.build_world(kind, years, path=path, progress=False)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """World stores: a 60-year model run, 60 observed years, and a model run of two
    consecutive 5-year segments (``realization``), as ``(path, dataset)``."""
    root = tmp_path_factory.mktemp("worlds")
    out = {
        kind: (root / f"{kind}.zarr", _build(kind, 60, root / f"{kind}.zarr"))
        for kind in ("model", "observed")
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(world, "MAX_SEGMENT_YEARS", 5)
        path = root / "segmented.zarr"
        out["segmented"] = (path, _build("model", 10, path))
    return out


def _stack(src: train.SampleSource, rows) -> dict[str, np.ndarray]:
    samples = [src[int(i)] for i in rows]
    return {k: np.stack([s[k] for s in samples]) for k in ("x", "month", "y")}


def test_samples_match_the_indices(stores):
    _, obs = stores["observed"]
    s = train.to_series(obs)
    inits = train.inits_between(s, 0, s.n_time - 1)
    # the first init has 3 input months, the last a full centred mean at lead 24
    assert inits[0, 1] == 2 and inits[-1, 1] == s.n_time - 1 - 25
    b = train.gather(s, inits[[0, 100]])
    oni = indices.oni(obs).values
    t = inits[100, 1]
    np.testing.assert_allclose(b["y"][1], oni[t + 1 : t + 25], atol=1e-5)
    np.testing.assert_allclose(b["x"][1, :, 0], obs[world.SST].values[t - 2 : t + 1])
    np.testing.assert_allclose(b["x"][1, :, 1], obs[world.HEAT].values[t - 2 : t + 1])
    assert b["month"][1] == obs.time.dt.month.values[t]
    assert not np.isnan(train.gather(s, inits)["y"]).any()


@pytest.mark.parametrize("kind", ["observed", "segmented"])
def test_window_source_samples_are_the_gathered_ones_bitwise(stores, kind):
    """The data layer's samples (WindowSource, the Nino3.4 target derived there) are exactly
    those of the in-memory arrays: first and last init, and both sides of a segment
    boundary."""
    path, ds = stores[kind]
    base = ("1850-01", "1879-12") if kind == "observed" else None
    src = train.samples(path, model_lib.preset("tiny"), base_period=base)
    s = train.to_series(ds, base)
    inits = train.inits_between(s, 0, s.n_time - 1)
    np.testing.assert_array_equal(src.inits, inits)
    per_segment = len(src) // src.windows.n_segments
    rows = sorted({0, 1, per_segment - 1, per_segment % len(src), len(src) // 3, len(src) - 1})
    if kind == "segmented":  # 60 months, inits 2..34 in each of the two segments
        assert src.windows.n_segments == 2 and per_segment == 33
        np.testing.assert_array_equal(src.inits[[32, 33]], [[0, 34], [1, 2]])
    got, want = _stack(src, rows), train.gather(s, inits[rows])
    for k in ("x", "month", "y"):
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
        np.testing.assert_array_equal(got[k], want[k])
    assert got["x"].shape[1:] == (3, 2, 24, 72) and got["y"].shape[1:] == (24,)
    np.testing.assert_array_equal(src.windows.derived[..., 0], s.index)


def test_history_and_leads_come_from_the_model_config(stores):
    path, ds = stores["observed"]
    cfg = model_lib.preset("tiny", history=2, n_leads=12)
    src = train.samples(path, cfg)
    assert src.task.history_steps == 2 and src.task.lead_steps == tuple(range(1, 13))
    # months t-1..t, and the centred mean at lead 12 needs t+13: inits 1..n-14
    n = ds.sizes["time"]
    assert src.inits[0, 1] == 1 and src.inits[-1, 1] == n - 14 and len(src) == n - 14
    s = train.to_series(ds, task=src.task)
    np.testing.assert_array_equal(src.inits, train.inits_between(s, 0, n - 1))
    sample = src[10]
    assert sample["x"].shape == (2, 2, 24, 72) and sample["y"].shape == (12,)
    np.testing.assert_array_equal(sample["y"], train.gather(s, src.inits[[10]])["y"][0])
    loss = train.loss_fn(model_lib.make_model(cfg), next(train.batches(src, 4)))
    assert np.isfinite(float(loss))


def test_in_memory_worlds_are_refused_for_training():
    with pytest.raises(ValueError, match="build_world"):
        train.store_of(world.build_world("observed", 3, progress=False))


def test_observed_split_has_no_overlap(stores):
    path, obs = stores["observed"]
    s = train.to_series(obs)
    split = train.ObservedSplit(finetune_years=30, test_years=20)
    gap = split.check(s)
    ft, te = split.finetune_inits(s), split.test_inits(s)
    last_ft_target = ft[:, 1].max() + 25
    first_test_input = te[:, 1].min() - 2
    assert last_ft_target < 30 * 12 and first_test_input >= 40 * 12
    assert first_test_input - last_ft_target > 24 and gap == 120
    with pytest.raises(ValueError, match="gap"):
        train.ObservedSplit(finetune_years=35, test_years=24).check(s)
    with pytest.raises(ValueError, match="need more than 130"):
        split.check(s, longest_lead=130)
    # The same split of the store by dates: WindowSource finds the same windows.
    ranges = split.date_ranges(pd.DatetimeIndex(obs.time.values))
    assert ranges["finetune"] == sources.DateRange("1850-01", "1880-01")
    assert ranges["test"] == sources.DateRange("1890-01", "1910-01")
    for name, inits in (("finetune", ft), ("test", te)):
        np.testing.assert_array_equal(train.samples(path, None, ranges[name]).inits, inits)


def test_batches_resume_in_place(stores):
    src = train.samples(stores["observed"][0])
    a, b = train.batches(src, 8, seed=1), train.batches(src, 8, seed=1)
    next(a)
    b.load_state_dict(a.state_dict())
    batch = next(a)
    np.testing.assert_array_equal(batch["y"], next(b)["y"])
    assert batch["x"].shape == (8, 3, 2, 24, 72) and batch["month"].dtype == np.int32
    assert repr(src) == f"SampleSource('enso', n={len(src)})"


TRAIN_KW = dict(
    preset="tiny",
    model_overrides={"depth": 2},
    seeds=(3,),
    budget=train.Budget(4, 2, 8),
    split=train.ObservedSplit(30, 20),
    show_progress=False,
)


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory):
    """One small two-block member, pretrained and fine-tuned (shared: training it compiles
    both phases): ``(run folder, train_enso's info)``."""
    (model_path, _), (_, obs) = stores["model"], stores["observed"]
    path = tmp_path_factory.mktemp("enso_run")
    # a store path or the Dataset opened from it
    return path, train.train_enso(path, model_path, obs, **TRAIN_KW)


def test_train_finetune_resume_and_load(stores, trained):
    (model_path, _), (_, obs) = stores["model"], stores["observed"]
    kw = TRAIN_KW
    run, info = trained
    assert len(info["histories"][3]["pretrain"]) == 4
    assert len(info["histories"][3]["finetune"]) == 2
    assert info["n_finetune"] == len(
        train.ObservedSplit(30, 20).finetune_inits(train.to_series(obs))
    )
    # a rerun resumes: nothing left to do
    again = train.train_enso(run, model_path, obs, **kw)
    assert again["histories"][3] == {"pretrain": [], "finetune": []}
    (pre,) = train.load_ensemble(run, phase="pretrain")
    (ft,) = train.load_ensemble(run)
    assert ft.config.seed == 3
    assert ft.config.target_std == pytest.approx(info["target_std"])
    # each phase's checkpoint holds its task (from it alone the samples can be made again):
    # the fine-tuning one with the base period of its Nino3.4 climatology (the split's
    # fine-tuning years), the pretraining one with every month
    base = kw["split"].base_period(obs)
    assert base is not None
    for phase, period in (("pretrain", None), ("finetune", base)):
        ck = ckpt_lib.Checkpointer(run / "member_3" / phase / "checkpoints", async_save=False)
        cfg, _ = ck.read_json(ck.latest_step())
        ck.close()
        expected = json.loads(json.dumps(dataclasses.asdict(train.task_for(ft.config, period))))
        assert cfg["kind"] == "enso.resonet" and cfg["task"] == expected, phase
        (target,) = cfg["task"]["derived_targets"]
        assert target["base_period"] == (None if period is None else list(period)), phase
    # fine-tuning started from the pretrained weights: two small steps stay close to them
    w_pre, w_ft = np.asarray(pre.net.head2.kernel[...]), np.asarray(ft.net.head2.kernel[...])
    assert np.abs(w_ft - w_pre).max() < 0.1 * np.abs(w_pre).max()


def test_predict_is_the_ensemble_mean(stores):
    _, obs = stores["observed"]
    models = [model_lib.make_model(model_lib.preset("tiny", seed=k)) for k in (0, 1)]
    s = train.to_series(obs)
    b = train.gather(s, train.inits_between(s, 480, s.n_time - 1)[:5])
    pred = train.predict(models, b["x"], b["month"], batch_size=3)
    assert pred.shape == (5, 24) and np.isfinite(pred).all()
    single = [train.predict([m], b["x"], b["month"]) for m in models]
    assert not np.allclose(single[0], single[1])
    np.testing.assert_allclose(pred, np.mean(single, axis=0), atol=1e-5)
    short = dataclasses.replace(models[0].config, n_leads=12)
    assert train.predict([model_lib.make_model(short)], b["x"], b["month"]).shape == (5, 12)


def test_pruning_the_ensemble_removes_a_block_and_the_result_is_an_ensemble(
    stores, trained, tmp_path
):
    from tellus.enso import prune
    from tellus.training import entropy, pruning

    (model_path, _), (obs_path, obs) = stores["model"], stores["observed"]
    plan = prune.PrunePlan(
        source=trained[0],
        out=tmp_path / "pruned",
        model_store=model_path,
        observed_store=obs_path,
        spec=pruning.PruneSpec(fraction=0.5),
        steps=4,
        measure_samples=64,
    )
    result = prune.prune_ensemble(plan, show_progress=False)
    (record,) = result["members"]
    ranking = record["ranking"]
    assert sorted(r["path"] for r in ranking) == ["net/blocks/0", "net/blocks/1"]
    assert ranking[0]["added"] <= ranking[1]["added"]
    assert record["removed"] == [ranking[0]["path"]] and result["pruned"] == [ranking[0]["index"]]
    assert record["max_difference_from_lambda_zero"] == 0.0
    # lambda ran 1 -> 0 over the first 3 of 4 steps (the paper's share), then held
    assert record["anneal_steps"] == 3 and len(record["losses"]) == 4
    # An ensemble folder like any other: both phases load, the pruned block has no attention
    for phase in ("pretrain", "finetune"):
        (member,) = train.load_ensemble(plan.out, phase=phase)
        assert member.config.pruned == tuple(result["pruned"])
        att = [b.attn is not None for b in entropy.blocks(member).values()]
        assert att == [i not in result["pruned"] for i in range(2)]
    corr = prune.correlation(plan.out, obs)
    assert set(corr) == {6, 12, 24} and all(-1.0 <= v <= 1.0 for v in corr.values())
