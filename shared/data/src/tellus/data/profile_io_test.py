"""Tests of reading tables (CSV, NetCDF) and Argo profile files written here with netCDF4.

Depths are checked against the UNESCO 1983 formula (Fofonoff & Millard, its check value
9 712.653 m at 10 000 dbar and 30 deg), written out below, not against gsw.
"""

from __future__ import annotations

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import profile_io, profiles
from tellus.data.errors import SchemaError

THETA = "sea_water_potential_temperature"


def unesco_depth(p, lat):
    """Depth (m) at pressure ``p`` (dbar) and latitude (deg), UNESCO 1983 (EOS-80)."""
    x = np.sin(np.radians(lat)) ** 2
    g = 9.780318 * (1.0 + (5.2788e-3 + 2.36e-5 * x) * x) + 1.092e-6 * p
    return ((((-1.82e-15 * p + 2.279e-10) * p - 2.2512e-5) * p + 9.72659) * p) / g


def test_unesco_reference_meets_its_check_value():
    assert unesco_depth(10000.0, 30.0) == pytest.approx(9712.653, abs=1e-3)


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "profile": [4, 4, 9],
            "time": pd.to_datetime(["2001-03-04T06:00", "2001-03-04T06:00", "2001-03-09T00:00"]),
            "latitude": [10.0, 10.0, -20.5],
            "longitude": [200.0, 200.0, 0.5],
            "depth": [5.0, 100.0, 10.0],
            "value": [25.0, 18.0, 22.5],
            "variable": [THETA] * 3,
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".nc"])
def test_write_then_read_gives_the_table_back(tmp_path, suffix):
    path = tmp_path / f"obs{suffix}"
    profile_io.write_table(_table(), path)
    back = profile_io.read_table(path)
    pd.testing.assert_frame_equal(back, profiles.validate_table(_table()))


def test_csv_without_profile_or_variable_columns(tmp_path):
    path = tmp_path / "obs.csv"
    _table().drop(columns=["profile", "variable"]).to_csv(path, index=False)
    with pytest.raises(SchemaError, match="missing column 'variable'; pass variable="):
        profile_io.read_table(path)
    back = profile_io.read_table(path, variable="thetao")
    assert list(back.profile) == [0, 0, 1]  # one profile per (time, lat, lon)
    assert set(back.variable) == {THETA}


def test_missing_column_and_units(tmp_path):
    path = tmp_path / "obs.csv"
    _table().drop(columns="depth").to_csv(path, index=False)
    with pytest.raises(SchemaError, match=r"obs.csv: missing column\(s\) \['depth'\]"):
        profile_io.read_table(path)
    kelvin = _table().assign(value=_table().value + 273.15, units="K")
    kelvin.to_csv(path, index=False)
    np.testing.assert_allclose(profile_io.read_table(path).value, _table().value)
    _table().assign(units="m s-1").to_csv(path, index=False)
    with pytest.raises(SchemaError, match="value units 'm s-1' are not 'degC'"):
        profile_io.read_table(path)


def test_netcdf_depth_in_dbar_is_refused(tmp_path):
    path = tmp_path / "obs.nc"
    profile_io.write_table(_table(), path)
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds.depth.attrs["units"] = "dbar"
    ds.to_netcdf(tmp_path / "dbar.nc")
    with pytest.raises(SchemaError, match="'depth' has units 'dbar', a pressure"):
        profile_io.read_table(tmp_path / "dbar.nc")


FILL = 99999.0


