"""The ocean forecaster: months 1-6 from one initial state, in physical units, and rollouts.

:class:`OceanForecaster` wraps the network (:class:`tellus.ocean.model.OceanNet`, parameter
paths ``net/...``) with the calendar-month normalization of its config
(:mod:`tellus.ocean.normalization`). It takes stacked raw channels, as the data layer's
:class:`~tellus.data.sources.WindowSource` yields them for :func:`task_for`::

    x        [B, lat, lon, C]        the initial state (NaN or anything over land)
    forcing  [B, lat, lon, F]        the initial month's wind stress (ORCA-DL), or
             [B, L, lat, lon, F]     the observed wind stress of every lead's month
                                     (``observed_forcing``, a Tellus extension)
    month    [B]                     the initial state's calendar month (1..12)
    ocean    [B | 1, lat, lon]       True over the ocean (the store's ``ocean_mask``)

and predicts the states ``m = 1 .. 6`` months later directly, one network call per lead
(the leads are folded into the batch): the initial month's forcing is encoded once and
mixed into every lead through the lead's rotary embedding; each lead goes through the
experts ``(m - 1) mod 6``. The state and the forcing are normalized with their own month's
statistics, each lead's prediction with its target month's.

Land: raw inputs are replaced by zeros over land by a ``where`` before any arithmetic, and
again after normalizing (so that land reads 0 to the network); outputs over land are NaN,
as the schema has them; the loss (:func:`loss_fn`) weighs the ocean only
(:func:`tellus.ocean.loss.ocean_mse`).

The base the network's output is added to (``residual``): the initial state in each lead
month's units (persistence), or with ``anomaly_base`` damped anomaly persistence about a
calendar-month climatology of every grid point, ``ref[m + k] + a[k] (x - ref[m])``: the
climatology ``ref`` a buffer of the model (:class:`Reference`, set by :func:`set_reference`
to the climatology of the phase's own training months, stored in its checkpoints, never
trained) and the damping ``a`` per lead span ``k`` (1..6 months from the state) and channel a
trained parameter, initialized with the lag-``k`` regression of the training months'
anomalies (``ForecasterConfig.damping``). With a zero network output the forecaster is then
the climatology at long leads and persistence of the anomaly at short ones, which a rollout
keeps near the climatology's mean state instead of carrying every increment's error forward.
With ``forcing_modes`` ``K`` the base also answers the wind: ``+ sum_j p_j R[k, j]``, ``p_j``
the initial month's forcing anomaly (from a calendar-month climatology of every grid point)
projected on the ``j``-th of ``K`` patterns, ``R`` the response of every grid point, channel
and span to each, buffers fitted by least squares on the training months
(:func:`tellus.ocean.domain.forcing_response`). Damped persistence alone loses a rollout's
variability (each restart damps the anomaly, and nothing adds new ones); the wind stress is
what drives the embedded ocean's variability, and the response adds it back. The term is
used only where the forcing is the state's own month's (``offset`` 0, as every block of a
rollout with ``restart_forcing`` has).

Longer forecasts (:func:`rollout`) restart from each sixth month: months ``6k + 1 .. 6k +
6`` are predicted from the forecast of month ``6k`` as the state, with the lead counted
from the initial month (so the experts cycle and the rotary embedding tells how old the
initial month's wind stress is, as ORCA-DL's multi-step forecast does), and the same
forcing: the initial month's, encoded once, or with ``observed_forcing`` each month's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tellus.data import schema, tasks
from tellus.kernels import earth_trunk
from tellus.ocean import loss as loss_lib
from tellus.ocean import model as model_lib
from tellus.ocean.normalization import MonthlyNormalizer, month_after
from tellus.training import checkpoint

# ORCA-DL's variables in the schema's names: temperature, salinity and the two velocity
# components on every depth, then SST and SSH; the wind stress is the forcing.
VARIABLES = (
    "sea_water_potential_temperature",
    "sea_water_salinity",
    "eastward_sea_water_velocity",
    "northward_sea_water_velocity",
    "sea_surface_temperature",
    "sea_surface_height",
)
FORCINGS = ("surface_downward_eastward_stress", "surface_downward_northward_stress")
STATICS = ("ocean_mask",)
LEADS = (1, 2, 3, 4, 5, 6)
RESTART = 6


def channels_of(variables: Sequence[str], depths: Sequence[float]) -> tuple[int, ...]:
    """Channels of each variable: its depths for an ``ocean_3d`` variable, else 1.

    Raises:
      ValueError: an unknown variable.
    """
    out = []
    for name in variables:
        var = schema.VARIABLES.get(name)
        if var is None:
            raise ValueError(f"unknown variable {name!r}; see tellus.data.schema")
        out.append(len(depths) if var.kind == "ocean_3d" else 1)
    return tuple(out)


def task_for(
    depths: Sequence[float],
    leads: Sequence[int] = LEADS,
    variables: Sequence[str] = VARIABLES,
    forcings: Sequence[str] = FORCINGS,
) -> tasks.TaskConfig:
    """The data task: the state of one month -> the states ``leads`` months later, the wind
    stress at the initial and every lead's month, the ocean mask as the one static field."""
    return tasks.TaskConfig.ocean(
        depths=depths, lead_months=leads, variables=variables, forcings=forcings, static=STATICS
    )


