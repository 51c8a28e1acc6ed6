import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from tellus.data import schema
from tellus.kernels import earth_model, mesh, partitioning
from tellus.kernels.earth_decoder import NINO34, IndexHead
from tellus.kernels.earth_encoder import Grid, Levels

OCEAN_DEPTHS = Levels((5, 15, 25, 50, 100, 200, 300, 500, 700, 1000, 1500, 2000), "m")
T = "sea_water_potential_temperature"


def _hand_count(cfg: earth_model.EarthModelConfig) -> int:
    """The parameter count from the config's numbers alone (module layout as documented)."""
    e, t = cfg.encoder, cfg.trunk
    c, k, z, v = e.dim, e.bands, e.latent_levels, len(e.variables)
    patch = e.patch[0] * e.patch[1]
    hidden = int(c * e.mlp_ratio)
    level_encoding = 3 * c + 2 * k * c + c
    encoder = (
        v * (patch * c + c)  # one patch embedding (kernel, bias) per variable
        + len(e.domains) * c
        + level_encoding
        + z * c
        + 3 * 2 * c
        + 4 * (c * c + c)
        + (c * hidden + hidden + hidden * c + c)
        + (6 * k * c + c)  # latitude, longitude, area features -> C
        + (2 * k * c + c)  # lead time
    )
    trunk = 0
    for depth, heads, d in zip(t.depths, t.heads, t.stage_dims, strict=True):
        m = int(d * t.mlp_ratio)
        block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * m + m + m * d + d)
        bias = 3 * cfg.bias_hidden + cfg.bias_hidden + cfg.bias_hidden * heads + heads
        trunk += depth * (block + bias)
    trunk += (2 * 4 * c + 4 * c * 2 * c) + (2 * c * 4 * c + 2 * c + c * c + c)  # down, up
    decoder = (
        v * (c + c * patch + 1)  # query, recovery kernel and bias per variable
        + level_encoding
        + 2 * 2 * c  # LayerNorm of the 2C trunk tokens
        + (c * c + c)
        + 2 * (2 * c * c + c)
        + (c * c + c)  # q, k, v (from 2C), o
        + 2 * c
    )
    heads = sum(2 * 2 * c + 2 * c * i.hidden + i.hidden + i.hidden * i.outputs + i.outputs
                for i in cfg.indices)  # fmt: skip
    return encoder + trunk + decoder + heads


def test_paper_preset_parameter_count_by_hand_without_allocation():
    cfg = earth_model.preset("paper")
    model = earth_model.abstract_model(cfg)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    n = partitioning.count_params(model)
    assert n == _hand_count(cfg)
    assert n == 24_641_809
    # Every logical axis name is in the rules table, and no parameter uses a mesh axis twice.
    specs = partitioning.param_specs(model)
    for spec in jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, PartitionSpec)):
        axes = [a for e in spec for a in ((e,) if isinstance(e, str) else (e or ()))]
        assert len(axes) == len(set(axes)), spec
    # The variables are the schema's (so a store's names reach their embeddings).
    assert all(schema.lookup(v) is not None for v in cfg.encoder.variables)


def test_paper_preset_reads_the_quarter_degree_atmosphere_and_the_one_degree_ocean():
    cfg = earth_model.preset("paper")
    atmos = Grid.regular(721, 1440)
    ocean = Grid.regular(180, 360)
    upper = {v: Levels(schema.PRESSURE_LEVELS_13, "hPa") for v in earth_model.ATMOSPHERE_UPPER}

    def run(fields, grid, levels, domain, mask=None):
        def f(fields):
            with nnx.use_eager_sharding(False):
                m = earth_model.EarthModel(cfg, rngs=nnx.Rngs(0))
            return m(
                fields, grid, levels=levels, lead_hours=jnp.ones(1), domain=domain, mask=mask,
                indices=("nino34",) if domain != "atmosphere" else (),
            )  # fmt: skip

        return jax.eval_shape(f, fields)

    sds = jax.ShapeDtypeStruct
    fields = {v: sds((1, 13, 721, 1440), jnp.float32) for v in earth_model.ATMOSPHERE_UPPER}
    fields |= {v: sds((1, 721, 1440), jnp.float32) for v in earth_model.ATMOSPHERE_SURFACE}
    out = run(fields, atmos, upper, "atmosphere")
    assert out["temperature"].shape == (1, 13, 721, 1440)
    assert out["2m_temperature"].shape == (1, 721, 1440)
    fields = {v: sds((1, 12, 180, 360), jnp.float32) for v in earth_model.OCEAN_3D}
    fields |= {v: sds((1, 180, 360), jnp.float32) for v in earth_model.OCEAN_SURFACE}
    out = run(fields, ocean, dict.fromkeys(earth_model.OCEAN_3D, OCEAN_DEPTHS), "ocean",
              mask=np.ones((180, 360), bool))  # fmt: skip
    assert out[T].shape == (1, 12, 180, 360) and out["nino34"].shape == (1, 24)


