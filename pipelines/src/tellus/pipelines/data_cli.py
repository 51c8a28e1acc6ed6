"""``tellus data ...``: build, ingest, validate, describe and summarize stores.

Each command parses its options and calls :mod:`tellus.data`; no logic lives here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import checks, errors, paths, profiles_cli

app = typer.Typer(
    help="Build, ingest, check and describe Zarr stores in the Tellus schema.", no_args_is_help=True
)
app.add_typer(profiles_cli.app, name="profiles")


@contextlib.contextmanager
def _exit_on_data_error(what: str, code: int = errors.USAGE) -> Iterator[None]:
    """Turns a data-layer error into one line on stderr: a bad input is a
    :class:`~tellus.pipelines.errors.UserError` (exit 2); with ``code=1`` (the command's
    answer, as ``validate``'s "invalid") and for a store another process holds, the line is
    ``what: message`` and the exit status 1."""
    from tellus.data.errors import IngestError, LockedError, SchemaError

    try:
        yield
    except (IngestError, SchemaError, FileNotFoundError) as e:
        if code == errors.USAGE and not isinstance(e, LockedError):
            raise errors.UserError(f"{what}: {e}") from e
        typer.echo(f"{what}: {errors.one_line(str(e))}", err=True)
        raise typer.Exit(1) from e


def _scheduler_option(value: str) -> str:
    from tellus.data import cluster

    try:
        return cluster.check(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


# `--scheduler` of the commands that run dask work (stats, ingest); TELLUS_SCHEDULER sets its
# default (the tests' conftest sets "threads").
Scheduler = Annotated[
    str,
    typer.Option(
        envvar="TELLUS_SCHEDULER",
        help="Where the dask work runs: local (a LocalCluster of worker processes, one per "
        "core), threads (this process), a scheduler address (tcp://host:8786) or a scheduler "
        "file; see docs/data.md for SLURM and Kubernetes clusters.",
        callback=_scheduler_option,
    ),
]


@contextlib.contextmanager
def _on_cluster(scheduler: str):
    """:func:`tellus.data.cluster.connect`, a cluster that cannot be opened refused in one
    line naming ``--scheduler``."""
    from tellus.data import cluster

    try:
        with cluster.connect(scheduler) as client:
            yield client
    except cluster.ClusterError as e:
        raise errors.UserError(str(e), param="--scheduler") from e


class Embedded(StrEnum):
    atmosphere = "atmosphere"
    ocean = "ocean"


def build_atmosphere(
    out: Path, preset: str = "default", *, stats: bool = True, progress: bool = True
) -> Path:
    """Builds (or resumes, or finds cached) the embedded Held-Suarez atmosphere dataset."""
    from tellus.data import held_suarez, statistics, validation

    if preset not in held_suarez.PRESETS:
        raise typer.BadParameter(
            f"unknown preset '{preset}'; choose from {sorted(held_suarez.PRESETS)}",
            param_hint="--preset",
        )
    config = held_suarez.PRESETS[preset]
    start = time.perf_counter()
    with _exit_on_data_error("build failed"):  # e.g. another build of the store is running
        held_suarez.build(out, config, progress=progress)
    if stats and not Path(statistics.stats_path(out)).exists():
        ds = validation.open_dataset(out)
        statistics.write_statistics(ds, out, step=f"{config.output_interval_hours}h")
    typer.echo(f"{out}: ready in {time.perf_counter() - start:.1f} s")
    return out


def build_ocean(
    out: Path, preset: str = "default", *, spinup: bool = False, progress: bool = True
) -> dict[str, Path]:
    """Builds (or resumes, or finds cached) the embedded veros ocean in the folder ``out``:
    its spin-up, then (unless ``spinup``) the model and observed stores."""
    from tellus.data.errors import IngestError
    from tellus.ocean import world

    if preset not in world.PRESETS:
        raise typer.BadParameter(
            f"unknown preset '{preset}'; choose from {sorted(world.PRESETS)}",
            param_hint="--preset",
        )
    start = time.perf_counter()
    with _exit_on_data_error("build failed"):  # e.g. another build of a store is running
        try:
            built = world.build(out, world.PRESETS[preset], spinup_only=spinup, progress=progress)
        except ValueError as e:  # the folder holds an ocean of another configuration
            raise errors.UserError(str(e), param="--out") from e
        except RuntimeError as e:  # veros failed (its log says why), or a lock is held
            if isinstance(e, IngestError):
                raise
            typer.echo(f"build failed: {errors.one_line(str(e))}", err=True)
            raise typer.Exit(1) from e
    what = "spin-up" if spinup else "ocean"
    typer.echo(f"{out}: {what} ready in {time.perf_counter() - start:.1f} s")
    return built


@app.command()
def build(
    dataset: Annotated[Embedded, typer.Argument(help="Which embedded dataset to build.")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Store path (default $TELLUS_DATA/NAME.zarr); for the ocean a folder for "
            "spinup.h5, model.zarr and observed.zarr (default $TELLUS_DATA/ocean).",
            callback=checks.writable_dir_option,
        ),
    ] = None,
    preset: Annotated[
        str, typer.Option(help="Size preset: 'default', 'demo' (the ocean) or 'tiny'.")
    ] = "default",
    stats: Annotated[
        bool, typer.Option(help="Also write normalization statistics (atmosphere).")
    ] = True,
    spinup: Annotated[
        bool,
        typer.Option("--spinup", help="Ocean: only the spin-up (cached), the separate first step."),
    ] = False,
) -> None:
    """Build an embedded dataset from real physics (cached; resumes after a kill)."""
    from tellus.data import describe as describe_

    name = dataset.value if preset == "default" else f"{dataset.value}-{preset}"
    if dataset is Embedded.ocean:
        built = build_ocean(out or paths.default_folder(name), preset, spinup=spinup)
        for key, path in built.items():
            if key != "spinup":
                describe_.render(describe_.summarize(path))
        return
    if spinup:
        raise errors.UserError(
            "only `tellus data build ocean` has a separate spin-up", param="--spinup"
        )
    out = out or paths.default_store(name)
    build_atmosphere(out, preset, stats=stats)
    describe_.render(describe_.summarize(out))


@app.command()
def describe(
    path: Annotated[
        Path, typer.Argument(help="A Zarr store.", callback=checks.existing_store_option)
    ],
) -> None:
    """Print a summary of a store: grid, time span, variables, units, ranges."""
    from tellus.data import describe as describe_
    from tellus.data import schema, sources

    try:
        summary = describe_.summarize(path)
    except KeyError:  # summarize reads the grid; a store without one is not in the schema
        ds = sources.open_metadata(path)
        missing = [c for c in (schema.LATITUDE, schema.LONGITUDE) if c not in ds.variables]
        if not missing:
            raise
        raise errors.UserError(
            f"{str(path)!r} has no {' or '.join(missing)} coordinate; expected a store in "
            "the Tellus schema (see `tellus data validate`)",
            param="PATH",
        ) from None
    describe_.render(summary)


class RegridMethod(StrEnum):
    idw = "idw"
    nearest = "nearest"


def _grid_option(param: typer.CallbackParam, value: float | None) -> float | None:
    """Callback: a grid spacing in degrees that divides 180."""
    if value is not None:
        from tellus.data import regrid

        try:
            regrid.check_resolution(value)
        except ValueError as e:
            raise errors.UserError(str(e), param=errors.param_name(param)) from None
    return value


def _radius_option(param: typer.CallbackParam, value: float | None) -> float | None:
    """Callback: a positive number of km."""
    if value is not None and not value > 0:
        raise errors.UserError(
            f"{value:g} is not a positive distance in km", param=errors.param_name(param)
        )
    return value


@app.command()
def ingest(
    sources: Annotated[list[Path], typer.Argument(help="GRIB, NetCDF or Zarr inputs.")],
    to: Annotated[
        Path,
        typer.Option(
            "--to", help="Destination Zarr store.", callback=checks.replaceable_store_option
        ),
    ],
    time_chunk: Annotated[int, typer.Option(help="Time steps per Zarr chunk.", min=1)] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
    grid: Annotated[
        float | None,
        typer.Option(
            help="Curvilinear sources: spacing of the regular grid they are regridded onto, "
            "in degrees, dividing 180 (default: the source grid's).",
            callback=_grid_option,
        ),
    ] = None,
    regrid_method: Annotated[
        RegridMethod | None,
        typer.Option(
            help="Curvilinear sources: idw (inverse distance weighting of the nearest "
            "ocean points) or nearest (default: idw)."
        ),
    ] = None,
    regrid_neighbours: Annotated[
        int | None,
        typer.Option(help="Curvilinear sources: source points idw weighs (default: 8).", min=1),
    ] = None,
    regrid_radius: Annotated[
        float | None,
        typer.Option(
            help="Curvilinear sources: farthest a source point may lie from a target cell, "
            "in km (default: twice the source's largest cells).",
            callback=_radius_option,
        ),
    ] = None,
    scheduler: Scheduler = "local",
) -> None:
    """Convert real files into the schema (out of core, all-or-nothing).

    Curvilinear (tripolar) sources are regridded; noleap/360_day times become Gregorian.
    """
    from tellus.data import ingest as ingest_

    if to.exists() and not overwrite:
        raise errors.UserError(
            f"{str(to)!r} already exists; pass --overwrite to replace it", param="--to"
        )
    options = {
        "resolution": grid,
        "method": regrid_method.value if regrid_method else None,
        "neighbours": regrid_neighbours,
        "radius_km": regrid_radius,
    }
    regridding = None
    if any(v is not None for v in options.values()):
        from tellus.data import regrid

        regridding = regrid.Regridding(**{k: v for k, v in options.items() if v is not None})
    with _on_cluster(scheduler), _exit_on_data_error("ingest failed, nothing written"):
        ds = ingest_.ingest(
            sources, to, time_chunk=time_chunk, overwrite=overwrite, regridding=regridding
        )
    typer.echo(f"wrote {to}: {dict(ds.sizes)}, variables {sorted(ds.data_vars)}")


@app.command()
def validate(
    store: Annotated[
        str,
        typer.Argument(
            help="A Zarr store (path or fsspec URL).", callback=checks.existing_store_option
        ),
    ],
    full: Annotated[bool, typer.Option(help="Scan every value, not a sample.")] = False,
    allow_gaps: Annotated[bool, typer.Option(help="Accept gaps in time.")] = False,
) -> None:
    """Check a store against the schema; exits 1 with the reason if it fails (2 if there
    is no store)."""
    from tellus.data import validation

    with _exit_on_data_error("invalid", code=1):
        validation.open_dataset(
            store, check_values="full" if full else "sample", allow_gaps=allow_gaps
        )
    typer.echo(f"{store}: valid")


@app.command()
def stats(
    store: Annotated[
        str, typer.Argument(help="A Zarr store.", callback=checks.existing_store_option)
    ],
    step: Annotated[
        str,
        typer.Option(
            help="Model time step for difference statistics.", callback=checks.timedelta_option
        ),
    ] = "6h",
    start: Annotated[
        str | None,
        typer.Option(help="First date used (training split).", callback=checks.timestamp_option),
    ] = None,
    stop: Annotated[
        str | None,
        typer.Option(help="Last date used (training split).", callback=checks.timestamp_option),
    ] = None,
    climatology: Annotated[bool, typer.Option(help="Also compute the climatology.")] = True,
    scheduler: Scheduler = "local",
) -> None:
    """Compute normalization statistics (and climatology) next to the store."""
    from tellus.data import statistics, validation

    if start and stop and checks.timestamp(start, "--start") > checks.timestamp(stop, "--stop"):
        raise errors.UserError(f"--start {start} is after --stop {stop}")
    with _exit_on_data_error("cannot compute statistics"):
        ds = validation.open_dataset(store, allow_gaps=True)
    first, last = str(ds.time.values[0]), str(ds.time.values[-1])
    t0, t1 = checks.timestamp(first, "STORE"), checks.timestamp(last, "STORE")
    if start and checks.timestamp(start, "--start") > t1:
        raise errors.UserError(f"{start} is after the store's last time {t1}", param="--start")
    if stop and checks.timestamp(stop, "--stop") < t0:
        raise errors.UserError(f"{stop} is before the store's first time {t0}", param="--stop")
    time_range = (start or first, stop or last)
    with (
        _on_cluster(scheduler),
        _exit_on_data_error(f"cannot compute statistics with --step {step}"),
    ):
        out = statistics.write_statistics(
            ds, store, step=step, time_range=time_range, climatology=climatology
        )
    typer.echo(f"wrote {out}")
