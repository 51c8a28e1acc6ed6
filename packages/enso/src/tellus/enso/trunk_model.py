"""The ENSO task on the shared Earth trunk: an adapter from SST / heat-content maps to trunk
tokens and from the trunk's output to Nino3.4 at every lead.

:mod:`tellus.enso.model` (ResoNet) is a model of its own; this one plugs into the same
:class:`tellus.kernels.earth_trunk.EarthTrunk` as the atmosphere, so that one trunk can be
trained on both domains (``trainer.fit`` with several domains) and a trunk pretrained on
one domain can be fine-tuned on the other. The adapter:

* ``encode``: each input variable (SST, heat content) is one vertical level of the token grid;
  its ``history`` months are the channels of a 2D patch embedding (one per variable, patch
  ``patch``), so the tokens are ``[B, n_vars, lat / ph, lon / pw, C]``; the calendar month
  of the last input month (sin/cos of the annual and semi-annual phase) is added to every
  token;
* the Earth-specific bias tables of this token grid (:class:`earth_trunk.TrunkBias`);
* ``decode``: the trunk's ``[B, Z, H, W, 2C]`` -> a per-token projection to ``token_features``
  numbers, flattened, an MLP to ``lead_rank`` features and one linear map to every lead
  (the reduced-rank head of :mod:`tellus.enso.model`).

Inputs are divided by the per-variable training standard deviations and the output is in
units of the index's standard deviation, as in :class:`tellus.enso.model.Forecaster`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from tellus.enso.model import month_features
from tellus.kernels import earth_trunk, partitioning, patch_embed
from tellus.training import checkpoint

_init = nnx.initializers.normal(stddev=0.02)


@dataclasses.dataclass(frozen=True)
class TrunkForecasterConfig:
    """The ENSO adapter's shape, the trunk's, and the normalization.

    Attributes:
      trunk: the shared trunk (:class:`earth_trunk.TrunkConfig` fields).
      n_lat, n_lon: input grid.
      history: input months.
      n_vars: input variables (each one level of the token grid).
      n_leads: predicted leads.
      patch: (lat, lon) patch of the embedding.
      token_features: numbers each output token is projected to before the head.
      head_hidden: hidden width of the head.
      lead_rank: features every lead is read from (None: a full-rank head).
      seed: initialization seed.
      input_std: per-variable scale (K) of the inputs.
      target_std: scale (K) of the output.
    """

    trunk: dict[str, Any]
    n_lat: int = 24
    n_lon: int = 72
    history: int = 3
    n_vars: int = 2
    n_leads: int = 24
    patch: tuple[int, int] = (2, 2)
    token_features: int = 4
    head_hidden: int = 64
    lead_rank: int | None = 4
    seed: int = 0
    input_std: tuple[float, ...] = (1.0, 1.0)
    target_std: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "trunk", earth_trunk.TrunkConfig(**dict(self.trunk)).to_dict())
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        object.__setattr__(self, "input_std", tuple(float(s) for s in self.input_std))
        if len(self.input_std) != self.n_vars:
            raise ValueError(f"input_std needs {self.n_vars} values, got {self.input_std}")
        if self.lead_rank is not None and not 1 <= self.lead_rank < self.n_leads:
            raise ValueError(f"lead_rank={self.lead_rank} must be None or in [1, {self.n_leads})")

    @property
    def trunk_config(self) -> earth_trunk.TrunkConfig:
        return earth_trunk.TrunkConfig(**self.trunk)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        ph, pw = self.patch
        return (self.n_vars, -(-self.n_lat // ph), -(-self.n_lon // pw))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrunkForecasterConfig:
        return cls(**d)


class EnsoAdapter(nnx.Module):
    """SST / heat-content history maps <-> trunk tokens, and the lead head."""

    def __init__(self, cfg: TrunkForecasterConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        tc = cfg.trunk_config
        c = tc.dim
        self.embed = nnx.List(
            [
                patch_embed.PatchEmbed2D(cfg.history, c, cfg.patch, rngs=rngs)
                for _ in range(cfg.n_vars)
            ]
        )
        self.month = partitioning.dense(4, c, (None, "embed"), rngs, kernel_init=_init)
        self.bias = earth_trunk.TrunkBias(tc, cfg.token_grid, rngs=rngs)
        self.tokens_out = partitioning.dense(
            2 * c, cfg.token_features, ("embed", None), rngs, kernel_init=_init
        )
        n_in = math.prod(cfg.token_grid) * cfg.token_features
        self.head1 = partitioning.dense(
            n_in, cfg.head_hidden, (None, "mlp"), rngs, kernel_init=_init
        )
        rank = cfg.lead_rank or cfg.n_leads
        self.head2 = partitioning.dense(
            cfg.head_hidden, rank, ("mlp", None), rngs, kernel_init=_init
        )
        self.leads = (
            None
            if cfg.lead_rank is None
            else partitioning.dense(rank, cfg.n_leads, (None, None), rngs, kernel_init=_init)
        )

    def encode(self, x: jax.Array, month: jax.Array) -> jax.Array:
        """``x [B, history, var, lat, lon]`` (normalized), ``month [B]`` -> tokens."""
        cfg = self.config
        want = (cfg.history, cfg.n_vars, cfg.n_lat, cfg.n_lon)
        if x.ndim != 5 or x.shape[1:] != want:
            raise ValueError(
                f"ENSO input must be [batch, {', '.join(map(str, want))}]; got {x.shape}"
            )
        levels = [
            self.embed[v](jnp.moveaxis(x[:, :, v], 1, -1))  # [B, lat, lon, history] -> tokens
            for v in range(cfg.n_vars)
        ]
        t = jnp.stack(levels, axis=1)  # [B, n_vars, H', W', C]
        m = self.month(month_features(month))
        return t + m[:, None, None, None, :]

    def decode(self, y: jax.Array) -> jax.Array:
        """The trunk's ``[B, Z, H, W, 2C]`` -> ``[B, n_leads]`` (normalized index)."""
        z = self.tokens_out(y).reshape(y.shape[0], -1)
        h = self.head2(jax.nn.gelu(self.head1(z)))
        return h if self.leads is None else self.leads(h)