@dataclasses.dataclass(frozen=True)
class ForecasterConfig:
    """Everything needed to rebuild a trained forecaster (JSON-serializable).

    Attributes:
      net: the network (:class:`tellus.ocean.model.NetConfig` fields).
      variables: the state's variables in channel order.
      forcings: the forcing's variables in channel order.
      depths: the 3D variables' depths (m).
      latitude: grid latitudes (degrees, ascending), for the loss weights.
      mean, std: ``[12][C]`` per calendar month and state channel.
      forcing_mean, forcing_std: ``[12][F]`` per calendar month and forcing channel.
      leads: the lead months trained (a subset of 1..6 usually).
      thickness: the layers' thicknesses (m) for the loss (a store's ``layer_thickness``);
        None: halfway between the depths (:func:`tellus.ocean.loss.layer_thickness`).
      observed_forcing: each lead gets its own month's observed forcing (a Tellus
        extension) instead of the initial month's.
      residual: the network predicts each lead's change from the initial state (the state
        in the lead month's units plus the network's output, a Tellus extension; ORCA-DL
        predicts the state itself). Off in configs written before it existed.
      anomaly_base: the residual's base is damped anomaly persistence about the model's
        :class:`Reference` climatology (module docstring) instead of the initial state.
      damping: ``[RESTART][C]`` the initial damping of the anomaly base per lead span and
        channel (None: 1, undamped).
      zero_init: every decoder's last projection (its patch recovery) starts at zero, so
        that a residual forecaster starts as its base and training adds only what improves
        on it (a randomly initialized projection adds noise the training must first remove).
      forcing_modes: the anomaly base also answers the initial month's forcing anomaly
        linearly through this many of its leading modes (module docstring; 0: it does not).
    """

    net: dict[str, Any]
    variables: tuple[str, ...]
    depths: tuple[float, ...]
    latitude: tuple[float, ...]
    mean: tuple[tuple[float, ...], ...]
    std: tuple[tuple[float, ...], ...]
    forcing_mean: tuple[tuple[float, ...], ...]
    forcing_std: tuple[tuple[float, ...], ...]
    forcings: tuple[str, ...] = FORCINGS
    leads: tuple[int, ...] = LEADS
    thickness: tuple[float, ...] | None = None
    observed_forcing: bool = False
    residual: bool = False
    anomaly_base: bool = False
    damping: tuple[tuple[float, ...], ...] | None = None
    zero_init: bool = False
    forcing_modes: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "net", model_lib.NetConfig(**dict(self.net)).to_dict())
        for f in ("variables", "forcings"):
            object.__setattr__(self, f, tuple(str(v) for v in getattr(self, f)))
        for f in ("depths", "latitude"):
            object.__setattr__(self, f, tuple(float(v) for v in getattr(self, f)))
        object.__setattr__(self, "leads", tuple(int(m) for m in self.leads))
        if self.thickness is not None:
            object.__setattr__(self, "thickness", tuple(float(v) for v in self.thickness))
            loss_lib.level_weights((len(self.depths),), self.depths, self.thickness)
        for f in ("mean", "std", "forcing_mean", "forcing_std"):
            rows = tuple(tuple(float(v) for v in row) for row in getattr(self, f))
            object.__setattr__(self, f, rows)
        net = self.net_config
        channels = channels_of(self.variables, self.depths)
        if self.anomaly_base and not self.residual:
            raise ValueError("anomaly_base is a base of the residual: set residual too")
        if self.forcing_modes < 0 or (
            self.forcing_modes and (not self.anomaly_base or self.observed_forcing)
        ):
            raise ValueError(
                f"forcing_modes {self.forcing_modes}: the forcing response is part of the "
                "anomaly base of the initial month's forcing (anomaly_base on, "
                "observed_forcing off, modes >= 0)"
            )
        if self.damping is not None:
            rows = tuple(tuple(float(v) for v in row) for row in self.damping)
            if len(rows) != RESTART or any(len(r) != sum(channels) for r in rows):
                raise ValueError(
                    f"damping must be [{RESTART} lead spans][{sum(channels)} channels]; got "
                    f"{len(rows)} rows of {sorted({len(r) for r in rows})}"
                )
            object.__setattr__(self, "damping", rows)
        if channels != net.channels:
            raise ValueError(
                f"variables {self.variables} on {len(self.depths)} depths have channels "
                f"{channels}; the network was configured for {net.channels}"
            )
        if len(self.forcings) != net.forcing_channels:
            raise ValueError(
                f"{len(self.forcings)} forcings, the network takes {net.forcing_channels}"
            )
        if len(self.latitude) != net.n_lat:
            raise ValueError(f"latitude has {len(self.latitude)} rows; the network has {net.n_lat}")
        if not self.leads or min(self.leads) < 1:
            raise ValueError(f"leads must be months >= 1: {self.leads}")
        _ = self.normalizer, self.forcing_normalizer  # checks the statistics' shapes

    @property
    def net_config(self) -> model_lib.NetConfig:
        return model_lib.NetConfig(**self.net)

    @property
    def trunk_config(self) -> earth_trunk.TrunkConfig:
        return self.net_config.trunk_config

    @property
    def normalizer(self) -> MonthlyNormalizer:
        return MonthlyNormalizer.from_lists(self.mean, self.std)

    @property
    def forcing_normalizer(self) -> MonthlyNormalizer:
        return MonthlyNormalizer.from_lists(self.forcing_mean, self.forcing_std)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForecasterConfig:
        return cls(**d)


