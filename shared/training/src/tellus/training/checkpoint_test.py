import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from tellus.kernels import mesh as mesh_lib
from tellus.training import checkpoint as ckpt_lib
from tellus.training import config as config_lib
from tellus.training import step as step_lib
from tellus.training import toy_model, transfer

CFG = dataclasses.replace(config_lib.preset("tiny"), batch_size=8)
MCFG = toy_model.ToyConfig()


def _mesh(shape):
    return mesh_lib.make_mesh(dict(zip(("data", "fsdp"), shape, strict=True)))


def _host(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def _trained_sharded_state(mesh):
    model = toy_model.make_model(MCFG)
    fns, state = step_lib.init_train_state(model, CFG)
    sh = step_lib.state_shardings(fns, state, model, mesh, toy_model.RULES)
    state = jax.device_put(state, sh)
    batch_sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    jitted = step_lib.jit_train_step(
        step_lib.make_train_step(fns, toy_model.loss_fn), sh, batch_sh, mesh
    )
    for i in range(2):
        state, metrics = jitted(
            state, toy_model.place_batch(toy_model.synthetic_batch(0, i, 8), batch_sh)
        )
    return model, fns, state, float(metrics["loss"])


def test_restore_across_meshes_and_rebuild_from_config(tmp_path):
    _model, _fns, state, _ = _trained_sharded_state(_mesh((2, 4)))
    expected = _host(state)
    ck = ckpt_lib.Checkpointer(tmp_path, keep=2)
    ck.save(2, state, ckpt_lib.config_dict(MCFG, CFG), {"next_index": 2})
    ck.wait()
    # Onto one device.
    one = ck.restore(2, state)
    jax.tree.map(np.testing.assert_array_equal, expected, _host(one))
    assert len(one.params["trunk"]["up"]["kernel"].sharding.device_set) == 1
    # Onto a 4x2 mesh, rebuilding the model from the stored config.
    mesh = _mesh((4, 2))
    model2, _fns2, on42, data = ckpt_lib.rebuild(
        ck,
        2,
        toy_model.model_from_dict,
        lambda f, s, m: step_lib.state_shardings(f, s, m, mesh, toy_model.RULES),
    )
    jax.tree.map(np.testing.assert_array_equal, expected, _host(on42))
    assert on42.params["trunk"]["up"]["kernel"].sharding.spec == PartitionSpec("fsdp", "tensor")
    assert data == {"next_index": 2}
    np.testing.assert_array_equal(
        model2.trunk.up.kernel[...], expected.params["trunk"]["up"]["kernel"]
    )
    ck.close()


def test_keep_last_n_plus_best(tmp_path):
    model = toy_model.make_model(MCFG)
    _, state = step_lib.init_train_state(model, CFG)
    ck = ckpt_lib.Checkpointer(tmp_path, keep=2, best_metric="loss")
    for step, loss in [(1, 5.0), (2, 1.0), (3, 4.0), (4, 3.0), (5, 2.0)]:
        ck.save(step, state, ckpt_lib.config_dict(MCFG, CFG), metrics={"loss": loss})
    ck.wait()
    assert sorted(ck.all_steps()) == [2, 4, 5]
    assert ck.best_step() == 2 and ck.latest_step() == 5
    ck.close()


def test_partial_restore_new_head(tmp_path):
    model = toy_model.make_model(MCFG)
    _, state = step_lib.init_train_state(model, CFG)
    ck = ckpt_lib.Checkpointer(tmp_path)
    ck.save(0, state, ckpt_lib.config_dict(MCFG, CFG))
    ck.wait()
    new_model = toy_model.make_model(dataclasses.replace(MCFG, head_channels=3, seed=1))
    _, new_params, _ = step_lib.split_model(new_model)
    out = transfer.load_matching_params(ck, 0, toy_model.model_from_dict, new_params)
    assert sorted(out.skipped) == ["['head']['bias']", "['head']['kernel']"]
    assert len(out.loaded) == 4 and all(p.startswith("['trunk']") for p in out.loaded)
    np.testing.assert_array_equal(
        out.params["trunk"]["up"]["kernel"], state.params["trunk"]["up"]["kernel"]
    )
    np.testing.assert_array_equal(out.params["head"]["kernel"], new_params["head"]["kernel"])
    ck.close()


def test_warm_start_loads_every_parameter_of_the_earlier_phase(tmp_path):
    model = toy_model.make_model(MCFG)
    _, state = step_lib.init_train_state(model, CFG)
    ck = ckpt_lib.Checkpointer(tmp_path / "phase1" / "checkpoints")
    ck.save(3, state, ckpt_lib.config_dict(MCFG, CFG))
    ck.wait()
    ck.close()
    # A differently seeded model of the same shape ends up with phase 1's parameters.
    other = dataclasses.replace(MCFG, seed=5)
    warm = transfer.warm_start(tmp_path / "phase1", toy_model.model_from_dict)(other.to_dict())
    _, params, _ = step_lib.split_model(warm)
    fresh = step_lib.split_model(toy_model.make_model(other))[1]
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # (and the seed alone would have given other weights)
    assert not all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(state.params), strict=True)
    )
    # A new head the checkpoint lacks is an error, not a silently random layer.
    bigger = dataclasses.replace(MCFG, head_channels=3).to_dict()
    with pytest.raises(ValueError, match=r"\['head'\]"):
        transfer.warm_start(tmp_path / "phase1", toy_model.model_from_dict)(bigger)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        transfer.warm_start(tmp_path / "nowhere", toy_model.model_from_dict)(MCFG.to_dict())


