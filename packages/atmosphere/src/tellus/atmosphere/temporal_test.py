import numpy as np
import pytest

from tellus.atmosphere import temporal

PANGU = (1, 3, 6, 24)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (168, (24,) * 7),  # 7 days = 7 calls of the 24 h model
        (30, (24, 6)),
        (23, (6, 6, 6, 3, 1, 1)),
        (0, ()),
        (1, (1,)),
    ],
)
def test_schedule_pangu_examples(target, expected):
    assert temporal.schedule(target, PANGU) == expected


def test_schedule_is_shortest_where_greedy_is_not():
    # Greedy largest-first would give 24 + 6 + 6 (3 calls); 18 + 18 is 2.
    assert temporal.schedule(36, (6, 18, 24)) == (18, 18)


def test_schedule_brute_force_minimum():
    # Against an exhaustive search over call counts for small targets.
    leads = (6, 18, 24)
    for target in range(0, 121, 6):
        best = min(
            a + b + c
            for a in range(21)
            for b in range(8)
            for c in range(6)
            if 6 * a + 18 * b + 24 * c == target
        )
        calls = temporal.schedule(target, leads)
        assert sum(calls) == target and len(calls) == best


def test_unreachable_lead_names_the_leads():
    with pytest.raises(ValueError, match=r"5 h is not a sum of the model leads \[6, 24\]"):
        temporal.schedule(5, (6, 24))


def test_naive_schedule():
    assert temporal.naive_schedule(30, (24, 6)) == (6,) * 5
    with pytest.raises(ValueError, match="multiple"):
        temporal.naive_schedule(9, (6, 24))


def test_fewer_calls_accumulate_less_error():
    # A model whose every call adds an independent error of fixed variance: the error
    # variance grows with the number of calls, so aggregation wins by the ratio of calls.
    rng = np.random.default_rng(0)
    n = 20000
    hier = rng.standard_normal((n, len(temporal.schedule(120, (6, 24))))).sum(1)
    naive = rng.standard_normal((n, len(temporal.naive_schedule(120, (6, 24))))).sum(1)
    assert hier.var() == pytest.approx(5, rel=0.05)
    assert naive.var() == pytest.approx(20, rel=0.05)


def test_plan_leads_shares_calls():
    calls = temporal.plan_leads([6, 12, 18, 24, 30, 48, 120], (6, 24))
    ends = {c.end for c in calls}
    assert {6, 12, 18, 24, 30, 48, 120} <= ends
    # Every call starts from a state already made.
    have = {0}
    for c in calls:
        assert c.start in have
        have.add(c.end)
    # 120 h comes from 24 h calls only: 24 -> 48 -> 72 -> 96 -> 120.
    long = [c for c in calls if c.end > 48]
    assert all(c.lead == 24 for c in long)
    # 6/12/18 use three 6 h calls, 24/48/72/96/120 five 24 h calls, 30 one 6 h call.
    assert len(calls) == 3 + 5 + 1
