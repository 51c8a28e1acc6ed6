"""Ingest GRIB, NetCDF and foreign Zarr into a Tellus Zarr store, out of core.

:func:`ingest` opens every source lazily, brings it into the schema with
:func:`tellus.data.conventions.canonicalize`, merges the sources, and writes the result with
dask, ``time_chunk`` time steps per Zarr chunk (the whole grid, all levels and all members in
each), showing the progress of the write (:mod:`tellus.data.progress`: a bar on a terminal,
a line every 30 s in a log).

Safety rules:

* **GRIB** files are scanned message by message with eccodes before they are opened. cfgrib
  by default logs "skipping corrupted Message" and returns whatever it could read; here a
  corrupt or truncated message is an :class:`~tellus.data.errors.IngestError` naming the file
  and the message. A file is opened once per GRIB level type (``typeOfLevel``) with cfgrib's
  ``filter_by_keys``, so that ``isobaricInhPa`` and ``isobaricInPa`` levels are never mixed:
  each is normalized to hPa by ``canonicalize`` and then put together along ``level``. No GRIB
  index file is written next to the sources (``indexpath=''``).
* **Curvilinear grids and model calendars.** A NetCDF or Zarr source whose latitude and
  longitude are 2-D (CMIP6 or NEMO output on a tripolar grid) is regridded onto a regular
  grid first (:func:`tellus.data.regrid.regrid`, options in ``regridding``; land, NaN in the
  source, stays NaN and the static ``ocean_mask`` says where the ocean is), and a time axis
  in a model calendar (``noleap``, ``360_day``, ...) is brought onto the Gregorian calendar
  (:func:`tellus.data.calendars.to_gregorian`: monthly data dated at month starts). What was
  done is recorded in the store's attributes. The ``ocean_mask`` of several regridded sources
  is their union, and they must have been regridded onto one grid.
* **Merging.** All sources must share one grid (else an error naming both sources and both
  grids). A variable found in several sources is concatenated along the dims where the pieces
  differ (several months of files, hPa and Pa levels); pieces that overlap (the same variable
  at the same time and level twice) are an error that says whether the values agree. All
  variables that share a dim (``time``, ``level``, ...) must share its coordinate values.
* **All-or-nothing, resumable writes.** The store is written time chunk by time chunk with
  :mod:`tellus.data.writing` into a hidden sibling ``.NAME.partial`` and renamed into place
  only once every chunk is on disk. A bad input (an error) removes the partial copy; a kill
  leaves it, and running the same ingest again resumes it where it stopped. An existing
  store is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import datetime
import itertools
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import eccodes
import numpy as np
import xarray as xr
import zarr.errors

from tellus.data import calendars, conventions, locking, regrid, schema, writing
from tellus.data.errors import IngestError, SchemaError

GRIB = "grib"
NETCDF = "netcdf"
ZARR = "zarr"

_GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grib2", ".grb1", ".grb2")
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")
_NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")
_REGULAR_GRIDS = ("regular_ll", "regular_gg")
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zmetadata")
# Names a source may give the time dim before canonicalization; chunked by time_chunk.
_TIME_NAMES = {"time", "valid_time"} | {
    k for k, v in schema.DIM_ALIASES.items() if v == schema.TIME
}
# Dims whose coordinate values must agree across variables (besides the grid).
_ALIGNED_DIMS = (
    schema.TIME,
    conventions.REALIZATION,
    conventions.PREDICTION_TIMEDELTA,
    schema.LEVEL,
    schema.DEPTH,
)
# Overlapping pieces up to this many elements are compared to say "identical"/"conflicting".
_MAX_COMPARED = 2**24
CONVENTIONS = "CF-1.8"


def ingest(
    sources: Sequence[str | Path],
    store: str | Path,
    *,
    time_chunk: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    regridding: regrid.Regridding | None = None,
) -> xr.Dataset:
    """Converts ``sources`` into one Zarr store in the Tellus schema.

    Args:
      sources: GRIB files, NetCDF files or Zarr stores (directories), all on one grid once
        curvilinear sources are regridded.
      store: local path of the Zarr store to write.
      time_chunk: time steps per Zarr chunk; the other dims are not split.
      progress: show the progress of the write (a bar on a terminal, lines in a log).
      overwrite: replace ``store`` if it exists (only once the new one is complete).
      regridding: how curvilinear sources are regridded (default
        :class:`tellus.data.regrid.Regridding`); given, at least one source must be
        curvilinear, since sources on a regular grid are never interpolated.

    Returns:
      The written store, opened lazily (dask) with :func:`xarray.open_zarr`.

    Raises:
      IngestError: a source is missing, corrupt or unreadable; sources are on different grids
        or overlap; ``regridding`` is given but no source is curvilinear; ``store`` exists and
        ``overwrite`` is False; the write failed. No store, partial or complete, is left
        behind by a failed call.
      LockedError: (an IngestError) another ingest is writing ``store``; it holds
        :func:`tellus.data.locking.store_lock` on it, and what it wrote is left alone.
      SchemaError: a source cannot be brought into the schema (see
        :func:`tellus.data.conventions.canonicalize`, :func:`tellus.data.regrid.regrid` and
        :func:`tellus.data.calendars.to_gregorian`).
    """
    if isinstance(sources, str | Path):
        raise TypeError(f"sources must be a sequence of paths, got the single path {sources!r}")
    if not sources:
        raise IngestError("no sources given; expected at least one GRIB, NetCDF or Zarr path")
    if not isinstance(time_chunk, int) or time_chunk < 1:
        raise ValueError(f"time_chunk must be a positive integer, got {time_chunk!r}")
    if "://" in str(store):
        raise IngestError(f"store {store}: only local paths are supported")
    store = Path(store)
    if store.exists() and not overwrite:
        raise IngestError(f"store {store} already exists; pass overwrite=True to replace it")

    # Held from before anything is opened or written, so a refused ingest cleans up nothing.
    with locking.store_lock(store, f"ingesting {len(sources)} sources"):
        opened: list[xr.Dataset] = []
        try:
            raw = []
            for source in sources:
                for label, ds in _open_pieces(Path(source), time_chunk):
                    opened.append(ds)
                    raw.append((label, ds))
            pieces, regridded = _into_schema(raw, regridding)
            if regridding is not None and not regridded:
                raise IngestError(
                    "regridding options were given but no source is on a curvilinear grid "
                    "(2-D latitude and longitude); sources on a regular grid are not regridded"
                )
            ds = combine(pieces).assign_attrs(_provenance(pieces))
            ds = _prepare_for_write(ds, [Path(s) for s in sources], time_chunk)
            _write_atomically(
                ds, store, overwrite=overwrite, progress=progress, time_chunk=time_chunk
            )
        finally:
            for ds in opened:
                ds.close()
    return xr.open_zarr(store, consolidated=True)


def open_source(
    path: str | Path, *, time_chunk: int = 1, regridding: regrid.Regridding | None = None
) -> xr.Dataset:
    """One source, in the schema and lazy (dask), without writing anything.

    Args:
      path: a GRIB file, NetCDF file or Zarr store.
      time_chunk: time steps per dask chunk.
      regridding: how a curvilinear source is regridded (default
        :class:`tellus.data.regrid.Regridding`).

    Returns:
      The source's variables, canonicalized (regridded and on the Gregorian calendar where
      needed); a GRIB file's level types merged.

    Raises:
      IngestError, SchemaError: as :func:`ingest`.
    """
    pieces, _ = _into_schema(list(_open_pieces(Path(path), time_chunk)), regridding)
    return combine(pieces).assign_attrs(_provenance(pieces))


def _into_schema(
    raw: Sequence[tuple[str, xr.Dataset]], regridding: regrid.Regridding | None
) -> tuple[list[tuple[str, xr.Dataset]], bool]:
    """Opened pieces on the Gregorian calendar, regridded if curvilinear, canonicalized.

    The regridded pieces' ``ocean_mask`` becomes one piece of its own, their union, so that
    several files of one curvilinear model (years, or variables) do not each bring a mask.

    Returns:
      The pieces, and whether any was regridded.
    """
    pieces, masks = [], []
    for label, ds in raw:
        ds = calendars.to_gregorian(ds, source=label)
        if regrid.find_curvilinear(ds, source=label) is not None:
            ds = regrid.regrid(ds, regridding, source=label)
            masks.append((label, ds[regrid.OCEAN_MASK]))
            ds = ds.drop_vars(regrid.OCEAN_MASK)
        pieces.append((label, conventions.canonicalize(ds, source=label)))
    if not masks:
        return pieces, False
    (first, mask), *others = masks
    for label, other in others:
        same = all(
            mask[d].shape == other[d].shape and np.array_equal(mask[d], other[d])
            for d in schema.SPATIAL_DIMS
        )
        if not same:
            raise IngestError(
                f"{first} and {label} were regridded onto different grids "
                f"({describe_grid(mask.to_dataset())} and {describe_grid(other.to_dataset())}); "
                "expected one grid: give them one resolution (Regridding.resolution, --grid)"
            )
        mask = _union(mask, other)
    label = "the ocean mask regridded from " + ", ".join(label for label, _ in masks)
    pieces.append((label, conventions.canonicalize(mask.to_dataset(), source=label)))
    return pieces, True


def _union(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """Ocean where either mask says ocean. A mask by depth (from a 3-D file) and a 2-D one
    (from a surface file) meet at the top level: the surface file says nothing of depth."""
    if a.dims == b.dims:
        return a.copy(data=np.maximum(a.values, b.values))
    deep, flat = (a, b) if a.ndim > b.ndim else (b, a)
    vertical = deep.dims[0]
    top = int(np.argmin(deep[vertical].values)) if vertical in deep.coords else 0
    values = deep.values.copy()
    values[top] = np.maximum(values[top], flat.transpose(*schema.SPATIAL_DIMS).values)
    return deep.copy(data=values)


def _provenance(pieces: Sequence[tuple[str, xr.Dataset]]) -> dict[str, object]:
    """The regridding and calendar attributes of the pieces, one value per attribute.

    A value that differs between pieces is each piece's, ``label: value`` joined by ``; ``.
    """
    out: dict[str, object] = {}
    for key in (*regrid.ATTRS, *calendars.ATTRS):
        values = {label: ds.attrs[key] for label, ds in pieces if key in ds.attrs}
        distinct = list(dict.fromkeys(map(str, values.values())))
        if len(distinct) == 1:
            out[key] = next(iter(values.values()))
        elif distinct:
            out[key] = "; ".join(f"{label}: {value}" for label, value in values.items())
    return out


def detect_format(path: Path) -> str:
    """``'grib'``, ``'netcdf'`` or ``'zarr'``, from the file's first bytes or its name.

    Raises:
      IngestError: ``path`` does not exist or is none of the three.
    """
    if not path.exists():
        raise IngestError(f"source {path} does not exist")
    if path.is_dir():
        if any((path / marker).exists() for marker in _ZARR_MARKERS):
            return ZARR
        raise IngestError(f"source {path} is a directory but not a Zarr store (no zarr.json)")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"GRIB"):
        return GRIB
    if head.startswith(_NETCDF_MAGIC):
        return NETCDF
    suffix = path.suffix.lower()
    if suffix in _GRIB_SUFFIXES:
        return GRIB
    if suffix in _NETCDF_SUFFIXES:
        return NETCDF
    raise IngestError(
        f"source {path}: unrecognized format (starts with {head!r}); expected GRIB, NetCDF "
        "or a Zarr store"
    )


def scan_grib(path: Path) -> dict[str, int]:
    """Reads every GRIB message header in ``path``.

    Args:
      path: a GRIB 1 or 2 file.

    Returns:
      The number of messages of each level type (``typeOfLevel``), in file order.

    Raises:
      IngestError: a message is corrupt or truncated, is not on a regular grid, or the file
        holds no GRIB message.
    """
    counts: dict[str, int] = {}
    end = 0
    with open(path, "rb") as f:
        while True:
            number = sum(counts.values()) + 1
            try:
                handle = eccodes.codes_grib_new_from_file(f)
            except Exception as e:  # gribapi raises its own GribInternalError subclasses
                raise IngestError(
                    f"{path}: GRIB message {number} (after byte {end}) is corrupt or "
                    f"truncated ({type(e).__name__}: {e}); refusing to ingest partial data"
                ) from e
            if handle is None:
                break
            try:
                level_type = str(eccodes.codes_get(handle, "typeOfLevel"))
                grid_type = str(eccodes.codes_get(handle, "gridType"))
                end = int(eccodes.codes_get(handle, "offset")) + int(
                    eccodes.codes_get(handle, "totalLength")
                )
            finally:
                eccodes.codes_release(handle)
            if grid_type not in _REGULAR_GRIDS:
                raise IngestError(
                    f"{path}: GRIB message {number} is on a {grid_type} grid; expected one of "
                    f"{_REGULAR_GRIDS} (regrid first)"
                )
            counts[level_type] = counts.get(level_type, 0) + 1
        f.seek(end)
        tail = f.read()
    if not counts:
        raise IngestError(f"{path}: no GRIB message found")
    if b"GRIB" in tail:
        raise IngestError(
            f"{path}: a GRIB message starts after byte {end} but cannot be read (truncated "
            "file?); refusing to ingest partial data"
        )
    return counts


def _check_all_messages_read(label: str, ds: xr.Dataset, messages: int) -> None:
    """Errors unless cfgrib turned ``messages`` GRIB messages into as many 2-D fields.

    cfgrib keeps one of several messages with the same keys and fills holes in the
    (time, level, member) hypercube with NaN, both silently; either would change the data.
    """
    fields = 0
    for da in ds.data_vars.values():
        grid = [n for d, n in da.sizes.items() if d in ("latitude", "longitude", "values")]
        fields += da.size // max(int(np.prod(grid)), 1)
    if fields < messages:
        raise IngestError(
            f"{label}: {messages} GRIB messages but cfgrib read only {fields} fields: some "
            "messages duplicate others (same variable, time, level and member); expected "
            "each field once"
        )
    if fields > messages:
        raise IngestError(
            f"{label}: {messages} GRIB messages fill {fields} fields: the messages do not "
            "form a complete (time, level, member) block and the missing fields would be NaN"
        )


def _open_pieces(path: Path, time_chunk: int) -> Iterator[tuple[str, xr.Dataset]]:
    """Opens ``path`` lazily as (label, dataset) pieces: one per GRIB level type."""
    fmt = detect_format(path)
    if fmt == GRIB:
        for level_type, messages in scan_grib(path).items():
            label = f"{path} [typeOfLevel={level_type}]"
            kwargs = {
                "indexpath": "",
                "filter_by_keys": {"typeOfLevel": level_type},
                "errors": "raise",
            }
            ds = _open(label, engine="cfgrib", path=path, backend_kwargs=kwargs)
            _check_all_messages_read(label, ds, messages)
            yield label, _chunk(ds, time_chunk)
    elif fmt == NETCDF:
        yield str(path), _chunk(_open(str(path), engine="netcdf4", path=path), time_chunk)
    else:
        with warnings.catch_warnings():
            # A store without consolidated metadata is read anyway; nothing to warn about.
            warnings.filterwarnings(
                "ignore",
                message="Failed to open Zarr store with consolidated metadata",
                category=RuntimeWarning,
            )
            ds = _open(str(path), engine="zarr", path=path)
        yield str(path), _chunk(ds, time_chunk)


def _open(label: str, *, engine: str, path: Path, **kwargs) -> xr.Dataset:
    """``xr.open_dataset`` without dask (chunked afterwards); errors name the source."""
    try:
        return xr.open_dataset(path, engine=engine, chunks=None, decode_timedelta=True, **kwargs)
    except Exception as e:
        raise IngestError(f"{label}: cannot be opened with {engine}: {e}") from e


def _chunk(ds: xr.Dataset, time_chunk: int) -> xr.Dataset:
    """Dask chunks of ``time_chunk`` along time and whole along every other dim.

    Chunking the lazily opened backend arrays (rather than opening with ``chunks={}``) reads
    only the messages or slices of each time chunk, even from an unchunked NetCDF file.
    """
    return ds.chunk({d: time_chunk if d in _TIME_NAMES else -1 for d in ds.dims})


def combine(pieces: Sequence[tuple[str, xr.Dataset]]) -> xr.Dataset:
    """Merges canonical datasets on one grid; see the module docstring for the rules.

    Args:
      pieces: (label, dataset) pairs; labels name the sources in error messages.

    Returns:
      One dataset with every variable of every piece.

    Raises:
      IngestError: different grids, overlapping pieces of a variable, or variables whose
        shared dims disagree.
    """
    if not pieces:
        raise IngestError("nothing to combine")
    ref_label, ref = pieces[0]
    aligned = [(ref_label, ref)]
    for label, ds in pieces[1:]:
        aligned.append((label, _on_grid_of(ref_label, ref, label, ds)))

    by_var: dict[str, list[tuple[str, xr.DataArray]]] = {}
    for label, ds in aligned:
        for name, da in ds.data_vars.items():
            by_var.setdefault(str(name), []).append((label, da))
    variables: dict[str, tuple[str, xr.DataArray]] = {}
    for name, items in by_var.items():
        variables[name] = _combine_variable(name, items)
    _check_shared_dims(variables)
    merged = xr.merge(
        [da.to_dataset(name=name) for name, (_, da) in variables.items()],
        join="exact",
        compat="override",
        combine_attrs="drop_conflicts",
    )
    return merged.assign_attrs(conventions.grid_bounds(merged))


def describe_grid(ds: xr.Dataset) -> str:
    """A one-line description of a canonical grid, for error messages."""
    lat = np.asarray(ds[schema.LATITUDE].values) if schema.LATITUDE in ds.coords else None
    lon = np.asarray(ds[schema.LONGITUDE].values) if schema.LONGITUDE in ds.coords else None
    if lat is None or lon is None:
        return "no latitude-longitude grid"

    def axis(name: str, x: np.ndarray) -> str:
        step = f" step {abs(x[1] - x[0]):g}" if x.size > 1 else ""
        return f"{name} {x[0]:g}..{x[-1]:g}{step}" if x.size else f"{name} empty"

    return f"{lat.size}x{lon.size} ({axis('latitude', lat)}, {axis('longitude', lon)})"


def _on_grid_of(ref_label: str, ref: xr.Dataset, label: str, ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with ``ref``'s lat/lon coords; errors if the grids differ beyond 1e-6 deg."""
    for dim in schema.SPATIAL_DIMS:
        a = ref[dim].values if dim in ref.coords else None
        b = ds[dim].values if dim in ds.coords else None
        same = (
            a is not None
            and b is not None
            and a.shape == b.shape
            and np.allclose(a, b, rtol=0.0, atol=1e-6)
        ) or (a is None and b is None)
        if not same:
            raise IngestError(
                f"sources are on different grids: {ref_label} has {describe_grid(ref)} but "
                f"{label} has {describe_grid(ds)}; expected one grid (regrid first)"
            )
    dims = [d for d in schema.SPATIAL_DIMS if d in ds.coords]
    return ds.assign_coords({d: ref[d] for d in dims})


