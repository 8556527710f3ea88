"""Budget spend -> status and events (controller/spend.py), pure.

Covers: the operator names the very counters the gateway's limiter charges (shared and per-key
budgets, in their zone's window); the status fields (`spend` from the first budget, its
highest-spending key when per key; `resets` in the budget's zone; cleared without budgets);
the status without a store; BudgetExhausted once per window (event name fixed per object,
counter and window, different in the next window), with the refuse and report wording.
"""

from __future__ import annotations

import datetime as dt

from switchboard.api import access_key as api
from switchboard.controller import spend
from switchboard.gateway.limits import limiter as lim
from switchboard.gateway.limits.store import MemoryStore
from switchboard.routing import config as rc
from switchboard.routing import limits

SPEC = api.AccessKeyConfigSpec.model_validate(
    {
        "keys": [
            {"name": "alice", "secretRef": {"name": "s", "key": "alice"}},
            {"name": "ci", "secretRef": {"name": "s", "key": "ci"}},
        ],
        "allowedProviders": ["cloud"],
        "budgets": [
            {"scope": "shared", "usd": 50, "window": "day", "timeZone": "Europe/Berlin"},
            {"scope": "key", "usd": 400, "window": "month", "onExhausted": "report"},
        ],
    }
)
# 2026-03-29 00:30 UTC: 01:30 in Berlin, on the DST change day; the 31st of the month is near.
NOW = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC).timestamp()


def test_the_operator_reads_the_counters_the_gateway_charges() -> None:
    readings = spend.readings(spend.counters("team-a", "cfg", SPEC), NOW)
    price = rc.Price(input=3, output=15)
    est = lim.Estimate("cloud", "cloud:m", 100, 100, price)
    charged: set[str] = set()
    for key in ("alice", "ci"):
        rate, budgets = limits.rules("team-a", "cfg", key, SPEC)
        rules = lim.KeyRules(f"cfg/{key}", rate, budgets)
        limiter = lim.Limiter(MemoryStore(), clock=lambda: NOW)
        charged |= {h.charge.key for h in limiter.charges(rules, est, NOW)}
    assert {r.store_key for r in readings} == charged
    assert charged == {
        "team-a/cfg/*/budgets/0@2026-03-29",
        "team-a/cfg/alice/budgets/1@2026-03-01",
        "team-a/cfg/ci/budgets/1@2026-03-01",
    }


def test_status_fields() -> None:
    found = spend.with_values(spend.readings(spend.counters("t", "cfg", SPEC), NOW), [12.5, 3, 7])
    status = spend.status(found)
    assert status["spend"] == "$12.50 / $50.00 day"
    assert status["resets"] == "2026-03-30T00:00:00+02:00"  # Berlin midnight, after the change
    assert status["budgets"][0] == {
        "budget": 0,
        "spentUsd": 12.5,
        "usd": 50,
        "window": "2026-03-29",
        "resets": "2026-03-30T00:00:00+02:00",
    }
    assert status["budgets"][2]["key"] == "ci"
    assert status["budgets"][2]["resets"] == "2026-04-01T00:00:00Z"
    per_key = api.AccessKeyConfigSpec.model_validate(
        {**SPEC.model_dump(by_alias=True, mode="json"), "budgets": [SPEC.budgets[1]]}
    )
    found = spend.with_values(spend.readings(spend.counters("t", "cfg", per_key), NOW), [3, 7])
    assert spend.status(found)["spend"] == "$7.00 / $400.00 month (ci, highest of 2 keys)"
    assert spend.status([]) == {"budgets": None, "spend": None, "resets": None}


def test_without_a_store_status_says_where_to_look() -> None:
    assert spend.unknown(True)["spend"] == spend.UNKNOWN_SPEND
    assert spend.unknown(False)["spend"] is None
    assert not spend.changed({"spend": spend.UNKNOWN_SPEND}, spend.unknown(True))
    assert spend.changed({"spend": "$1.00 / $50.00 day"}, spend.unknown(True))


def test_exhausted_once_per_window() -> None:
    counters = spend.counters("t", "cfg", SPEC)
    found = spend.with_values(spend.readings(counters, NOW), [50.0, 1, 400.5])
    gone = spend.exhausted("cfg", "uid-1", found)
    assert [g.reading.counter.key for g in gone] == [None, "ci"]
    assert "requests are refused (429) until 2026-03-30T00:00:00+02:00" in gone[0].message
    assert "all keys (shared budget)" in gone[0].message
    assert "onExhausted is 'report': requests still pass" in gone[1].message
    again = spend.exhausted(
        "cfg", "uid-1", spend.with_values(spend.readings(counters, NOW), [60.0, 1, 401])
    )
    assert [g.event_name for g in again] == [g.event_name for g in gone]
    tomorrow = spend.readings(counters, NOW + 86400)
    later = spend.exhausted("cfg", "uid-1", spend.with_values(tomorrow, [50.0, 0, 0]))
    assert later[0].event_name != gone[0].event_name
    assert spend.exhausted("cfg", "uid-1", spend.with_values(tomorrow, [49.99, 0, 0])) == []
