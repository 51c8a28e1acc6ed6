"""Checks of the ``tellus`` command's options, made before any work starts.

Each raises :class:`~tellus.pipelines.errors.UserError` naming the option and what it
expected. The ``*_option`` functions are typer callbacks (``typer.Option(callback=...)``):
they run while the command line is parsed, name the option as the user typed it and return
the value unchanged, so the commands can still be called from Python with plain values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import typer

from tellus.pipelines.errors import UserError, param_name

DURATION_EXAMPLE = "a duration such as 6h, 5d"


def timedelta(text: str, param: str):
    """``text`` (``6h``, ``5d``, ``30min``) as a positive ``pandas.Timedelta``."""
    import pandas as pd

    s = str(text).strip()
    try:
        # A bare number would be nanoseconds to pandas: ask for the unit.
        if not re.fullmatch(r"(\d+(\.\d*)?\s*[A-Za-z]+\s*)+", s):
            raise ValueError(s)
        td = pd.Timedelta(re.sub(r"(?<=\d)d$", "D", s))  # "10d" as users write it
    except ValueError:
        raise UserError(f"{text!r} is not {DURATION_EXAMPLE}", param=param) from None
    if td <= pd.Timedelta(0):
        raise UserError(f"{text!r} is not a positive duration such as 6h, 5d", param=param)
    return td


def hours(text: str, param: str) -> int:
    """``"6h"`` -> 6, ``"5d"`` -> 120: a positive whole number of hours, as
    :mod:`tellus.atmosphere.forecast` reads leads and intervals."""
    import pandas as pd

    h = timedelta(text, param) / pd.Timedelta("1h")
    if h != int(h):
        raise UserError(f"{text!r} is not a whole number of hours such as 6h, 5d", param=param)
    return int(h)


def duration_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """Callback: ``value`` is a positive whole number of hours (``6h``, ``5d``)."""
    if value is not None:
        hours(value, param_name(param))
    return value


def timedelta_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """Callback: ``value`` is a positive duration (``6h``, ``30min``)."""
    if value is not None:
        timedelta(value, param_name(param))
    return value


def timestamp(text: str, param: str):
    """``text`` as a ``pandas.Timestamp`` (``2000-03-01T00``, ``2000-03-01``)."""
    import pandas as pd

    try:
        t = pd.Timestamp(text)
    except ValueError:
        t = None
    if t is None or t is pd.NaT:
        raise UserError(f"{text!r} is not a date or time such as 2000-03-01T00", param=param)
    return t


def timestamps_option(param: typer.CallbackParam, value: list[str] | None) -> list[str] | None:
    """Callback: every value is a date or time."""
    for text in value or ():
        timestamp(text, param_name(param))
    return value


def timestamp_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """Callback: ``value`` is a date or time."""
    if value is not None:
        timestamp(value, param_name(param))
    return value


def choice(value: str, choices: Iterable[str], param: str) -> str:
    """``value`` is one of ``choices``."""
    known = list(choices)
    if value not in known:
        raise UserError(f"{value!r} is not one of {', '.join(known)}", param=param)
    return value


def mesh_sizes(spec: str, param: str = "--mesh", *, allow_rest: bool = True) -> dict[str, int]:
    """``"data=32,fsdp=8"`` -> ``{"data": 32, "fsdp": 8}`` (:mod:`tellus.kernels.mesh`'s
    rules: known axes, sizes >= 1, at most one -1 for the devices left when
    ``allow_rest``)."""
    from tellus.kernels import mesh

    try:
        sizes = mesh.parse_mesh_spec(spec)
    except ValueError as e:
        raise UserError(str(e), param=param) from None
    if not allow_rest and any(v == -1 for v in sizes.values()):
        raise UserError(f"give every axis size explicitly (no -1) in {spec!r}", param=param)
    return sizes


def _is_url(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def is_zarr_store(path: Path) -> bool:
    """A folder with Zarr (format 2 or 3) group metadata."""
    return path.is_dir() and any((path / m).is_file() for m in ("zarr.json", ".zgroup"))


def existing_store(path: str | os.PathLike, param: str, missing_hint: str = "") -> None:
    """``path`` is a Zarr store (fsspec URLs are left to the reader); ``missing_hint`` ends
    the message when there is nothing at ``path``."""
    if _is_url(path):
        return
    p = Path(path)
    where = f"{str(path)!r}"
    if not p.exists():
        raise UserError(f"{where} does not exist{missing_hint}", param=param)
    if not is_zarr_store(p):
        what = "a file" if not p.is_dir() else "a folder without Zarr metadata"
        raise UserError(f"{where} is {what}; expected a Zarr store", param=param)


def schema_store(path: str | os.PathLike, param: str, missing_hint: str = "") -> None:
    """``path`` is a Zarr store in the Tellus schema (dims, coordinates, units; its values
    are not read)."""
    from tellus.data import validation
    from tellus.data.errors import SchemaError

    existing_store(path, param, missing_hint)
    try:
        validation.open_dataset(path, allow_gaps=True, check_values="none")
    except (SchemaError, FileNotFoundError) as e:
        raise UserError(
            f"{str(path)!r} is not a store in the Tellus schema: {e}", param=param
        ) from None


def schema_store_option(param: typer.CallbackParam, value: Path | str | None):
    """Callback: ``value``, when given, is a Zarr store in the Tellus schema."""
    if value is not None:
        schema_store(value, param_name(param))
    return value


def existing_store_option(param: typer.CallbackParam, value: Path | str | None):
    """Callback: ``value``, when given, is a Zarr store."""
    if value is not None:
        existing_store(value, param_name(param))
    return value


def existing_dir(path: str | os.PathLike, param: str, hint: str = "") -> None:
    """``path`` is a folder."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{str(path)!r} does not exist{hint}", param=param)
    if not p.is_dir():
        raise UserError(f"{str(path)!r} is a file; expected a folder{hint}", param=param)


