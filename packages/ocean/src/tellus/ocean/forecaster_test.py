"""The forecaster on a tiny network: land never reaches an ocean output, the loss or a
gradient; lead month m trains only the experts (m - 1) mod 6; the observed forcing of a
lead is that lead's; rollouts restart from every sixth month.

One network is compiled once (value and gradients of the loss for one lead) and reused by
every test of the first two kinds; its parameters are random numbers instead of the model's
initialization, which would cost a compile per parameter shape (the properties tested hold
for any parameters)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tellus.ocean import forecaster as fc
from tellus.ocean import model as model_lib

LAT, LON = 7, 12  # 7 rows: the patch grid pads a row
VARIABLES = ("sea_water_potential_temperature", "sea_surface_temperature")
DEPTHS = (5.0, 50.0)


def _config(**changes) -> fc.ForecasterConfig:
    net = model_lib.NetConfig(
        n_lat=LAT,
        n_lon=LON,
        channels=(2, 1),
        trunk=model_lib.fusion_trunk((2, 2), 16, 2, (1, 1), 6),
        patch=(2, 3),
        dim=8,
        depths=(1, 1),
        heads=(2, 2),
        window=(2, 2),
    )
    rng = np.random.default_rng(0)
    cfg = fc.ForecasterConfig(
        net=net.to_dict(),
        variables=VARIABLES,
        depths=DEPTHS,
        latitude=tuple(np.linspace(-60.0, 60.0, LAT)),
        mean=rng.normal(size=(12, 3)),
        std=1.0 + rng.random((12, 3)),
        forcing_mean=0.01 * rng.normal(size=(12, 2)),
        forcing_std=0.1 + rng.random((12, 2)),
        leads=(1,),
    )
    return dataclasses.replace(cfg, **changes)


def _random_model(cfg: fc.ForecasterConfig, seed: int = 0) -> fc.OceanForecaster:
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: fc.OceanForecaster(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)
    state = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), state)
    return nnx.merge(graphdef, state)


def _ocean() -> np.ndarray:
    ocean = np.ones((LAT, LON), bool)
    ocean[:4, :6] = False  # a box: whole patches and a whole 2 x 2 window of them are land
    ocean[5, 7] = False  # one land cell inside an ocean patch
    return ocean


def _batch(n_leads: int = 1, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = 2
    ocean = _ocean()
    return {
        "inputs": rng.normal(size=(b, 1, LAT, LON, 3)).astype(np.float32),
        "targets": rng.normal(size=(b, n_leads, LAT, LON, 3)).astype(np.float32),
        "forcings": rng.normal(size=(b, 1 + n_leads, LAT, LON, 2)).astype(np.float32),
        "statics": np.broadcast_to(ocean[None, :, :, None], (b, LAT, LON, 1)).astype(np.float32),
        "month": np.array([3, 12], np.int32),
    }


def _poison(batch: dict[str, np.ndarray], value: float) -> dict[str, np.ndarray]:
    land = ~_ocean()
    out = dict(batch)
    for key in ("inputs", "targets", "forcings"):
        x = batch[key].copy()
        x[:, :, land] = value
        out[key] = x
    return out


def _paths(tree) -> dict[str, np.ndarray]:
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.state(tree))[0]
    }


@pytest.fixture(scope="module")
def trained():
    """``(model, run)``: ``run(batch, leads) -> (loss, predictions, {path: gradient})``,
    compiled once."""
    model = _random_model(_config())

    @nnx.jit
    def run(model, batch, leads):
        def loss(m):
            total, _, pred = fc.lead_loss(m, batch, leads)
            return total, pred

        (total, pred), grads = nnx.value_and_grad(loss, has_aux=True)(model)
        return total, pred, grads

    return model, lambda batch, leads: (lambda r: (r[0], r[1], _paths(r[2])))(
        run(model, batch, jnp.asarray(leads, jnp.int32))
    )


@pytest.mark.parametrize("value", [np.nan, 1e30], ids=["nan", "huge"])
def test_land_never_reaches_ocean_outputs_the_loss_or_a_gradient(trained, value):
    _, run = trained
    batch = _batch()
    loss, pred, grads = run(batch, [2])
    poisoned_loss, poisoned_pred, poisoned_grads = run(_poison(batch, value), [2])
    assert np.isfinite(float(loss))
    assert float(poisoned_loss) == float(loss)
    ocean = _ocean()
    pred, poisoned_pred = np.asarray(pred), np.asarray(poisoned_pred)
    np.testing.assert_array_equal(poisoned_pred[:, :, ocean], pred[:, :, ocean])
    assert (poisoned_pred[:, :, ~ocean] == 0).all()  # normalized outputs are 0 over land
    assert grads.keys() == poisoned_grads.keys()
    for path, g in poisoned_grads.items():
        assert np.isfinite(g).all(), path
        np.testing.assert_array_equal(g, grads[path], err_msg=path)


@pytest.mark.parametrize("lead", [1, 3, 6, 7])
def test_lead_month_trains_only_its_expert(trained, lead):
    _, run = trained
    _, _, grads = run(_batch(), [lead])
    routed = str((lead - 1) % 6)
    seen = {"encoders": 0, "trunk": 0, "decoders": 0}
    for path, g in grads.items():
        parts = path.split("/")
        if "experts" not in parts:
            continue
        seen[parts[1]] += 1
        used = parts[parts.index("experts") + 1] == routed
        assert (np.abs(g).max() > 0) == used, path
    # 2 encoders x 2 blocks, 2 fusion blocks, 2 decoders x 2 blocks; 6 experts x 4 arrays.
    assert seen == {"encoders": 2 * 2 * 24, "trunk": 2 * 24, "decoders": 2 * 2 * 24}
    assert not any("wind" in p and "experts" in p for p in grads)  # the wind encoder has none


class _FakeNet(nnx.Module):
    """A network whose output is known: ``x + 10 f[..., 0] + 1000 lead`` (normalized)."""

    def __init__(self):
        self.encoded = nnx.Variable(jnp.zeros((), jnp.int32))  # samples encode_forcing saw

    def encode_forcing(self, f, ocean):
        self.encoded[...] += f.shape[0]
        return f

    def __call__(self, x, f, lead, ocean, *, key=None):
        return x + 10.0 * f[..., :1] + 1000.0 * lead[:, None, None, None].astype(jnp.float32)


def _with_fake_net(cfg):
    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: fc.OceanForecaster(cfg, rngs=nnx.Rngs(0)))
    model.net = _FakeNet()
    return model


@pytest.mark.parametrize(
    "observed,residual,anomaly",
    [(False, False, False), (True, False, False), (False, True, False), (False, True, True)],
    ids=["initial", "observed", "residual", "anomaly"],
)
def test_normalization_months_and_forcing_of_every_lead(observed, residual, anomaly):
    # Leads 2 and 7 from a state 6 months after the initial month (a restart): the state
    # reads its own month's statistics, each lead's output its target month's, the forcing
    # the initial month's (encoded once) or each lead's own month's.
    cfg = _config(observed_forcing=observed, leads=(2, 7), residual=residual, anomaly_base=anomaly)
    model = _with_fake_net(cfg)
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(12, LAT, LON, 3)).astype(np.float32)
    damping = rng.uniform(0.2, 0.9, size=(fc.RESTART, 3)).astype(np.float32)
    if anomaly:
        ref_nan = ref.copy()
        ref_nan[:, ~_ocean()] = np.nan  # a climatology with land as the store has it
        model.reference = fc.Reference(jnp.zeros(ref.shape))
        fc.set_reference(model, ref_nan)
        model.damping = nnx.Param(jnp.asarray(damping))
    batch, ocean = _batch(n_leads=2, seed=4), _ocean()
    x = batch["inputs"][:, 0]
    forcing = batch["forcings"][:, 1:] if observed else batch["forcings"][:, 0]
    month = batch["month"]  # March and December
    run = nnx.jit(lambda model, x, f: model.forecast(x, f, month, ocean, offset=6))
    out = np.asarray(run(model, x, forcing))
    assert int(model.net.encoded[...]) == (4 if observed else 2)

    mean, std = np.asarray(cfg.mean), np.asarray(cfg.std)
    f_mean, f_std = np.asarray(cfg.forcing_mean), np.asarray(cfg.forcing_std)
    for b, m0 in enumerate(month):
        state_month = (m0 - 1 + 6) % 12  # row of the statistics
        xn = (x[b] - mean[state_month]) / std[state_month]
        for i, lead in enumerate(cfg.leads):
            row = (m0 - 1 + lead) % 12
            f, f_row = (forcing[b, i], row) if observed else (forcing[b], m0 - 1)
            fn = (f[..., :1] - f_mean[f_row, :1]) / f_std[f_row, :1]
            # residual: plus the state itself in the lead month's units, or the damped
            # anomaly about the reference climatology (span: lead - 6, at least 1)
            state = x[b]
            if anomaly:
                a = damping[max(lead - 6, 1) - 1]
                state = ref[row] + a * (x[b] - ref[state_month])
            base = (state - mean[row]) / std[row] if residual else 0.0
            expected = (xn + 10 * fn + 1000 * lead + base) * std[row] + mean[row]
            np.testing.assert_allclose(out[b, i][ocean], expected[ocean], rtol=1e-5)
            assert np.isnan(out[b, i][~ocean]).all()
    # Land in the forcing or the state never reaches the ocean.
    land = ~ocean
    x_bad, f_bad = x.copy(), np.array(forcing)
    x_bad[:, land] = np.nan
    f_bad[..., land, :] = np.nan
    np.testing.assert_array_equal(np.asarray(run(model, x_bad, f_bad)), out)


@dataclasses.dataclass(frozen=True)
class _FakeConfig:
    observed_forcing: bool


class _Fake(nnx.Module):
    """A forecaster whose forecast is known: ``x + 100 lead + 10000 offset + forcing``."""

    def __init__(self, observed: bool):
        self.config = _FakeConfig(observed)

    def forecast(self, x, forcing, month, ocean, leads, *, offset=0):
        f = forcing[..., 0] if self.config.observed_forcing else forcing[:, None, ..., 0]
        lead = leads[None, :, None, None, None].astype(jnp.float32)
        return x[:, None] + 100.0 * lead + 10000.0 * offset + f[..., None]


def test_rollout_restarts_from_every_sixth_month():
    x = np.zeros((1, 2, 3, 1), np.float32)
    out = fc.rollout(_Fake(False), x, np.zeros((1, 2, 3, 1)), np.array([1]), None, 14)
    m = np.arange(1, 15)
    # Block k starts from the forecast of month 6k, with leads counted from the start.
    restart6 = 100 * 6
    restart12 = restart6 + 100 * 12 + 10000 * 6
    expected = np.where(m <= 6, 100 * m, np.where(m <= 12, restart6 + 100 * m + 60000, 0))
    expected = np.where(m > 12, restart12 + 100 * m + 120000, expected)
    np.testing.assert_allclose(out[0, :, 0, 0, 0], expected)

    forcing = np.broadcast_to(np.arange(1.0, 9.0)[None, :, None, None, None], (1, 8, 2, 3, 1))
    out = fc.rollout(_Fake(True), x, forcing, np.array([1]), None, 8)
    m = np.arange(1, 9)
    first = 100 * m[:6] + m[:6]
    second = first[-1] + 100 * m[6:] + 60000 + m[6:]
    np.testing.assert_allclose(out[0, :, 0, 0, 0], np.concatenate([first, second]))


def test_config_checks_the_network():
    with pytest.raises(ValueError, match="a base of the residual"):
        _config(anomaly_base=True)
    with pytest.raises(ValueError, match=r"damping must be \[6 lead spans\]\[3 channels\]"):
        _config(residual=True, anomaly_base=True, damping=((1.0, 1.0),) * 6)
    with pytest.raises(ValueError, match="no anomaly base"):
        fc.set_reference(_with_fake_net(_config()), np.zeros((12, LAT, LON, 3)))
    with pytest.raises(ValueError, match="channels"):
        _config(depths=(5.0, 50.0, 100.0))
    with pytest.raises(ValueError, match="latitude"):
        _config(latitude=(0.0,))


def test_rollout_with_restart_forcing_starts_each_block_afresh():
    # Each block forecasts leads 1-6 from the last state, with its own first month's forcing
    # and that month as the initial month.
    x = np.zeros((1, 2, 3, 1), np.float32)
    forcing = np.broadcast_to(np.array([1.0, 2.0, 3.0])[None, :, None, None, None], (1, 3, 2, 3, 1))
    out = fc.rollout(_Fake(False), x, forcing, np.array([1]), None, 14, restart_forcing=True)
    m = np.arange(1, 15)
    first = 100 * m[:6] + 1.0
    second = first[-1] + 100 * (m[6:12] - 6) + 2.0
    third = second[-1] + 100 * (m[12:] - 12) + 3.0
    np.testing.assert_allclose(out[0, :, 0, 0, 0], np.concatenate([first, second, third]))
    with pytest.raises(ValueError, match=r"\[batch, 3 blocks"):
        fc.rollout(_Fake(False), x, forcing[:, :2], np.array([1]), None, 14, restart_forcing=True)


@pytest.mark.parametrize("modes", [0, 2])
def test_a_zero_initialized_residual_forecaster_starts_as_its_base(modes):
    """Its output is the anomaly base by hand: damped persistence, plus with
    ``forcing_modes`` the response to the initial month's forcing anomaly (land forcing
    poisoned: it never counts), which a restarted block (offset 6) leaves out."""
    cfg = _config(
        residual=True, anomaly_base=True, zero_init=True, leads=(1, 3), forcing_modes=modes
    )
    model = fc.make_forecaster(cfg)
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(12, LAT, LON, 3)).astype(np.float32)
    fc.set_reference(model, ref)
    if modes:
        f_ref = rng.normal(size=(12, LAT, LON, 2)).astype(np.float32)
        patterns = rng.normal(size=(modes, LAT, LON, 2)).astype(np.float32)
        response = rng.normal(size=(6, modes, LAT, LON, 3)).astype(np.float32)
        fc.set_forcing_response(model, f_ref, patterns, response)
    batch, ocean = _batch(n_leads=2, seed=5), _ocean()
    x, month, forcing = batch["inputs"][:, 0], batch["month"], batch["forcings"][:, 0].copy()
    poisoned = forcing.copy()
    poisoned[:, ~ocean] = np.nan
    poisoned[0, ~ocean] = 1e30
    # compiled as one program (eagerly, every operation of the network compiles alone)
    forecast = nnx.jit(fc.OceanForecaster.forecast)
    out = np.asarray(forecast(model, x, poisoned, month, ocean))
    damping = np.asarray(model.damping[...])
    for b, m0 in enumerate(month):
        if modes:
            anomaly = np.where(ocean[..., None], forcing[b] - f_ref[m0 - 1], 0.0)
            p = np.einsum("yxf,kyxf->k", anomaly, patterns)
        for i, lead in enumerate(cfg.leads):
            row = (m0 - 1 + lead) % 12
            expected = ref[row] + damping[lead - 1] * (x[b] - ref[m0 - 1])
            if modes:
                expected = expected + np.einsum("k,kyxc->yxc", p, response[lead - 1])
            np.testing.assert_allclose(out[b, i][ocean], expected[ocean], rtol=1e-4, atol=1e-4)
    if modes:
        # A restarted block: the forcing is six months older than its state; no response.
        leads = jnp.asarray([7, 9], jnp.int32)
        late = np.asarray(forecast(model, x, forcing, month, ocean, leads, offset=6))
        for b, m0 in enumerate(month):
            now = (m0 - 1 + 6) % 12
            for i, lead in enumerate((7, 9)):
                row = (m0 - 1 + lead) % 12
                expected = ref[row] + damping[lead - 7] * (x[b] - ref[now])
                np.testing.assert_allclose(late[b, i][ocean], expected[ocean], rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError, match="response's response must be"):
            fc.set_forcing_response(model, f_ref, patterns, response[:, :1])
    with pytest.raises(ValueError, match="forcing_modes"):
        _config(residual=True, anomaly_base=True, observed_forcing=True, forcing_modes=2)
