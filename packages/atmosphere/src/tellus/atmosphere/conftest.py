"""Fixtures of the atmosphere tests: a small schema store with every Pangu variable."""

from __future__ import annotations

import pandas as pd
import pytest

from tellus.atmosphere import forecaster as fc
from tellus.data import mock, schema

N_LAT, N_LON = 16, 32


@pytest.fixture(scope="session")
def pangu_store(tmp_path_factory) -> str:
    """Ten days, six-hourly, 13 levels, 16 x 32: the variables, levels and statics of
    Pangu-Weather, with statistics written beside the store."""
    path = str(tmp_path_factory.mktemp("atmos") / "mock.zarr")
    ds = mock.mock_era5(
        times=pd.date_range("2000-01-01", periods=40, freq="6h"),
        levels=schema.PRESSURE_LEVELS_13,
        n_lat=N_LAT,
        n_lon=N_LON,
        upper_air=fc.UPPER_VARIABLES,
        surface=fc.SURFACE_VARIABLES,
        static=fc.STATIC_VARIABLES,
        noise=0.02,
    )
    # The mock's seasonal wave is additive; keep humidity physical.
    ds["specific_humidity"] = ds["specific_humidity"].clip(0.0, 0.02)
    return mock.write_store(ds, path, step="6h")
