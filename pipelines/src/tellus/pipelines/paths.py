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


def default_folder(name: str) -> Path:
    """The default folder of the embedded dataset ``name`` that is several stores (the ocean:
    ``model.zarr``, ``observed.zarr`` and the spin-up's restart beside them)."""
    return data_dir() / name
