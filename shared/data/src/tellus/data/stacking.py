"""The one conversion between xarray Datasets and stacked channel arrays.

Models see plain arrays ``[..., latitude, longitude, channel]``; users see Datasets. A
:class:`ChannelLayout` records which channel holds which ``(variable, level)``: a 3D variable
(dims ``level`` or ``depth``) contributes one channel per level, in the layout's level order,
and a surface or static variable contributes one channel. :func:`dataset_to_stacked` and
:func:`stacked_to_dataset` are inverse to each other given the layout (as graphcast's
functions of the same names), and every other module that needs channel positions (the
window source, the normalizer) asks the layout rather than recomputing them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from tellus.data import schema

VERTICAL_DIMS = (schema.LEVEL, schema.DEPTH)


def level_indices(coord: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Positions of ``levels`` in the coordinate ``coord`` (float-tolerant).

    Raises:
      KeyError: naming the missing levels.
    """
    coord = np.asarray(coord, dtype=np.float64)
    out = []
    missing = []
    for level in levels:
        hits = np.flatnonzero(np.isclose(coord, float(level), rtol=1e-6, atol=1e-6))
        if hits.size == 0:
            missing.append(level)
        else:
            out.append(int(hits[0]))
    if missing:
        raise KeyError(f"levels {missing} not in the coordinate {coord.tolist()}")
    return np.asarray(out, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class VariableChannels:
    """The channels of one variable.

    Attributes:
      name: the variable's name.
      vertical_dim: ``"level"``, ``"depth"`` or None for a 2D variable.
      levels: coordinate values of the channels, in order (empty for a 2D variable).
    """

    name: str
    vertical_dim: str | None = None
    levels: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(self.levels))
        if (self.vertical_dim is None) != (not self.levels):
            raise ValueError(f"{self.name}: give both vertical_dim and levels, or neither")
        if self.vertical_dim is not None and self.vertical_dim not in VERTICAL_DIMS:
            raise ValueError(f"{self.name}: vertical_dim must be one of {VERTICAL_DIMS}")

    @property
    def size(self) -> int:
        return max(len(self.levels), 1)


@dataclasses.dataclass(frozen=True)
class ChannelLayout:
    """The order of channels in a stacked array.

    Attributes:
      variables: each variable's channels, in channel order.
    """

    variables: tuple[VariableChannels, ...]

    def __post_init__(self):
        object.__setattr__(self, "variables", tuple(self.variables))
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate variables in layout: {names}")

    @classmethod
    def from_dataset(
        cls, ds: xr.Dataset, names: Sequence[str], levels: Sequence[float] = ()
    ) -> ChannelLayout:
        """The layout of ``names`` in ``ds``, taking ``levels`` from every 3D variable.

        Args:
          ds: a dataset (only its metadata is read) holding every variable of ``names``.
          names: variables in channel order.
          levels: levels (hPa) or depths (m) for the 3D variables, in channel order; the
            coordinate values are taken from ``ds`` so that they round-trip exactly.

        Returns:
          The layout.

        Raises:
          KeyError: for a variable or level missing from ``ds``.
          ValueError: for a 3D variable when ``levels`` is empty.
        """
        out = []
        for name in names:
            if name not in ds.data_vars:
                raise KeyError(f"variable {name!r} not in the dataset ({list(ds.data_vars)})")
            vertical = [d for d in ds[name].dims if d in VERTICAL_DIMS]
            if not vertical:
                out.append(VariableChannels(name))
                continue
            (dim,) = vertical
            if not levels:
                raise ValueError(f"{name!r} has a {dim!r} dim but no levels were given")
            coord = ds[dim].values
            picked = coord[level_indices(coord, levels)]
            out.append(VariableChannels(name, dim, tuple(picked.tolist())))
        return cls(tuple(out))

    def __add__(self, other: ChannelLayout) -> ChannelLayout:
        return ChannelLayout(self.variables + other.variables)

    def __len__(self) -> int:
        return self.num_channels

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    @property
    def num_channels(self) -> int:
        return sum(v.size for v in self.variables)

    @property
    def channels(self) -> tuple[tuple[str, float | None], ...]:
        """``(variable, level)`` of every channel in order; level is None for 2D variables."""
        return tuple((v.name, level) for v in self.variables for level in (v.levels or (None,)))

    def slices(self) -> dict[str, slice]:
        """The channel slice of each variable."""
        out, start = {}, 0
        for v in self.variables:
            out[v.name] = slice(start, start + v.size)
            start += v.size
        return out

    def index(self, name: str, level: float | None = None) -> int:
        """The channel of ``(name, level)``.

        Raises:
          KeyError: if the layout has no such channel.
        """
        for i, (n, lv) in enumerate(self.channels):
            if n == name and (
                (lv is None and level is None)
                or (lv is not None and level is not None and np.isclose(lv, level))
            ):
                return i
        raise KeyError(f"no channel ({name!r}, {level!r}) in layout")

    def __getitem__(self, name: str) -> VariableChannels:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)


