"""Tests of the task configuration: validation, presets, step arithmetic."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from tellus.data import regions, tasks


def _task(**kw) -> tasks.TaskConfig:
    base = dict(
        input_variables=("temperature", "2m_temperature"),
        target_variables=("temperature",),
        levels=(500, 850),
    )
    return tasks.TaskConfig(**(base | kw))


def test_window_offsets_are_history_then_leads():
    task = _task(history_steps=3, history_spacing=6, lead_steps=(1, 6, 24))
    assert task.history_offsets == (-12, -6, 0)
    assert task.window_offsets == (-12, -6, 0, 1, 6, 24)
    assert task.lead_times == (pd.Timedelta("1h"), pd.Timedelta("6h"), pd.Timedelta("24h"))


def test_config_is_frozen_and_hashable():
    task = _task(lead_steps=[1, 2])  # Lists are stored as tuples.
    assert task.lead_steps == (1, 2)
    assert hash(task) == hash(_task(lead_steps=(1, 2)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.history_steps = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (dict(input_variables=("t",)), ValueError, "the schema calls it 'temperature'"),
        (dict(input_variables=("nonsense",)), ValueError, "unknown variable 'nonsense'"),
        (dict(input_variables=("land_sea_mask",)), ValueError, "is a static variable"),
        (dict(static_variables=("2m_temperature",)), ValueError, "is a surface variable"),
        (dict(levels=()), ValueError, "need levels"),
        (dict(levels=(500, 500)), ValueError, "duplicates"),
        (dict(lead_steps=(2, 1)), ValueError, "strictly increasing"),
        (dict(lead_steps=(0, 1)), ValueError, "> 0"),
        (dict(lead_steps=(1.5,)), TypeError, "must be ints"),
        (dict(lead_steps=()), ValueError, "lead_steps is empty"),
        (dict(history_steps=0), ValueError, "history_steps"),
        (dict(time_step="fortnightly"), ValueError, "not a pandas frequency alias"),
        (dict(input_variables="temperature"), TypeError, "not the string"),
        (dict(forcing_variables=("temperature",)), ValueError, "must not also be inputs"),
        (dict(forcing_variables=("day_of_week",)), ValueError, "unknown variable"),
    ],
)
def test_invalid_configs_raise_clear_errors(kw, error, match):
    with pytest.raises(error, match=match):
        _task(**kw)


def test_steps_from_durations():
    assert tasks.steps_from_durations(["6h", pd.Timedelta("1D")], "6h") == (1, 4)
    with pytest.raises(ValueError, match="not a multiple"):
        tasks.steps_from_durations(["5h"], "6h")
    with pytest.raises(ValueError, match="no fixed length"):
        tasks.steps_from_durations(["30D"], "MS")


def test_atmosphere_preset_converts_durations_to_steps():
    task = tasks.TaskConfig.atmosphere(
        lead_times=("6h", "24h"), time_step="6h", history_spacing="6h"
    )
    assert task.lead_steps == (1, 4)
    assert task.history_spacing == 1
    assert task.input_variables == task.target_variables
    assert len(task.levels) == 13
    assert set(task.forcing_variables) == set(tasks.COMPUTED_FORCINGS)


def test_atmosphere_preset_stacks_variables_in_pangu_order():
    # Trained checkpoints' stacked channels and the per-variable loss weights depend on it.
    assert tasks.ATMOSPHERE_UPPER_AIR == (
        "geopotential",
        "specific_humidity",
        "temperature",
        "u_component_of_wind",
        "v_component_of_wind",
    )
    assert tasks.ATMOSPHERE_SURFACE == (
        "mean_sea_level_pressure",
        "10m_u_component_of_wind",
        "10m_v_component_of_wind",
        "2m_temperature",
    )
    task = tasks.TaskConfig.atmosphere(time_step="6h", lead_times=("6h",))
    assert task.input_variables == tasks.ATMOSPHERE_UPPER_AIR + tasks.ATMOSPHERE_SURFACE


def test_ocean_preset_counts_leads_in_months():
    task = tasks.TaskConfig.ocean(depths=(5, 50), lead_months=(1, 3))
    assert task.lead_steps == (1, 3)
    assert task.levels == (5.0, 50.0)
    assert not tasks.is_fixed_step(task.time_step)
    with pytest.raises(ValueError, match="use lead_steps"):
        _ = task.lead_times


def test_derived_targets_extend_the_window_reach():
    nino = tasks.DerivedTarget.nino34_3month(["1981-01", "2010-12"])
    assert nino.base_period == ("1981-01", "2010-12") and nino.reach == 1
    assert nino.box == regions.NINO34 and nino.variable == "sea_surface_temperature_anomaly"
    task = tasks.TaskConfig(
        input_variables=("sea_surface_temperature_anomaly", "ocean_heat_content_anomaly"),
        target_variables=(),
        time_step="MS",
        history_steps=3,
        lead_steps=range(1, 25),
        derived_targets=[nino],
    )
    assert task.window_offsets == (-2, -1, 0, *range(1, 25))
    # The centred 3-month mean at lead 24 reads month t + 25.
    assert task.reach_offsets == (-2, -1, 0, *range(1, 26))
    assert task.derived_names == ("nino34_3month",)
    assert hash(task) == hash(dataclasses.replace(task))
    plain = _task()
    assert plain.reach_offsets == plain.window_offsets


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (dict(running_mean=2), ValueError, "odd int"),
        (dict(running_mean=0), ValueError, "odd int"),
        (dict(variable="temperature"), ValueError, "is a upper_air variable"),
        (dict(variable="ssta"), ValueError, "the schema calls it"),
        (dict(base_period="1981"), ValueError, r"base_period must be \(first, last\)"),
        (dict(box="nino34"), TypeError, "regions.Box"),
        (dict(name=""), ValueError, "needs a name"),
    ],
)
def test_invalid_derived_targets_raise_clear_errors(kw, error, match):
    base = dict(name="n", variable="sea_surface_temperature_anomaly", box=regions.NINO34)
    with pytest.raises(error, match=match):
        tasks.DerivedTarget(**(base | kw))


def test_targets_may_be_all_derived_but_not_absent():
    nino = tasks.DerivedTarget.nino34_3month()
    with pytest.raises(ValueError, match="target_variables is empty"):
        _task(target_variables=())
    with pytest.raises(ValueError, match="duplicate names"):
        _task(target_variables=(), derived_targets=(nino, nino))
    with pytest.raises(TypeError, match="DerivedTarget specs"):
        _task(derived_targets=("nino34_3month",))
    assert _task(target_variables=(), derived_targets=(nino,)).target_variables == ()