@pytest.fixture(scope="module")
def tiny():
    with nnx.use_eager_sharding(False):
        return earth_model.EarthModel(earth_model.preset("tiny"), rngs=nnx.Rngs(0))


def _ocean(seed=0):
    grid = Grid.regular(34, 90, lat_range=(-68.0, 68.0))
    rng = np.random.default_rng(seed)
    ocean = np.ones((34, 90), bool)
    ocean[:, 30:50] = False  # a continent
    ocean[:5] = False  # and Antarctica
    ocean[12:20, 70:73] = False  # an island inside a patch column
    x = rng.normal(size=(2, 3, 34, 90)).astype(np.float32)
    ssh = rng.normal(size=(2, 34, 90)).astype(np.float32)
    return grid, ocean, x, ssh


def test_land_never_reaches_an_ocean_output_nor_a_gradient(tiny):
    grid, ocean, x, ssh = _ocean()
    depths = Levels((10.0, 100.0, 500.0), "m")
    # Below the sea floor: the 500 m level is land also over a shelf of the ocean.
    cells = np.broadcast_to(ocean, (1, 3, 34, 90)).copy()
    cells[0, 2, 5:12, 50:60] = False
    graphdef, params = nnx.split(tiny)

    @jax.jit
    def run(params, x, ssh):
        def loss(params):
            model = nnx.merge(graphdef, params)
            out = model(
                {T: x, "sea_surface_height": ssh}, grid, levels={T: depths},
                lead_hours=jnp.array([720.0, 1440.0]), domain="ocean", mask=ocean,
                cell_masks={T: cells}, indices=("nino34",),
            )  # fmt: skip
            total = jnp.sum(out[T] ** 2) + jnp.sum(out["sea_surface_height"] ** 2)
            return total + jnp.sum(out["nino34"] ** 2), out

        return jax.value_and_grad(loss, has_aux=True)(params)

    (clean_loss, clean), clean_grads = run(params, x, ssh)
    for poison in (np.nan, 1e30, -np.inf):
        px = np.where(cells, x, np.float32(poison))
        ps = np.where(ocean, ssh, np.float32(poison))
        (loss, out), grads = run(params, px, ps)
        assert np.isfinite(float(loss)) and float(loss) == float(clean_loss)
        for name in (T, "sea_surface_height", "nino34"):
            np.testing.assert_array_equal(np.asarray(out[name]), np.asarray(clean[name]))
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(clean_grads), strict=True):
            assert np.isfinite(np.asarray(a)).all()
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Land is written as the fill value; the ocean is not (the test above would pass on a
    # model that ignored its input entirely, so check that the ocean does matter).
    assert (np.asarray(clean[T])[:, ~cells[0]] == 0).all()
    (_, moved), _ = run(params, x + np.float32(1.0), ssh)
    assert np.abs(np.asarray(moved[T] - clean[T]))[:, cells[0]].min() > 0


def test_fields_decode_at_levels_the_input_did_not_have_and_land_can_be_nan(tiny):
    grid, ocean, x, _ = _ocean(1)
    # compiled as one program (eagerly, every operation compiles alone)
    out = nnx.jit(lambda model, fields: model(
        fields, grid, levels={T: Levels((10.0, 100.0, 500.0), "m")},
        lead_hours=jnp.array([720.0, 720.0]), domain="ocean", mask=ocean,
        targets={T: Levels((5.0, 50.0, 300.0, 1000.0, 3000.0), "m"), "sea_surface_height": None},
        fill=np.nan,
    ))(tiny, {T: jnp.asarray(x)})  # fmt: skip
    assert out[T].shape == (2, 5, 34, 90) and out["sea_surface_height"].shape == (2, 34, 90)
    assert np.isnan(np.asarray(out[T])[:, :, ~ocean]).all()
    assert np.isfinite(np.asarray(out[T])[:, :, ocean]).all()
    with pytest.raises(ValueError, match="no_such_variable: the decoder has no head"):
        tiny({T: jnp.asarray(x)}, grid, levels={T: Levels((1.0, 2.0, 3.0), "m")},
             lead_hours=jnp.zeros(2), domain="ocean", targets={"no_such_variable": None})  # fmt: skip


def test_the_index_head_pools_the_tokens_over_its_region_only():
    with nnx.use_eager_sharding(False):
        head = IndexHead(4, 3, 8, NINO34, rngs=nnx.Rngs(0))
    # 10 deg tokens: centres at -85 .. 85 and 5 .. 355; Nino3.4 (5S-5N, 170W-120W) overlaps
    # the rows at -5 and 5 and the columns at 195 .. 235 (those at 185 and 245 only touch it).
    lat, lon = np.arange(-85.0, 90, 10), np.arange(5.0, 360, 10)
    inside = np.zeros((18, 36), bool)
    inside[8:10, 19:24] = True
    np.testing.assert_array_equal(NINO34.overlaps(lat, lon), inside)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.normal(size=(2, 2, 18, 36, 4)), jnp.float32)
    y = head(tokens, lat, lon)
    outside = jnp.where(jnp.asarray(inside)[None, None, ..., None], tokens, 1e3 * tokens)
    np.testing.assert_allclose(head(outside, lat, lon), y, rtol=1e-5, atol=1e-6)
    # By hand: the mean over the region and the levels, then the LayerNorm and the MLP.
    pooled = np.asarray(tokens)[:, :, inside].mean(axis=(1, 2))
    p = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(head, nnx.Param)))
    normed = (pooled - pooled.mean(-1, keepdims=True)) / np.sqrt(
        pooled.var(-1, keepdims=True) + 1e-6
    )
    normed = normed * p["norm"]["scale"] + p["norm"]["bias"]
    h = normed @ p["fc1"]["kernel"] + p["fc1"]["bias"]
    h = 0.5 * h * (1 + np.vectorize(math.erf)(h / np.sqrt(2)))
    np.testing.assert_allclose(y, h @ p["fc2"]["kernel"] + p["fc2"]["bias"], rtol=1e-4, atol=1e-5)


