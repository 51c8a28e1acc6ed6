"""Hierarchical temporal aggregation: reach a lead time with the fewest model calls.

Pangu-Weather trains one model per lead (1 h, 3 h, 6 h, 24 h) and composes them at inference:
a 7-day forecast is 7 calls of the 24 h model, 30 h is 24 h + 6 h, 23 h is 6+6+6+3+1+1.
Fewer calls means less accumulated error than stepping the shortest model (168 calls of the
1 h model for 7 days). :func:`schedule` finds a shortest decomposition by dynamic
programming (for Pangu's leads the greedy "largest first" is already optimal, but a user's
set of leads need not be canonical, e.g. {6, 18, 24} for 36 h = 18 + 18), and orders the
calls longest first, as Pangu does, so that the long model runs from the analysis.

:func:`plan_leads` extends this to a list of output leads sharing calls: every output is a
stop along one path of calls from the initial state, the intermediate states are cached, and
each output lead reuses the longest cached prefix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


def _as_hours(leads: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(x) for x in leads}))
    if not out or out[0] <= 0:
        raise ValueError(f"model leads must be positive whole hours, got {list(leads)}")
    return out


def schedule(target: int, model_leads: Sequence[int]) -> tuple[int, ...]:
    """The model leads to call, in order, to reach ``target`` hours with the fewest calls.

    Among shortest decompositions the one that uses longer models first (lexicographically
    largest when sorted descending) is returned.

    Args:
      target: lead time in hours (>= 0; 0 gives no calls).
      model_leads: the leads (hours) of the available models.

    Raises:
      ValueError: ``target`` cannot be written as a sum of ``model_leads``.
    """
    leads = _as_hours(model_leads)
    if target < 0:
        raise ValueError(f"lead must be >= 0 hours, got {target}")
    inf = 1 << 30
    best = [0] + [inf] * target
    for t in range(1, target + 1):
        best[t] = min((best[t - m] + 1 for m in leads if m <= t), default=inf)
    if best[target] >= inf:
        raise ValueError(
            f"{target} h is not a sum of the model leads {list(leads)} h; "
            f"use a lead that is a multiple of {min(leads)} h"
        )
    calls: list[int] = []
    t = target
    while t:
        # The longest model that stays on a shortest path.
        m = next(m for m in reversed(leads) if m <= t and best[t - m] == best[t] - 1)
        calls.append(m)
        t -= m
    return tuple(sorted(calls, reverse=True))


def naive_schedule(target: int, model_leads: Sequence[int]) -> tuple[int, ...]:
    """Stepping only the shortest model (the baseline hierarchical aggregation beats)."""
    step = _as_hours(model_leads)[0]
    if target % step:
        raise ValueError(f"{target} h is not a multiple of the shortest model lead {step} h")
    return (step,) * (target // step)


@dataclasses.dataclass(frozen=True)
class Call:
    """One model call: from the state at ``start`` hours, the ``lead`` model gives
    ``start + lead``."""

    start: int
    lead: int

    @property
    def end(self) -> int:
        return self.start + self.lead


def plan_leads(targets: Sequence[int], model_leads: Sequence[int]) -> tuple[Call, ...]:
    """Calls that produce every lead in ``targets``, sharing intermediate states.

    Each target is reached from the latest already-computed state that lies on a shortest
    path to it (a state at ``s`` hours is on such a path when ``len(schedule(s)) +
    len(schedule(target - s)) == len(schedule(target))``), so a 7-day forecast with daily
    and 6-hourly outputs costs 7 calls of the 24 h model plus the 6 h calls in between.

    Returns:
      Calls in an order where each call's ``start`` state is already computed (0 = the
      initial state).
    """
    leads = _as_hours(model_leads)
    have = {0}
    calls: list[Call] = []
    cost = {}

    def n_calls(t: int) -> int:
        if t not in cost:
            cost[t] = len(schedule(t, leads))
        return cost[t]

    for target in sorted(set(int(t) for t in targets)):
        if target in have:
            continue
        starts = [
            s for s in have if s <= target and n_calls(s) + n_calls(target - s) == n_calls(target)
        ]
        start = max(starts) if starts else max(s for s in have if s <= target)
        t = start
        for m in schedule(target - start, leads):
            if t + m not in have:
                calls.append(Call(t, m))
                have.add(t + m)
            t += m
    return tuple(calls)
