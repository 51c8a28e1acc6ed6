"""`tellus data profiles sample|ingest`: tables whose rows are the store's values at the
stated coverage, a withheld split by whole profile, a user's table checked against a grid;
bad options and rows refused in one line with exit status 2."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from tellus.data import profile_io
from tellus.pipelines.cli import app

THETA = "sea_water_potential_temperature"
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """8 x 12 cells, 4 levels, land in the 2 x 3 corner; value = 10 t + k + j/10 + i/100
    (deg C), so each row names its cell."""
    ny, nx, nz, nt = 8, 12, 4, 3
    depth = np.array([5.0, 50.0, 500.0, 2500.0])
    mask = np.ones((nz, ny, nx))
    mask[:, :2, :3] = 0.0
    t, k, j, i = np.meshgrid(
        np.arange(nt), np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij"
    )
    v = np.where(mask[None] > 0, 10.0 * t + k + j / 10 + i / 100, np.nan).astype("float32")
    ds = xr.Dataset(
        {
            THETA: (("time", "depth", "latitude", "longitude"), v, {"units": "degC"}),
            "ocean_mask": (
                ("depth", "latitude", "longitude"),
                mask.astype("float32"),
                {"units": "1"},
            ),
        },
        coords={
            "time": pd.date_range("2001-01-01", periods=nt, freq="MS"),
            "depth": ("depth", depth, {"units": "m", "positive": "down"}),
            "latitude": ("latitude", -70.0 + 20.0 * np.arange(ny), {"units": "degrees_north"}),
            "longitude": ("longitude", 15.0 + 30.0 * np.arange(nx), {"units": "degrees_east"}),
        },
    )
    path = tmp_path_factory.mktemp("profiles") / "ocean.zarr"
    ds.to_zarr(path, consolidated=True)
    return path


def refused(args, *expected):
    result = runner.invoke(app, [str(a) for a in args])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (args, result.exit_code, result.output)
    assert len(lines) == 1, (args, result.stderr)
    for text in expected:
        assert text in lines[0], (args, text, lines[0])


def test_sample_writes_the_stores_values_split_by_profile(store, tmp_path):
    out, held = tmp_path / "guidance.csv", tmp_path / "withheld.nc"
    args = ["data", "profiles", "sample", store, "--out", out, "--withheld-out", held]
    args += ["--coverage", "0.25", "--withheld", "0.5", "--times", "2001-02:2001-03"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    guidance, withheld = profile_io.read_table(out), profile_io.read_table(held)
    both = pd.concat([guidance, withheld])
    # Only the months asked for; no profile in both tables.
    assert set(pd.DatetimeIndex(both["time"]).month) == {2, 3}
    assert not set(guidance["profile"]) & set(withheld["profile"])
    # Profiles stop at the deepest level not below 2000 m (500 m here): 3 levels each.
    assert set(both.groupby("profile").size()) == {3}
    assert both["depth"].max() == 500.0
    # The value of each row is the store's value at its cell.
    j = np.rint((both["latitude"] + 70.0) / 20.0)
    i = np.rint((both["longitude"] - 15.0) / 30.0)
    k = np.searchsorted([5.0, 50.0, 500.0], both["depth"].to_numpy())
    t = pd.DatetimeIndex(both["time"]).month - 1
    np.testing.assert_allclose(both["value"], 10 * t + k + j / 10 + i / 100, atol=1e-5)
    # A quarter of the 3 sampled levels' 3 x 90 ocean points per month is 67.5: whole
    # profiles of 3 give 66 or 69, the first of the two (22 profiles); half of them withheld.
    per_month = both.groupby("time").size().to_numpy()
    np.testing.assert_array_equal(per_month, [66, 66])
    assert withheld.groupby("time")["profile"].nunique().tolist() == [11, 11]


def test_ingest_checks_a_table_against_the_grid(store, tmp_path):
    rows = pd.DataFrame(
        {
            "profile": [0, 0, 1],
            "time": pd.to_datetime(["2001-01-01"] * 3),
            "latitude": [10.0, 10.0, 30.0],
            "longitude": [200.0, 200.0, -20.0],
            "depth": [5.0, 50.0, 5.0],
            "value": [4.0, 3.0, 5.0],
            "variable": THETA,
        }
    )
    src, out = tmp_path / "mine.csv", tmp_path / "out.nc"
    rows.to_csv(src, index=False)
    result = runner.invoke(
        app, ["data", "profiles", "ingest", str(src), "--out", str(out), "--grid", str(store)]
    )
    assert result.exit_code == 0, result.output
    back = profile_io.read_table(out)
    np.testing.assert_allclose(back["value"], [4.0, 3.0, 5.0])
    np.testing.assert_allclose(back["longitude"], [200.0, 200.0, 340.0])  # wrapped to [0, 360)
    # A point in the land corner (row 0, column 0) is refused with its row named.
    land = rows.assign(latitude=-70.0, longitude=15.0)
    land.to_csv(src, index=False)
    refused(["data", "profiles", "ingest", src, "--out", out, "--grid", store], "land")


def test_bad_options(store, tmp_path):
    out = tmp_path / "t.csv"
    base = ["data", "profiles", "sample", store, "--out", out]
    refused([*base, "--coverage", "0"], "--coverage")
    refused([*base, "--withheld", "0.3"], "--withheld-out")
    refused([*base, "--variable", "sea_water_salinity"], "--variable", THETA)
    refused([*base, "--times", "1990-01:1990-12"], "--times", "2001-01-01")
    refused(["data", "profiles", "sample", store, "--out", tmp_path / "t.parquet"], "--out", ".csv")
    refused(["data", "profiles", "ingest", tmp_path / "none.csv", "--out", out], "SOURCE")
