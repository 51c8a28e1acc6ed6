import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.kernels.earth_encoder import EarthEncoder, EncoderConfig, Grid, Levels

CFG = EncoderConfig(8, (2, 2), 2, 2, ("temperature", "2m_temperature"), ("atmosphere", "ocean"))
CFG_MORE = EncoderConfig(
    8,
    (2, 2),
    2,
    2,
    ("temperature", "2m_temperature", "sea_water_potential_temperature", "sea_surface_temperature"),
    ("atmosphere", "ocean", "enso"),
)
LEVELS = Levels((850.0, 500.0, 250.0), "hPa")


def _build(cfg, seed=0):
    with nnx.use_eager_sharding(False):
        return EarthEncoder(cfg, rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def encoder():
    return _build(CFG_MORE)


def _params(module):
    return {
        jax.tree_util.keystr(p): np.asarray(v)
        for p, v in jax.tree_util.tree_leaves_with_path(nnx.state(module, nnx.Param))
    }


def _atmosphere(rng, b=2, h=32, w=64):
    return {
        "temperature": jnp.asarray(rng.normal(size=(b, 3, h, w)), jnp.float32),
        "2m_temperature": jnp.asarray(rng.normal(size=(b, h, w)), jnp.float32),
    }


def test_a_new_variable_adds_an_entry_and_changes_no_other():
    small, big = _params(_build(CFG)), _params(_build(CFG_MORE))
    for path, value in small.items():
        if "embeddings" in path:
            np.testing.assert_array_equal(big[path], value)  # same path, same initial value
    new = {p for p in big if p not in small and "embeddings" in p}
    assert new == {
        f"['embeddings']['{v}']['{k}'].value"
        for v in ("sea_water_potential_temperature", "sea_surface_temperature")
        for k in ("bias", "kernel")
    }
    enc = _build(CFG)
    fields = {"sea_surface_temperature": jnp.zeros((1, 36, 72))}
    grid = Grid.regular(36, 72)
    with pytest.raises(ValueError, match="sea_surface_temperature: the encoder has no patch"):
        enc(fields, grid, lead_hours=jnp.zeros(1), domain="ocean")
    before = _params(enc)
    with nnx.use_eager_sharding(False):
        enc.add_variable("sea_surface_temperature", rngs=nnx.Rngs(3))
    after = _params(enc)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value)
    assert enc(fields, grid, lead_hours=jnp.zeros(1), domain="ocean").tokens.shape == (
        1,
        2,
        18,
        36,
        8,
    )


def test_the_same_weights_serve_three_grids(encoder):
    rng = np.random.default_rng(0)
    # A 5 deg ENSO grid (surface SST), a 4 deg ocean with land and depths, a 32 x 64 atmosphere.
    enso = encoder(
        {"sea_surface_temperature": jnp.asarray(rng.normal(size=(2, 36, 72)), jnp.float32)},
        Grid.regular(36, 72),
        lead_hours=jnp.array([720.0, 1440.0]),
        domain="enso",
    )
    ocean_grid = Grid.regular(34, 90, lat_range=(-68.0, 68.0))
    land = np.zeros((34, 90), bool)
    land[:, 20:44] = True
    land[:4] = True
    ocean = encoder(
        {"sea_water_potential_temperature": jnp.ones((1, 4, 34, 90))},
        ocean_grid,
        levels={"sea_water_potential_temperature": Levels((5, 50, 200, 1000), "m")},
        lead_hours=jnp.array([720.0]),
        domain="ocean",
        mask=~land,
    )
    atmos = encoder(
        _atmosphere(rng),
        Grid.regular(32, 64),
        levels={"temperature": LEVELS},
        lead_hours=jnp.array([6.0, 12.0]),
        domain="atmosphere",
    )
    assert enso.tokens.shape == (2, 2, 18, 36, 8)
    assert ocean.tokens.shape == (1, 2, 17, 45, 8)
    assert atmos.tokens.shape == (2, 2, 16, 32, 8)
    for e in (enso, ocean, atmos):
        assert np.isfinite(np.asarray(e.tokens)).all()
    # The token mask: a 2 x 2 patch is land only when its 4 cells are (by hand).
    expected = ~land.reshape(17, 2, 45, 2).all(axis=(1, 3))
    np.testing.assert_array_equal(np.asarray(ocean.key_mask[0, 0]), expected)
    assert ocean.key_mask.shape == (1, 2, 17, 45) and enso.key_mask is None
    # Token positions from the actual coordinates: pairs of 5.625 deg rows of the 32 x 64 grid.
    np.testing.assert_allclose(atmos.latitude, -90 + 5.625 * (2 * np.arange(16) + 1), atol=1e-9)
    np.testing.assert_allclose(atmos.longitude, 5.625 * (2 * np.arange(32) + 0.5), atol=1e-9)


