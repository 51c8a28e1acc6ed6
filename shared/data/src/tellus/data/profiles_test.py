"""Tests of Argo-like sampling and the guidance/check split, on small stores made here whose
ocean points can be counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import profiles
from tellus.data.errors import SchemaError

THETA = "sea_water_potential_temperature"
DEPTHS = np.array([5.0, 50.0, 500.0, 1500.0, 2500.0, 4000.0])  # the 2 000 m level is index 3


def _store(*, shelf: bool = False, n_time: int = 3, depth=DEPTHS) -> xr.Dataset:
    """12 x 16 cells, land in columns 0-3 of rows 0-2 (12 cells); with ``shelf`` the cells of
    rows 9-11 are land below the second level (a shelf 50 m deep)."""
    ny, nx, nz = 12, 16, len(depth)
    mask = np.ones((nz, ny, nx))
    mask[:, :3, :4] = 0.0
    if shelf:
        mask[2:, 9:, :] = 0.0
    time = pd.date_range("2000-01-01", periods=n_time, freq="MS")
    lat = -55.0 + 10.0 * np.arange(ny)
    lon = 11.25 + 22.5 * np.arange(nx)
    # value = 1000 t + 100 k + j + i / 100: each cell's value names its cell.
    t, k, j, i = np.meshgrid(
        np.arange(n_time), np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij"
    )
    v = (1000.0 * t + 100.0 * k + j + i / 100.0) * 1e-3  # plausible degC
    v = np.where(mask[None] > 0, v, np.nan)
    return xr.Dataset(
        {
            THETA: (("time", "depth", "latitude", "longitude"), v, {"units": "degC"}),
            "ocean_mask": (("depth", "latitude", "longitude"), mask),
        },
        coords={"time": time, "depth": depth, "latitude": lat, "longitude": lon},
    )


def test_bottom_level_is_the_deepest_level_not_below_max_depth():
    assert profiles.bottom_level(DEPTHS, 2000.0) == 3
    assert profiles.bottom_level(DEPTHS, 1500.0) == 3  # a level at exactly max_depth counts
    assert profiles.bottom_level(DEPTHS[:3], 2000.0) == 2  # a shallow grid: its deepest
    assert profiles.bottom_level(DEPTHS, 1.0) == 0


def test_flat_bottom_coverage_is_exact_in_whole_profiles():
    ds = _store()
    # 192 - 12 = 180 ocean columns x 4 levels to 2 000 m = 720 points; 5 % = 36 = 9 profiles.
    table = profiles.sample_profiles(ds, THETA, 0.05, seed=0)
    for _, group in table.groupby("time"):
        assert group.profile.nunique() == 9
        assert len(group) == 36
        assert (group.groupby("profile").size() == 4).all()  # whole profiles to 2 000 m
    assert table.depth.max() == 1500.0
    assert table.attrs["achieved_coverage"] == [0.05, 0.05, 0.05]
    assert table.profile.nunique() == 27  # ids unique over the times


def test_values_positions_and_indices_are_the_stores():
    ds = _store()
    table = profiles.sample_profiles(ds, THETA, 0.1, seed=3)
    assert list(table.columns[:7]) == list(profiles.COLUMNS)
    for r in table.sample(20, random_state=0).itertuples():
        cell = ds[THETA].isel(
            time=r.time_index, depth=r.depth_index, latitude=r.lat_index, longitude=r.lon_index
        )
        assert r.value == pytest.approx(float(cell))
        # the value encodes its cell (see _store)
        assert r.value * 1e3 == pytest.approx(
            1000 * r.time_index + 100 * r.depth_index + r.lat_index + r.lon_index / 100
        )
        assert r.latitude == float(cell.latitude) and r.depth == float(cell.depth)
        assert not (r.lat_index < 3 and r.lon_index < 4)  # never on land


def test_coverage_counts_only_ocean_points_down_to_the_profile_bottom():
    ds = _store(shelf=True)
    # Levels 0-1: 180 ocean cells each; levels 2-3: 180 - 3 * 16 = 132 each: 624 points.
    # Shelf columns give 2-point profiles, the others 4-point ones.
    for coverage in (0.01, 0.025, 0.05, 0.075, 0.1):
        table = profiles.sample_profiles(ds, THETA, coverage, seed=1, times=ds.time[:1].values)
        n = len(table)
        assert abs(n - coverage * 624) <= 2  # within half the longest profile (4 levels)
        assert table.attrs["achieved_coverage"][0] == pytest.approx(n / 624)
        sizes = table.groupby("profile").size()
        lat_index = table.groupby("profile").lat_index.first()
        assert (sizes[lat_index >= 9] == 2).all() and (sizes[lat_index < 9] == 4).all()


def test_shallow_grid_profiles_reach_its_deepest_level_and_times_select():
    ds = _store(depth=DEPTHS[:3])
    table = profiles.sample_profiles(ds, THETA, 0.05, seed=0, times=ds.time.values[1:])
    assert table.depth.max() == 500.0
    assert set(table.time_index) == {1, 2}  # indices into the whole store's times
    assert (table.groupby("profile").size() == 3).all()


def test_same_seed_same_table_other_seed_other_columns():
    ds = _store()
    a = profiles.sample_profiles(ds, THETA, 0.05, seed=7)
    b = profiles.sample_profiles(ds, THETA, 0.05, seed=7)
    c = profiles.sample_profiles(ds, THETA, 0.05, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a[["lat_index", "lon_index"]].equals(c[["lat_index", "lon_index"]])


def test_split_is_by_whole_profile_and_per_time():
    ds = _store()
    table = profiles.sample_profiles(ds, THETA, 0.1, seed=2)  # 18 profiles a time
    guidance, withheld = profiles.split(table, 0.5, seed=0)
    assert len(guidance) + len(withheld) == len(table)
    assert not set(guidance.profile) & set(withheld.profile)
    for _, group in withheld.groupby("time"):
        assert group.profile.nunique() == 9
    _, w2 = profiles.split(table, 0.5, seed=0)
    pd.testing.assert_frame_equal(withheld, w2)
    assert profiles.split(table, 0.0, seed=0)[1].empty


def test_validate_table_names_the_bad_row_and_wraps_longitude():
    table = pd.DataFrame(
        {
            "profile": [0, 0],
            "time": ["2000-01-15", "2000-01-15"],
            "latitude": [10.0, 10.0],
            "longitude": [-0.5, -0.5],
            "depth": [10.0, -3.0],
            "value": [20.0, 19.0],
            "variable": ["thetao", "thetao"],
        }
    )
    with pytest.raises(SchemaError, match=r"row 1 has an invalid depth.*lat 10, lon 359.5"):
        profiles.validate_table(table)
    ok = profiles.validate_table(table.iloc[:1])
    assert ok.longitude.iloc[0] == 359.5 and ok.variable.iloc[0] == THETA
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['value'\]"):
        profiles.validate_table(table.drop(columns="value"))