def test_the_model_runs_sharded_on_a_mesh_as_on_one_device():
    with nnx.use_eager_sharding(False):
        model = earth_model.EarthModel(earth_model.preset("tiny"), rngs=nnx.Rngs(1))
    grid = Grid.regular(16, 32)
    rng = np.random.default_rng(4)
    fields = {
        "temperature": jnp.asarray(rng.normal(size=(4, 3, 16, 32)), jnp.float32),
        "2m_temperature": jnp.asarray(rng.normal(size=(4, 16, 32)), jnp.float32),
    }
    kw = {
        "levels": {"temperature": Levels((850.0, 500.0, 250.0), "hPa")},
        "lead_hours": jnp.full(4, 6.0),
        "domain": "atmosphere",
    }
    single = nnx.jit(lambda model, fields: model(fields, grid, **kw))(model, fields)
    m = mesh.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    with partitioning.use_mesh(m):
        partitioning.shard_model(model, m)
        sharded = nnx.jit(lambda model, fields: model(fields, grid, **kw))(model, fields)
    for name, value in single.items():
        np.testing.assert_allclose(sharded[name], value, rtol=1e-4, atol=1e-5)


def test_bfloat16_weights_run_the_trunk_in_bfloat16_and_return_float32(tiny, monkeypatch):
    """Mixed precision: with the weights cast to bfloat16 the encoder's tokens and the
    trunk's are bfloat16 (not promoted back by the float32 coordinate features), and the
    fields and indices come out float32 as with float32 weights."""
    from tellus.kernels import earth_trunk

    seen = []
    call = earth_trunk.EarthTrunk.__call__

    def spy(self, tokens, *args, **kwargs):
        seen.append(tokens.dtype)
        return call(self, tokens, *args, **kwargs)

    monkeypatch.setattr(earth_trunk.EarthTrunk, "__call__", spy)
    encoded = []
    encode = earth_model.EarthEncoder.__call__
    monkeypatch.setattr(
        earth_model.EarthEncoder,
        "__call__",
        lambda self, *a, **k: encoded.append(encode(self, *a, **k)) or encoded[-1],
    )
    grid, ocean, x, ssh = _ocean()
    graphdef, params, rest = nnx.split(tiny, nnx.Param, ...)

    def run(params):
        out = nnx.merge(graphdef, params, rest)(
            {T: x, "sea_surface_height": ssh}, grid, levels={T: Levels((10.0, 100.0, 500.0), "m")},
            lead_hours=jnp.array([720.0, 720.0]), domain="ocean", mask=ocean, indices=("nino34",),
        )  # fmt: skip
        return {k: v.dtype for k, v in out.items()}

    for dtype in (jnp.float32, jnp.bfloat16):
        cast = jax.tree.map(lambda a, d=dtype: a.astype(d), params)
        seen.clear()
        encoded.clear()
        dtypes = []
        jax.eval_shape(lambda p, out=dtypes: out.append(run(p)) or 0, cast)
        assert seen == [dtype] and set(dtypes[0].values()) == {jnp.dtype(jnp.float32)}
        assert encoded[0].tokens.dtype == dtype  # the encoder computed in it too