class Reference(nnx.Variable):
    """A model buffer that is not trained: the anomaly base's climatology ``[12, lat, lon,
    C]`` (row ``m - 1`` for calendar month ``m``, 0 over land)."""


class OceanForecaster(nnx.Module):
    """Raw initial state (and forcing) -> raw states at the leads (module docstring)."""

    def __init__(
        self,
        cfg: ForecasterConfig,
        *,
        rngs: nnx.Rngs,
        trunk: earth_trunk.EarthTrunk | None = None,
    ):
        self.config = cfg
        self.net = model_lib.OceanNet(cfg.net_config, rngs=rngs, trunk=trunk)
        if cfg.zero_init:
            for decoder in self.net.decoders:
                for p in (decoder.recover.kernel, decoder.recover.bias):
                    p.set_value(jnp.zeros(p.shape, p.dtype))
        if cfg.anomaly_base:
            net = cfg.net_config
            c = sum(net.channels)
            self.reference = Reference(jnp.zeros((12, net.n_lat, net.n_lon, c), jnp.float32))
            init = np.ones((RESTART, c)) if cfg.damping is None else np.asarray(cfg.damping)
            self.damping = nnx.Param(jnp.asarray(init, jnp.float32))
        if cfg.forcing_modes:
            net, k = cfg.net_config, cfg.forcing_modes
            grid, f = (net.n_lat, net.n_lon), net.forcing_channels
            self.forcing_reference = Reference(jnp.zeros((12, *grid, f), jnp.float32))
            self.forcing_patterns = Reference(jnp.zeros((k, *grid, f), jnp.float32))
            self.response = Reference(
                jnp.zeros((RESTART, k, *grid, sum(net.channels)), jnp.float32)
            )

    @property
    def state_norm(self) -> MonthlyNormalizer:
        return self.config.normalizer

    @property
    def forcing_norm(self) -> MonthlyNormalizer:
        return self.config.forcing_normalizer

    def _ocean(self, ocean: jax.Array) -> jax.Array:
        ocean = jnp.asarray(ocean)
        ocean = ocean > 0.5 if ocean.dtype != jnp.bool_ else ocean
        return ocean[None] if ocean.ndim == 2 else ocean

    def normalized_targets(
        self, y: jax.Array, month: jax.Array, leads: jax.Array, ocean: jax.Array
    ) -> jax.Array:
        """Raw targets ``[B, L, lat, lon, C]`` at ``leads`` months after ``month`` ->
        normalized with their own months, zero over land (where'd before any arithmetic)."""
        ocean = self._ocean(ocean)[:, None, ..., None]
        y = jnp.where(ocean, y, 0.0)
        months = month_after(jnp.asarray(month)[:, None], jnp.asarray(leads)[None, :])
        return jnp.where(ocean, self.state_norm.normalize(y, months), 0.0)

    def network_output(
        self,
        x: jax.Array,
        forcing: jax.Array,
        month: jax.Array,
        ocean: jax.Array,
        leads: Sequence[int] | jax.Array,
        *,
        offset: jax.Array | int = 0,
        key: jax.Array | None = None,
    ) -> jax.Array:
        """Normalized predictions ``[B, L, lat, lon, C]``, each lead in its month's units.

        Args:
          x: raw state ``[B, lat, lon, C]``, ``offset`` months after the initial month.
          forcing: raw ``[B, lat, lon, F]`` of the initial month, or ``[B, L, lat, lon, F]``
            of every lead's month (``observed_forcing``).
          month: ``[B]`` the initial month (1..12).
          ocean: ``[B | 1, lat, lon]`` (or ``[lat, lon]``), True or 1 over the ocean.
          leads: ``[L]`` lead months after the initial month.
          offset: months from the initial month to the state ``x`` (0, or a restart's 6k).
          key: enables drop-path (training).
        """
        cfg = self.config
        ocean = self._ocean(ocean)
        leads = jnp.asarray(leads, jnp.int32)
        month = jnp.asarray(month, jnp.int32)
        b, n_leads = x.shape[0], leads.shape[0]
        land = ocean[..., None]
        x = jnp.where(land, x, 0.0)  # no land value reaches any arithmetic
        raw = x
        x = jnp.where(land, self.state_norm.normalize(x, month_after(month, offset)), 0.0)
        if cfg.observed_forcing:
            if forcing.ndim != 5 or forcing.shape[1] != n_leads:
                raise ValueError(
                    f"observed forcing must be [batch, {n_leads} leads, lat, lon, F]; "
                    f"got {forcing.shape}"
                )
            f = jnp.where(land[:, None], forcing, 0.0)
            months = month_after(month[:, None], leads[None, :])
            f = jnp.where(land[:, None], self.forcing_norm.normalize(f, months), 0.0)
            f_ocean = ocean if ocean.shape[0] == 1 else jnp.repeat(ocean, n_leads, axis=0)
            latent = self.net.encode_forcing(f.reshape(b * n_leads, *f.shape[2:]), f_ocean)
        else:
            if forcing.ndim != 4:
                raise ValueError(
                    f"forcing must be the initial month's [batch, lat, lon, F]; got {forcing.shape}"
                )
            f = jnp.where(land, forcing, 0.0)
            f = jnp.where(land, self.forcing_norm.normalize(f, month), 0.0)
            latent = jnp.repeat(self.net.encode_forcing(f, ocean), n_leads, axis=0)
        ocean_rep = ocean if ocean.shape[0] == 1 else jnp.repeat(ocean, n_leads, axis=0)
        out = self.net(
            jnp.repeat(x, n_leads, axis=0), latent, jnp.tile(leads, b), ocean_rep, key=key
        )
        out = out.reshape(b, n_leads, *out.shape[1:]).astype(jnp.float32)
        if cfg.residual:
            # The base in each lead month's units: the network adds the change.
            months = month_after(month[:, None], leads[None, :])
            if cfg.anomaly_base:
                base = self.anomaly_base(raw, month, leads, offset)
                if cfg.forcing_modes:
                    base = base + self.forcing_response(forcing, month, ocean, leads, offset)
            else:
                base = jnp.broadcast_to(raw[:, None], out.shape)
            base = self.state_norm.normalize(base, months)
            out = out + jnp.where(land[:, None], base, 0.0)
        return out

    def anomaly_base(
        self, x: jax.Array, month: jax.Array, leads: jax.Array, offset: jax.Array | int = 0
    ) -> jax.Array:
        """Raw ``ref[m + k] + a[k] (x - ref[m])`` ``[B, L, lat, lon, C]`` of the state ``x [B,
        lat, lon, C]`` (0 over land), ``offset`` months after the initial ``month [B]``, at
        ``leads [L]`` months after it: ``k = lead - offset`` (spans beyond 6 use the 6th)."""
        ref = self.reference[...]
        now = month_after(month, offset)
        months = month_after(month[:, None], leads[None, :])
        span = jnp.clip(jnp.asarray(leads) - jnp.asarray(offset, jnp.int32), 1, RESTART)
        a = self.damping[...][span - 1]  # [L, C]
        anomaly = x - ref[now - 1]
        return ref[months - 1] + a[None, :, None, None, :] * anomaly[:, None]

    def forcing_response(
        self,
        forcing: jax.Array,
        month: jax.Array,
        ocean: jax.Array,
        leads: jax.Array,
        offset: jax.Array | int = 0,
    ) -> jax.Array:
        """Raw ``[B, L, lat, lon, C]``: ``sum_j p_j R[k, j]`` with ``p_j`` the projection of
        the raw forcing ``[B, lat, lon, F]``'s anomaly from its calendar month's
        climatology on pattern ``j`` (land 0), ``k = lead - offset`` (spans beyond 6 use
        the 6th); zero when ``offset`` is not 0 (the forcing is then older than the
        state, and the response was fitted to the state's own month's)."""
        land = self._ocean(ocean)[..., None]
        anomaly = jnp.where(land, forcing - self.forcing_reference[...][month - 1], 0.0)
        p = jnp.einsum("byxf,kyxf->bk", anomaly, self.forcing_patterns[...])
        span = jnp.clip(jnp.asarray(leads) - jnp.asarray(offset, jnp.int32), 1, RESTART)
        r = self.response[...][span - 1]  # [L, K, lat, lon, C]
        on = (jnp.asarray(offset) == 0).astype(jnp.float32)
        return on * jnp.einsum("bk,lkyxc->blyxc", p, r)

    def forecast(
        self,
        x: jax.Array,
        forcing: jax.Array,
        month: jax.Array,
        ocean: jax.Array,
        leads: Sequence[int] | jax.Array | None = None,
        *,
        offset: jax.Array | int = 0,
    ) -> jax.Array:
        """Raw states ``[B, L, lat, lon, C]`` at ``leads`` (default the config's), NaN over
        land; arguments as :meth:`network_output`."""
        leads = jnp.asarray(self.config.leads if leads is None else leads, jnp.int32)
        out = self.network_output(x, forcing, month, ocean, leads, offset=offset)
        months = month_after(jnp.asarray(month)[:, None], leads[None, :])
        out = self.state_norm.denormalize(out, months)
        return jnp.where(self._ocean(ocean)[:, None, ..., None], out, jnp.nan)

    def __call__(self, x, forcing, month, ocean, leads=None) -> jax.Array:
        return self.forecast(x, forcing, month, ocean, leads)


