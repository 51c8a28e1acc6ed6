import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.enso import forecast, train, world
from tellus.enso import model as model_lib


@pytest.fixture(scope="module")
def members():
    cfg = model_lib.preset("tiny", n_lat=8, n_lon=16, input_std=(0.7, 9.0), target_std=0.8)
    return [model_lib.make_model(dict(cfg.to_dict(), seed=s)) for s in (0, 1)]


def _maps(n_real: int = 2, n_time: int = 5) -> xr.Dataset:
    rng = np.random.default_rng(0)
    dims = (world.REALIZATION, "time", "latitude", "longitude")
    shape = (n_real, n_time, 8, 16)
    return xr.Dataset(
        {v: (dims, rng.normal(size=shape).astype(np.float32)) for v in forecast.INPUTS},
        coords={
            "time": pd.date_range("1990-08", periods=n_time, freq="MS"),
            world.REALIZATION: np.arange(n_real),
        },
    )


def test_realizations_and_members_are_each_forecast_and_averaged(members):
    ds = _maps()
    out = forecast.Predictor(members).forecast(ds, init_time=["1990-10", "1990-12"])
    assert out[forecast.NINO34].dims == (world.REALIZATION, forecast.INIT_TIME, forecast.LEAD)
    assert out[forecast.MEMBERS].dims == ("member", *out[forecast.NINO34].dims)
    for r in range(2):
        x = np.stack(
            [
                np.stack([ds[v].values[r, t - 2 : t + 1] for v in forecast.INPUTS], axis=1)
                for t in (2, 4)
            ]
        )
        y = train.predict(members, x, np.array([10, 12]))
        np.testing.assert_allclose(out[forecast.NINO34].values[r], y, rtol=1e-5, atol=1e-6)
        one = train.predict(members[1:], x, np.array([10, 12]))
        np.testing.assert_allclose(out[forecast.MEMBERS].values[1, r], one, rtol=1e-5, atol=1e-6)
    assert str(out[forecast.VALID_TIME].values[1, 0])[:7] == "1991-01"  # 1990-12 + 1 month


def test_inputs_it_cannot_read_are_refused(members):
    model = forecast.Predictor(members)
    ds = _maps(n_time=4).isel({world.REALIZATION: 0}, drop=True)
    with pytest.raises(ValueError, match="grid"):
        model.forecast(ds.isel(longitude=slice(0, 8)))
    with pytest.raises(KeyError, match="lacks"):
        model.forecast(ds.drop_vars(world.HEAT))
    gap = ds.isel(time=[0, 2, 3])  # 1990-08, 1990-10, 1990-11
    with pytest.raises(ValueError, match=r"needs the 2 months before it \(1990-09, 1990-10\)"):
        model.forecast(gap)
    six_hourly = ds.assign_coords(time=pd.date_range("1990-08", periods=4, freq="6h"))
    with pytest.raises(ValueError, match="monthly"):
        model.forecast(six_hourly)
