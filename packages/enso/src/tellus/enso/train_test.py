import numpy as np
import pytest

from tellus.enso import indices, train, world
from tellus.enso import model as model_lib


@pytest.fixture(scope="module")
def worlds():
    return (
        world.build_world("model", 60, progress=False),
        world.build_world("observed", 60, progress=False),
    )


def test_samples_match_the_indices(worlds):
    _, obs = worlds
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


def test_model_run_segments_are_never_crossed():
    ds = world.build_world("model", 800, progress=False)  # two 400-year segments
    s = train.to_series(ds)
    inits = train.inits_between(s, 0, s.n_time - 1)
    assert set(inits[:, 0]) == {0, 1}
    assert inits[:, 1].max() + 25 < s.n_time and inits[:, 1].min() >= 2


def test_observed_split_has_no_overlap(worlds):
    _, obs = worlds
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


def test_batches_are_the_gathered_samples_and_resume_in_place(worlds):
    _, obs = worlds
    s = train.to_series(obs)
    inits = train.inits_between(s, 0, s.n_time - 1)
    src = train.SampleSource(s, inits)
    one = train.gather(s, inits[[7]])
    for k in ("x", "month", "y"):
        np.testing.assert_array_equal(src[7][k], one[k][0])
    a, b = train.batches(s, inits, 8, seed=1), train.batches(s, inits, 8, seed=1)
    next(a)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(next(a)["y"], next(b)["y"])


def test_train_finetune_resume_and_load(worlds, tmp_path):
    model_ds, obs = worlds
    kw = dict(
        preset="tiny",
        seeds=(3,),
        budget=train.Budget(4, 2, 8),
        split=train.ObservedSplit(30, 20),
        show_progress=False,
    )
    info = train.train_enso(tmp_path, model_ds, obs, **kw)
    assert len(info["histories"][3]["pretrain"]) == 4
    assert len(info["histories"][3]["finetune"]) == 2
    # a rerun resumes: nothing left to do
    again = train.train_enso(tmp_path, model_ds, obs, **kw)
    assert again["histories"][3] == {"pretrain": [], "finetune": []}
    (pre,) = train.load_ensemble(tmp_path, phase="pretrain")
    (ft,) = train.load_ensemble(tmp_path)
    assert ft.config.seed == 3
    assert ft.config.target_std == pytest.approx(info["target_std"])
    # fine-tuning started from the pretrained weights: two small steps stay close to them
    w_pre, w_ft = np.asarray(pre.net.head2.kernel[...]), np.asarray(ft.net.head2.kernel[...])
    assert np.abs(w_ft - w_pre).max() < 0.1 * np.abs(w_pre).max()


def test_predict_is_the_ensemble_mean(worlds):
    _, obs = worlds
    models = [model_lib.make_model(model_lib.preset("tiny", seed=k)) for k in (0, 1)]
    s = train.to_series(obs)
    b = train.gather(s, train.inits_between(s, 480, s.n_time - 1)[:5])
    pred = train.predict(models, b["x"], b["month"], batch_size=3)
    assert pred.shape == (5, 24) and np.isfinite(pred).all()
    single = [train.predict([m], b["x"], b["month"]) for m in models]
    assert not np.allclose(single[0], single[1])
    np.testing.assert_allclose(pred, np.mean(single, axis=0), atol=1e-5)