def writable_dir(path: str | os.PathLike, param: str) -> None:
    """``path`` is a folder, or can be made one: nothing on the way is a file and the
    nearest folder that exists is writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{str(path)!r} is a file; expected a folder", param=param)
    _creatable(p, param)


def _creatable(p: Path, param: str) -> None:
    parent = p.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot create {str(p)!r}: {str(parent)!r} is a file", param=param)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot create {str(p)!r}: {str(parent)!r} is not writable", param=param)


def writable_dir_option(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Callback: ``value`` is, or can be made, a folder."""
    if value is not None:
        writable_dir(value, param_name(param))
    return value


def replaceable_store_option(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Callback: ``value`` is a Zarr store to write (and replace): nothing there, or a Zarr
    store, never another folder or a file (replacing it would delete it)."""
    if value is not None:
        if value.exists() and not is_zarr_store(value):
            what = "a file" if not value.is_dir() else "a folder that is not a Zarr store"
            raise UserError(
                f"{str(value)!r} is {what} and would be replaced; give a new path or a store",
                param=param_name(param),
            )
        _creatable(value, param_name(param))
    return value


def new_file_option(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Callback: ``value`` is a file that can be written: not a folder, in a folder that
    exists."""
    if value is not None:
        name = param_name(param)
        if value.is_dir():
            raise UserError(f"{str(value)!r} is a folder; expected a file name", param=name)
        parent = value.absolute().parent
        if not parent.is_dir():
            raise UserError(
                f"the folder of {str(value)!r} ({str(parent)!r}) does not exist", param=name
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"{str(parent)!r} is not writable", param=name)
    return value


__all__ = [
    "DURATION_EXAMPLE",
    "choice",
    "duration_option",
    "existing_dir",
    "existing_store",
    "existing_store_option",
    "hours",
    "is_zarr_store",
    "mesh_sizes",
    "new_file_option",
    "param_name",
    "replaceable_store_option",
    "schema_store",
    "schema_store_option",
    "timedelta",
    "timedelta_option",
    "timestamp",
    "timestamp_option",
    "timestamps_option",
    "writable_dir",
    "writable_dir_option",
]