def _combine_variable(name: str, items: list[tuple[str, xr.DataArray]]) -> tuple[str, xr.DataArray]:
    """One variable from its pieces, concatenated along the dims where they differ."""
    labels = " and ".join(label for label, _ in items)
    if len(items) == 1:
        return items[0]
    for (la, a), (lb, b) in itertools.combinations(items, 2):
        if set(a.dims) != set(b.dims):
            raise IngestError(
                f"variable {name!r} has dims {a.dims} in {la} but {b.dims} in {lb}; expected "
                "the same dims"
            )
        _check_no_overlap(name, la, a, lb, b)
    try:
        combined = xr.combine_by_coords(
            [da.to_dataset(name=name) for _, da in items],
            data_vars="all",
            coords="different",
            compat="no_conflicts",
            join="exact",
            combine_attrs="drop_conflicts",
        )
    except ValueError as e:
        raise IngestError(
            f"variable {name!r} from {labels}: the pieces do not tile a regular "
            f"(time, level, ...) block: {e}"
        ) from e
    return labels, combined[name].transpose(*items[0][1].dims)


def _check_no_overlap(name: str, la: str, a: xr.DataArray, lb: str, b: xr.DataArray) -> None:
    """Errors if ``a`` and ``b`` both hold ``name`` at some (time, level, ...) point."""
    overlap = {}
    for dim in a.dims:
        if dim in schema.SPATIAL_DIMS or dim not in a.coords or dim not in b.coords:
            continue
        common = np.intersect1d(a[dim].values, b[dim].values)
        if common.size == 0:
            return
        overlap[dim] = common
    where = ", ".join(f"{d}={_short(v)}" for d, v in overlap.items()) or "every point"
    sa, sb = a.sel(overlap), b.sel(overlap)
    if sa.size <= _MAX_COMPARED:
        agree = bool(sa.drop_vars(sa.coords).equals(sb.drop_vars(sb.coords)))
        verdict = "identical values" if agree else "conflicting values"
    else:
        verdict = "values not compared (large overlap)"
    raise IngestError(
        f"variable {name!r} appears twice, in {la} and in {lb}, at {where} ({verdict}); "
        "expected each point once"
    )


