"""The profiler's mapping from compiled XLA operations to the JAX operations they compute."""

import re

import jax
import jax.numpy as jnp

from tellus.atmosphere import bench


def test_each_compiled_operation_is_named_by_the_jax_operation_inside_it():
    def f(x, w):
        return jnp.tanh(jnp.einsum("ij,jk->ik", x, w)).sum(axis=0)

    text = jax.jit(f).lower(jnp.ones((64, 32)), jnp.ones((32, 16))).compile().as_text()
    names = bench._op_names(text)
    # The fusions the entry computation runs are named by the operations they fuse:
    entry = text[text.index("ENTRY") :]
    fusions = dict(re.findall(r"%([\w.\-]+) = \S+ fusion\(.*calls=%([\w.\-]+)", entry))
    named = {names[f] for f in fusions if f in names}
    assert {"ij,jk->ik/dot_general", "tanh"} <= named, (fusions, names)
    # (never by a parameter's metadata, which names the function's arguments)
    assert not named & {"x", "w"}


def test_a_fusion_without_metadata_takes_its_first_inner_operation_s_name():
    text = """
%fused_computation.7 (param_0: f32[4,8]) -> f32[4,8] {
  %param_0 = f32[4,8]{1,0} parameter(0), metadata={op_name="x"}
  %dot.1 = f32[4,8]{1,0} dot(%param_0, %param_0), metadata={op_name="jit(step)/transpose(jvp(a,b->c))/dot_general"}
  ROOT %exp.2 = f32[4,8]{1,0} exponential(%dot.1), metadata={op_name="jit(step)/exp"}
}

ENTRY %main.3 (x.1: f32[4,8]) -> f32[4,8] {
  %x.1 = f32[4,8]{1,0} parameter(0), metadata={op_name="x"}
  ROOT %ynn_fusion.7 = f32[4,8]{1,0} fusion(%x.1), kind=kCustom, calls=%fused_computation.7
}
"""
    text += """
%fused_computation.8 (param_0.1: f32[2,4,8], param_1.1: f32[2,8,8]) -> f32[2,4,8] {
  %param_0.1 = f32[2,4,8]{2,1,0} parameter(0)
  %param_1.1 = f32[2,8,8]{2,1,0} parameter(1)
  ROOT %dot.9 = f32[2,4,8]{2,1,0} dot(%param_0.1, %param_1.1), lhs_batch_dims={0}
}
  %ynn_fusion.8 = f32[2,4,8]{2,1,0} fusion(%a, %b), kind=kCustom, calls=%fused_computation.8
"""
    names = bench._op_names(text)
    assert names["ynn_fusion.7"] == "transpose(jvp(a,b->c))/dot_general"
    assert names["ynn_fusion.8"] == "dot (no op name)"  # nothing inside it names an op


def test_blocks_spread_through_the_trunk_counted_by_hand():
    import pytest

    from tellus.atmosphere import prune

    assert prune.spread(16, 6) == (0, 2, 5, 8, 10, 13)
    assert prune.spread(8, 3) == (0, 2, 5)
    assert prune.spread(8, 8) == tuple(range(8)) and prune.spread(8, 0) == ()
    with pytest.raises(ValueError, match="cannot choose 9 of 8"):
        prune.spread(8, 9)


def test_the_attention_share_times_the_trunk_with_all_some_and_no_attention(monkeypatch):
    import pytest

    from tellus.atmosphere import config, prune
    from tellus.training import benchmarking

    seen = {}
    # Hand-made step times: 1.0 s with every layer, 0.8 s without 3 of 8, 0.5 s without any.
    times = {"all": 1.0, "removed": 0.8, "none": 0.5}

    def compare(cases, rounds):
        for name, (model, _, batch, b) in cases.items():
            seen[name] = (model.config.model.pruned, b, batch["inputs"].shape[0])
        return {n: {"best_step_s": t, "flops_per_step": 10.0 * t} for n, t in times.items()}

    monkeypatch.setattr(benchmarking, "compare_train_steps", compare)
    cfg = config.preset("tiny")
    f = prune.attention_share(cfg, (4, 1, 2), batch_size=2)
    assert seen == {
        "all": ((), 2, 2),
        "removed": ((1, 2, 4), 2, 2),
        "none": (tuple(range(8)), 2, 2),
    }
    assert f["removed"] == [1, 2, 4] and f["blocks"] == 8
    assert f["share"] == pytest.approx(0.5)
    assert f["speedup"] == pytest.approx(1.25)
    assert f["speedup_without_attention"] == pytest.approx(2.0)
    # Half the step in 8 equal layers: removing 3 leaves 1 - 0.5 * 3 / 8 of it.
    assert f["uniform_estimate"] == pytest.approx(1 / (1 - 0.5 * 3 / 8))
    with pytest.raises(ValueError, match="unpruned"):
        prune.attention_share(config.preset("tiny", pruned=(1,)), (2,))