def test_cell_areas_cover_the_sphere_and_a_band():
    np.testing.assert_allclose(Grid.regular(32, 64).cell_area().sum(), 4 * np.pi, rtol=1e-12)
    _, _, area = Grid.regular(36, 72).patches((2, 2))
    # Two 5 deg rows from the equator north, two 5 deg columns: sin(10 deg) * 10 deg.
    np.testing.assert_allclose(area[9, 0], np.sin(np.deg2rad(10)) * np.deg2rad(10), rtol=1e-12)
    # The 4 deg ocean stops at 68 deg: its outer cells end half a spacing beyond the last row.
    lo, hi = -68.0, 68.0
    total = Grid.regular(34, 90, lat_range=(lo, hi)).cell_area().sum()
    np.testing.assert_allclose(total, 2 * np.pi * (np.sin(np.deg2rad(hi)) * 2), rtol=1e-12)


def test_a_3d_field_without_levels_or_units_is_refused_by_name(encoder):
    rng = np.random.default_rng(1)
    grid = Grid.regular(32, 64)
    kw = {"lead_hours": jnp.zeros(2), "domain": "atmosphere"}
    with pytest.raises(ValueError, match=r"^temperature: a 3D field needs its levels with units"):
        encoder(_atmosphere(rng), grid, **kw)
    with pytest.raises(ValueError, match=r"temperature: .*without units"):
        encoder(_atmosphere(rng), grid, levels={"temperature": Levels((1, 2, 3), None)}, **kw)
    with pytest.raises(
        ValueError, match=r"temperature: level units 'K' are not a vertical coordinate.*m for depth"
    ):
        encoder(_atmosphere(rng), grid, levels={"temperature": Levels((1, 2, 3), "K")}, **kw)
    with pytest.raises(ValueError, match=r"temperature: the field has 3 levels but 2"):
        encoder(_atmosphere(rng), grid, levels={"temperature": Levels((1, 2), "hPa")}, **kw)
    with pytest.raises(
        ValueError, match=r"temperature: its cell mask must be \[1 or 2, 3, 32, 64\]"
    ):
        encoder(
            _atmosphere(rng), grid, levels={"temperature": LEVELS},
            cell_masks={"temperature": np.ones((1, 2, 32, 64), bool)}, **kw,
        )  # fmt: skip


def test_levels_are_encoded_from_their_physical_value(encoder):
    rng = np.random.default_rng(2)
    fields, grid = _atmosphere(rng, b=1), Grid.regular(32, 64)
    kw = {"lead_hours": jnp.zeros(1), "domain": "atmosphere"}
    hpa = encoder(fields, grid, levels={"temperature": LEVELS}, **kw).tokens
    pa = Levels((85000.0, 50000.0, 25000.0), "Pa")
    np.testing.assert_allclose(
        encoder(fields, grid, levels={"temperature": pa}, **kw).tokens, hpa, atol=1e-5
    )
    other = Levels((850.0, 500.0, 200.0), "hPa")
    moved = encoder(fields, grid, levels={"temperature": other}, **kw).tokens
    assert np.abs(np.asarray(moved - hpa)).max() > 1e-4


def test_level_aggregation_is_invariant_to_the_order_of_the_levels(encoder):
    rng = np.random.default_rng(3)
    fields, grid = _atmosphere(rng, b=1), Grid.regular(32, 64)
    values = np.array([1000.0, 850.0, 500.0])
    kw = {"lead_hours": jnp.array([6.0]), "domain": "atmosphere"}
    base = encoder(fields, grid, levels={"temperature": Levels(values, "hPa")}, **kw).tokens
    for _ in range(4):
        order = rng.permutation(3)
        shuffled = dict(fields, temperature=fields["temperature"][:, order])
        out = encoder(shuffled, grid, levels={"temperature": Levels(values[order], "hPa")}, **kw)
        np.testing.assert_allclose(out.tokens, base, rtol=1e-5, atol=1e-5)
    # Levels swapped without their values are other data: the tokens change.
    swapped = dict(fields, temperature=fields["temperature"][:, ::-1])
    out = encoder(swapped, grid, levels={"temperature": Levels(values, "hPa")}, **kw)
    assert np.abs(np.asarray(out.tokens - base)).max() > 1e-4
