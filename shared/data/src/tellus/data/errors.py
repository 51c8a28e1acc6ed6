"""Errors raised by the Tellus data layer.

Both subclass a builtin so callers that only know the builtin still catch them:

* :class:`SchemaError` (a ``ValueError``): the data does not match the schema of
  :mod:`tellus.data.schema` (a wrong dim, unit, order, or an ambiguous coordinate).
* :class:`IngestError` (a ``RuntimeError``): a source could not be read or merged (a corrupt
  or truncated file, grids that disagree, a store that already exists).
"""

from __future__ import annotations


class SchemaError(ValueError):
    """Data does not match the Tellus schema; the message names the variable, dim or file."""


class IngestError(RuntimeError):
    """A source could not be ingested; the message names the file and what went wrong."""
