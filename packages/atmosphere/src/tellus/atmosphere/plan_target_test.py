import importlib.metadata

from flax import nnx

from tellus.atmosphere import config, forecaster, plan_target
from tellus.training import targets


def test_presets_registered_through_the_entry_point():
    (ep,) = [
        e
        for e in importlib.metadata.entry_points(group=targets.ENTRY_POINT_GROUP)
        if e.name == "atmosphere"
    ]
    assert ep.load() is plan_target.plan_targets
    pangu = [f"pangu-{p}" for p in sorted(config.PRESETS)]
    assert "pangu-paper" in pangu
    assert targets.names()[: 1 + len(pangu)] == ["toy", *pangu]


def test_tiny_target_builds_abstractly():
    target = targets.get("pangu-tiny")
    cfg = config.preset("tiny")
    assert target.name == "pangu-tiny" and target.model_remat
    assert target.description.startswith("Pangu-style forecaster, preset 'tiny': 13 levels")
    c = cfg.upper_vars * cfg.levels + cfg.surface_vars
    batch = target.abstract_batch(2)
    assert batch["inputs"].shape == batch["targets"].shape == (2, 1, cfg.lat, cfg.lon, c)
    assert batch["statics"].shape == (2, cfg.lat, cfg.lon, cfg.static_vars)
    assert target.batch_names(2)["statics"] == ("batch", "lat", "lon", "channels")
    with nnx.use_eager_sharding(False):  # as tellus.training.plan builds it
        model = nnx.eval_shape(lambda: target.make_model(True))
    assert isinstance(model, forecaster.Forecaster) and model.config.model.remat_blocks
