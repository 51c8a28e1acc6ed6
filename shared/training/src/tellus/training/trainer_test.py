import gc
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as config_lib
from tellus.training import distributed, streams, toy_model, trainer, transfer
from tellus.training import step as step_lib

# Two domains sharing a trunk, each with its own head and batches: a save killed half way, and
# two trainings on one workdir. (The SIGKILL-and-resume curve of two real domains is
# tests/shared_trunk_test.py.)
SCRIPT = r"""
import dataclasses, os, sys, time
from tellus.training import config as config_lib, streams, toy_model, trainer
workdir, mode = sys.argv[1], sys.argv[2]
cfg = dataclasses.replace(config_lib.preset("tiny"), num_steps=12, checkpoint_every=3, batch_size=4)
def domain(name, seed, shift, weight):
    data = streams.LoaderStream(toy_model.SyntheticSource(seed, shift=shift), 4, seed=seed)
    return trainer.TrainDomain(name, toy_model.multi_loss_fn(name), data, weight=weight,
                               owns=(f"adapters/{name}",))
domains = [domain("a", 7, 1, 2.0), domain("b", 8, 2, 1.0)]
def on_step(step, m):
    trainer.append_jsonl(os.path.join(workdir, "losses.jsonl"),
                         {"step": step, "loss": m["loss"], "domain": m["domain"]})
    if mode == "slow":
        time.sleep(0.15)
    elif mode == "hold":
        time.sleep(3.0)
if mode == "kill_in_save":
    from tellus.training import checkpoint as ck_lib, step as step_lib
    model = toy_model.make_model(toy_model.ToyConfig())
    _, state = step_lib.init_train_state(model, cfg)
    ck = ck_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
    ck.save(1, state, ck_lib.config_dict(toy_model.ToyConfig(), cfg))
    ck.wait()
    ck.save(2, state, ck_lib.config_dict(toy_model.ToyConfig(), cfg))
    os.kill(os.getpid(), 9)  # while the async save of step 2 is in flight
trainer.fit(toy_model.multi_model_from_dict, toy_model.ToyMultiConfig(), cfg, domains,
            workdir, show_progress=False, on_step=on_step)
"""


def _env():
    env = distributed.cpu_process_env(1)  # the suite's XLA flags: its optimization level
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _losses(workdir):
    out = {}
    with open(workdir / "losses.jsonl") as f:
        for line in f:
            r = json.loads(line)
            out[r["step"]] = (r["domain"], r["loss"])  # later (resumed) values win
    return out


def _run(workdir, mode):
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(workdir), mode],
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(p, timeout=600):
    """The exit code and the stderr of ``p`` (its pipe closed)."""
    _, err = p.communicate(timeout=timeout)
    return p.returncode, err


def test_kill_during_async_save_keeps_last_good(tmp_path):
    p = _run(tmp_path, "kill_in_save")
    assert _wait(p, 120)[0] == -9
    ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
    latest = ck.latest_step()
    assert latest in (1, 2)
    listing = sorted(os.listdir(tmp_path / "checkpoints"))
    # When the kill lands mid-save (the usual case here), step 2 stays a temp dir.
    if any("tmp" in name for name in listing):
        assert latest == 1, listing
    # Whatever is listed is complete and restorable.
    _, state = step_lib.init_train_state(
        toy_model.make_model(toy_model.ToyConfig()), config_lib.preset("tiny")
    )
    restored = ck.restore(latest, state)
    np.testing.assert_array_equal(restored.params["head"]["kernel"], state.params["head"]["kernel"])
    ck.close()


def test_a_second_training_on_the_same_workdir_refuses_naming_the_first(tmp_path):
    p = _run(tmp_path, "hold")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (tmp_path / "losses.jsonl").exists():
            time.sleep(0.05)
        second = _run(tmp_path, "fast")
        rc, err = _wait(second, 120)
        assert rc != 0
        err = err.strip().splitlines()
        assert any(f"pid {p.pid}" in line and "LockedError" in line for line in err), err[-3:]
    finally:
        p.send_signal(signal.SIGKILL)
        _wait(p)


# --- in process ---------------------------------------------------------------------------

CFG = config_lib.TrainConfig(
    optimizer=config_lib.OptimizerConfig(peak_learning_rate=1e-2, warmup_steps=1, decay_steps=20),
    num_steps=6,
    batch_size=4,
    checkpoint_every=3,
    keep_checkpoints=2,
)


