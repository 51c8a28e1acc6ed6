import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.data import grid
from tellus.training import config as config_lib
from tellus.training import losses, rollout, step, toy_model

LATW = grid.latitude_weights(np.linspace(-90, 90, 5))


def _step_loss(p, t):
    return losses.weighted_mse(p, t, LATW)


def _python_unroll_loss(model, batch, k):
    x, total = batch["x"], 0.0
    for i in range(k):
        x = model(x)
        total = total + _step_loss(x, batch["y"][:, i])
    return total / k


def _batch(k):
    b = toy_model.synthetic_batch(3, 0, 2)
    y = np.stack([b["y"] * (i + 1) for i in range(k)], axis=1)
    return {"x": jnp.asarray(b["x"]), "y": jnp.asarray(y)}


def test_rollout_loss_and_grads_match_python_loop():
    k = 3
    model = toy_model.make_model(toy_model.ToyConfig())
    batch = _batch(k)
    loss_fn = rollout.make_rollout_loss(_step_loss, k)
    graphdef, params, rest = step.split_model(model)

    def wrap(fn):
        return lambda p: fn(step.merge_model(graphdef, p, rest), batch)

    l1, g1 = jax.value_and_grad(wrap(loss_fn))(params)
    l2, g2 = jax.value_and_grad(wrap(lambda m, b: _python_unroll_loss(m, b, k)))(params)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g1, g2)


def test_rollout_trains_with_train_step():
    k = 2
    cfg = dataclasses.replace(config_lib.preset("tiny"), batch_size=2)
    model = toy_model.make_model(toy_model.ToyConfig())
    fns, state = step.init_train_state(model, cfg)
    fn = step.jit_train_step(step.make_train_step(fns, rollout.make_rollout_loss(_step_loss, k)))
    batch = _batch(k)
    losses_seen = []
    for _ in range(5):
        state, metrics = fn(state, batch)
        losses_seen.append(float(metrics["loss"]))
    assert losses_seen[-1] < losses_seen[0]
    assert rollout.rollout(
        nnx.merge(fns.graphdef, nnx.State(state.params)), batch["x"], k
    ).shape == (
        k,
        *batch["x"].shape,
    )
