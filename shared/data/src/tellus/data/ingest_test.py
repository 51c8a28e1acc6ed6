"""Tests of ingest on real ERA5 GRIB samples and on aliased NetCDF / Zarr written from mocks.

Values in the store are checked against eccodes reading the same GRIB message directly (not
through cfgrib or xarray), and against the mock dataset the foreign files were made from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import eccodes
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tellus.data import ingest as ingest_module
from tellus.data import mock
from tellus.data.errors import IngestError, SchemaError
from tellus.data.ingest import ingest

# shared/data/src/tellus/data/ingest_test.py -> repo root is parents[5].
SAMPLES = Path(__file__).resolve().parents[5] / ".." / "shared" / "data" / "era5-samples"
requires_samples = pytest.mark.skipif(
    not (SAMPLES / "era5-levels-members.grib").exists(),
    reason=f"ERA5 GRIB samples not found at {SAMPLES} (../shared/data/era5-samples from the "
    "repo root)",
)


def _raw_value(path: Path, lat: float, lon: float, **keys) -> np.float32:
    """The value at (lat, lon) of the one GRIB message matching ``keys``, read with eccodes.

    Rounded to float32, the dtype GRIB fields are stored in (cfgrib's default); NaN where the
    message's bitmap marks the point missing (eccodes then returns ``missingValue``).
    """
    found = []
    with open(path, "rb") as f:
        while (handle := eccodes.codes_grib_new_from_file(f)) is not None:
            try:
                if all(eccodes.codes_get(handle, k) == v for k, v in keys.items()):
                    lats = eccodes.codes_get_array(handle, "latitudes")
                    lons = eccodes.codes_get_array(handle, "longitudes")
                    hit = np.flatnonzero((lats == lat) & (np.mod(lons - lon, 360.0) == 0.0))
                    value = float(eccodes.codes_get_values(handle)[hit[0]])
                    if eccodes.codes_get(handle, "bitmapPresent") and value == eccodes.codes_get(
                        handle, "missingValue"
                    ):
                        value = np.nan
                    found.append(value)
            finally:
                eccodes.codes_release(handle)
    assert len(found) == 1, f"{len(found)} messages match {keys}"
    return np.float32(found[0])


def _write_grib(path: Path, messages) -> None:
    """Writes eccodes handles to ``path`` and releases them."""
    with open(path, "wb") as f:
        for handle in messages:
            eccodes.codes_write(handle, f)
            eccodes.codes_release(handle)


def _first_message(path: Path, **keys):
    """A handle on the first message of ``path`` matching ``keys`` (caller releases it)."""
    with open(path, "rb") as f:
        while (handle := eccodes.codes_grib_new_from_file(f)) is not None:
            if all(eccodes.codes_get(handle, k) == v for k, v in keys.items()):
                return handle
            eccodes.codes_release(handle)
    raise AssertionError(f"no message matches {keys}")


@requires_samples
def test_ensemble_pressure_levels(tmp_path):
    path = SAMPLES / "era5-levels-members.grib"
    ds = ingest([path], tmp_path / "members.zarr", progress=False)
    assert ds["geopotential"].dims == ("time", "realization", "level", "latitude", "longitude")
    assert ds["level"].values.tolist() == [500, 850]
    assert ds["realization"].values.tolist() == list(range(10))
    assert ds.sizes["latitude"] == 61 and ds.sizes["longitude"] == 120
    assert np.all(np.diff(ds["latitude"].values) > 0) and ds["latitude"].values[0] == -90.0
    assert ds["longitude"].values[0] == 0.0 and ds["longitude"].values[-1] == 357.0
    assert ds["geopotential"].attrs["units"] == "m2 s-2"
    assert ds["temperature"].attrs["units"] == "K"
    np.testing.assert_array_equal(
        ds["time"].values,
        np.array(
            ["2017-01-01T00", "2017-01-01T12", "2017-01-02T00", "2017-01-02T12"],
            dtype="datetime64[h]",
        ),
    )
    for lat, lon in [(45.0, 30.0), (-60.0, 357.0), (90.0, 0.0)]:
        got = ds["geopotential"].sel(
            time="2017-01-01T12", realization=3, level=500, latitude=lat, longitude=lon
        )
        raw = _raw_value(
            path, lat, lon, shortName="z", level=500, number=3, dataDate=20170101, dataTime=1200
        )
        assert float(got) == raw
    got = ds["temperature"].sel(
        time="2017-01-02T00", realization=9, level=850, latitude=-87.0, longitude=180.0
    )
    assert float(got) == _raw_value(
        path, -87.0, 180.0, shortName="t", level=850, number=9, dataDate=20170102, dataTime=0
    )
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert ds.attrs["source_files"] == [str(path.resolve())]
    assert "tellus.data.ingest" in ds.attrs["history"]
    assert not any(k.startswith("GRIB_") for k in ds["geopotential"].attrs)


@requires_samples
def test_mean_sea_level_pressure_one_degree(tmp_path):
    path = SAMPLES / "regular_ll_msl.grib"
    ds = ingest([path], tmp_path / "msl.zarr", progress=False)
    msl = ds["mean_sea_level_pressure"]
    assert msl.dims == ("time", "latitude", "longitude")
    assert msl.shape == (1, 181, 360)
    assert msl.attrs["units"] == "Pa"
    for lat, lon in [(-30.0, 200.0), (89.0, 1.0), (0.0, 359.0)]:
        assert float(msl.sel(latitude=lat, longitude=lon).squeeze()) == _raw_value(path, lat, lon)


@requires_samples
def test_regional_box_across_greenwich(tmp_path):
    path = SAMPLES / "era5-single-level-scalar-time.grib"
    ds = ingest([path], tmp_path / "box.zarr", progress=False)
    t2m = ds["2m_temperature"]
    assert t2m.dims == ("time", "latitude", "longitude")
    assert t2m.shape == (1, 121, 201)
    lon = ds["longitude"].values
    assert lon[0] == 350.0 and lon[-1] == 40.0 and np.all((lon >= 0) & (lon < 360))
    # Contiguous west to east: every step is +0.25 deg modulo 360.
    np.testing.assert_allclose(np.mod(np.diff(lon), 360.0), 0.25)
    assert ds["latitude"].values[0] == 30.0 and ds["latitude"].values[-1] == 60.0
    assert ds.attrs["geospatial_lon_min"] == 350.0
    assert ds.attrs["geospatial_lon_max"] == 40.0
    assert ds.attrs["geospatial_lat_min"] == 30.0
    assert ds.attrs["geospatial_lat_max"] == 60.0
    assert t2m.attrs["units"] == "K"
    handle = _first_message(path)
    valid = pd.Timestamp(
        f"{eccodes.codes_get(handle, 'validityDate')}"
        f"T{eccodes.codes_get(handle, 'validityTime'):04d}"
    )
    eccodes.codes_release(handle)
    assert pd.Timestamp(ds["time"].values[0]) == valid
    for lat, lon_east, lon_raw in [(45.0, 355.0, -5.0), (30.0, 40.0, 40.0), (60.0, 350.0, -10.0)]:
        got = float(t2m.sel(latitude=lat, longitude=lon_east).squeeze())
        assert got == _raw_value(path, lat, lon_raw)


@requires_samples
def test_hpa_and_pa_levels_are_normalized_never_mixed(tmp_path):
    path = SAMPLES / "hpa_and_pa.grib"
    ds = ingest([path], tmp_path / "levels.zarr", progress=False)
    assert ds["level"].values.tolist() == [0.01, 0.1, 1.0]
    assert ds["level"].attrs["units"] == "hPa"
    t = ds["temperature"].isel(time=0)
    # 1 hPa is the isobaricInhPa message; 0.1 and 0.01 hPa are the 10 Pa and 1 Pa ones (the
    # 1 Pa message is all missing in its bitmap).
    for level, type_of_level, raw_level in [
        (1.0, "isobaricInhPa", 1),
        (0.1, "isobaricInPa", 10),
        (0.01, "isobaricInPa", 1),
    ]:
        for lat, lon in [(40.0, 25.0), (-90.0, 355.0)]:
            got = t.sel(level=level, latitude=lat, longitude=lon).values
            raw = _raw_value(path, lat, lon, typeOfLevel=type_of_level, level=raw_level)
            np.testing.assert_array_equal(got, raw)
    assert bool(t.sel(level=0.01).isnull().all())
    assert not bool(t.sel(level=[0.1, 1.0]).isnull().any())


@requires_samples
def test_corrupted_grib_is_an_error_and_leaves_nothing(tmp_path):
    store = tmp_path / "out" / "corrupt.zarr"
    with pytest.raises(
        IngestError,
        match=r"era5-levels-corrupted\.grib: GRIB message 1 .*"
        r"corrupt or truncated",
    ):
        ingest(
            [SAMPLES / "regular_ll_msl.grib", SAMPLES / "era5-levels-corrupted.grib"],
            store,
            progress=False,
        )
    assert not store.exists()
    assert not store.parent.exists() or list(store.parent.iterdir()) == []


@requires_samples
def test_truncated_copy_is_an_error(tmp_path):
    data = (SAMPLES / "regular_ll_msl.grib").read_bytes()
    truncated = tmp_path / "cut.grib"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match=r"cut\.grib: GRIB message 1 .*corrupt or truncated"):
        ingest([truncated], tmp_path / "cut.zarr", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.grib"]


@requires_samples
@pytest.mark.parametrize(("offset", "verdict"), [(0.0, "identical"), (1.0, "conflicting")])
def test_level_given_in_hpa_and_in_pa_is_a_duplicate(tmp_path, offset, verdict):
    # GRIB 1 keeps hPa (type 100) and Pa (type 210) levels apart: 500 hPa == 50000 Pa.
    z500 = _first_message(SAMPLES / "era5-levels-members.grib", shortName="z", level=500)
    in_pa = eccodes.codes_clone(z500)
    eccodes.codes_set(in_pa, "indicatorOfTypeOfLevel", 210)
    eccodes.codes_set(in_pa, "level", 50000)
    eccodes.codes_set_values(in_pa, eccodes.codes_get_values(in_pa) + offset)
    assert eccodes.codes_get(in_pa, "typeOfLevel") == "isobaricInPa"
    path = tmp_path / "dup.grib"
    _write_grib(path, [z500, in_pa])
    with pytest.raises(
        IngestError,
        match=rf"'geopotential' appears twice.*isobaricInhPa.*"
        rf"isobaricInPa.*level=\[500\] \({verdict} values\)",
    ):
        ingest([path], tmp_path / "dup.zarr", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup.grib"]


@requires_samples
def test_duplicate_messages_cfgrib_would_drop_are_an_error(tmp_path):
    handle = _first_message(SAMPLES / "regular_ll_msl.grib")
    path = tmp_path / "twice.grib"
    _write_grib(path, [eccodes.codes_clone(handle), handle])
    with pytest.raises(IngestError, match=r"twice\.grib.*2 GRIB messages but cfgrib read only 1"):
        ingest([path], tmp_path / "twice.zarr", progress=False)


@requires_samples
def test_different_grids_name_both_files(tmp_path):
    with pytest.raises(
        IngestError,
        match=r"different grids: .*era5-levels-members\.grib.* has "
        r"61x120.*regular_ll_msl\.grib.* has 181x360",
    ):
        ingest(
            [SAMPLES / "era5-levels-members.grib", SAMPLES / "regular_ll_msl.grib"],
            tmp_path / "mixed.zarr",
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


@requires_samples
def test_no_index_file_next_to_the_grib(tmp_path):
    copy = tmp_path / "src" / "msl.grib"
    copy.parent.mkdir()
    shutil.copy(SAMPLES / "regular_ll_msl.grib", copy)
    ingest([copy], tmp_path / "msl.zarr", progress=False)
    assert [p.name for p in copy.parent.iterdir()] == ["msl.grib"]


def _aliased(truth: xr.Dataset) -> xr.Dataset:
    """``truth`` as a foreign file would hold it: short names, Pa, lat 90->-90, lon -180..180."""
    ds = truth.rename(
        latitude="lat",
        longitude="lon",
        level="plev",
        geopotential="z",
        temperature="t",
        mean_sea_level_pressure="msl",
        **{"2m_temperature": "t2m"},
    )
    ds = ds.assign_coords(plev=("plev", ds["plev"].values * 100.0, {"units": "Pa"}))
    ds = ds.isel(lat=slice(None, None, -1)).roll(lon=ds.sizes["lon"] // 2, roll_coords=True)
    ds = ds.assign_coords(lon=("lon", np.mod(ds["lon"].values + 180.0, 360.0) - 180.0))
    ds["msl"] = ds["msl"] / 100.0
    ds["msl"].attrs["units"] = "hPa"
    return ds


def _expected(truth: xr.Dataset, out: xr.Dataset) -> xr.Dataset:
    return truth[list(out.data_vars)]


def test_netcdf_with_aliases_matches_the_mock(tmp_path):
    truth = mock.mock_era5(n_lat=9, n_lon=12)
    path = tmp_path / "era5.nc"
    _aliased(truth).to_netcdf(path)
    out = ingest([path], tmp_path / "era5.zarr", progress=False)
    assert sorted(out.data_vars) == sorted(truth.data_vars)
    xr.testing.assert_allclose(out.load(), _expected(truth, out), rtol=1e-6)
    assert out["mean_sea_level_pressure"].attrs["units"] == "Pa"
    assert out["level"].values.tolist() == [500, 850]


def test_foreign_zarr_and_netcdf_merge_and_time_chunks(tmp_path):
    truth = mock.mock_era5(n_lat=9, n_lon=12)
    foreign = _aliased(truth).rename(time="valid_time")
    upper, surface = tmp_path / "upper.zarr", tmp_path / "surface.nc"
    foreign[["z", "t"]].to_zarr(upper, consolidated=False, zarr_format=2)
    foreign[["t2m", "msl", "land_sea_mask", "geopotential_at_surface"]].to_netcdf(surface)
    out = ingest([upper, surface], tmp_path / "merged.zarr", time_chunk=4, progress=False)
    xr.testing.assert_allclose(out.load(), _expected(truth, out), rtol=1e-6)
    stored = xr.open_zarr(tmp_path / "merged.zarr", consolidated=True, chunks=None)
    # One shard per write chunk of 4 steps, one inner chunk per time step.
    assert stored["geopotential"].encoding["shards"] == (4, 2, 9, 12)
    assert stored["geopotential"].encoding["chunks"] == (1, 2, 9, 12)
    assert stored["land_sea_mask"].encoding["chunks"] == (9, 12)


def test_files_split_by_time_are_concatenated(tmp_path):
    truth = mock.mock_era5(n_lat=5, n_lon=8, static=())
    paths = [tmp_path / "b.nc", tmp_path / "a.nc"]
    _aliased(truth).isel(time=slice(8, None)).to_netcdf(paths[0])
    _aliased(truth).isel(time=slice(0, 8)).to_netcdf(paths[1])
    out = ingest(paths, tmp_path / "all.zarr", progress=False)
    xr.testing.assert_allclose(out.load(), _expected(truth, out), rtol=1e-6)


def test_variables_on_different_times_are_an_error(tmp_path):
    truth = mock.mock_era5(n_lat=5, n_lon=8, static=())
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    truth[["geopotential"]].isel(time=slice(0, 4)).to_netcdf(a)
    truth[["temperature"]].isel(time=slice(4, 8)).to_netcdf(b)
    with pytest.raises(
        IngestError,
        match=r"'geopotential' \(from .*a\.nc\) and 'temperature' "
        r"\(from .*b\.nc\) have different 'time' coords",
    ):
        ingest([a, b], tmp_path / "out.zarr", progress=False)


def test_existing_store_needs_overwrite_and_survives_a_failed_write(tmp_path, monkeypatch):
    truth = mock.mock_era5(n_lat=5, n_lon=8, static=())
    src, store = tmp_path / "src.nc", tmp_path / "store.zarr"
    truth.to_netcdf(src)
    ingest([src], store, progress=False)
    with pytest.raises(IngestError, match=r"store.zarr already exists; pass overwrite=True"):
        ingest([src], store, progress=False)

    prepare = ingest_module._prepare_for_write

    def failing(ds, sources, time_chunk):
        ds = prepare(ds, sources, time_chunk)

        def boom(block, block_info=None):
            if block_info[0]["chunk-location"][0] == 5:
                raise OSError("disk full")
            return block

        data = ds["temperature"].data
        bad = ds["temperature"].copy(data=data.map_blocks(boom, dtype=data.dtype))
        return ds.assign(temperature=bad)

    monkeypatch.setattr(ingest_module, "_prepare_for_write", failing)
    with pytest.raises(IngestError, match=r"writing .*store.zarr failed.*disk full"):
        ingest([src], store, overwrite=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.nc", "store.zarr"]
    xr.testing.assert_allclose(xr.open_zarr(store).load(), _expected(truth, truth))

    monkeypatch.setattr(ingest_module, "_prepare_for_write", prepare)
    shifted = truth.assign(temperature=truth["temperature"] + 1.0)
    shifted["temperature"].attrs = truth["temperature"].attrs
    shifted.to_netcdf(tmp_path / "src2.nc")
    out = ingest([tmp_path / "src2.nc"], store, overwrite=True, progress=False)
    xr.testing.assert_allclose(out["temperature"].load(), shifted["temperature"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.nc", "src2.nc", "store.zarr"]


def test_progress_is_shown(tmp_path, capsys):
    src = tmp_path / "src.nc"
    mock.mock_era5(n_lat=5, n_lon=8, static=()).to_netcdf(src)
    ingest([src], tmp_path / "shown.zarr", progress=True)
    err = capsys.readouterr().err  # not a terminal: plain lines on stderr
    assert "Writing shown.zarr: done, 16/16 chunks in" in err  # one step per time chunk


def test_killed_ingest_resumes_from_its_partial_copy(tmp_path):
    """A kill leaves .NAME.partial; the same ingest again finishes it without rewriting."""
    from tellus.data import writing

    src = tmp_path / "src.nc"
    truth = mock.mock_era5(n_lat=5, n_lon=8)
    truth.to_netcdf(src)
    ds = ingest_module.combine([("src", ingest_module.open_source(src))])
    ds = ingest_module._prepare_for_write(ds, [src], 4)
    partial = tmp_path / ".era5.zarr.partial"
    writing.create_store(partial, ds, time_chunk=4)  # as a killed run leaves it:
    writing.write_chunk(partial, 0, ds.isel(time=slice(0, 4)).compute())
    writing.write_chunk(partial, 2, ds.isel(time=slice(8, 12)).compute())
    out = ingest([src], tmp_path / "era5.zarr", time_chunk=4, progress=False)
    assert not partial.exists()
    xr.testing.assert_allclose(out.load(), _expected(truth, out), rtol=1e-6)


def test_bad_arguments(tmp_path):
    with pytest.raises(IngestError, match="no sources given"):
        ingest([], tmp_path / "x.zarr")
    with pytest.raises(IngestError, match=r"source .*missing\.grib does not exist"):
        ingest([tmp_path / "missing.grib"], tmp_path / "x.zarr")
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(IngestError, match=r"notes\.txt: unrecognized format"):
        ingest([junk], tmp_path / "x.zarr")
    with pytest.raises(ValueError, match="time_chunk must be a positive integer"):
        ingest([junk], tmp_path / "x.zarr", time_chunk=0)
    with pytest.raises(TypeError, match="sequence of paths"):
        ingest(str(junk), tmp_path / "x.zarr")  # type: ignore[arg-type]


def test_a_sea_floor_that_rises_gives_a_valid_store_with_a_mask_by_depth(tmp_path):
    """Land wider at depth than at the surface (bathymetry): the store's ocean_mask has a
    depth dim, the 3-D field is NaN exactly where its level's mask is 0 and the surface field
    where the top level's is; NaN in a deep ocean cell is still refused."""
    from tellus.data import validation

    source = mock.mock_curvilinear_ocean(months=2, deeper_land=15.0)
    source.to_netcdf(tmp_path / "deep.nc")
    out = ingest([tmp_path / "deep.nc"], tmp_path / "deep.zarr", progress=False)
    validation.open_dataset(tmp_path / "deep.zarr", check_values="full")
    mask = out["ocean_mask"]
    assert mask.dims == ("depth", "latitude", "longitude")
    assert mask.values[1].sum() < mask.values[0].sum()
    theta = out["sea_water_potential_temperature"].values
    np.testing.assert_array_equal(np.isnan(theta), np.broadcast_to(mask.values == 0, theta.shape))
    zos = out["sea_surface_height"].values
    np.testing.assert_array_equal(np.isnan(zos), np.broadcast_to(mask.values[0] == 0, zos.shape))

    holed = out.load()
    j, i = np.argwhere(mask.values[1] == 1)[0]
    holed["sea_water_potential_temperature"][0, 1, j, i] = np.nan
    with pytest.raises(SchemaError, match="'sea_water_potential_temperature' has 1 NaN"):
        validation.check_values_of(holed, "holed", full=True)


def test_curvilinear_noleap_files_are_regridded_into_a_valid_store(tmp_path):
    """CMIP6-style thetao/zos on a rotated grid (longitudes 73..433, land NaN, noleap
    mid-month times) in two files of one year: one regridded, Gregorian, validated store."""
    from tellus.data import calendars, regrid, validation

    first, second = tmp_path / "ocean_2000a.nc", tmp_path / "ocean_2000b.nc"
    mock.mock_curvilinear_ocean(months=3).to_netcdf(first)
    mock.mock_curvilinear_ocean(months=2, start=(2000, 4)).to_netcdf(second)
    out = ingest([second, first], tmp_path / "ocean.zarr", progress=False)
    validation.open_dataset(tmp_path / "ocean.zarr", check_values="full")

    theta = out["sea_water_potential_temperature"]
    assert theta.dims == ("time", "depth", "latitude", "longitude")
    assert theta.shape == (5, 2, 36, 72) and theta.attrs["units"] == "degC"
    assert out["sea_surface_height"].attrs["units"] == "m"
    np.testing.assert_array_equal(
        out["time"].values, pd.date_range("2000-01-01", periods=5, freq="MS").values
    )
    # The values are the regridder's, month by month, whichever file they came from.
    expected = [
        regrid.regrid(mock.mock_curvilinear_ocean(months=3)),
        regrid.regrid(mock.mock_curvilinear_ocean(months=2, start=(2000, 4))),
    ]
    np.testing.assert_array_equal(
        theta.values, np.concatenate([e["thetao"].values for e in expected])
    )
    expected = expected[0]
    np.testing.assert_array_equal(out["ocean_mask"].values, expected["ocean_mask"].values)
    assert out["ocean_mask"].dims == ("latitude", "longitude")
    attrs = out.attrs
    assert attrs["regrid_method"] == "idw" and attrs["regrid_neighbours"] == 8
    assert attrs["regrid_source_grid"].startswith("curvilinear 36x72 (dims j, i; coords latitude")
    assert attrs["calendar_source"] == "noleap"
    assert attrs["calendar_conversion"] == calendars.MONTHLY_RULE
    assert (
        "ocean_2000a.nc: 2000-01-16 12:00:00 .. 2000-03-16 12:00:00"
        in attrs["calendar_source_range"]
    )


def test_regridding_options_and_grids_are_checked(tmp_path):
    from tellus.data import regrid

    regular = tmp_path / "regular.nc"
    mock.mock_ocean().to_netcdf(regular)
    with pytest.raises(IngestError, match="regridding options were given but no source is on a"):
        ingest([regular], tmp_path / "a.zarr", progress=False, regridding=regrid.Regridding())
    coarse, fine = tmp_path / "coarse.nc", tmp_path / "fine.nc"
    mock.mock_curvilinear_ocean(months=1, step=10.0).to_netcdf(coarse)
    mock.mock_curvilinear_ocean(months=1, start=(2000, 2)).to_netcdf(fine)
    with pytest.raises(
        IngestError, match=r"coarse\.nc and .*fine\.nc were regridded onto different grids"
    ):
        ingest([coarse, fine], tmp_path / "b.zarr", progress=False)
    out = ingest(
        [coarse, fine],
        tmp_path / "c.zarr",
        progress=False,
        regridding=regrid.Regridding(resolution=10.0, method="nearest"),
    )
    assert out.sizes["latitude"] == 18 and out.attrs["regrid_method"] == "nearest"
    assert "coarse.nc: curvilinear 18x36" in out.attrs["regrid_source_grid"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c.zarr",
        "coarse.nc",
        "fine.nc",
        "regular.nc",
    ]
