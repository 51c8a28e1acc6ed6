"""The diffusion model's units for the embedded ocean: temperature anomalies from a
calendar-month climatology, scaled per depth level.

ReconMOST (Song et al. 2025) diffuses the full temperature mapped from [-5, 40] C to
[-1, 1] (:func:`tellus.ocean.diffusion.to_unit`). The embedded ocean's months differ from
their calendar month's mean by about a tenth of a degree (its anomalies are small against
the 45 C range), so in those units a CPU-sized denoiser's error is many times the signal,
and a reconstruction is worse than the climatology before any observation is used. Here
the field the model sees is instead::

    x = (T - clim[month]) / (width * std[depth]),    T = clim[month] + width * std[depth] x

``clim`` the mean of each calendar month and ``std`` the root-mean-square anomaly of each
depth level over the ocean. The climatology is that of the training months (the model
run's for the pretraining, the observed run's first years for the fine-tuning: the months
the climatology baseline is fitted on); the scale is the pretraining's in both phases, so
that a unit means the same to the network before and after the fine-tuning (the model
run's anomalies, over its twelve years, include its drift and are the wider ones).

``width`` = 1: the pretraining months have unit variance, the variance the diffusion's
noise is scaled to. The denoiser predicts the noise (ReconMOST's epsilon prediction), and
its clean estimate is ``(x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)``: an error of the
predicted noise is multiplied by ``(1 - abar) / abar`` in the clean estimate. With the
anomalies at 1/8 of the noise's scale (``width`` 8, this module's first form), the CPU
denoiser's noise error (a floor of 0.018 in mean square) gave clean estimates worse than
predicting zero from t = 200 of 1 000 (mean square 0.013 at t = 200 and 0.2 at t = 500,
against the data's 0.005), and the samples' variance was twenty times the truth's. The
months a reconstruction is asked for lie years after the fitting months and the embedded
ocean drifts, so their anomalies reach several standard deviations: the sampler clips its
clean estimate at :attr:`AnomalyScaling.clip` = :data:`CLIP_STD` standard deviations, not
at 1. Land is 0.

:class:`AnomalySamples` turns the months of a :class:`tellus.ocean.recon_domain.Samples`
into such fields (``{"x0", "ocean"}``, what :func:`tellus.ocean.diffusion_loss.diffusion_loss`
takes in place of a temperature).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from tellus.ocean import diffusion_loss as loss_lib
from tellus.ocean import recon_domain

WIDTH = 1.0
# The clean estimate is clipped at this many standard deviations (in any width).
CLIP_STD = 8.0
MIN_STD = 1e-3  # deg C: a level without variability is not divided by zero
FILE = "scaling.npz"


@dataclasses.dataclass(frozen=True, eq=False)
class AnomalyScaling:
    """Calendar-month climatology and per-depth anomaly scale.

    Attributes:
      climatology: float32 ``[12, depth, lat, lon]`` (deg C, January first), NaN over land.
      std: float64 ``[depth]``, the RMS anomaly of each level (deg C).
      width: how many ``std`` map to 1.
    """

    climatology: np.ndarray
    std: np.ndarray
    width: float = WIDTH

    @classmethod
    def fit(
        cls, source: recon_domain.Samples, width: float = WIDTH, std: np.ndarray | None = None
    ) -> AnomalyScaling:
        """From every month of ``source`` (``std`` given: that scale, the climatology of
        ``source``).

        Raises:
          ValueError: a calendar month is missing from its months.
        """
        months = np.asarray(source.times.month)
        if set(months.tolist()) != set(range(1, 13)):
            raise ValueError(
                f"{source.name}: an anomaly scaling needs every calendar month; the months "
                f"hold {sorted(set(months.tolist()))}"
            )
        field = np.asarray(source.field.isel(time=source.indices).values, np.float64)
        wet = source.ocean[None] & np.isfinite(field)  # [time, lat, lon, depth]
        field = np.where(wet, field, 0.0)
        clim = np.empty((12, *field.shape[1:]))
        for m in range(1, 13):
            n = wet[months == m].sum(axis=0)
            total = field[months == m].sum(axis=0)
            clim[m - 1] = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        anomaly = np.where(wet, field - np.nan_to_num(clim[months - 1]), 0.0)
        n = wet.sum(axis=(0, 1, 2))
        rms = np.sqrt((anomaly**2).sum(axis=(0, 1, 2)) / np.maximum(n, 1))
        std = np.maximum(rms, MIN_STD) if std is None else np.asarray(std, np.float64)
        return cls(np.moveaxis(clim, -1, 1).astype(np.float32), std, float(width))

    @property
    def clip(self) -> float:
        """The bound of the sampler's clean estimate in model units (:data:`CLIP_STD`
        standard deviations)."""
        return CLIP_STD / self.width

    def _parts(self, months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        months = np.asarray(months, np.int64)
        if months.ndim != 1 or np.any((months < 1) | (months > 12)):
            raise ValueError(f"months must be calendar months 1-12, one per time; got {months}")
        return self.climatology[months - 1], (self.width * self.std)[None, :, None, None]

    def encode(self, temperature: np.ndarray, months: np.ndarray) -> np.ndarray:
        """Deg C ``[time, depth, lat, lon]`` -> model units, 0 over land and where NaN."""
        clim, scale = self._parts(months)
        x = (np.asarray(temperature, np.float64) - clim) / scale
        return np.where(np.isfinite(x), x, 0.0).astype(np.float32)

    def decode(self, x: np.ndarray, months: np.ndarray) -> np.ndarray:
        """Model units ``[..., time, depth, lat, lon]`` -> deg C, NaN over land."""
        clim, scale = self._parts(months)
        return (clim + scale * np.asarray(x, np.float64)).astype(np.float32)

    def save(self, path: str | os.PathLike) -> None:
        np.savez(path, climatology=self.climatology, std=self.std, width=self.width)

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnomalyScaling:
        with np.load(path) as f:
            return cls(f["climatology"], f["std"], float(f["width"]))

    @classmethod
    def of(cls, workdir: str | os.PathLike) -> AnomalyScaling | None:
        """The scaling a ``fit`` workdir was trained in (None: ReconMOST's [-5, 40] C)."""
        path = Path(workdir) / FILE
        return cls.load(path) if path.exists() else None


class AnomalySamples:
    """The months of ``source`` in the scaling's units: ``{"x0": [lat, lon, depth] float32
    (0 over land), "ocean": [lat, lon, depth] bool}`` (a grain random-access source)."""

    def __init__(self, source: recon_domain.Samples, scaling: AnomalyScaling):
        self.source = source
        self.scaling = scaling
        self.months = np.asarray(source.times.month)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        s = self.source[int(index)]
        t = np.moveaxis(s[loss_lib.TEMPERATURE], -1, 0)[None]  # [1, depth, lat, lon]
        x = self.scaling.encode(t, self.months[int(index) : int(index) + 1])[0]
        ocean = s[loss_lib.OCEAN]
        x = np.where(ocean, np.moveaxis(x, 0, -1), 0.0).astype(np.float32)
        return {loss_lib.X0: x, loss_lib.OCEAN: ocean}

    def __repr__(self) -> str:
        # grain compares it when restoring an iterator state: keep it stable.
        return f"AnomalySamples({self.source!r})"


__all__ = ["CLIP_STD", "FILE", "WIDTH", "AnomalySamples", "AnomalyScaling"]
