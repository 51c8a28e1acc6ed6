import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from tellus.kernels import mesh as mesh_lib
from tellus.kernels import partitioning


class _Mlp(nnx.Module):
    def __init__(self, d: int, h: int, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.up = nnx.Linear(
            d, h, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")), rngs=rngs
        )
        self.norm = nnx.LayerNorm(h, rngs=rngs)  # unannotated, small: may stay replicated
        self.down = nnx.Linear(
            h, d, kernel_init=nnx.with_partitioning(init, ("mlp", "embed")), rngs=rngs
        )

    def __call__(self, x):
        x = partitioning.constrain(x, ("batch", "lat", "lon", "act_embed"))
        return self.down(jax.nn.gelu(self.norm(self.up(x))))


def _model(d=128, h=256):
    with nnx.use_eager_sharding(False):
        return _Mlp(d, h, nnx.Rngs(0))


def test_rules_table_maps_names():
    assert partitioning.logical_to_spec(("batch", "lat", "lon", "act_embed")) == P(
        ("data", "fsdp"), "spatial", None, None
    )
    assert partitioning.logical_to_spec(("embed", "mlp")) == P("fsdp", "tensor")
    assert partitioning.logical_to_spec(("heads", None, "head_dim")) == P("tensor", None, None)


def test_mesh_axis_used_once_per_array():
    # "batch" takes data and fsdp; "embed" (fsdp) on the same array is left unsharded.
    assert partitioning.logical_to_spec(("batch", "embed")) == P(("data", "fsdp"), None)


def test_unknown_name_is_named():
    with pytest.raises(partitioning.ShardingError, match="'levels' is not in the rules"):
        partitioning.logical_to_spec(("batch", "levels"))


def test_constrain_checks_rank_and_is_identity_without_mesh():
    x = jnp.ones((2, 3))
    assert partitioning.constrain(x, ("batch", "act_embed")) is x
    with pytest.raises(partitioning.ShardingError, match=r"shape \(2, 3\)"):
        partitioning.constrain(x, ("batch",))


def test_shard_model_places_params_by_rules_and_matches_one_device():
    model = _model()
    x = jax.random.normal(jax.random.key(1), (8, 4, 6, 128))
    expected = np.asarray(model(x))
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    partitioning.shard_model(model, mesh)
    up = model.up.kernel[...]
    assert up.sharding.spec == P("fsdp", "tensor")
    # Each device holds a (128/2) x (256/2) block.
    assert {s.data.shape for s in up.addressable_shards} == {(64, 128)}
    with partitioning.use_mesh(mesh):
        y = nnx.jit(lambda m, x: m(x))(model, x)
    np.testing.assert_allclose(np.asarray(y), expected, atol=1e-5)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    partitioning.check_sharded(params, mesh, partitioning.param_specs(model), min_size=1024)


def test_constrain_shards_activations_under_a_mesh():
    mesh = mesh_lib.make_mesh({"data": 2, "spatial": 4})
    with partitioning.use_mesh(mesh):
        y = jax.jit(lambda x: partitioning.constrain(2 * x, ("batch", "lat", "lon", "act_embed")))(
            jnp.ones((4, 8, 3, 5))
        )
    assert tuple(y.sharding.spec[:2]) == ("data", "spatial")
    # A dimension the axis does not divide is left unsharded instead of failing.
    with partitioning.use_mesh(mesh):
        z = jax.jit(lambda x: partitioning.constrain(x, ("batch", "lat", "lon", "act_embed")))(
            jnp.ones((4, 6, 3, 5))
        )
    assert tuple(z.sharding.spec[:1]) == ("data",) and all(a is None for a in z.sharding.spec[1:])


def test_a_mesh_axis_a_dimension_cannot_use_passes_to_the_next_that_names_it():
    sizes = {"data": 2, "fsdp": 1, "tensor": 1, "spatial": 4}
    tokens, fields = partitioning_tokens(), ("batch", "level", "lat", "lon", "channels")
    b = ("data", "fsdp")
    spec = partitioning.fitting_spec
    # Pangu's 8 token levels take spatial, whatever the 181 latitude rows.
    assert spec(tokens, (2, 8, 181, 360, 192), sizes) == P(b, "spatial", None, None, None)
    # 7 levels: latitude where it divides, else longitude, else nothing.
    assert spec(tokens, (2, 7, 48, 360, 192), sizes) == P(b, None, "spatial", None, None)
    assert spec(tokens, (2, 7, 181, 360, 192), sizes) == P(b, None, None, "spatial", None)
    assert spec(tokens, (2, 7, 181, 90, 192), sizes) == P(b, None, None, None, None)
    # The 0.25 deg fields: 13 levels (never split), 721 rows, 1440 columns.
    assert spec(fields, (2, 13, 721, 1440, 69), sizes) == P(b, None, None, "spatial", None)
    with pytest.raises(partitioning.ShardingError, match="'moon' is not in the rules"):
        spec(("moon",), (4,), sizes)


def partitioning_tokens():
    from tellus.kernels import earth_trunk

    return earth_trunk.TOKENS


def test_check_sharded_fails_loudly_on_replicated_params():
    model = _model()
    mesh = mesh_lib.make_mesh({"fsdp": 4, "tensor": 2})
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))  # never placed on the mesh
    with pytest.raises(partitioning.ShardingError) as err:
        partitioning.check_sharded(params, mesh, partitioning.param_specs(model), min_size=1024)
    msg = str(err.value)
    assert "up/kernel (128, 256): rules say P('fsdp', 'tensor')" in msg
    assert "down/kernel" in msg
    assert "norm" not in msg  # 256-element norm params may be replicated


def test_check_sharded_flags_large_unannotated_params():
    mesh = mesh_lib.make_mesh({"fsdp": 8})
    params = {"big": jax.device_put(jnp.ones((256, 256))), "small": jnp.ones(8)}
    with pytest.raises(partitioning.ShardingError, match=r"big \(256, 256\): 65536 elements"):
        partitioning.check_sharded(params, mesh, {"big": P(None, None), "small": P()})
    # On one device nothing is checked.
    partitioning.check_sharded(params, mesh_lib.make_mesh({"data": 1}, jax.devices()[:1]))


def test_param_specs_rejects_names_missing_from_rules():
    class Bad(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones((4, 4)), out_sharding=("embed", "vocab"))

    with nnx.use_eager_sharding(False):
        bad = Bad()
    with pytest.raises(partitioning.ShardingError, match="'vocab'"):
        partitioning.param_specs(bad)