def _host(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def _domains(freeze_b=False):
    def one(name, seed, shift):
        data = streams.LoaderStream(toy_model.SyntheticSource(seed, shift=shift), 4, seed=seed)
        return trainer.TrainDomain(
            name, toy_model.multi_loss_fn(name), data, owns=(f"adapters/{name}",)
        )

    return [one("a", 1, 1), one("b", 2, 2)]


def test_a_domain_step_moves_only_the_trunk_and_its_own_adapter():
    model = toy_model.multi_model_from_dict(toy_model.ToyMultiConfig().to_dict())
    grouping = step_lib.Grouping(owners=(("adapters/a", "a"), ("adapters/b", "b")))
    fns, state = step_lib.init_train_state(model, CFG, grouping)
    step_b = step_lib.jit_train_step(
        step_lib.make_train_step(fns, toy_model.multi_loss_fn("b"), ("shared", "b"))
    )
    step_a = step_lib.jit_train_step(
        step_lib.make_train_step(fns, toy_model.multi_loss_fn("a"), ("shared", "a"))
    )
    src_a, src_b = toy_model.SyntheticSource(1), toy_model.SyntheticSource(2, shift=2)
    batch = lambda src, i: {  # noqa: E731
        k: np.stack([src[4 * i + j][k] for j in range(4)]) for k in ("x", "y")
    }
    state, _ = step_b(state, batch(src_b, 0))  # b's moments are non-zero from here on
    before = _host(state)
    state, _ = step_a(state, batch(src_a, 0))
    after = _host(state)
    # b's head, its Adam moments and its weight decay did not move on a's step...
    for k in ("kernel", "bias"):
        np.testing.assert_array_equal(
            before.params["adapters"]["b"][k], after.params["adapters"]["b"][k]
        )
    for x, y in zip(
        jax.tree.leaves(before.opt_state["b"]), jax.tree.leaves(after.opt_state["b"]), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    assert np.abs(before.opt_state["b"][0].mu["adapters/b/kernel"]).max() > 0
    # ...while a's head and the shared trunk did.
    assert not np.array_equal(
        before.params["adapters"]["a"]["kernel"], after.params["adapters"]["a"]["kernel"]
    )
    assert not np.array_equal(
        before.params["trunk"]["up"]["kernel"], after.params["trunk"]["up"]["kernel"]
    )


def test_frozen_parameters_do_not_move_and_are_reported(tmp_path):
    freeze = ("trunk/*",)
    model = toy_model.multi_model_from_dict(toy_model.ToyMultiConfig().to_dict())
    start = _host(step_lib.split_model(model)[1])
    trainer.fit(
        toy_model.multi_model_from_dict,
        toy_model.ToyMultiConfig(),
        CFG,
        _domains(),
        tmp_path,
        freeze=freeze,
        show_progress=False,
    )
    ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
    model, _, state, _ = ckpt_lib.rebuild(ck, ck.latest_step(), toy_model.multi_model_from_dict)
    ck.close()
    end = _host(state.params)
    for k in ("up", "down"):
        np.testing.assert_array_equal(start["trunk"][k]["kernel"], end["trunk"][k]["kernel"])
    assert not np.array_equal(start["adapters"]["a"]["kernel"], end["adapters"]["a"]["kernel"])
    assert "frozen" not in state.opt_state  # no moments kept for what never trains
    counts = json.loads((tmp_path / "parameter_groups.json").read_text())
    assert counts == {"frozen": 8 * 16 + 16 + 16 * 8 + 8, "a": 8 * 8 + 8, "b": 8 * 8 + 8}


def test_partial_warm_start_loads_the_trunk_and_initializes_new_heads(tmp_path):
    single = config_lib.TrainConfig(**{**CFG.to_dict(), "optimizer": CFG.optimizer})
    trainer.fit(
        toy_model.model_from_dict,
        toy_model.ToyConfig(),
        single,
        trainer.TrainDomain(
            "toy",
            toy_model.loss_fn,
            streams.LoaderStream(toy_model.SyntheticSource(3), 4, seed=3),
        ),
        tmp_path / "pre",
        show_progress=False,
    )
    ck = ckpt_lib.Checkpointer(tmp_path / "pre" / "checkpoints")
    _, _, pre, _ = ckpt_lib.rebuild(ck, ck.latest_step(), toy_model.model_from_dict)
    ck.close()
    report = tmp_path / "init.json"
    factory = transfer.warm_start(
        tmp_path / "pre",
        toy_model.multi_model_from_dict,
        source_kind=ckpt_lib.Kind("model", 1, toy_model.model_from_dict),
        partial=True,
        report=report,
    )
    model = factory(toy_model.ToyMultiConfig().to_dict())
    params = _host(step_lib.split_model(model)[1])
    fresh = _host(
        step_lib.split_model(toy_model.multi_model_from_dict(toy_model.ToyMultiConfig().to_dict()))[
            1
        ]
    )
    np.testing.assert_array_equal(
        params["trunk"]["up"]["kernel"], np.asarray(pre.params["trunk"]["up"]["kernel"])
    )
    # The new heads keep their fresh initialization (nothing of the old head reaches them).
    np.testing.assert_array_equal(
        params["adapters"]["a"]["kernel"], fresh["adapters"]["a"]["kernel"]
    )
    info = json.loads(report.read_text())
    assert len(info["loaded"]) == 4 and len(info["initialized"]) == 4
    with pytest.raises(ckpt_lib.CheckpointKindError, match=r"holds another model.*adapters/a"):
        transfer.warm_start(tmp_path / "pre", toy_model.multi_model_from_dict)(
            toy_model.ToyMultiConfig().to_dict()
        )


def test_validation_loss_per_domain_keeps_the_best_checkpoint(tmp_path):
    cfg = config_lib.TrainConfig(
        **{
            **CFG.to_dict(),
            "optimizer": CFG.optimizer,
            "validate_every": 3,
            "best_metric": "val_loss",
            "keep_checkpoints": 1,
        }
    )
    doms = _domains()
    fixed = {
        k: np.stack([toy_model.SyntheticSource(99)[i][k] for i in range(4)]) for k in ("x", "y")
    }
    for d in doms:
        d.validation = lambda: [fixed]
    trainer.fit(
        toy_model.multi_model_from_dict,
        toy_model.ToyMultiConfig(),
        cfg,
        doms,
        tmp_path,
        show_progress=False,
    )
    ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints", best_metric="val_loss")
    assert ck.best_step() in ck.all_steps()
    ck.close()


# The failed restore's abandoned orbax reads raise once its event loop has closed (see
# checkpoint_test); they are noise of the library, not of this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_corrupt_latest_checkpoint_is_moved_aside_and_training_resumes_before_it(
    tmp_path, caplog
):
    trainer.fit(
        toy_model.multi_model_from_dict,
        toy_model.ToyMultiConfig(),
        CFG,
        _domains(),
        tmp_path,
        show_progress=False,
    )
    latest = tmp_path / "checkpoints" / "6"
    data = max(
        (p for p in latest.rglob("*") if p.is_file() and "/d/" in str(p)),
        key=lambda p: p.stat().st_size,
    )
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    longer = config_lib.TrainConfig(**{**CFG.to_dict(), "optimizer": CFG.optimizer, "num_steps": 9})
    with caplog.at_level("WARNING"):
        hist = trainer.fit(
            toy_model.multi_model_from_dict,
            toy_model.ToyMultiConfig(),
            longer,
            _domains(),
            tmp_path,
            show_progress=False,
        )
    # Resumed from step 3, the newest checkpoint that restores; step 6 kept, moved aside.
    assert [s for s, _ in hist] == [3, 4, 5, 6, 7, 8]
    assert (tmp_path / "checkpoints.corrupt" / "6").is_dir()
    assert data.name in {p.name for p in (tmp_path / "checkpoints.corrupt" / "6").rglob("*")}
    # The run went on past it and saved a good step 6 and 9 of its own.
    ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
    assert ck.latest_step() == 9
    ck.close()
    lines = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    gc.collect()  # finalize the abandoned reads here, not in the next test


def test_the_training_loop_compiles_nothing_after_each_domain_first_step(tmp_path):
    """XLA compiles each domain's step once: no step after the first of every domain (nor
    a checkpoint save, an on-step callback or a batch) triggers a compilation. Counted by
    JAX's own events: every program compiled, or loaded from the session's persistent
    cache, is lowered to MLIR first; a jitted call that reuses its program is not."""
    import dataclasses

    from jax import monitoring

    compiles = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            compiles.append(event)

    seen, after_first = set(), []

    def on_step(step, info):
        seen.add(info["domain"])
        if seen == {"a", "b"}:  # every domain has compiled its step
            after_first.append(len(compiles))

    monitoring.register_event_duration_secs_listener(listen)
    try:
        trainer.fit(
            toy_model.multi_model_from_dict,
            toy_model.ToyMultiConfig(),
            dataclasses.replace(CFG, num_steps=12, checkpoint_every=4),
            _domains(),
            tmp_path,
            show_progress=False,
            on_step=on_step,
        )
    finally:
        monitoring.unregister_event_duration_listener(listen)
    assert len(after_first) >= 8 and len(set(after_first)) == 1, after_first
    assert compiles  # the listener hears lowerings at all


def test_the_loop_queues_the_next_step_before_it_reads_a_step_s_loss(tmp_path):
    """No wait for the device between steps: step k's metrics are read (``on_step``) only
    after step k + 1 has been dispatched (``rest_schedule`` runs just before each dispatch),
    except where a checkpoint needs the loss first."""
    import dataclasses

    events = []

    def schedule(step, rest):
        events.append(("dispatch", step))
        return rest

    history = trainer.fit(
        toy_model.multi_model_from_dict,
        toy_model.ToyMultiConfig(),
        dataclasses.replace(CFG, num_steps=7, checkpoint_every=4),
        _domains(),
        tmp_path,
        show_progress=False,
        on_step=lambda step, info: events.append(("read", step)),
        rest_schedule=schedule,
    )
    d, r = "dispatch", "read"
    assert events == [
        (d, 0), (d, 1), (r, 0), (d, 2), (r, 1), (d, 3), (r, 2), (r, 3),  # checkpoint at 4
        (d, 4), (d, 5), (r, 4), (d, 6), (r, 5), (r, 6),  # the last step
    ]  # fmt: skip
    assert [s for s, _ in history] == list(range(7))
    assert all(np.isfinite(loss) for _, loss in history)


def test_a_rest_schedule_sets_the_model_state_each_step_and_a_resume_sets_it_again(tmp_path):
    """``rest_schedule`` (what anneals the pruning lambda) reaches every step of the one
    compiled program: a factor scheduled to 0 on even steps zeroes exactly their losses,
    also in the steps a resumed run takes."""
    import dataclasses

    import jax.numpy as jnp
    from flax import nnx

    class Factor(nnx.Variable):
        pass

    def factory(d):
        model = toy_model.model_from_dict(d)
        model.factor = nnx.data(Factor(jnp.ones((), jnp.float32)))
        return model

    def loss(model, batch, rng=None):
        return model.factor[...] * toy_model.loss_fn(model, batch)

    def schedule(step, rest):
        return jax.tree.map(lambda x: np.full(np.shape(x), step % 2, np.float32), rest)

    def run(steps):
        data = streams.LoaderStream(toy_model.SyntheticSource(3), 4, seed=3)
        return trainer.fit(
            factory,
            toy_model.ToyConfig(),
            dataclasses.replace(CFG, num_steps=steps),
            trainer.TrainDomain("toy", loss, data),
            tmp_path,
            show_progress=False,
            rest_schedule=schedule,
        )

    first = run(3)
    resumed = run(6)  # from the checkpoint at step 3
    history = first + resumed
    assert [s for s, _ in history] == list(range(6))
    assert all((v == 0.0) == (s % 2 == 0) for s, v in history), history


def test_profile_steps_trace_exactly_those_steps_of_the_loop(tmp_path):
    """``profile_steps=(2, 4)``: one trace in ``workdir/profile`` (XProf's xplane and a
    Perfetto trace) holding the step markers of steps 2 and 3 and no other, with the
    compiled step's device work inside it."""
    import dataclasses
    import glob
    import gzip

    trainer.fit(
        toy_model.multi_model_from_dict,
        toy_model.ToyMultiConfig(),
        dataclasses.replace(CFG, num_steps=6, checkpoint_every=6, profile_steps=(2, 4)),
        _domains(),
        tmp_path,
        show_progress=False,
    )
    profile = tmp_path / "profile"
    assert glob.glob(f"{profile}/plugins/profile/*/*.xplane.pb")
    (path,) = glob.glob(f"{profile}/plugins/profile/*/*.trace.json.gz")
    with gzip.open(path) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    marked = sorted(int(e["args"]["step_num"]) for e in events if e["name"] == "train")
    assert marked == [2, 3]
    # The device's work of those steps: the compiled program's fused operations ran inside
    # the trace (an XLA fusion is named after its kind: add_select_fusion.3, ynn_fusion...).
    assert sum("fusion" in e["name"] for e in events) >= 10


def test_a_trace_already_running_leaves_the_training_untraced_not_stopped(tmp_path, caplog):
    import dataclasses
    import logging

    jax.profiler.start_trace(str(tmp_path / "outer"))
    try:
        with caplog.at_level(logging.WARNING, logger="tellus.training.profiling"):
            history = trainer.fit(
                toy_model.multi_model_from_dict,
                toy_model.ToyMultiConfig(),
                dataclasses.replace(CFG, num_steps=3, checkpoint_every=3, profile_steps=(1, 2)),
                _domains(),
                tmp_path / "run",
                show_progress=False,
            )
    finally:
        jax.profiler.stop_trace()
    assert [s for s, _ in history] == [0, 1, 2]
    assert "not profiling steps (1, 2)" in caplog.text
    assert not list((tmp_path / "run" / "profile").glob("plugins/profile/*/*.xplane.pb"))
