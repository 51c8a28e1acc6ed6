import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tellus.enso import model as model_lib
from tellus.kernels import partitioning


@pytest.fixture(scope="module")
def tiny():
    return model_lib.make_model(model_lib.preset("tiny", input_std=(0.5, 0.2), target_std=0.8))


def _inputs(b=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, 3, 2, 24, 72)).astype(np.float32), np.arange(b) % 12 + 1


def test_output_shape_and_param_count(tiny):
    x, month = _inputs()
    y = tiny(x, month)
    assert y.shape == (4, 24) and bool(jnp.all(jnp.isfinite(y)))
    for name in model_lib.PRESETS:
        cfg = model_lib.preset(name)
        n = partitioning.count_params(jax.eval_shape(lambda c=cfg: model_lib.make_model(c)))
        print(f"{name}: {n:,} parameters, token grid {cfg.token_grid}")
    assert model_lib.preset("small").token_grid == (6, 18)


def test_config_round_trips_through_json():
    cfg = model_lib.preset("small", input_std=(0.3, 0.1), target_std=0.9, seed=3)
    back = model_lib.ResoNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg


def test_a_version_0_config_without_lead_rank_migrates_to_a_full_rank_head():
    d = model_lib.preset("small").to_dict()
    del d["lead_rank"]
    v0 = {"model": d, "train": {}}  # what checkpoints held before the envelope
    cfg, applied = model_lib.KIND.migrate(v0, "old")
    assert len(applied) == 1 and cfg["kind"] == "enso.resonet" and cfg["version"] == 1
    assert model_lib.ResoNetConfig.from_dict(cfg["model"]).lead_rank is None
    # A version-0 config that has the field keeps it.
    v0_rank = {"model": model_lib.preset("small").to_dict(), "train": {}}
    assert model_lib.KIND.migrate(v0_rank, "old")[0]["model"]["lead_rank"] == 4
    # Without the migration the dataclass default (a rank-4 head) would be taken: a misload.
    assert model_lib.ResoNetConfig.from_dict(d).lead_rank == 4


def test_samples_are_independent(tiny):
    x, month = _inputs(4)
    perm = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(tiny(x, month)[perm], tiny(x[perm], month[perm]), atol=1e-5)


def test_stem_is_equivariant_to_whole_token_longitude_shifts(tiny):
    # Periodic in longitude: shifting the inputs by one token (4 grid points) shifts the
    # stem's token grid by one column.
    x, _ = _inputs(2)
    net = tiny.net
    grid = net.cfg.token_grid
    a = net.tokens(jnp.asarray(x)).reshape(2, *grid, -1)
    b = net.tokens(jnp.roll(x, 4, axis=-1)).reshape(2, *grid, -1)
    np.testing.assert_allclose(jnp.roll(a, 1, axis=2), b, atol=1e-5)


def test_month_matters_and_is_periodic(tiny):
    x, _ = _inputs(2)
    jan = tiny(x, np.array([1, 1]))
    assert not np.allclose(jan, tiny(x, np.array([7, 7])))
    np.testing.assert_allclose(jan, tiny(x, np.array([13, 13])), atol=1e-5)


def test_normalization_wrapper(tiny):
    # Forecaster(x) == target_std * ResoNet(x / input_std).
    x, month = _inputs(2)
    std = np.array([0.5, 0.2], np.float32)[None, None, :, None, None]
    np.testing.assert_allclose(tiny(x, month), 0.8 * tiny.net(x / std, month), atol=1e-5)


def test_lead_head_has_the_configured_rank(tiny):
    # Over a batch of 8 different inputs the 24-lead forecasts, minus their batch mean, span
    # exactly lead_rank (4) directions; a full-rank head would span 7 (8 samples less the mean).
    assert tiny.config.lead_rank == 4
    x, month = _inputs(8)
    y = np.asarray(tiny(x, month), np.float64)
    sv = np.linalg.svd(y - y.mean(0), compute_uv=False)
    assert sv[4] < 1e-5 * sv[0] and sv[3] > 1e-3 * sv[0]


def test_bad_config_raises():
    with pytest.raises(ValueError, match="pooling"):
        model_lib.ResoNetConfig(n_lat=22)
    with pytest.raises(ValueError, match="lead_rank=24"):
        model_lib.ResoNetConfig(lead_rank=24)


def test_mixed_precision_multiplies_in_bfloat16():
    """compute_dtype bfloat16: the stem's convolutions and every matmul take bfloat16
    operands but the attention's float32 softmax weights (before, the float32 inputs
    promoted the whole network back to float32)."""
    from tellus.enso import train
    from tellus.training import benchmarking

    cfg = model_lib.preset("tiny")
    x, month = _inputs(2)
    batch = {"x": x, "month": month.astype(np.int32), "y": np.zeros((2, cfg.n_leads), np.float32)}

    def count(dtype):
        return benchmarking.step_matmul_dtypes(
            model_lib.make_model(cfg), lambda m, b, rng=None: train.loss_fn(m, b), batch, dtype
        )

    low = count("bfloat16")
    assert ("f32", "f32") not in low and low[("bf16", "bf16")] > 10
    assert set(count("float32")) == {("f32", "f32")}
