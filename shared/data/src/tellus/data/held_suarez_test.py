"""Tests of the Held-Suarez dataset: physics a real atmosphere must show, schema, resumption.

One ``TINY`` build per module (T10, 40-day spin-up, 3 days of output; its build time is in
``docs/performance.md``) serves the physical checks, jets included; the resumption test builds
a short-spin-up variant twice, once killed half way, and compares bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

from tellus.data import constants, held_suarez, idealized_planet, schema, writing

TINY = held_suarez.TINY


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("held_suarez") / "atmosphere.zarr"
    return held_suarez.build(path, TINY, progress=False)


@pytest.fixture(scope="module")
def ds(store):
    with xr.open_zarr(store, consolidated=False) as ds:
        yield ds.load()


def global_mean(x: xr.DataArray) -> xr.DataArray:
    weights = np.cos(np.deg2rad(x[schema.LATITUDE]))
    return x.weighted(weights).mean([schema.LATITUDE, schema.LONGITUDE])


# --- Layout --------------------------------------------------------------------------------


def test_layout_follows_the_schema(ds):
    assert list(ds[schema.LEVEL].values) == list(schema.PRESSURE_LEVELS_13)
    assert ds[schema.LEVEL].attrs["units"] == "hPa"
    lat, lon = ds[schema.LATITUDE].values, ds[schema.LONGITUDE].values
    assert lat.shape == (TINY.n_lat,) and lon.shape == (TINY.n_lon,)
    assert np.all(np.diff(lat) > 0) and -90 < lat[0] and lat[-1] < 90  # no poles
    np.testing.assert_allclose(np.diff(lat), 180 / TINY.n_lat)
    np.testing.assert_allclose(lon, np.arange(TINY.n_lon) * 360 / TINY.n_lon)
    times = ds[schema.TIME].values
    assert len(times) == TINY.n_times == 12
    assert np.all(np.diff(times) == np.timedelta64(6, "h"))
    expected = {*held_suarez._DESCRIPTIONS}
    assert set(ds.data_vars) == expected
    for name, var in ds.data_vars.items():
        spec = schema.VARIABLES[name]
        assert var.dims == spec.dims, name
        assert var.attrs["units"] == spec.units, name
        assert var.attrs["long_name"] and var.attrs["description"], name
    assert "passive tracer" in ds.attrs["humidity"]
    assert ds.attrs["spinup_days"] == 40.0


def test_values_are_finite_and_plausible(ds):
    for name, var in ds.data_vars.items():
        values = var.values
        assert np.isfinite(values).all(), name
        lo, hi = schema.VARIABLES[name].plausible
        assert lo <= values.min() and values.max() <= hi, (name, values.min(), values.max())


# --- Physics -------------------------------------------------------------------------------


def test_temperature_falls_with_height_in_the_troposphere(ds):
    t = global_mean(ds.temperature.mean(schema.TIME))
    assert t.sel(level=850) > t.sel(level=500) > t.sel(level=250)
    # Held-Suarez radiative equilibrium: warm equator, cold poles at 850 hPa.
    t850 = ds.temperature.sel(level=850).mean([schema.TIME, schema.LONGITUDE])
    assert t850.sel(latitude=0, method="nearest") > t850.isel(latitude=0) + 25


def test_geopotential_increases_with_height_everywhere(ds):
    z = ds.geopotential.transpose(schema.LEVEL, ...).values  # level: 50 ... 1000 hPa
    assert np.all(np.diff(z, axis=0) < 0)


def test_thickness_is_hypsometric(ds):
    """z(500) - z(1000) = R <T> ln 2, with <T> the mean temperature of the layer."""
    z = ds.geopotential
    thickness = z.sel(level=500) - z.sel(level=1000)
    t = ds.temperature.sel(level=[500, 600, 700, 850, 925, 1000])
    log_p = np.log(t[schema.LEVEL].values)
    # Mean temperature in ln p by the trapezoid rule over the available levels.
    weights = np.zeros(len(log_p))
    steps = np.diff(log_p)
    weights[:-1] += steps / 2
    weights[1:] += steps / 2
    mean_t = (t * xr.DataArray(weights, dims=schema.LEVEL)).sum(schema.LEVEL) / np.log(2)
    np.testing.assert_allclose(
        thickness, constants.DRY_AIR_GAS_CONSTANT * mean_t * np.log(2), rtol=5e-3
    )


def test_sea_level_pressure_is_hypsometric(ds):
    """ln(p_msl / p_s) = phi_s / (R T_mean), T_mean halfway down the reduction column."""
    phi_s = ds.geopotential_at_surface
    t_surface = ds["2m_temperature"] + constants.STANDARD_LAPSE_RATE * 2.0
    t_mean = t_surface + constants.STANDARD_LAPSE_RATE * phi_s / constants.GRAVITY / 2
    expected = phi_s / (constants.DRY_AIR_GAS_CONSTANT * t_mean)
    actual = np.log(ds.mean_sea_level_pressure / ds.surface_pressure)
    np.testing.assert_allclose(
        actual.values, expected.transpose(*actual.dims).values, rtol=1e-4, atol=2e-6
    )
    # The mountains stand out in surface pressure and vanish from sea-level pressure.
    high = phi_s > 0.5 * float(phi_s.max())
    ps, msl = ds.surface_pressure.mean(schema.TIME), ds.mean_sea_level_pressure.mean(schema.TIME)
    assert float(ps.where(high).max()) < float(ps.where(~high).mean()) - 3000
    assert abs(float(msl.where(high).mean()) - float(msl.where(~high).mean())) < 1500


def test_midlatitude_westerly_jets(ds):
    """Zonal-mean u at 250 hPa peaks in midlatitudes of each hemisphere, westerly."""
    u = ds.u_component_of_wind.sel(level=250).mean([schema.TIME, schema.LONGITUDE])
    for hemisphere in (u.where(u.latitude < 0, drop=True), u.where(u.latitude > 0, drop=True)):
        peak = hemisphere.idxmax(schema.LATITUDE)
        assert 25 <= abs(float(peak)) <= 55, float(peak)
        assert float(hemisphere.max()) > 10.0
    # Easterlies (or weak winds) at the surface in the tropics: the trade winds.
    u10 = ds["10m_u_component_of_wind"].mean([schema.TIME, schema.LONGITUDE])
    assert float(u10.sel(latitude=slice(-15, 15)).mean()) < 0.5


def test_humidity_is_bounded_by_saturation(ds):
    q = ds.specific_humidity
    assert float(q.min()) >= 0
    p = ds[schema.LEVEL] * 100.0
    q_sat = idealized_planet.saturation_specific_humidity(
        ds.temperature.values, p.values[:, None, None]
    )
    relative = q / np.asarray(q_sat)
    above_ground = p < ds.surface_pressure
    assert float(relative.where(above_ground).max()) < 1.1
    # Moist low levels, dry aloft, as the Manabe-Wetherald profile it relaxes to.
    mean_q = global_mean(q.mean(schema.TIME))
    assert mean_q.sel(level=1000) > 5 * mean_q.sel(level=500) > 5 * mean_q.sel(level=250)
    assert 0.4 < float(global_mean(relative.sel(level=850).mean(schema.TIME))) < 0.9


def test_idealized_surface(ds):
    mask = ds.land_sea_mask.values
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert 0.15 < mask.mean() < 0.5
    soil = ds.soil_type.values
    assert np.all((soil == 0) == (mask == 0))
    z_s = ds.geopotential_at_surface
    assert 0.4 * TINY.max_orography_m < float(z_s.max()) / constants.GRAVITY
    assert float(z_s.max()) / constants.GRAVITY < 1.2 * TINY.max_orography_m


# --- Building ------------------------------------------------------------------------------


def test_presets():
    default = held_suarez.DEFAULT
    assert default.truncation <= 42 and default.spinup_days >= 150
    assert default.output_days >= 365 and default.output_interval_hours <= 6
    assert (default.n_lat, default.n_lon) == (32, 64)
    assert default.n_times == 1460 and default.steps_per_sample == 12
    assert held_suarez.PRESETS["tiny"] is TINY
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.layers = 3  # type: ignore[misc]


class Interrupted(Exception):
    pass


def test_resume_after_a_kill_is_bitwise_identical(tmp_path, monkeypatch):
    # TINY with a one-chunk spin-up: the same compiled model, a fraction of the run time.
    config = dataclasses.replace(TINY, name="tiny-resume", spinup_days=1.0)
    reference = held_suarez.build(tmp_path / "reference.zarr", config, progress=False)
    path = tmp_path / "atmosphere.zarr"
    real_write = writing.write_chunk

    def write_then_die(p, index, ds):
        real_write(p, index, ds)
        if index == 1:
            raise Interrupted

    monkeypatch.setattr(writing, "write_chunk", write_then_die)
    with pytest.raises(Interrupted):
        held_suarez.build(path, config, progress=False)
    assert writing.completed_chunks(path) == {0, 1}
    monkeypatch.setattr(writing, "write_chunk", real_write)

    # The rerun starts from the saved state of chunk 2: one model segment, no spin-up.
    calls = []
    real_advance = held_suarez.Simulator.advance
    monkeypatch.setattr(
        held_suarez.Simulator,
        "advance",
        lambda self, state: calls.append(1) or real_advance(self, state),
    )
    held_suarez.build(path, config, progress=False)
    assert len(calls) == config.n_chunks - 2

    with (
        xr.open_zarr(path, consolidated=False) as resumed,
        xr.open_zarr(reference, consolidated=False) as expected,
    ):
        for name in expected.data_vars:
            np.testing.assert_array_equal(resumed[name].values, expected[name].values, name)

    # A complete store is returned as it is, without running the model.
    calls.clear()
    assert held_suarez.build(path, config, progress=False) == path
    assert not calls


def test_refuses_a_store_of_another_configuration(store):
    with pytest.raises(ValueError, match="another configuration"):
        held_suarez.build(store, dataclasses.replace(TINY, seed=1), progress=False)