# A failed orbax restore leaves reads in flight: their coroutines and completion callbacks
# raise once its event loop has closed (not ours to fix). Those finalized here are ignored
# in this test; callbacks that arrive later are filtered by pyproject.toml's warning filter.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_restore_latest_moves_unreadable_checkpoints_aside(tmp_path, caplog):
    import gc
    import logging

    model = toy_model.make_model(MCFG)
    _, state = step_lib.init_train_state(model, CFG)
    states = {s: jax.tree.map(lambda x, s=s: x + s, state) for s in (1, 2, 3)}
    ck = ckpt_lib.Checkpointer(tmp_path / "checkpoints", keep=3)
    for s, st in states.items():
        ck.save(s, st, ckpt_lib.config_dict(MCFG, CFG), {"next_index": s})
    ck.wait()
    # Step 3: a truncated array data file. With arrays this small, the values sit in the
    # OCDBT data file(s) of state/d/ (those of state/ocdbt.process_0/d/ are not read back).
    (data_file,) = (tmp_path / "checkpoints" / "3" / "state" / "d").iterdir()
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    # Step 2: a corrupt JSON item.
    (tmp_path / "checkpoints" / "2" / "data" / "metadata").write_text('{"next_ind')

    with caplog.at_level(logging.WARNING):
        step, restored, data = ckpt_lib.restore_latest(ck, state)
    assert step == 1 and data == {"next_index": 1}
    for got, want in zip(
        jax.tree.leaves(_host(restored)), jax.tree.leaves(_host(states[1])), strict=True
    ):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    corrupt = tmp_path / "checkpoints.corrupt"
    assert sorted(p.name for p in corrupt.iterdir()) == ["2", "3"]
    assert (corrupt / "3" / "state" / "d" / data_file.name).exists()  # moved, not deleted
    assert ck.all_steps() == [1] and ck.latest_step() == 1
    # One line per damaged step, and none of orbax's or asyncio's noise.
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("\n" not in line for line in lines), lines
    assert lines[0].startswith(f"checkpoint {tmp_path / 'checkpoints' / '3'} cannot be read")
    assert "OUT_OF_RANGE" in lines[0] and f"moved it to {corrupt / '3'}" in lines[0]
    assert "JSONDecodeError" in lines[1] and f"moved it to {corrupt / '2'}" in lines[1]
    assert len(lines[0]) < 600

    # A checkpoint of another model is not damaged: it is an error and stays where it is.
    bigger = toy_model.make_model(dataclasses.replace(MCFG, hidden=32))
    _, other = step_lib.init_train_state(bigger, CFG)
    with pytest.raises(ValueError, match="not compatible with the stored shape"):
        ckpt_lib.restore_latest(ck, other)
    assert ck.all_steps() == [1]

    # A later save of a quarantined step number goes to a fresh folder; a second quarantine
    # of it does not overwrite the first.
    ck.save(3, states[3], ckpt_lib.config_dict(MCFG, CFG), {"next_index": 3})
    ck.wait()
    assert ckpt_lib.restore_latest(ck, state)[0] == 3
    assert ck.quarantine(3) == corrupt / "3.1" and ck.all_steps() == [1]
    ck.quarantine(1)
    assert ckpt_lib.restore_latest(ck, state) is None
    ck.close()
    gc.collect()


class _Buffer(nnx.Variable):
    """A model variable that is not a parameter (kept in ``TrainState.rest``)."""


class _WithBuffer(nnx.Module):
    def __init__(self, cfg):
        self.dense = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        self.buffer = _Buffer(jnp.zeros((3,)))


def test_rebuild_restores_state_that_is_not_a_parameter(tmp_path):
    # A buffer set before training (an ocean forecaster's reference climatology) must come
    # back from a checkpoint: rebuilding a fresh model from its config alone gives zeros.
    model = _WithBuffer({})
    model.buffer.set_value(jnp.array([1.0, 2.0, 3.0]))
    _fns, state = step_lib.init_train_state(model, CFG)
    ck = ckpt_lib.Checkpointer(tmp_path, keep=1)
    ck.save(1, state, ckpt_lib.config_dict(MCFG, CFG), {})
    ck.wait()
    rebuilt, _, restored, _ = ckpt_lib.rebuild(ck, 1, _WithBuffer)
    np.testing.assert_array_equal(np.asarray(rebuilt.buffer[...]), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(np.asarray(restored.rest["buffer"]), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(
        np.asarray(rebuilt.dense.kernel[...]), np.asarray(model.dense.kernel[...])
    )
    ck.close()
