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
