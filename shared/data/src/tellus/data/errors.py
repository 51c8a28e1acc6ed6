"""Errors raised by the Tellus data layer.

Each subclasses a builtin so callers that only know the builtin still catch them:

* :class:`SchemaError` (a ``ValueError``): the data does not match the schema of
  :mod:`tellus.data.schema` (a wrong dim, unit, order, or an ambiguous coordinate).
* :class:`IngestError` (a ``RuntimeError``): a source could not be read or merged (a corrupt
  or truncated file, grids that disagree, a store that already exists).
* :class:`LockedError` (an ``IngestError``): a store or run directory is in use by another
  live process (see :mod:`tellus.data.locking`); it is an ``IngestError`` so that whatever
  reports a store that cannot be written (``tellus data ...``) reports this one too.
"""

from __future__ import annotations

from typing import Any


class SchemaError(ValueError):
    """Data does not match the Tellus schema; the message names the variable, dim or file."""


class IngestError(RuntimeError):
    """A source could not be ingested; the message names the file and what went wrong."""


class LockedError(IngestError):
    """Another process holds the lock on a store or run directory.

    The message is one line naming the holder's pid, host, purpose and start time.

    Attributes:
      directory: what is locked.
      holder: the details the holder wrote into the lock file (None if it wrote none yet).
    """

    def __init__(self, message: str, *, directory: Any = None, holder: dict | None = None):
        super().__init__(message)
        self.directory = directory
        self.holder = holder

    def __reduce__(self):  # picklable (multiprocessing) despite the keyword arguments
        return (type(self), (str(self),), self.__dict__)
