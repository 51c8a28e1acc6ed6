"""How the ``tellus`` command reports a mistake a user can fix.

A bad option value, a missing store or folder, a store that is not in the schema, no
trained model yet: the command stops with one line on stderr,
``tellus: error: <what was wrong and what was expected>``, and exit status 2, before any
work starts wherever that can be checked up front. Any other exception is a bug and keeps
its traceback.

Exit status 1 keeps its meaning: the command ran and its answer is no (``tellus data
validate`` found the store invalid, ``tellus plan`` found the step does not fit) or it could
not run now (another process holds the store).

:class:`TellusGroup` is the one place that prints these lines: it is the root command's
class, so ``tellus ...`` and ``CliRunner().invoke(app, ...)`` report the same way.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import typer
import typer.core

PREFIX = "tellus: error: "
USAGE = 2  # click's status for usage errors, and ours for every mistake a user can fix


class UserError(typer.TyperException):
    """A mistake in the command line or its inputs: one line, exit status 2.

    Args:
      message: what was wrong and what was expected.
      param: the option or argument at fault (``--lead``, ``STORE``), put in front.
    """

    exit_code = USAGE

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(f"{param}: {message}" if param else message)


def one_line(text: str) -> str:
    """``text`` with its lines joined by ``; `` (library messages may span lines)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _data_errors() -> tuple[type[BaseException], ...]:
    """The data layer's errors about the user's data (see :mod:`tellus.data.errors`)."""
    from tellus.data.errors import IngestError, SchemaError

    return IngestError, SchemaError


def _busy_error() -> type[BaseException]:
    """Another process holds the store or run folder (exit 1: not a mistake; try later)."""
    from tellus.data.errors import LockedError

    return LockedError


@contextlib.contextmanager
def user_errors(
    *types: type[BaseException], what: str = "", param: str | None = None
) -> Iterator[None]:
    """Re-raises ``types`` (default: the data layer's schema and ingest errors) raised in
    the block as :class:`UserError`, ``what: message`` on one line.

    For the calls whose failure can only mean a bad input (a loader that finds no trained
    model raises ``FileNotFoundError``); a bug elsewhere keeps its traceback.
    """
    caught = types or _data_errors()
    try:
        yield
    except caught as e:
        if isinstance(e, _busy_error()):
            raise
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        raise UserError(f"{what}: {message}" if what else message, param=param) from e


def param_name(param: Any) -> str:
    """``--lead`` for an option, ``STORE`` for an argument (a click parameter)."""
    if param.param_type_name == "argument":
        return (param.name or "argument").upper()
    return max(param.opts, key=len) if param.opts else f"--{param.name}"


def _bad_parameter(e: typer.BadParameter) -> str:
    """``--preset: unknown preset 'huge'; ...``: click's ``Invalid value for '--preset':
    ...`` in the form of our own messages (the option first)."""
    hint: Any = e.param_hint
    if hint is None and e.param is not None:
        hint = param_name(e.param)
    if hint is None or type(e).__name__ == "MissingParameter":
        return e.format_message()
    if not isinstance(hint, str):
        hint = " / ".join(hint)
    message = e.message.removeprefix("Value error, ")  # typer's wording of a bad choice
    return f"{hint.strip(chr(39))}: {message}"


def report(e: BaseException, code: int = USAGE) -> int:
    """Prints ``tellus: error: <message>`` on stderr; returns the exit status."""
    if isinstance(e, typer.BadParameter):
        message, code = _bad_parameter(e), e.exit_code
    elif isinstance(e, typer.TyperException):  # click's errors (typer vendors click) and ours
        message, code = e.format_message(), e.exit_code
    else:
        message = str(e)
    typer.echo(PREFIX + one_line(message), err=True)
    return code


class TellusGroup(typer.core.TyperGroup):
    """The root ``tellus`` command: click's and typer's usage errors, :class:`UserError`
    and the data layer's errors about the user's data become one line on stderr."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:  # the caller handles exceptions itself
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except typer.TyperException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # `tellus data`: the help, printed
                sys.exit(e.exit_code)
            sys.exit(report(e))
        except typer.Abort:
            typer.echo("tellus: aborted", err=True)
            sys.exit(1)
        except Exception as e:
            if isinstance(e, _busy_error()):
                sys.exit(report(e, 1))
            if isinstance(e, _data_errors()):
                sys.exit(report(e))
            raise
        sys.exit(rv if isinstance(rv, int) else 0)


__all__ = [
    "PREFIX",
    "USAGE",
    "TellusGroup",
    "UserError",
    "one_line",
    "param_name",
    "report",
    "user_errors",
]