def _check_shared_dims(variables: dict[str, tuple[str, xr.DataArray]]) -> None:
    """Errors if two variables give the same dim different coordinate values."""
    for dim in _ALIGNED_DIMS:
        having = [(n, lab, da) for n, (lab, da) in variables.items() if dim in da.coords]
        for (na, la, a), (nb, lb, b) in itertools.pairwise(having):
            if not np.array_equal(a[dim].values, b[dim].values):
                raise IngestError(
                    f"variables {na!r} (from {la}) and {nb!r} (from {lb}) have different "
                    f"{dim!r} coords: {_short(a[dim].values)} vs {_short(b[dim].values)}; "
                    "expected the same values"
                )


def _short(values: np.ndarray) -> str:
    """Coordinate values for an error message: readable dates, at most six values."""
    values = np.asarray(values)
    if values.dtype.kind == "M":
        v = [str(x) for x in np.datetime_as_string(values, unit="auto")]
    else:
        v = values.tolist()
    return str(v) if len(v) <= 6 else f"[{v[0]}, {v[1]}, ..., {v[-1]}] ({len(v)} values)"


def _prepare_for_write(ds: xr.Dataset, sources: list[Path], time_chunk: int) -> xr.Dataset:
    """Target chunks, no inherited encodings, CF global attrs (and those of the regridding
    and the calendar conversion)."""
    ds = ds.drop_encoding()
    ds = ds.chunk({d: time_chunk if d == schema.TIME else -1 for d in ds.dims})
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    files = [str(p.resolve()) for p in sources]
    ds.attrs = {
        "Conventions": CONVENTIONS,
        "source": "converted into the Tellus schema (WeatherBench2 layout) from "
        + ", ".join(p.name for p in sources),
        "source_files": files,
        "history": f"{now} tellus.data.ingest.ingest({len(files)} sources)",
        **conventions.grid_bounds(ds),
        **{k: v for k, v in ds.attrs.items() if k in (*regrid.ATTRS, *calendars.ATTRS)},
    }
    return ds


