"""``tellus data profiles ...``: sample Argo-like profiles from a store, ingest a user's own.

``sample`` draws whole profiles at random ocean columns of a store (the months given, a
stated coverage), splits them by profile into guidance and withheld check points and writes
both as observation tables. ``ingest`` reads a table (CSV or NetCDF with the columns of
:data:`tellus.data.profiles.COLUMNS`) or an Argo profile NetCDF (pressure converted to depth
with TEOS-10, quality flags 1/2 kept), checks every row against a store's grid when one is
given (a point on land, outside the grid or below its deepest level is refused in one line)
and writes the table. Each command parses its options and calls :mod:`tellus.data`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import checks, errors

app = typer.Typer(
    help="Observation tables: sample Argo-like profiles from a store, ingest your own.",
    no_args_is_help=True,
)

TEMPERATURE = "sea_water_potential_temperature"
_SUFFIXES = (".csv", ".nc", ".nc4", ".netcdf")


class Format(StrEnum):
    auto = "auto"
    table = "table"
    argo = "argo"


@contextlib.contextmanager
def _one_line(what: str) -> Iterator[None]:
    """A data-layer error (bad file, bad row) as one line with exit status 2."""
    from tellus.data.errors import SchemaError

    try:
        yield
    except (SchemaError, FileNotFoundError, OSError) as e:
        raise errors.UserError(f"{what}: {errors.one_line(str(e))}") from e


def _table_path(value: Path | None, option: str) -> Path | None:
    if value is not None and value.suffix.lower() not in _SUFFIXES:
        raise errors.UserError(
            f"{str(value)!r} is not a .csv or .nc file name (the table's format)", param=option
        )
    return value


def _months(value: str | None, times) -> list:
    """The store's times within ``START:END`` (inclusive, any pandas date), or all."""
    import pandas as pd

    times = pd.DatetimeIndex(times)
    if value is None:
        return list(times)
    start, sep, end = value.partition(":")
    try:
        lo = pd.Timestamp(start) if start else times[0]
        hi = pd.Timestamp(end) if end else times[-1]
    except ValueError:
        raise errors.UserError(
            f"{value!r} is not START:END of two dates (2001-01:2001-12)", param="--times"
        ) from None
    if not sep:
        hi = lo
    chosen = times[(times >= lo) & (times <= hi)]
    if not len(chosen):
        raise errors.UserError(
            f"no time of the store lies in {value!r}; it spans {times[0]:%Y-%m-%d} to "
            f"{times[-1]:%Y-%m-%d}",
            param="--times",
        )
    return list(chosen)