def set_reference(model: OceanForecaster, climatology: np.ndarray) -> OceanForecaster:
    """Sets the anomaly base's climatology ``[12, lat, lon, C]`` (NaN over land is stored as
    0) of a forecaster with ``anomaly_base``; returns the model.

    Raises:
      ValueError: the model has no anomaly base, or the shape is not its.
    """
    if not model.config.anomaly_base:
        raise ValueError("this forecaster has no anomaly base (ForecasterConfig.anomaly_base)")
    clim = np.asarray(climatology, np.float32)
    if clim.shape != model.reference.shape:
        raise ValueError(
            f"the climatology must be {model.reference.shape} (month, lat, lon, channel); "
            f"got {clim.shape}"
        )
    model.reference.set_value(jnp.asarray(np.where(np.isfinite(clim), clim, 0.0)))
    return model


def set_forcing_response(
    model: OceanForecaster,
    climatology: np.ndarray,
    patterns: np.ndarray,
    response: np.ndarray,
) -> OceanForecaster:
    """Sets the forcing response of the anomaly base (``forcing_modes``): the forcing's
    calendar-month climatology ``[12, lat, lon, F]``, its patterns ``[K, lat, lon, F]`` and
    the response ``[6, K, lat, lon, C]`` of each lead span (NaN stored as 0); returns the
    model (:func:`tellus.ocean.domain.forcing_response` fits them).

    Raises:
      ValueError: the model has no forcing response, or a shape is not its.
    """
    if not model.config.forcing_modes:
        raise ValueError("this forecaster has no forcing response (ForecasterConfig.forcing_modes)")
    for name, value in (
        ("forcing_reference", climatology),
        ("forcing_patterns", patterns),
        ("response", response),
    ):
        var, value = getattr(model, name), np.asarray(value, np.float32)
        if value.shape != var.shape:
            raise ValueError(
                f"the forcing response's {name} must be {var.shape}; got {value.shape}"
            )
        var.set_value(jnp.asarray(np.where(np.isfinite(value), value, 0.0)))
    return model


