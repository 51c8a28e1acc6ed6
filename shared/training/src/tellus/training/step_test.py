import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from tellus.kernels import mesh as mesh_lib
from tellus.training import config as config_lib
from tellus.training import step as step_lib
from tellus.training import toy_model
from tellus.training.optimizer import learning_rate_schedule

CFG = dataclasses.replace(config_lib.preset("tiny"), batch_size=8)


def _host(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def _run(cfg, mesh=None, steps=3, batch_size=8):
    model = toy_model.make_model(toy_model.ToyConfig())
    fns, state = step_lib.init_train_state(model, cfg)
    fn = step_lib.make_train_step(fns, toy_model.loss_fn)
    if mesh is None:
        jitted = step_lib.jit_train_step(fn)
        batch_sh = None
    else:
        sh = step_lib.state_shardings(fns, state, model, mesh, toy_model.RULES)
        state = jax.device_put(state, sh)
        batch_sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
        jitted = step_lib.jit_train_step(fn, sh, batch_sh, mesh)
    losses = []
    for i in range(steps):
        batch = toy_model.place_batch(toy_model.synthetic_batch(0, i, batch_size), batch_sh)
        state, metrics = jitted(state, batch)
        losses.append(float(metrics["loss"]))
    return state, losses, fns


def test_loss_decreases_and_step_counts():
    state, losses, _ = _run(CFG, steps=10)
    assert int(state.step) == 10
    assert losses[-1] < losses[0]


def test_one_group_step_is_clipped_adamw_on_the_schedule():
    # An independent reference: optax's own chain of clipping and AdamW on the schedule.
    import optax

    from tellus.training.optimizer import learning_rate_schedule

    cfg = dataclasses.replace(
        CFG,
        optimizer=dataclasses.replace(CFG.optimizer, clip_global_norm=0.05, weight_decay=0.3),
    )
    model = toy_model.make_model(toy_model.ToyConfig())
    fns, state = step_lib.init_train_state(model, cfg)
    params = _host(state.params)
    tx = optax.chain(
        optax.clip_by_global_norm(0.05),
        optax.adamw(
            learning_rate_schedule(cfg.optimizer),
            b1=cfg.optimizer.b1,
            b2=cfg.optimizer.b2,
            eps=cfg.optimizer.eps,
            weight_decay=0.3,
        ),
    )
    opt = tx.init(params)
    step = step_lib.jit_train_step(step_lib.make_train_step(fns, toy_model.loss_fn))

    def loss_of(p, batch):
        return toy_model.loss_fn(step_lib.merge_model(fns.graphdef, p, state.rest), batch)

    for i in range(3):
        batch = toy_model.place_batch(toy_model.synthetic_batch(0, i, 8))
        grads = jax.grad(loss_of)(params, batch)
        updates, opt = tx.update(grads, opt, params)
        params = optax.apply_updates(params, updates)
        state, _ = step(state, batch)
    for got, want in zip(
        jax.tree.leaves(_host(state.params)), jax.tree.leaves(_host(params)), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)


def test_grad_accumulation_equals_big_batch():
    s1, l1, _ = _run(CFG)
    s4, l4, _ = _run(dataclasses.replace(CFG, grad_accum_steps=4))
    np.testing.assert_allclose(l1, l4, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
        _host(s1.params),
        _host(s4.params),
    )


@pytest.mark.parametrize("shape", [(8, 1), (4, 2), (2, 4), (1, 8)])
def test_sharded_step_matches_single_device(shape):
    mesh = mesh_lib.make_mesh(dict(zip(("data", "fsdp"), shape, strict=True)))
    s_ref, l_ref, _ = _run(CFG)
    s_sh, l_sh, _ = _run(CFG, mesh=mesh)
    np.testing.assert_allclose(l_ref, l_sh, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
        _host(s_ref.params),
        _host(s_sh.params),
    )
    # The FSDP axis really shards the embed dim of the trunk kernel.
    kernel = s_sh.params["trunk"]["up"]["kernel"]
    assert kernel.sharding.spec == PartitionSpec("fsdp", "tensor")


def test_ema_bf16_remat_run():
    cfg = dataclasses.replace(
        CFG,
        compute_dtype="bfloat16",
        remat=True,
        optimizer=dataclasses.replace(CFG.optimizer, ema_decay=0.5),
    )
    state, losses, _ = _run(cfg, steps=3)
    assert state.params["trunk"]["up"]["kernel"].dtype == jnp.float32
    assert all(np.isfinite(losses))
    assert state.ema is not None


def _nan_setup(policy):
    cfg = dataclasses.replace(CFG, nonfinite=policy)
    model = toy_model.make_model(toy_model.ToyConfig())
    fns, state = step_lib.init_train_state(model, cfg)
    jitted = step_lib.jit_train_step(step_lib.make_train_step(fns, toy_model.loss_fn))
    batch = toy_model.synthetic_batch(0, 0, 8)
    batch["x"][0, 0, 0, 3] = np.nan
    return cfg, state, jitted, toy_model.place_batch(batch)


def test_nonfinite_raise_names_step_and_leaf():
    cfg, state, jitted, batch = _nan_setup("raise")
    params_before = _host(state.params)
    state, metrics = jitted(state, batch)
    with pytest.raises(step_lib.NonFiniteError, match=r"step 0.*\['head'\]\['bias'\]"):
        step_lib.check_finite(metrics, 0, state.params, cfg.nonfinite)
    jax.tree.map(np.testing.assert_array_equal, params_before, _host(state.params))


def test_nonfinite_skip_keeps_state():
    cfg, state, jitted, batch = _nan_setup("skip")
    params_before = _host(state.params)
    state, metrics = jitted(state, batch)
    assert not step_lib.check_finite(metrics, 0, state.params, cfg.nonfinite)
    jax.tree.map(np.testing.assert_array_equal, params_before, _host(state.params))
    assert int(state.step) == 1


def test_compile_reports_memory_and_flops():
    model = toy_model.make_model(toy_model.ToyConfig())
    fns, state = step_lib.init_train_state(model, CFG)
    jitted = step_lib.jit_train_step(step_lib.make_train_step(fns, toy_model.loss_fn))
    batch = toy_model.place_batch(toy_model.synthetic_batch(0, 0, 8))
    compiled = step_lib.compile_train_step(jitted, state, batch)
    assert compiled.memory["argument_size_in_bytes"] > 0
    # Forward matmuls alone: 2*B*H*W*(C*H + H*C + C*C) flops.
    assert compiled.flops is not None and compiled.flops > 2 * 8 * 20 * (128 + 128 + 64)
    new_state, metrics = compiled(state, batch)
    assert int(new_state.step) == 1 and np.isfinite(float(metrics["loss"]))


def test_loss_with_rng_gets_fresh_reproducible_keys():
    def noisy_loss(model, batch, rng):
        # The loss is the key's uniform draw (plus 0 x the model loss, to have gradients).
        return jax.random.uniform(rng) + 0.0 * toy_model.loss_fn(model, batch)

    def run():
        model = toy_model.make_model(toy_model.ToyConfig())
        fns, state = step_lib.init_train_state(model, CFG)
        jitted = step_lib.jit_train_step(step_lib.make_train_step(fns, noisy_loss))
        out = []
        for i in range(3):
            state, metrics = jitted(
                state, toy_model.place_batch(toy_model.synthetic_batch(0, i, 8))
            )
            out.append(float(metrics["loss"]))
        return out

    a, b = run(), run()
    assert a == b  # same seed, same keys
    assert len(set(a)) == 3  # a new key every step
    assert all(0.0 <= x < 1.0 for x in a)


def test_a_host_learning_rate_step_is_the_scheduled_step_and_does_not_depend_on_the_schedule():
    # The step that takes its learning rate from the host updates as the in-program
    # schedule does, and its program is the same text for two different schedules: a
    # second phase's step is served by the first's compilation (the cache key is the text).
    model = toy_model.make_model(toy_model.ToyConfig())
    fns, state = step_lib.init_train_state(model, CFG)
    batch = toy_model.place_batch(toy_model.synthetic_batch(0, 0, 8))
    fn = step_lib.make_train_step(fns, toy_model.loss_fn)
    lr = step_lib.host_learning_rate(CFG, 7)
    state = dataclasses.replace(state, step=jnp.asarray(7, state.step.dtype))
    scheduled, m_sched = jax.jit(fn)(state, batch)
    hosted, m_host = jax.jit(fn)(state, batch, lr)
    assert float(m_host["learning_rate"]) == pytest.approx(float(m_sched["learning_rate"]))
    assert float(m_sched["learning_rate"]) > 0
    for a, b in zip(jax.tree.leaves(hosted.params), jax.tree.leaves(scheduled.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9)

    def program(cfg):
        fns_c, state_c = step_lib.init_train_state(toy_model.make_model(toy_model.ToyConfig()), cfg)
        f = step_lib.make_train_step(fns_c, toy_model.loss_fn)
        return step_lib.jit_train_step(f, host_lr=True).lower(state_c, batch, lr).as_text()

    other = dataclasses.replace(
        CFG,
        optimizer=dataclasses.replace(
            CFG.optimizer, peak_learning_rate=3e-5, warmup_steps=3, decay_steps=17
        ),
    )
    assert program(CFG) == program(other)
    in_program = step_lib.jit_train_step(fn).lower(state, batch).as_text()
    in_program_other = step_lib.jit_train_step(
        step_lib.make_train_step(step_lib.init_train_state(model, other)[0], toy_model.loss_fn)
    )
    assert in_program != in_program_other.lower(state, batch).as_text()


def test_a_program_compiled_before_in_the_process_is_reused():
    # Two phases with different schedules lower to the same text: the second gets the
    # first's executable (compiling again would cost minutes for a large model); another
    # batch size is another program.
    model = toy_model.make_model(toy_model.ToyConfig())
    other_schedule = dataclasses.replace(
        CFG, optimizer=dataclasses.replace(CFG.optimizer, peak_learning_rate=1e-5)
    )
    compiled = []
    for cfg, batch_size in ((CFG, 8), (other_schedule, 8), (CFG, 4)):
        batch = toy_model.place_batch(toy_model.synthetic_batch(0, 0, batch_size))
        fns, state = step_lib.init_train_state(model, cfg)
        jitted = step_lib.jit_train_step(step_lib.make_train_step(fns, toy_model.loss_fn))
        lr = step_lib.host_learning_rate(cfg, 0)
        compiled.append(step_lib.compile_train_step(jitted, state, batch, lr).compiled)
    assert compiled[1] is compiled[0]
    assert compiled[2] is not compiled[0]


def test_the_host_learning_rate_is_the_schedule_evaluated_once_per_run(monkeypatch):
    cfg = config_lib.warmup_cosine(40, 4, 1e-3)  # 4 warm-up steps, then the cosine
    schedule = learning_rate_schedule(cfg.optimizer)
    rates = [float(step_lib.host_learning_rate(cfg, k)) for k in range(45)]  # past the end
    expected = [float(schedule(k)) for k in range(45)]
    # float32 cosines, fused in one program against evaluated one by one: 1e-6 relative
    np.testing.assert_allclose(rates, expected, rtol=1e-5, atol=1e-12)
    assert rates[0] == 0.0 and max(rates) == pytest.approx(1e-3)
    # The loop asks for it at every step while a step runs on the device, where a
    # schedule evaluated each time would queue behind that step: it is built once.
    built = []

    def counted(opt):
        built.append(opt)
        return learning_rate_schedule(opt)

    monkeypatch.setattr(step_lib, "learning_rate_schedule", counted)
    step_lib.learning_rate_table.cache_clear()  # whatever earlier tests left cached
    other = config_lib.warmup_cosine(60, 4, 2e-3)
    got = [float(step_lib.host_learning_rate(other, k)) for k in range(60)]
    assert len(built) == 1
    assert got[30] == pytest.approx(float(learning_rate_schedule(other.optimizer)(30)), rel=1e-5)
