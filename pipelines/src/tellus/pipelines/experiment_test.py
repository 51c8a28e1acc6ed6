"""Experiment files: the shipped recipes parse, and every kind of bad file is one line
naming the key, with exit status 2 and nothing written, before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tellus.pipelines import experiment
from tellus.pipelines.cli import app

CONFIGS = Path(__file__).resolve().parents[3] / "configs"

GOOD = """
workdir = "{workdir}"
[train]
steps = 3
batch = 2
[[tasks]]
name = "a"
domain = "atmosphere"
store = "{store}"
variables = ["temperature"]
"""


def test_the_shipped_recipes_parse():
    files = sorted(CONFIGS.glob("*.toml"))
    assert files, CONFIGS
    for f in files:
        exp = experiment.load(f, check_stores=False)
        assert exp.tasks and exp.train.steps > 0, f


def test_a_good_file(tmp_path):
    (tmp_path / "s.zarr").mkdir()
    text = GOOD.format(workdir=tmp_path / "run", store=tmp_path / "s.zarr")
    exp = experiment.parse(__import__("tomllib").loads(text))
    assert exp.model.preset == "tiny" and exp.train.batch == 2 and exp.tasks[0].lead == 1
    assert exp.workdir_path == tmp_path / "run"
    traced = experiment.parse(
        __import__("tomllib").loads(text.replace("batch = 2", "batch = 2\nprofile_steps = [2, 5]"))
    )
    assert traced.train.profile_steps == (2, 5) and exp.train.profile_steps is None


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("steps = 3", "stepz = 3"), "unknown key 'train.stepz'"),
        (("steps = 3", 'steps = "many"'), "train.steps: Input should be a valid integer"),
        (("steps = 3", "steps = 0"), "train.steps: Input should be greater than 0"),
        (('variables = ["temperature"]', "variables = []"), "tasks[0].variables"),
        (('domain = "atmosphere"', 'domain = "atmosphere"\nweight = -1'), "tasks[0].weight"),
        (
            ("[train]", '[model]\npreset = "huge"\n[train]'),
            "model.preset: Input should be 'tiny' or 'paper'",
        ),
        (("s.zarr", "missing.zarr"), "tasks[0].store: no store at"),
        (("batch = 2", "batch = 3\nmesh = 'data=2'"), "train.batch: 3 is not a multiple"),
        (("[[tasks]]", "[[taskz]]"), "unknown key 'taskz'"),
        (
            ("batch = 2", "batch = 2\nprofile_steps = [5, 5]"),
            "train.profile_steps: must be [first, stop] with 0 <= first < stop, got [5, 5]",
        ),
        (("batch = 2", "batch = 2\nprofile_steps = [5]"), "train.profile_steps"),
        (("steps = 3", "steps = 3 ="), "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key(tmp_path, edit, expected):
    (tmp_path / "s.zarr").mkdir()
    text = GOOD.format(workdir=tmp_path / "run", store=tmp_path / "s.zarr")
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    result = CliRunner().invoke(app, ["pretrain", "--config", str(bad)])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith("tellus: error: --config: ") and str(bad) in line, line
    assert expected in line, line
    assert not (tmp_path / "run").exists()


def test_a_missing_file():
    result = CliRunner().invoke(app, ["pretrain", "--config", "nowhere.toml"])
    assert result.exit_code == 2 and "nowhere.toml: no such experiment file" in result.output


FINETUNE = """
[finetune]
pretrained = "{pretrained}"
mode = "heads"
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", "no [finetune] section"),
        (
            FINETUNE.replace('"heads"', '"adapters"'),
            "finetune.mode: Input should be 'heads', 'lora' or 'full', got 'adapters'",
        ),
        (FINETUNE.replace("{pretrained}", "{missing}"), "finetune.pretrained: no pretrained model"),
        (FINETUNE + GOOD[GOOD.index("[[tasks]]") :].replace('"a"', '"b"'), "takes one task, got 2"),
    ],
)
def test_a_bad_finetune_file(tmp_path, extra, expected):
    (tmp_path / "s.zarr").mkdir()
    (tmp_path / "pre" / "checkpoints").mkdir(parents=True)
    text = GOOD + extra
    text = text.format(
        workdir=tmp_path / "run",
        store=tmp_path / "s.zarr",
        pretrained=tmp_path / "pre",
        missing=tmp_path / "nowhere",
    )
    bad = tmp_path / "ft.toml"
    bad.write_text(text)
    result = CliRunner().invoke(app, ["finetune", "--config", str(bad)])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith("tellus: error: --config: ") and expected in line, line
    assert not (tmp_path / "run").exists()