def make_forecaster(
    d: dict[str, Any] | ForecasterConfig, trunk: earth_trunk.EarthTrunk | None = None
) -> OceanForecaster:
    """Model factory (also the checkpoint factory), on a shared ``trunk`` if given."""
    cfg = d if isinstance(d, ForecasterConfig) else ForecasterConfig.from_dict(d)
    with nnx.use_eager_sharding(False):
        return OceanForecaster(cfg, rngs=nnx.Rngs(cfg.net_config.seed), trunk=trunk)


KIND = checkpoint.Kind(name="ocean.forecaster", version=1, factory=make_forecaster)
"""What an ocean forecaster checkpoint is."""


def loss_fn(
    model: OceanForecaster, batch: dict[str, jax.Array], rng: jax.Array | None = None
) -> jax.Array:
    """The area- and thickness-weighted MSE over the ocean of every lead of the config, in
    each lead's normalized units, on a batch of :func:`task_for` windows with the initial
    month (:func:`lead_loss` with ``leads = model.config.leads``)::

        inputs [B, 1, lat, lon, C], targets [B, L, lat, lon, C], forcings [B, 1 + L, lat,
        lon, F], statics [B, lat, lon, 1] (the ocean mask), month [B]
    """
    return lead_loss(model, batch, model.config.leads, rng)[0]


