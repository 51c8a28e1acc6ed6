"""Where jobs put their outputs by default: ``$TELLUS_DATA`` or ``./data``."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The folder for built datasets (``$TELLUS_DATA``, default ``./data``)."""
    return Path(os.environ.get("TELLUS_DATA", "data"))


def default_store(name: str) -> Path:
    """The default path of the embedded dataset ``name`` (e.g. ``atmosphere``)."""
    return data_dir() / f"{name}.zarr"
