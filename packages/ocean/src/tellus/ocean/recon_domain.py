"""The ocean diffusion model's entry in the Domain registry (:mod:`tellus.training.domains`)
and its samples: one month's 3D temperature per sample, for the unconditional pretraining of
the ReconMOST-style reconstruction (Song et al. 2025).

The task: no inputs and no leads, the clean field itself -- ``temperature [lat, lon, depth]``
(deg C, NaN over land, depths as channels, the layout of :mod:`tellus.ocean.unet`) and its
``ocean`` mask ``[lat, lon, depth]`` (the store's ``ocean_mask`` where it has one, and a
finite value). The model: :class:`tellus.ocean.unet.UNetDenoiser`, whose bottleneck attention
is the shared :class:`~tellus.kernels.earth_trunk.EarthTrunk`; the loss: the epsilon MSE over
ocean cells (:func:`tellus.ocean.diffusion_loss.diffusion_loss`). Samples are read one month
at a time from the store by the shared grain loader (:func:`batches`), like every domain's.

A denoiser trains alone through ``fit`` or beside other domains on one trunk
(:func:`tellus.training.domains.train_domain`); it has no loader (``Domain.load``) yet: a
reconstruction is not a forecast of a dataset.
"""

from __future__ import annotations

import os

import numpy as np

from tellus.data import schema, sources, validation
from tellus.ocean import diffusion_loss as loss_lib
from tellus.ocean import unet
from tellus.training import checkpoint, domains, streams

NAME = "ocean_recon"
TEMPERATURE_VARIABLE = "sea_water_potential_temperature"
OCEAN_MASK = "ocean_mask"
KIND = checkpoint.Kind(name="ocean.diffusion", version=1, factory=unet.make_denoiser)


class Samples:
    """The months of a store as denoiser samples: ``temperature [lat, lon, depth]`` float32
    (NaN over land) and ``ocean [lat, lon, depth]`` bool, months within ``dates``.

    A random-access source for the shared grain loader
    (:class:`tellus.training.streams.LoaderStream`).

    Raises:
      SchemaError: the store is outside the schema.
      ValueError: it has no 3D temperature, or no month in ``dates``.
    """

    def __init__(
        self,
        store: str | os.PathLike,
        dates: sources.DateRange | None = None,
        *,
        variable: str = TEMPERATURE_VARIABLE,
    ):
        ds = validation.open_dataset(str(store), check_values="none")
        if variable not in ds.data_vars or schema.DEPTH not in ds[variable].dims:
            raise ValueError(
                f"{store}: the denoiser's samples need a 3D {variable!r} (time, depth, lat, "
                f"lon); the store has {sorted(map(str, ds.data_vars))}"
            )
        times = ds[schema.TIME].to_index()
        keep = np.ones(len(times), bool)
        if dates is not None:
            keep = (times >= dates.start) & (times < dates.stop)
        self.indices = np.flatnonzero(keep)
        if not len(self.indices):
            raise ValueError(f"{store}: no month of {variable!r} in {dates}")
        order = (schema.TIME, schema.LATITUDE, schema.LONGITUDE, schema.DEPTH)
        self.field = ds[variable].transpose(*order)
        self.times = times[self.indices]
        self.depths = ds[schema.DEPTH].to_numpy()
        first = np.asarray(self.field.isel({schema.TIME: 0}).values)
        ocean = np.isfinite(first)
        if OCEAN_MASK in ds.variables:
            mask = ds[OCEAN_MASK]
            if schema.DEPTH in mask.dims:
                mask = mask.transpose(schema.LATITUDE, schema.LONGITUDE, schema.DEPTH)
            else:
                mask = mask.transpose(schema.LATITUDE, schema.LONGITUDE).expand_dims(
                    {schema.DEPTH: len(self.depths)}, axis=-1
                )
            ocean &= np.asarray(mask.values) > 0
        self.ocean = ocean
        self.name = f"{os.path.basename(os.fspath(store))}:{variable}"

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        t = int(self.indices[int(index)])
        temp = np.asarray(self.field.isel({schema.TIME: t}).values, np.float32)
        return {
            loss_lib.TEMPERATURE: np.where(self.ocean, temp, np.nan).astype(np.float32),
            loss_lib.OCEAN: self.ocean & np.isfinite(temp),
        }

    def __repr__(self) -> str:
        # grain compares it when restoring an iterator state: keep it stable.
        return f"ReconSamples({self.name!r}, n={len(self)})"


def batches(source: Samples, batch_size: int, seed: int = 0) -> streams.LoaderStream:
    """Endless shuffled batches of ``source`` through the shared grain loader."""
    return streams.LoaderStream(source, batch_size, seed)


def make_config(source: Samples, preset: unet.UNetConfig, **changes) -> unet.UNetConfig:
    """``preset`` (e.g. ``unet.PRESETS["cpu"]``) on the grid and depths of ``source``, its
    bottleneck trunk re-fitted to that grid; ``changes`` replace other fields.

    Raises:
      ValueError: the result is not a valid config (e.g. groups not dividing a width).
    """
    import dataclasses

    n_lat, n_lon, n_depth = source.ocean.shape
    probe = dataclasses.replace(preset, n_lat=n_lat, n_lon=n_lon, depths=n_depth, **changes)
    tc = probe.trunk_config
    return dataclasses.replace(
        probe, trunk=unet.bottleneck_trunk(probe.bottleneck, tc.dim, tc.heads[0])
    )


DOMAIN = domains.Domain(
    name=NAME,
    summary="ocean reconstruction: ReconMOST's diffusion prior of the 3D temperature",
    kind=KIND,
    build=unet.make_denoiser,
    loss_fn=loss_lib.diffusion_loss,
    trunk_config=unet.trunk_config,
)

__all__ = ["DOMAIN", "KIND", "NAME", "Samples", "batches", "make_config"]