def lead_loss(
    model: OceanForecaster,
    batch: dict[str, jax.Array],
    leads: Sequence[int] | jax.Array,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`loss_fn` for the targets of ``leads`` (``batch["targets"]`` holds these
    leads); returns ``(loss, per_variable [V], normalized predictions [B, L, lat, lon, C])``."""
    cfg = model.config
    ocean = batch["statics"][..., 0]
    forcing = batch["forcings"][:, 1:] if cfg.observed_forcing else batch["forcings"][:, 0]
    leads = jnp.asarray(leads, jnp.int32)
    pred = model.network_output(
        batch["inputs"][:, -1], forcing, batch["month"], ocean, leads, key=rng
    )
    target = model.normalized_targets(batch["targets"], batch["month"], leads, ocean)
    n = pred.shape[0] * pred.shape[1]
    ocean = model._ocean(ocean)
    ocean_rep = ocean if ocean.shape[0] == 1 else jnp.repeat(ocean, pred.shape[1], axis=0)
    total, per_variable = loss_lib.ocean_mse(
        pred.reshape(n, *pred.shape[2:]),
        target.reshape(n, *target.shape[2:]),
        ocean_rep,
        cfg.latitude,
        cfg.net_config.channels,
        cfg.depths,
        cfg.thickness,
    )
    return total, per_variable, pred


def rollout(
    model: OceanForecaster,
    x: jax.Array,
    forcing: jax.Array,
    month: jax.Array,
    ocean: jax.Array,
    months: int,
    *,
    restart: int = RESTART,
    restart_forcing: bool = False,
) -> np.ndarray:
    """The raw states of the months ``1 .. months`` after the initial month, restarting from
    every ``restart``-th month's forecast (module docstring).

    Args:
      model, x, month, ocean: as :meth:`OceanForecaster.network_output`.
      forcing: the initial month's ``[B, lat, lon, F]``, or with ``observed_forcing`` the
        observed ``[B, months, lat, lon, F]`` of every month, or with ``restart_forcing``
        the observed ``[B, blocks, lat, lon, F]`` of each block's first month.
      months: how many months.
      restart: months predicted from one state (6: the experts' cycle).
      restart_forcing: each block is a forecast of its own: from the state of month
        ``restart k`` with that month's observed forcing, leads counted from it (a run
        driven by observed winds, as an ocean model forced by reanalysis; the default
        keeps the initial month's forcing, ORCA-DL's forecast).

    Returns:
      float32 ``[B, months, lat, lon, C]``, NaN over land.
    """
    if months < 1 or restart < 1:
        raise ValueError(f"months and restart must be >= 1, got {months}, {restart}")
    if restart_forcing and model.config.observed_forcing:
        raise ValueError("restart_forcing is for a forecaster of the initial month's forcing")
    blocks = -(-months // restart)
    if restart_forcing and (forcing.ndim != 5 or forcing.shape[1] < blocks):
        raise ValueError(
            f"restart forcing must be [batch, {blocks} blocks, lat, lon, F]; got {forcing.shape}"
        )
    # Every block predicts all ``restart`` months (the last one's extra months are dropped),
    # so that a rollout of any length runs one compiled program per batch size.
    out, state = [], x
    for start in range(0, months, restart):
        leads = np.arange(start + 1, start + restart + 1, dtype=np.int32)
        f = forcing
        if model.config.observed_forcing:
            f = forcing[:, start : start + restart]
            if f.shape[1] < restart:  # months past the data's end: the last one repeated
                f = jnp.concatenate([f, jnp.repeat(f[:, -1:], restart - f.shape[1], 1)], 1)
        if restart_forcing:
            f, now = forcing[:, start // restart], month_after(month, start)
            block = _forecast_block(
                model, state, f, now, ocean, jnp.asarray(leads - start), jnp.int32(0)
            )
        else:
            block = _forecast_block(
                model, state, f, month, ocean, jnp.asarray(leads), jnp.int32(start)
            )
        out.append(np.asarray(block))
        # from the host, as the first state: a device array placed by the block would be
        # another input sharding, and another compilation
        state = jnp.asarray(out[-1][:, -1])
    return np.concatenate(out, axis=1)[:, :months]


@nnx.jit
def _forecast_block(model, x, forcing, month, ocean, leads, offset):
    """One block of a rollout, compiled once per model structure and batch size."""
    return model.forecast(x, forcing, month, ocean, leads, offset=offset)


__all__ = [
    "FORCINGS",
    "KIND",
    "LEADS",
    "RESTART",
    "STATICS",
    "VARIABLES",
    "ForecasterConfig",
    "OceanForecaster",
    "Reference",
    "channels_of",
    "lead_loss",
    "loss_fn",
    "make_forecaster",
    "rollout",
    "set_forcing_response",
    "set_reference",
    "task_for",
]
