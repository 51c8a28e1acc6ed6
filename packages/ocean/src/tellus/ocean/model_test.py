import dataclasses

import numpy as np
import pytest
from flax import nnx

from tellus.kernels import earth_trunk, partitioning
from tellus.ocean import model


def _net(**changes) -> model.NetConfig:
    cfg = model.NetConfig(
        n_lat=7,
        n_lon=12,
        channels=(2, 1),
        trunk=model.fusion_trunk((2, 2), 16, 2, (1, 1), 6),
        patch=(2, 3),
        dim=8,
        depths=(1, 1),
        heads=(2, 2),
        window=(2, 2),
    )
    return dataclasses.replace(cfg, **changes)


def test_token_masks_by_hand():
    cfg = _net()
    ocean = np.zeros((1, 7, 12), bool)
    ocean[0, 6, 11] = True  # the last row: its patch holds the padded row 7
    ocean[0, 0, 3] = True
    first, merged = (np.asarray(m) for m in model.token_masks(ocean, cfg))
    assert first.shape == (1, 1, 4, 4) and merged.shape == (1, 1, 2, 2)
    expected = np.zeros((4, 4), bool)
    expected[3, 3] = expected[0, 1] = True  # rows 6-7 / cols 9-11, rows 0-1 / cols 3-5
    np.testing.assert_array_equal(first[0, 0], expected)
    np.testing.assert_array_equal(merged[0, 0], [[True, False], [False, True]])


def test_grids_of_the_presets():
    cpu, paper = model.PRESETS["cpu"], model.PRESETS["paper"]
    assert cpu.stage_grids == ((18, 30), (9, 15), (5, 8))
    assert paper.stage_grids == ((64, 120), (32, 60), (16, 30))  # ORCA-DL's
    for cfg in (cpu, paper):
        tc = cfg.trunk_config
        assert tc.window == (1, *cfg.bottleneck) and not tc.shift_windows
        assert tc.depths == (2, 0, 0, 2) and tc.experts == 6 == cfg.experts
        assert cfg.channels[:4] == (cfg.channels[0],) * 4 and cfg.channels[4:] == (1, 1)
    assert paper.trunk_config.dim == 1152 and paper.channels[0] == 16


def test_config_is_checked():
    with pytest.raises(ValueError, match="must agree"):
        _net(experts=3)
    with pytest.raises(ValueError, match="not divisible"):
        _net(heads=(3, 2))
    with pytest.raises(ValueError, match="lead_frequencies"):
        _net(lead_frequencies="sine")
    cfg = _net()
    assert model.NetConfig.from_dict(cfg.to_dict()) == cfg
    assert earth_trunk.TrunkConfig(**cfg.trunk) == cfg.trunk_config


def test_parameter_counts_from_the_parameter_tree():
    cfg = _net()
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: model.OceanNet(cfg, rngs=nnx.Rngs(0)))
    sizes = {
        "/".join(map(str, path)): int(np.prod(v.shape))
        for path, v in nnx.to_flat_state(nnx.state(abstract, nnx.Param))
    }
    total = sum(sizes.values())
    # One lead uses one expert of every MLP: the arrays of experts 1..5 lie idle.
    idle = sum(n for p, n in sizes.items() if "/experts/" in p and "/experts/0/" not in p)
    assert model.count_parameters(cfg) == total
    assert model.active_parameters(cfg) == total - idle
    assert not any("wind" in p and "experts" in p for p in sizes)
    partitioning.param_specs(abstract)  # every parameter's logical names are in the rules