def _leading_dims(ds: xr.Dataset, layout: ChannelLayout) -> tuple[str, ...]:
    """Dims other than vertical/lat/lon, in first-seen order over the layout's variables."""
    dims: list[str] = []
    for v in layout.variables:
        for d in ds[v.name].dims:
            if d not in VERTICAL_DIMS + schema.SPATIAL_DIMS and d not in dims:
                dims.append(d)
    return tuple(dims)


def dataset_to_stacked(ds: xr.Dataset, layout: ChannelLayout) -> np.ndarray:
    """Stacks the variables of ``layout`` into one array ``[..., latitude, longitude, channel]``.

    The leading dims ``...`` are the dims of the variables other than level/depth, latitude and
    longitude (``time``, ``batch``), in the order they first appear; a variable lacking one of
    them (a static field) is broadcast along it.

    Args:
      ds: the dataset, holding every variable and level of ``layout``.
      layout: the channel order.

    Returns:
      A numpy array (dtype promoted over the variables).
    """
    lead = _leading_dims(ds, layout)
    sizes = {d: ds.sizes[d] for d in lead}
    parts = []
    for v in layout.variables:
        da = ds[v.name]
        if v.vertical_dim is not None:
            da = da.isel({v.vertical_dim: level_indices(ds[v.vertical_dim].values, v.levels)})
            da = da.transpose(
                *[d for d in lead if d in da.dims], *schema.SPATIAL_DIMS, v.vertical_dim
            )
        else:
            da = da.transpose(*[d for d in lead if d in da.dims], *schema.SPATIAL_DIMS)
            da = da.expand_dims("_channel", axis=-1)
        missing = {d: sizes[d] for d in lead if d not in da.dims}
        if missing:
            da = da.expand_dims(missing)
        da = da.transpose(*lead, *da.dims[-3:])
        parts.append(np.asarray(da.values))
    return np.concatenate(parts, axis=-1)


def stacked_to_dataset(
    array: np.ndarray,
    layout: ChannelLayout,
    *,
    leading_dims: Sequence[str] = (),
    coords: Mapping[str, object] | xr.Coordinates | None = None,
) -> xr.Dataset:
    """Unstacks ``array [..., latitude, longitude, channel]`` into a Dataset.

    Args:
      array: the stacked array; its last axis has ``layout.num_channels`` entries.
      layout: the channel order the array was stacked with.
      leading_dims: names of the axes before latitude and longitude (``("time",)``).
      coords: coordinates to attach (``latitude``, ``longitude``, leading dims), e.g. a
        template dataset's ``.coords``; the vertical coordinates come from the layout.

    Returns:
      A dataset with one variable per layout entry, dims ``(*leading_dims, [level],
      latitude, longitude)``.

    Raises:
      ValueError: if the array's shape does not match the layout or ``leading_dims``.
    """
    array = np.asarray(array)
    if array.ndim != len(leading_dims) + 3:
        raise ValueError(
            f"array of shape {array.shape} needs {array.ndim - 3} leading dim names, "
            f"got {tuple(leading_dims)}"
        )
    if array.shape[-1] != layout.num_channels:
        raise ValueError(f"array has {array.shape[-1]} channels, layout {layout.num_channels}")
    lead = tuple(leading_dims)
    data_vars = {}
    vertical_coords: dict[str, np.ndarray] = {}
    for v, sl in zip(layout.variables, layout.slices().values(), strict=True):
        block = array[..., sl]
        if v.vertical_dim is None:
            data_vars[v.name] = (lead + schema.SPATIAL_DIMS, block[..., 0])
        else:
            levels = np.asarray(v.levels)
            known = vertical_coords.setdefault(v.vertical_dim, levels)
            if known.shape != levels.shape or not np.array_equal(known, levels):
                raise ValueError(f"variables disagree on the {v.vertical_dim!r} coordinate")
            data_vars[v.name] = (
                (*lead, v.vertical_dim, *schema.SPATIAL_DIMS),
                np.moveaxis(block, -1, len(lead)),
            )
    ds = xr.Dataset(data_vars, coords=vertical_coords)
    if coords is not None:
        for name, coord in coords.items():
            value = coord.variable if isinstance(coord, xr.DataArray) else coord
            dims = getattr(value, "dims", (name,))
            if not all(d in ds.dims for d in dims):
                continue
            if name in vertical_coords and not np.array_equal(
                np.asarray(value), vertical_coords[name]
            ):
                continue  # A template's full level axis: keep the layout's subset.
            ds = ds.assign_coords({name: value})
    return ds