@app.command()
def sample(
    store: Annotated[
        Path, typer.Argument(help="A store in the schema.", callback=checks.existing_store_option)
    ],
    out: Annotated[Path, typer.Option(help="The guidance table (.csv or .nc).")],
    withheld_out: Annotated[
        Path | None,
        typer.Option(help="The withheld check points' table (.csv or .nc); with --withheld."),
    ] = None,
    variable: Annotated[str, typer.Option(help="The variable observed.")] = TEMPERATURE,
    coverage: Annotated[
        float, typer.Option(help="Share of the ocean points observed, in (0, 1]; Argo: 0.01-0.1.")
    ] = 0.05,
    withheld: Annotated[
        float, typer.Option(help="Share of each month's profiles withheld for checking.")
    ] = 0.0,
    times: Annotated[
        str | None, typer.Option(help="START:END of the months to sample (default: all).")
    ] = None,
    max_depth: Annotated[float, typer.Option(help="The deepest depth a profile reaches (m).")] = (
        2000.0
    ),
    seed: Annotated[int, typer.Option(help="Seeds the draw and the split.")] = 0,
) -> None:
    """Sample whole Argo-like profiles at random ocean columns of STORE and write them."""
    from tellus.data import profile_io, profiles, schema, validation

    if not 0.0 < coverage <= 1.0:
        raise errors.UserError(f"{coverage} is not in (0, 1]", param="--coverage")
    if not 0.0 <= withheld < 1.0:
        raise errors.UserError(f"{withheld} is not in [0, 1)", param="--withheld")
    if (withheld > 0) != (withheld_out is not None):
        raise errors.UserError(
            "give --withheld-out with a --withheld share above 0 (and only then)",
            param="--withheld-out",
        )
    if max_depth <= 0:
        raise errors.UserError(
            f"{max_depth} m is not a depth below the surface", param="--max-depth"
        )
    _table_path(out, "--out")
    _table_path(withheld_out, "--withheld-out")
    with _one_line("STORE"):
        ds = validation.open_dataset(str(store), check_values="none")
    if variable not in ds.data_vars:
        raise errors.UserError(
            f"{str(store)!r} has no {variable!r}; it has {sorted(map(str, ds.data_vars))}",
            param="--variable",
        )
    if schema.DEPTH not in ds[variable].dims:
        raise errors.UserError(
            f"{variable!r} has no depth dimension to profile", param="--variable"
        )
    chosen = _months(times, ds[schema.TIME].to_numpy())
    table = profiles.sample_profiles(
        ds, variable, coverage, seed=seed, times=chosen, max_depth=max_depth
    )
    guidance, check = profiles.split(table, withheld, seed=seed + 1)
    cells = [c for c in ("time_index", "depth_index", "lat_index", "lon_index") if c in table]
    with _one_line("writing the tables"):
        profile_io.write_table(guidance.drop(columns=cells), out)
        if withheld_out is not None:
            profile_io.write_table(check.drop(columns=cells), withheld_out)
    achieved = table.attrs.get("achieved_coverage") or [0.0]
    typer.echo(
        f"{guidance['profile'].nunique()} guidance profiles ({len(guidance)} points) -> {out}"
        + (
            f"; {check['profile'].nunique()} withheld ({len(check)} points) -> {withheld_out}"
            if withheld_out is not None
            else ""
        )
        + f"; {len(chosen)} months, coverage {sum(achieved) / len(achieved):.2%} "
        f"(asked {coverage:.2%})"
    )


@app.command()
def ingest(
    source: Annotated[Path, typer.Argument(help="A table (.csv, .nc) or an Argo profile file.")],
    out: Annotated[Path, typer.Option(help="The table written (.csv or .nc).")],
    format: Annotated[
        Format, typer.Option(help="table, argo, or auto (an Argo file has N_PROF).")
    ] = Format.auto,
    grid: Annotated[
        Path | None,
        typer.Option(
            help="A store whose grid every row must fit (ocean, inside, above the bottom).",
            callback=checks.existing_store_option,
        ),
    ] = None,
    variable: Annotated[
        str | None,
        typer.Option(help="The variable (a table without a variable column; Argo: TEMP/PSAL)."),
    ] = None,
) -> None:
    """Read observations (a table or Argo profiles), check them against a grid, write a table."""
    from tellus.data import profile_grid, profile_io, validation

    if not source.is_file():
        raise errors.UserError(f"{str(source)!r} is not a file", param="SOURCE")
    _table_path(out, "--out")
    kind = format
    if kind is Format.auto:
        kind = Format.argo if profile_io.is_argo(source) else Format.table
    with _one_line("SOURCE"):
        if kind is Format.argo:
            table = profile_io.read_argo(source, variable=variable or TEMPERATURE)
        else:
            table = profile_io.read_table(source, variable=variable)
    if grid is not None:
        with _one_line("--grid"):
            ds = validation.open_dataset(str(grid), check_values="none")
            gridded = profile_grid.to_grid(table, ds)
        typer.echo(f"every row fits {grid}: {gridded.n_points} observed cells")
    with _one_line("writing the table"):
        profile_io.write_table(table, out)
    typer.echo(f"{table['profile'].nunique()} profiles ({len(table)} points) -> {out}")