def _write_atomically(
    ds: xr.Dataset, store: Path, *, overwrite: bool, progress: bool, time_chunk: int
) -> None:
    """Writes ``ds`` to ``.NAME.partial`` beside ``store``, resumably, then renames it."""
    store.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.parent / f".{store.name}.partial"
    try:
        if schema.TIME in ds.dims:
            try:
                writing.write_dataset(
                    ds,
                    tmp,
                    time_chunk=time_chunk,
                    progress=progress,
                    description=f"Writing {store.name}",
                )
            except SchemaError:
                # A partial copy left by a killed run of *other* sources: start afresh.
                shutil.rmtree(tmp, ignore_errors=True)
                writing.write_dataset(
                    ds,
                    tmp,
                    time_chunk=time_chunk,
                    progress=progress,
                    description=f"Writing {store.name}",
                )
        else:  # Static fields only: small, written in one go.
            shutil.rmtree(tmp, ignore_errors=True)
            ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False)
            zarr.consolidate_metadata(str(tmp))
        _move_into_place(tmp, store, overwrite=overwrite)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, IngestError):
            raise
        raise IngestError(f"writing {store} failed, nothing was written: {e}") from e


def _move_into_place(tmp: Path, store: Path, *, overwrite: bool) -> None:
    """Renames ``tmp`` to ``store``; an old store is kept aside until the rename succeeded."""
    if not store.exists():
        os.rename(tmp, store)
        return
    if not overwrite:  # Someone else wrote it meanwhile.
        raise IngestError(f"store {store} already exists; pass overwrite=True to replace it")
    old = store.parent / f".{store.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(store, old)
    try:
        os.rename(tmp, store)
    except BaseException:
        os.rename(old, store)
        raise
    shutil.rmtree(old, ignore_errors=True)