class TrunkForecaster(nnx.Module):
    """Nino3.4 at every lead from the shared trunk: K in, K out (like
    :class:`tellus.enso.model.Forecaster`)."""

    def __init__(
        self,
        cfg: TrunkForecasterConfig,
        *,
        rngs: nnx.Rngs,
        trunk: earth_trunk.EarthTrunk | None = None,
    ):
        self.config = cfg
        self.adapter = EnsoAdapter(cfg, rngs=rngs)
        if trunk is not None and trunk.config != cfg.trunk_config:
            raise ValueError(
                f"the shared trunk is {trunk.config}, the ENSO model was configured for "
                f"{cfg.trunk_config}"
            )
        self.trunk = (
            trunk if trunk is not None else earth_trunk.EarthTrunk(cfg.trunk_config, rngs=rngs)
        )

    def __call__(self, x: jax.Array, month: jax.Array, key: jax.Array | None = None) -> jax.Array:
        std = jnp.asarray(self.config.input_std, jnp.float32)[None, None, :, None, None]
        t = self.adapter.encode(x / std, month)
        y = self.trunk(t, self.adapter.bias(), key=key)
        return self.adapter.decode(y) * self.config.target_std


def make_trunk_forecaster(
    cfg: TrunkForecasterConfig | dict[str, Any], trunk: earth_trunk.EarthTrunk | None = None
) -> TrunkForecaster:
    """Builds the model from its config (or dict), on ``trunk`` if given (shared)."""
    if isinstance(cfg, dict):
        cfg = TrunkForecasterConfig.from_dict(cfg)
    with nnx.use_eager_sharding(False):
        return TrunkForecaster(cfg, rngs=nnx.Rngs(cfg.seed), trunk=trunk)


def loss_fn(model: TrunkForecaster, batch: dict[str, jax.Array], rng: jax.Array | None = None):
    """MSE of every lead in units of the index's standard deviation (as ResoNet's)."""
    pred = model(batch["x"], batch["month"], key=rng)
    return jnp.mean(((pred - batch["y"]) / model.config.target_std) ** 2)


KIND = checkpoint.Kind(name="enso.trunk_forecaster", version=1, factory=make_trunk_forecaster)

__all__ = [
    "KIND",
    "EnsoAdapter",
    "TrunkForecaster",
    "TrunkForecasterConfig",
    "loss_fn",
    "make_trunk_forecaster",
]
