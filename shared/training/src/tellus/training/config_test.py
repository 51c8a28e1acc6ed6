import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tellus.training import config as config_lib
from tellus.training import optimizer as optimizer_lib


def test_presets_round_trip_json():
    for name in config_lib.PRESETS:
        cfg = config_lib.preset(name)
        back = config_lib.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg


def test_validation():
    with pytest.raises(ValueError):
        config_lib.TrainConfig(batch_size=6, grad_accum_steps=4)
    with pytest.raises(ValueError):
        config_lib.TrainConfig(nonfinite="ignore")
    with pytest.raises(ValueError):
        config_lib.OptimizerConfig(warmup_steps=10, decay_steps=10)
    with pytest.raises(KeyError):
        config_lib.preset("huge")


def test_schedule_hand_values():
    cfg = config_lib.OptimizerConfig(
        peak_learning_rate=1.0, end_learning_rate=0.0, warmup_steps=10, decay_steps=110
    )
    sched = optimizer_lib.learning_rate_schedule(cfg)
    np.testing.assert_allclose(float(sched(0)), 0.0)
    np.testing.assert_allclose(float(sched(5)), 0.5)
    np.testing.assert_allclose(float(sched(10)), 1.0)
    # Half-way through the cosine: 0.5 * (1 + cos(pi/2)) = 0.5.
    np.testing.assert_allclose(float(sched(60)), 0.5, atol=1e-6)
    np.testing.assert_allclose(float(sched(110)), 0.0, atol=1e-7)


def test_clipping_matches_optax():
    grads = {"w": jnp.array([3.0, 4.0, 0.0, 0.0]), "b": jnp.array([12.0])}
    norm = optax.tree.norm(grads)  # 13
    want, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    got = optimizer_lib.clip_by_global_norm(grads, norm, 1.0)
    for k in grads:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got["b"]), [12.0 / 13.0], rtol=1e-6)
    # Below the bound, and with no bound, the gradients are unchanged.
    same = optimizer_lib.clip_by_global_norm(grads, norm, 20.0)
    np.testing.assert_array_equal(np.asarray(same["w"]), np.asarray(grads["w"]))
    assert optimizer_lib.clip_by_global_norm(grads, norm, None) is grads


def test_profile_steps_are_a_range_of_steps_and_survive_the_json_round_trip():
    cfg = config_lib.TrainConfig(profile_steps=[3, 6])  # as a JSON envelope gives it back
    assert cfg.profile_steps == (3, 6)
    back = config_lib.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert config_lib.TrainConfig.from_dict({}).profile_steps is None  # older envelopes
    for bad in ((3, 3), (-1, 2), (1, 2, 3)):
        with pytest.raises(ValueError, match="profile_steps must be"):
            config_lib.TrainConfig(profile_steps=bad)
