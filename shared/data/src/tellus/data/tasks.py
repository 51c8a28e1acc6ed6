"""Task configuration: which variables a model reads and predicts, and when.

A :class:`TaskConfig` is the data half of an experiment (graphcast's ``TaskConfig``), kept
apart from the model and training configs. It names

* ``input_variables``: read at every input (history) time, stacked into the input channels;
* ``target_variables``: read at every lead time, stacked into the target channels;
* ``forcing_variables``: known ahead of time, given at input *and* target times: either
  computed from the timestamp (:data:`COMPUTED_FORCINGS`) or read from the store;
* ``static_variables``: time-independent fields (``land_sea_mask``);
* ``levels``: pressure levels (hPa) or depths (m) taken from every 3D variable;
* ``derived_targets``: indices no store holds, derived from a store variable at every lead
  time (:class:`DerivedTarget`: Nino3.4's centred 3-month mean, for example); a task whose
  targets are all derived has no ``target_variables``.

Time is counted in **steps of the store**, not in durations. ``time_step`` is a pandas
frequency alias describing the store's time axis (``"1h"``, ``"6h"``, ``"MS"`` for monthly),
and every offset (history spacing, leads) is an integer multiple of it. Monthly data needs
this: "one month ahead" is one index ahead, although months differ in length, so a lead
cannot be a fixed :class:`pandas.Timedelta`. For fixed-length steps :attr:`TaskConfig.lead_times`
gives the durations back, and :meth:`TaskConfig.atmosphere` accepts durations.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence

import pandas as pd
from pandas.tseries.frequencies import to_offset

from tellus.data import regions, schema

# Forcings computed from the timestamp (and longitude, for the local time of day), as in
# GraphCast: progress through the year / the local solar day, as sin and cos.
YEAR_PROGRESS_SIN = "year_progress_sin"
YEAR_PROGRESS_COS = "year_progress_cos"
DAY_PROGRESS_SIN = "day_progress_sin"
DAY_PROGRESS_COS = "day_progress_cos"
COMPUTED_FORCINGS: tuple[str, ...] = (
    YEAR_PROGRESS_SIN,
    YEAR_PROGRESS_COS,
    DAY_PROGRESS_SIN,
    DAY_PROGRESS_COS,
)

_TIME_VARYING_KINDS = ("upper_air", "surface", "ocean_3d", "ocean_surface", "climate")
_VERTICAL_KINDS = ("upper_air", "ocean_3d")

# The atmosphere's variables in Pangu-Weather's order (Bi et al. 2023: Z, Q, T, U, V; MSLP,
# U10, V10, T2M), the one order of the project: the stacked channels of trained checkpoints
# and the per-variable loss weights of tellus.atmosphere.forecaster follow it, so it must
# not change.
ATMOSPHERE_UPPER_AIR = (
    "geopotential",
    "specific_humidity",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
)
ATMOSPHERE_SURFACE = (
    "mean_sea_level_pressure",
    "10m_u_component_of_wind",
    "10m_v_component_of_wind",
    "2m_temperature",
)
OCEAN_STATE = ("sea_water_potential_temperature", "sea_water_salinity", "sea_surface_height")


def time_offset(time_step: str) -> pd.DateOffset:
    """The pandas offset of a frequency alias such as ``"6h"`` or ``"MS"``.

    Raises:
      ValueError: if ``time_step`` is not a pandas frequency alias.
    """
    try:
        return to_offset(time_step)
    except ValueError as e:
        raise ValueError(f"time_step {time_step!r} is not a pandas frequency alias") from e


def is_fixed_step(time_step: str) -> bool:
    """Whether every step of ``time_step`` has the same length (hours: yes; months: no)."""
    return isinstance(time_offset(time_step), pd.offsets.Tick)


def steps_from_durations(
    durations: Iterable[str | pd.Timedelta], time_step: str
) -> tuple[int, ...]:
    """Converts durations (``"6h"``, ``pd.Timedelta``) into whole numbers of ``time_step``.

    Raises:
      ValueError: if ``time_step`` has no fixed length or a duration is not a multiple of it.
    """
    if not is_fixed_step(time_step):
        raise ValueError(f"time_step {time_step!r} has no fixed length; give leads in steps")
    step = pd.Timedelta(time_offset(time_step))
    out = []
    for d in durations:
        td = pd.Timedelta(d)
        n, rem = divmod(td, step)
        if rem != pd.Timedelta(0):
            raise ValueError(f"duration {td} is not a multiple of the time step {step}")
        out.append(int(n))
    return tuple(out)


def _check_names(field: str, names: Sequence[str], kinds: Sequence[str], computed: bool = False):
    if isinstance(names, str):
        raise TypeError(f"{field} must be a sequence of names, not the string {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{field} has duplicates: {names}")
    for name in names:
        if computed and name in COMPUTED_FORCINGS:
            continue
        var = schema.lookup(name)
        if var is None or var.name != name:
            hint = f" (the schema calls it {var.name!r})" if var is not None else ""
            raise ValueError(f"{field}: unknown variable {name!r}{hint}; see tellus.data.schema")
        if var.kind not in kinds:
            raise ValueError(f"{field}: {name!r} is a {var.kind} variable, expected one of {kinds}")


_2D_TIME_VARYING_KINDS = ("surface", "ocean_surface", "climate")


@dataclasses.dataclass(frozen=True)
class DerivedTarget:
    """A scalar index derived from a 2D store variable, given as a target at every lead.

    The index is the (cos-latitude weighted) mean of ``variable`` over ``box``, as anomalies
    from its calendar-month climatology over ``base_period``, then a centred running mean over
    ``running_mean`` steps (:func:`tellus.data.derived.derive` computes it). A window needs
    the ``running_mean // 2`` steps either side of each lead as well, so it exists only where
    they are in the store (and in its date range): no target is ever NaN for lack of data.

    Attributes:
      name: the index's name (``nino34_3month``).
      variable: the 2D store variable it is computed from.
      box: the region, from :mod:`tellus.data.regions` (``NINO34``).
      running_mean: centred running-mean window in steps, odd (1: none).
      base_period: (first, last) time labels of the climatology, inclusive (``("1850-01",
        "1949-12")``); None for every time of the store.
      weighted: cos(latitude) weights; False for equal weights.
    """

    name: str
    variable: str
    box: regions.Box
    running_mean: int = 1
    base_period: tuple[str, str] | None = None
    weighted: bool = True

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a derived target needs a name, got {self.name!r}")
        _check_names(f"derived target {self.name!r}", (self.variable,), _2D_TIME_VARYING_KINDS)
        if not isinstance(self.box, regions.Box):
            raise TypeError(f"derived target {self.name!r}: box must be a regions.Box")
        w = self.running_mean
        if not isinstance(w, int) or isinstance(w, bool) or w < 1 or w % 2 == 0:
            raise ValueError(
                f"derived target {self.name!r}: running_mean must be an odd int >= 1 "
                f"(a centred window), got {w!r}"
            )
        if self.base_period is not None:
            if isinstance(self.base_period, str) or len(self.base_period) != 2:
                raise ValueError(
                    f"derived target {self.name!r}: base_period must be (first, last), "
                    f"got {self.base_period!r}"
                )
            object.__setattr__(self, "base_period", tuple(str(t) for t in self.base_period))

    @property
    def reach(self) -> int:
        """Steps either side of a lead that its running mean reads."""
        return self.running_mean // 2

    @classmethod
    def nino34_3month(
        cls,
        base_period: tuple[str, str] | None = None,
        variable: str = "sea_surface_temperature_anomaly",
    ) -> DerivedTarget:
        """The centred 3-month mean of the Nino3.4 anomaly (ONI-style), NOAA CPC's box."""
        return cls("nino34_3month", variable, regions.NINO34, 3, base_period)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """What a model reads and predicts, in store time steps.

    A sample is anchored at the last input time ``t0`` (the "init time"). Its input times are
    ``t0 - k * history_spacing`` for ``k = history_steps - 1, ..., 0`` and its target times are
    ``t0 + lead`` for ``lead`` in ``lead_steps``, all in steps of ``time_step``.

    Attributes:
      input_variables: variables stacked into the inputs.
      target_variables: variables stacked into the targets; may be empty when
        ``derived_targets`` is not.
      forcing_variables: names from :data:`COMPUTED_FORCINGS` or time-varying store variables,
        given at input and target times.
      static_variables: static store variables.
      levels: pressure levels (hPa) or depths (m) used for every 3D variable.
      time_step: pandas frequency alias of the store's time axis (``"1h"``, ``"MS"``).
      history_steps: number of input times (>= 1).
      history_spacing: steps between consecutive input times (>= 1).
      lead_steps: target offsets after ``t0``, in steps, strictly increasing and > 0.
      derived_targets: indices derived from store variables, given at every lead.
    """

    input_variables: tuple[str, ...]
    target_variables: tuple[str, ...]
    forcing_variables: tuple[str, ...] = ()
    static_variables: tuple[str, ...] = ()
    levels: tuple[float, ...] = ()
    time_step: str = "1h"
    history_steps: int = 1
    history_spacing: int = 1
    lead_steps: tuple[int, ...] = (1,)
    derived_targets: tuple[DerivedTarget, ...] = ()

    def __post_init__(self):
        # Accept lists for convenience; store tuples so the config stays hashable.
        for field in (
            "input_variables",
            "target_variables",
            "forcing_variables",
            "static_variables",
            "levels",
            "lead_steps",
            "derived_targets",
        ):
            value = getattr(self, field)
            if isinstance(value, str):
                raise TypeError(f"{field} must be a sequence, not the string {value!r}")
            object.__setattr__(self, field, tuple(value))

        if not self.input_variables:
            raise ValueError("input_variables is empty")
        if not self.target_variables and not self.derived_targets:
            raise ValueError("target_variables is empty (and there are no derived_targets)")
        if any(not isinstance(d, DerivedTarget) for d in self.derived_targets):
            raise TypeError(f"derived_targets must be DerivedTarget specs: {self.derived_targets}")
        derived_names = [d.name for d in self.derived_targets]
        if len(set(derived_names)) != len(derived_names):
            raise ValueError(f"derived_targets has duplicate names: {derived_names}")
        _check_names("input_variables", self.input_variables, _TIME_VARYING_KINDS)
        _check_names("target_variables", self.target_variables, _TIME_VARYING_KINDS)
        _check_names(
            "forcing_variables", self.forcing_variables, _TIME_VARYING_KINDS, computed=True
        )
        _check_names("static_variables", self.static_variables, ("static",))
        overlap = set(self.forcing_variables) & (
            set(self.input_variables) | set(self.target_variables)
        )
        if overlap:
            raise ValueError(f"forcings must not also be inputs or targets: {sorted(overlap)}")

        needs_levels = [
            v
            for v in self.input_variables + self.target_variables + self.forcing_variables
            if v in schema.VARIABLES and schema.VARIABLES[v].kind in _VERTICAL_KINDS
        ]
        if needs_levels and not self.levels:
            raise ValueError(f"3D variables {needs_levels} need levels (hPa or m)")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels has duplicates: {self.levels}")
        if any(level < 0 for level in self.levels):
            raise ValueError(f"levels must be >= 0 (hPa, or metres positive down): {self.levels}")

        time_offset(self.time_step)  # Raises on a bad alias.
        if not isinstance(self.history_steps, int) or self.history_steps < 1:
            raise ValueError(f"history_steps must be an int >= 1, got {self.history_steps!r}")
        if not isinstance(self.history_spacing, int) or self.history_spacing < 1:
            raise ValueError(f"history_spacing must be an int >= 1, got {self.history_spacing!r}")
        if not self.lead_steps:
            raise ValueError("lead_steps is empty")
        if any(not isinstance(s, int) or isinstance(s, bool) for s in self.lead_steps):
            raise TypeError(f"lead_steps must be ints (multiples of time_step): {self.lead_steps}")
        if self.lead_steps[0] < 1 or any(b <= a for a, b in itertools.pairwise(self.lead_steps)):
            raise ValueError(f"lead_steps must be > 0 and strictly increasing: {self.lead_steps}")

    # --- Derived quantities -------------------------------------------------------------

    @property
    def history_offsets(self) -> tuple[int, ...]:
        """Input times relative to the init time, in steps: ``(-(h-1)*s, ..., -s, 0)``."""
        return tuple(-k * self.history_spacing for k in range(self.history_steps - 1, -1, -1))

    @property
    def window_offsets(self) -> tuple[int, ...]:
        """All times of a sample relative to the init time, inputs then targets, in steps."""
        return self.history_offsets + self.lead_steps

    @property
    def reach_offsets(self) -> tuple[int, ...]:
        """Every time a window needs, relative to the init time, sorted: its window offsets
        and the steps around each lead that the derived targets' running means read."""
        reach = max((d.reach for d in self.derived_targets), default=0)
        around = (lead + k for lead in self.lead_steps for k in range(-reach, reach + 1))
        return tuple(sorted(set(self.window_offsets) | set(around)))

    @property
    def derived_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.derived_targets)

    @property
    def lead_times(self) -> tuple[pd.Timedelta, ...]:
        """Leads as durations.

        Raises:
          ValueError: for calendar steps (months), whose length varies; use ``lead_steps``.
        """
        if not is_fixed_step(self.time_step):
            raise ValueError(f"time_step {self.time_step!r} has no fixed length; use lead_steps")
        step = pd.Timedelta(time_offset(self.time_step))
        return tuple(n * step for n in self.lead_steps)

    @property
    def computed_forcings(self) -> tuple[str, ...]:
        return tuple(v for v in self.forcing_variables if v in COMPUTED_FORCINGS)

    @property
    def store_forcings(self) -> tuple[str, ...]:
        return tuple(v for v in self.forcing_variables if v not in COMPUTED_FORCINGS)

    # --- Presets --------------------------------------------------------------------------

    @classmethod
    def atmosphere(
        cls,
        *,
        lead_times: Sequence[str | pd.Timedelta] = ("1h", "6h", "12h", "24h"),
        time_step: str = "1h",
        history: int = 2,
        history_spacing: str | pd.Timedelta = "6h",
        levels: Sequence[int] = schema.PRESSURE_LEVELS_13,
        upper_air: Sequence[str] = ATMOSPHERE_UPPER_AIR,
        surface: Sequence[str] = ATMOSPHERE_SURFACE,
        static: Sequence[str] = ("land_sea_mask", "geopotential_at_surface"),
        forcings: Sequence[str] = COMPUTED_FORCINGS,
    ) -> TaskConfig:
        """A WeatherBench2-style medium-range task: predicts every input variable.

        Args:
          lead_times: durations after the init time (1 h .. 24 h typical).
          time_step: the store's step.
          history: number of input times.
          history_spacing: duration between input times.
          levels: pressure levels in hPa.
          upper_air, surface, static, forcings: variable names.

        Returns:
          The task, with durations converted to steps of ``time_step``.
        """
        (spacing,) = steps_from_durations([history_spacing], time_step)
        variables = tuple(upper_air) + tuple(surface)
        return cls(
            input_variables=variables,
            target_variables=variables,
            forcing_variables=tuple(forcings),
            static_variables=tuple(static),
            levels=tuple(levels),
            time_step=time_step,
            history_steps=history,
            history_spacing=spacing,
            lead_steps=steps_from_durations(lead_times, time_step),
        )

    @classmethod
    def ocean(
        cls,
        *,
        depths: Sequence[float],
        lead_months: Sequence[int] = (1, 2, 3),
        history: int = 1,
        variables: Sequence[str] = OCEAN_STATE,
        forcings: Sequence[str] = (YEAR_PROGRESS_SIN, YEAR_PROGRESS_COS),
        static: Sequence[str] = ("ocean_mask",),
        time_step: str = "MS",
    ) -> TaskConfig:
        """A monthly ocean task: predicts the ocean state ``lead_months`` ahead.

        Args:
          depths: depths in metres taken from every 3D variable.
          lead_months: leads in months (store steps).
          history: number of monthly input times.
          variables: input and target variables.
          forcings: computed or store forcings (wind stress, for example).
          static: static fields.
          time_step: the store's monthly step (``"MS"``: labelled at month start).

        Returns:
          The task.
        """
        return cls(
            input_variables=tuple(variables),
            target_variables=tuple(variables),
            forcing_variables=tuple(forcings),
            static_variables=tuple(static),
            levels=tuple(float(d) for d in depths),
            time_step=time_step,
            history_steps=history,
            history_spacing=1,
            lead_steps=tuple(int(m) for m in lead_months),
        )
