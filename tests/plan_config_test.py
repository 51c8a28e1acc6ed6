"""``tellus plan --config``: the pod recipes' tasks as plan targets, built abstractly (the
compile itself is ``tellus.training.plan_test``'s), and a task the planner cannot size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from typer.testing import CliRunner

from tellus.kernels import earth_model as em
from tellus.pipelines import experiment, plan_cli
from tellus.pipelines.cli import app
from tellus.training import targets

CONFIGS = Path(__file__).parents[1] / "pipelines" / "configs"


@pytest.mark.parametrize(
    ("name", "devices"), [("pretrain-pod-64.toml", 64), ("pretrain-pod-256.toml", 256)]
)
def test_pod_recipes_are_planned_task_by_task(name, devices, tmp_path):
    exp, specs = plan_cli._task_specs(CONFIGS / name)
    sizes = dict(part.split("=") for part in exp.train.mesh.split(","))
    assert math.prod(int(v) for v in sizes.values()) == devices
    assert [s["name"] for s in specs] == ["atmosphere", "ocean"]
    atmos, ocean = specs
    path = tmp_path / "atmos.json"
    path.write_text(json.dumps(atmos))
    target = targets.get(targets.EARTH_PREFIX + str(path))
    # 5 upper-air variables on 13 levels and 4 surface ones: 69 channels on 0.25 deg.
    shapes = target.batch(exp.train.batch)
    assert shapes["inputs"][0] == (exp.train.batch, 1, 721, 1440, 69)
    assert shapes["targets"][0] == shapes["inputs"][0]
    # The paper preset already has every variable: the task adds no parameter.
    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: target.make_model(True))
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    paper = em.abstract_model(em.preset("paper"))
    assert count == sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(paper, nnx.Param)))
    assert ocean["grid"] == [180, 360] and len(ocean["levels"]["sea_water_salinity"]) == 16
    assert targets.regular_latitudes(721)[[0, -1]].tolist() == [-90.0, 90.0]
    assert targets.regular_latitudes(180)[[0, -1]].tolist() == [-89.5, 89.5]


def test_the_earth_target_differentiates_on_a_small_grid(tmp_path):
    spec = {
        "name": "t",
        "model": em.preset("tiny").to_dict(),
        "task": {
            "name": "t",
            "domain": "ocean",
            "store": "x",
            "variables": ["sea_water_salinity", "sea_surface_height"],
            "lead": 1,
        },
        "grid": [12, 24],
        "levels": {"sea_water_salinity": [5.0, 50.0]},
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(spec))
    target = targets.get(targets.EARTH_PREFIX + str(path))
    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: target.make_model(False))
    batch = target.abstract_batch(2)
    assert batch["inputs"].shape == (2, 1, 12, 24, 3)
    loss, _ = nnx.eval_shape(lambda m, b: nnx.value_and_grad(target.loss_fn)(m, b), model, batch)
    assert loss.shape == () and loss.dtype == jnp.float32
    bad = {**spec, "levels": {}}
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="3D variable 'sea_water_salinity' needs its levels"):
        targets.get(targets.EARTH_PREFIX + str(path))


def test_a_task_without_store_or_grid_is_refused(tmp_path):
    text = (CONFIGS / "pretrain-pod-64.toml").read_text().replace("grid = [180, 360]\n", "")
    cfg = tmp_path / "pod.toml"
    cfg.write_text(text)
    experiment.load(cfg, check_stores=False)  # the file itself is fine
    result = CliRunner().invoke(app, ["plan", "--config", str(cfg)])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith("tellus: error: --config: ") and "tasks[1].grid: no store at" in line