def _write_argo(path, *, with_psal=True):
    """Three profiles of four levels:

    0: delayed mode; adjusted = raw - 1 degC; level 3's adjusted TEMP flagged '4';
    1: real time (adjusted all fill); level 2's TEMP flagged '3', level 1's PRES '2';
    2: POSITION_QC '4': dropped whole.
    """
    n_prof, n_lev = 3, 4
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("N_PROF", n_prof)
        nc.createDimension("N_LEVELS", n_lev)
        nc.createDimension("STRING8", 8)

        def var(name, dims, data, dtype="f8", **attrs):
            v = nc.createVariable(name, dtype, dims, fill_value=FILL if dtype == "f8" else None)
            v.setncatts(attrs)
            v[:] = data

        def flags(name, rows):
            v = nc.createVariable(
                name, "S1", ("N_PROF", "N_LEVELS") if rows.ndim > 1 else ("N_PROF",)
            )
            v[:] = rows

        var(
            "JULD",
            ("N_PROF",),
            [18262.5, 18263.0, 18264.0],
            units="days since 1950-01-01 00:00:00 UTC",
        )
        var("LATITUDE", ("N_PROF",), [45.0, 0.0, 10.0], units="degree_north")
        var("LONGITUDE", ("N_PROF",), [-30.0, 179.5, 20.0], units="degree_east")
        pres = np.array([[0.0, 500.0, 1000.0, 2000.0]] * 3)
        temp = np.array([[11.0, 9.0, 6.0, 4.0], [28.0, 8.0, 5.0, 3.0], [20.0, 10.0, 5.0, 2.0]])
        var("PRES", ("N_PROF", "N_LEVELS"), pres, units="decibar")
        var("PRES_ADJUSTED", ("N_PROF", "N_LEVELS"), np.where([[1], [0], [0]], pres, FILL))
        var("TEMP", ("N_PROF", "N_LEVELS"), temp, units="degree_Celsius")
        var("TEMP_ADJUSTED", ("N_PROF", "N_LEVELS"), np.where([[1], [0], [0]], temp - 1.0, FILL))
        if with_psal:
            var("PSAL", ("N_PROF", "N_LEVELS"), np.full((3, 4), 35.0))
            var("PSAL_ADJUSTED", ("N_PROF", "N_LEVELS"), np.where([[1], [0], [0]], 35.0, FILL))
        good = np.full((3, 4), b"1")
        temp_adj_qc = good.copy()
        temp_adj_qc[0, 3] = b"4"
        temp_qc = good.copy()
        temp_qc[1, 2] = b"3"
        pres_qc = good.copy()
        pres_qc[1, 1] = b"2"
        flags("PRES_QC", pres_qc)
        flags("PRES_ADJUSTED_QC", good)
        flags("TEMP_QC", temp_qc)
        flags("TEMP_ADJUSTED_QC", temp_adj_qc)
        if with_psal:
            flags("PSAL_QC", good)
            flags("PSAL_ADJUSTED_QC", good)
        flags("JULD_QC", np.array([b"1", b"1", b"1"]))
        flags("POSITION_QC", np.array([b"1", b"2", b"4"]))
        flags("DATA_MODE", np.array([b"D", b"R", b"R"]))
        v = nc.createVariable("PLATFORM_NUMBER", "S1", ("N_PROF", "STRING8"))
        v[:] = np.array([list("6901234 "), list("5904321 "), list("1111111 ")], dtype="S1")


def test_argo_adjusted_values_qc_and_depth(tmp_path):
    path = tmp_path / "argo.nc"
    _write_argo(path)
    t = profile_io.read_argo(path, potential=False)
    # Profile 0: adjusted values (raw - 1), level 3 dropped by its adjusted flag '4';
    # profile 1: raw values, level 2 dropped ('3'), level 1 kept (PRES '2'); profile 2 gone.
    assert list(t.profile) == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(t.value, [10.0, 8.0, 5.0, 28.0, 8.0, 3.0])
    assert list(t.platform) == ["6901234"] * 3 + ["5904321"] * 3
    assert t.time.iloc[0] == pd.Timestamp("2000-01-01T12:00")  # 18 262.5 days after 1950
    assert t.longitude.iloc[0] == 330.0
    expected = unesco_depth(np.array([0.0, 500.0, 1000.0, 0.0, 500.0, 2000.0]), t.latitude)
    np.testing.assert_allclose(t.depth, expected, atol=0.1)
    assert t.depth.iloc[2] == pytest.approx(989.5, abs=0.05)  # 1 000 dbar at 45 N
    assert t.attrs["dropped"]["profiles: POSITION_QC not 1 or 2"] == 1
    assert t.attrs["dropped"]["levels: PRES or value flag not 1 or 2, or missing"] == 2


def test_argo_potential_temperature(tmp_path):
    path = tmp_path / "argo.nc"
    _write_argo(path)
    insitu = profile_io.read_argo(path, potential=False)
    theta = profile_io.read_argo(path)
    diff = (theta.value - insitu.value).to_numpy()
    # At the surface potential = in situ; below, cooler by the adiabatic heating, about
    # 0.1 degC per 1 000 dbar at these temperatures (0.04-0.25 degC over 500-2 000 dbar).
    surface = (insitu.depth == 0.0).to_numpy()
    np.testing.assert_allclose(diff[surface], 0.0, atol=1e-6)
    assert np.all(diff[~surface] < -0.02) and np.all(diff[~surface] > -0.3)
    salinity = profile_io.read_argo(path, variable="sea_water_salinity")
    assert np.all(salinity.value == 35.0)


def test_argo_errors(tmp_path):
    path = tmp_path / "table.nc"
    profile_io.write_table(_table(), path)
    with pytest.raises(SchemaError, match="not an Argo profile file: no variable 'JULD'"):
        profile_io.read_argo(path)
    with pytest.raises(SchemaError, match="reads"):
        profile_io.read_argo(path, variable="eastward_sea_water_velocity")
    argo = tmp_path / "no_psal.nc"
    _write_argo(argo, with_psal=False)
    with pytest.raises(SchemaError, match="potential temperature needs PSAL"):
        profile_io.read_argo(argo)
    assert len(profile_io.read_argo(argo, potential=False)) == 6


def test_is_argo_by_the_n_prof_dimension(tmp_path):
    _write_argo(tmp_path / "argo.nc")
    profile_io.write_table(_table(), tmp_path / "table.nc")
    profile_io.write_table(_table(), tmp_path / "table.csv")
    assert profile_io.is_argo(tmp_path / "argo.nc")
    assert not profile_io.is_argo(tmp_path / "table.nc")
    assert not profile_io.is_argo(tmp_path / "table.csv")
    assert not profile_io.is_argo(tmp_path / "missing.nc")
