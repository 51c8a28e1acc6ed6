"""Resumable Zarr writing, chunked by time.

A store is created once from a *template* (the full time axis, every variable, lazily), then
filled one time chunk at a time. Each chunk is written with an xarray region write and only
then marked complete by a small marker file, so a build that is killed half way and run again
rewrites at most the chunk it was in and finishes with no duplicated or missing time steps.

On disk a time chunk is one Zarr v3 *shard* (one file per variable, written whole) made of
inner chunks of one time step each, compressed separately: a reader that wants one time step
(a training window) decodes that step only, not the whole write chunk. With inner chunks as
long as the write chunk, reading a 24 h window of the embedded atmosphere decoded 20 time
steps per variable to use 2, and cost 20 ms of CPU a sample against 3 ms now
(``docs/performance.md``).

Bookkeeping lives inside the store as a Zarr subgroup, so it travels with the store and is
ignored by ``xarray.open_zarr`` (which reads only the root group)::

    store.zarr/_tellus_build/             attrs: fingerprint of the template
    store.zarr/_tellus_build/chunks_done  uint8 per time chunk, one uncompressed Zarr chunk
                                          each, so marking chunk i writes one byte-sized file

Static (time-independent) variables and coordinates are written at creation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import xarray as xr
import zarr
import zarr.errors

from tellus.data import progress as progress_lib
from tellus.data import schema
from tellus.data.errors import SchemaError
from tellus.data.locking import store_lock

_BUILD_GROUP = "_tellus_build"


def _fs_path(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, fs_path = fsspec.core.url_to_fs(str(path))
    return fs, fs_path.rstrip("/")


def template_fingerprint(template: xr.Dataset, time_chunk: int) -> dict[str, Any]:
    """A JSON-able description of a template: what must match for a resume to be valid."""
    times = np.asarray(template[schema.TIME].values).astype("datetime64[s]").astype(np.int64)
    return {
        "time_chunk": int(time_chunk),
        "n_times": len(times),
        "time_sha1": hashlib.sha1(times.tobytes()).hexdigest(),
        "variables": {
            name: {"dims": list(v.dims), "shape": list(v.shape), "dtype": str(v.dtype)}
            for name, v in sorted(template.data_vars.items())
        },
    }


def n_chunks(n_times: int, time_chunk: int) -> int:
    return -(-n_times // time_chunk)


def create_store(
    path: str | os.PathLike,
    template: xr.Dataset,
    *,
    time_chunk: int,
    attrs: Mapping[str, Any] | None = None,
) -> bool:
    """Creates a store from ``template``, or checks that an existing one matches it.

    Args:
      path: where the Zarr store goes (local path or fsspec URL).
      template: the whole dataset as it will be, with a ``time`` dim; time-dependent variables
        may be lazy (dask) placeholders, since only their metadata is written. Variables without
        a ``time`` dim, and all coordinates, are written now.
      time_chunk: number of time steps per Zarr shard and per :func:`write_chunk` call (each
        time step is an inner chunk of its own).
      attrs: global attributes to add.

    Returns:
      True if the store was created, False if a matching store already existed (a resume).

    Raises:
      SchemaError: the store exists but was made from a different template.
    """
    if time_chunk < 1:
        raise ValueError(f"time_chunk must be >= 1, got {time_chunk}")
    if schema.TIME not in template.dims:
        raise SchemaError(f"template for {path} has no '{schema.TIME}' dim: {dict(template.sizes)}")
    fs, root = _fs_path(path)
    fingerprint = template_fingerprint(template, time_chunk)
    existing = _fingerprint_of(path)
    if existing is not None:
        if existing != fingerprint:
            old, new = existing["variables"], fingerprint["variables"]
            changed = [
                f"{name} {old[name]['dtype']} {old[name]['shape']} vs "
                f"{new[name]['dtype']} {new[name]['shape']}"
                for name in sorted(set(old) & set(new))
                if old[name] != new[name]
            ]
            raise SchemaError(
                f"store {path} exists but was created from a different template "
                f"(time steps {existing['n_times']} vs {fingerprint['n_times']}, variables "
                f"{sorted(old)} vs {sorted(new)}"
                + (f"; changed: {', '.join(changed)}" if changed else "")
                + "); remove it or write to another path"
            )
        return False
    if fs.exists(root):
        raise SchemaError(
            f"{path} exists but is not a Tellus store under construction (no {_BUILD_GROUP} "
            "group); refusing to overwrite it"
        )

    ds = template.copy()
    ds.attrs.update(attrs or {})
    encoding = {}
    for name, var in ds.data_vars.items():
        if schema.TIME in var.dims:
            shards = tuple(time_chunk if d == schema.TIME else var.sizes[d] for d in var.dims)
            inner = tuple(1 if d == schema.TIME else var.sizes[d] for d in var.dims)
            ds[name] = var.copy(data=da.zeros(var.shape, dtype=var.dtype, chunks=shards))
            encoding[name] = {"chunks": inner, "shards": shards}
        else:
            # Static fields are written now, with the metadata, so they must be in memory:
            # to_zarr(compute=False) would otherwise defer (and here never run) a dask write.
            ds[name] = var.compute()
    # Build under a temporary name so a kill during creation leaves nothing that looks valid.
    tmp = f"{root}.creating"
    if fs.exists(tmp):
        fs.rm(tmp, recursive=True)
    ds.to_zarr(
        _url(path, tmp),
        mode="w",
        compute=False,
        encoding=encoding,
        zarr_format=3,
        consolidated=False,
    )
    build = zarr.open_group(_url(path, tmp), mode="a").create_group(
        _BUILD_GROUP, attributes={"template": fingerprint}
    )
    build.create_array(
        "chunks_done",
        shape=(n_chunks(fingerprint["n_times"], time_chunk),),
        chunks=(1,),
        dtype="uint8",
        fill_value=0,
        compressors=None,
    )
    fs.mv(tmp, root, recursive=True)
    return True


def _url(original: str | os.PathLike, fs_path: str) -> str:
    """Rebuilds a URL with the protocol of ``original`` for another path on the same fs."""
    original = str(original)
    if "://" in original:
        return f"{original.split('://', 1)[0]}://{fs_path}"
    return fs_path


def _fingerprint_of(path: str | os.PathLike) -> dict[str, Any] | None:
    try:
        group = zarr.open_group(str(path), mode="r")[_BUILD_GROUP]
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return None
    return json.loads(json.dumps(group.attrs["template"]))


def _done_array(path: str | os.PathLike, mode: str = "r") -> zarr.Array:
    return zarr.open_group(str(path), mode=mode)[f"{_BUILD_GROUP}/chunks_done"]


def completed_chunks(path: str | os.PathLike) -> set[int]:
    """Indices of the time chunks fully written to the store at ``path``."""
    if _fingerprint_of(path) is None:
        return set()
    return {int(i) for i in np.flatnonzero(_done_array(path)[:])}


def expected_chunks(path: str | os.PathLike) -> int:
    """The number of time chunks the store at ``path`` will have when complete."""
    fingerprint = _fingerprint_of(path)
    if fingerprint is None:
        raise SchemaError(f"{path} is not a store made by tellus.data.writing")
    return n_chunks(fingerprint["n_times"], fingerprint["time_chunk"])


def is_complete(path: str | os.PathLike) -> bool:
    """Whether every time chunk of the store at ``path`` is written."""
    if _fingerprint_of(path) is None:
        return False
    return bool(np.all(_done_array(path)[:]))


def write_chunk(
    path: str | os.PathLike, index: int, ds: xr.Dataset, *, consolidate: bool = True
) -> None:
    """Writes time chunk ``index`` and then marks it complete.

    Args:
      path: a store made by :func:`create_store`.
      index: which time chunk (0-based).
      ds: exactly the time steps of that chunk, with every time-dependent variable of the store.
      consolidate: consolidate the metadata when this chunk is the last one missing (off
        where several processes write chunks at once: their caller does it once).

    Raises:
      SchemaError: ``ds`` has other times or variables than chunk ``index`` of the store.
    """
    fingerprint = _fingerprint_of(path)
    if fingerprint is None:
        raise SchemaError(f"{path} is not a store made by tellus.data.writing.create_store")
    time_chunk, n_times = fingerprint["time_chunk"], fingerprint["n_times"]
    total = n_chunks(n_times, time_chunk)
    if not 0 <= index < total:
        raise SchemaError(f"chunk index {index} out of range: store {path} has {total} chunks")
    start, stop = index * time_chunk, min((index + 1) * time_chunk, n_times)
    store_times = xr.open_zarr(path, consolidated=False)[schema.TIME].values[start:stop]
    got = np.asarray(ds[schema.TIME].values)
    if got.shape != store_times.shape or not np.array_equal(
        got.astype("datetime64[s]"), store_times.astype("datetime64[s]")
    ):
        raise SchemaError(
            f"chunk {index} of {path} covers times {store_times[0]}..{store_times[-1]} "
            f"({len(store_times)} steps) but the data has {got[:1]}..{got[-1:]} ({len(got)} steps)"
        )
    timed = [n for n, v in fingerprint["variables"].items() if schema.TIME in v["dims"]]
    missing = sorted(set(timed) - set(ds.data_vars))
    if missing:
        raise SchemaError(f"chunk {index} for {path} lacks variables {missing}")
    for name in timed:
        want = fingerprint["variables"][name]
        if list(ds[name].dims) != want["dims"]:
            raise SchemaError(
                f"variable '{name}' in chunk {index} has dims {ds[name].dims}, store expects "
                f"{tuple(want['dims'])}"
            )
    region_ds = ds[timed]
    region_ds = region_ds.drop_vars(
        [c for c in region_ds.coords if schema.TIME not in region_ds[c].dims]
    )
    region_ds.to_zarr(
        path, region={schema.TIME: slice(start, stop)}, zarr_format=3, consolidated=False
    )
    done = _done_array(path, mode="r+")
    done[index] = 1
    if consolidate and np.all(done[:]):
        # Consolidated metadata lets readers on object stores open the store in one request.
        zarr.consolidate_metadata(str(path))


def write_dataset(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    time_chunk: int,
    attrs: Mapping[str, Any] | None = None,
    progress: bool = True,
    description: str = "writing",
) -> None:
    """Writes a (lazy) dataset to ``path`` resumably, one time chunk at a time.

    Running it again after a kill continues with the chunks not yet marked complete. While
    it writes, it holds :func:`tellus.data.locking.store_lock` on ``path``, so a second
    writer of the same store refuses with a one-line
    :class:`~tellus.data.errors.LockedError`; a complete store is only checked, unlocked.

    Args:
      ds: dataset with a ``time`` dim; dask-backed variables are computed chunk by chunk.
      path: destination store.
      time_chunk: time steps per chunk.
      attrs: global attributes to add.
      progress: show a progress bar.
      description: label of the progress bar (and the purpose shown to a refused writer).

    Raises:
      LockedError: another process is writing ``path``.
    """
    from tellus.data import cluster

    with contextlib.nullcontext() if is_complete(path) else store_lock(path, description):
        create_store(path, ds, time_chunk=time_chunk, attrs=attrs)
        done = completed_chunks(path)
        todo = [i for i in range(n_chunks(ds.sizes[schema.TIME], time_chunk)) if i not in done]
        parts = {
            i: ds.isel({schema.TIME: slice(i * time_chunk, (i + 1) * time_chunk)}) for i in todo
        }
        client = cluster.active_client()
        if client is None:
            for i in track(todo, description=description, enabled=progress):
                write_chunk(path, i, parts[i].compute())
            return
        # On a cluster each worker computes a chunk and writes it itself (every chunk is its
        # own Zarr chunk and its own mark); the metadata is consolidated here, once, at the end.
        import dask
        import distributed

        tasks = [dask.delayed(write_chunk)(str(path), i, parts[i], consolidate=False) for i in todo]
        futures = client.compute(tasks)
        finished = distributed.as_completed(futures)
        for future in track(finished, description=description, enabled=progress, total=len(todo)):
            future.result()  # a worker's error is raised here
        if is_complete(path):
            zarr.consolidate_metadata(str(path))


def track(
    items: Iterable,
    *,
    description: str,
    enabled: bool = True,
    total: int | None = None,
    unit: str = "chunk",
):
    """Iterates over ``items`` (chunks, by default) showing the progress and the time left.

    A bar on a terminal, a line every 30 s in a log file: see :func:`tellus.data.progress.track`.
    """
    return progress_lib.track(items, description, total=total, unit=unit, enabled=enabled)
