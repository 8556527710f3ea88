"""Reserve/settle (gateway/limits/limiter.py) on the in-process store, with an injected clock.

Covers: the request that crosses a limit is the last to pass and the next is refused (requests,
tokens, budget, in flight), with retry-after, the limit named and the reset time; the minute
window and a month budget reset (at midnight of the first in the configured zone); settle
replaces the reservation with real usage, releases in-flight slots, keeps it for a request
cancelled after reaching the upstream, and charges a fallback that another rule covers;
rules narrowed to providers or models; shared counters across the keys of one object; a
budget that only reports; remaining-quota headers; fail open and fail closed when the store
is down; the in-process store kept across a restart in a file.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from pathlib import Path

import pytest

from switchboard.dialects.types import Usage
from switchboard.gateway.limits import limiter as lim
from switchboard.gateway.limits.store import Charge, MemoryStore, StoreDown
from switchboard.routing import config as rc

PRICE = rc.Price(input=1_000_000, output=2_000_000)  # $1 per input token, $2 per output token


class Clock:
    def __init__(self, text: str, zone: str = "UTC") -> None:
        self.now = at(text, zone)

    def __call__(self) -> float:
        return self.now


def at(text: str, zone: str = "UTC") -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()


def rate(index: int = 0, owner: str = "alice", **kw: object) -> rc.RateRule:
    return rc.RateRule(counter=f"team-a/cfg/{owner}/limits/{index}", **kw)  # type: ignore[arg-type]


def budget(usd: float, window: str = "day", zone: str = "UTC", **kw: object) -> rc.BudgetRule:
    owner = kw.pop("owner", "alice")
    return rc.BudgetRule(
        counter=f"team-a/cfg/{owner}/budgets/0",
        usd=usd,
        window=window,
        time_zone=zone,
        **kw,  # type: ignore[arg-type]
    )


def est(inp: int = 1, out: int = 0, provider: str = "p", model: str = "m") -> lim.Estimate:
    return lim.Estimate(provider, f"{provider}:{model}", inp, out, PRICE)


def rules(*items: rc.RateRule | rc.BudgetRule, key: str = "cfg/alice") -> lim.KeyRules:
    return lim.KeyRules(
        key,
        tuple(r for r in items if isinstance(r, rc.RateRule)),
        tuple(r for r in items if isinstance(r, rc.BudgetRule)),
    )


def make(clock: Clock, **kw: object) -> tuple[lim.Limiter, MemoryStore]:
    store = MemoryStore(clock=clock)
    return lim.Limiter(store, clock=clock, **kw), store  # type: ignore[arg-type]


async def test_requests_per_minute_crossing_is_last_then_resets() -> None:
    clock = Clock("2026-12-02T10:00:10")
    limiter, _ = make(clock)
    key = rules(rate(requests_per_minute=3))
    for i in range(3):
        ticket = await limiter.reserve(key, est())
        assert ticket.headers["x-ratelimit-remaining-requests"] == str(2 - i)
        assert ticket.headers["x-ratelimit-limit-requests"] == "3"
        limiter.settle(ticket, "p", "p:m", Usage(1, 0), 1.0, reached=True)
    with pytest.raises(lim.LimitError) as refused:
        await limiter.reserve(key, est())
    err = refused.value
    assert err.status == 429
    assert err.headers["retry-after"] == "50"
    assert "'cfg/alice'" in err.message and "3 requests per minute" in err.message
    assert "AccessKeyConfig team-a/cfg spec.limits[0]" in err.message
    clock.now = at("2026-12-02T10:01:00")
    await limiter.reserve(key, est())


async def test_tokens_per_minute_settles_real_usage() -> None:
    clock = Clock("2026-12-02T10:00:00")
    limiter, store = make(clock)
    key = rules(rate(tokens_per_minute=100))
    # The reservation is the upper bound (prompt + output limit) ...
    ticket = await limiter.reserve(key, est(inp=10, out=200))
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "0"
    # ... so a second request waits for the first to settle.
    with pytest.raises(lim.LimitError, match="100 tokens per minute"):
        await limiter.reserve(key, est(inp=10, out=200))
    limiter.settle(ticket, "p", "p:m", Usage(10, 30), 0.0, reached=True)
    assert await store.scan("team-a/cfg/alice/limits/0/tpm") == {
        f"team-a/cfg/alice/limits/0/tpm@m{int(clock.now)}": 40.0
    }
    # 40 used: passes, crosses (40 + 90 = 130 > 100), and the next is refused.
    crossing = await limiter.reserve(key, est(inp=10, out=80))
    limiter.settle(crossing, "p", "p:m", Usage(10, 80), 0.0, reached=True)
    with pytest.raises(lim.LimitError) as refused:
        await limiter.reserve(key, est(inp=1))
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_cache_reads_count_only_when_asked() -> None:
    clock = Clock("2026-12-02T10:00:00")
    limiter, store = make(clock)
    without = rate(0, tokens_per_minute=1000)
    with_reads = rate(1, tokens_per_minute=1000, count_cache_reads=True)
    ticket = await limiter.reserve(rules(without, with_reads), est(inp=0))
    limiter.settle(ticket, "p", "p:m", Usage(5, 5, cache_read_tokens=100), 0.0, reached=True)
    values = await store.scan("team-a/cfg/alice/limits/")
    assert sorted(values.values()) == [10.0, 110.0]


async def test_day_budget_crossing_request_is_last() -> None:
    clock = Clock("2026-12-02T10:00:00", "Europe/Berlin")
    limiter, _ = make(clock)
    key = rules(budget(5.0, "day", "Europe/Berlin"))
    for _ in range(2):  # $2 each: 0 -> 2 -> 4
        t = await limiter.reserve(key, est(inp=1, out=0))
        limiter.settle(t, "p", "p:m", Usage(1, 0), 2.0, reached=True)
    t = await limiter.reserve(key, est())  # 4 < 5: passes, and spends 3 more
    assert t.headers["x-switchboard-budget-remaining-usd"].startswith("0.")
    limiter.settle(t, "p", "p:m", Usage(1, 1), 3.0, reached=True)
    with pytest.raises(lim.LimitError) as refused:
        await limiter.reserve(key, est())
    err = refused.value
    assert err.headers["x-switchboard-budget-reset"] == "2026-12-03T00:00:00+01:00"
    assert err.headers["x-should-retry"] == "false"
    assert "$5.00 per day" in err.message and "2026-12-03T00:00:00+01:00" in err.message
    clock.now = at("2026-12-03T00:00:00", "Europe/Berlin")
    await limiter.reserve(key, est())


async def test_month_budget_resets_at_midnight_of_the_first_in_its_zone() -> None:
    zone = "America/New_York"
    clock = Clock("2026-11-30T23:59:59", zone)
    limiter, _ = make(clock)
    key = rules(budget(1.0, "month", zone))
    t = await limiter.reserve(key, est())
    limiter.settle(t, "p", "p:m", Usage(1, 0), 1.0, reached=True)
    with pytest.raises(lim.LimitError, match="resets at 2026-12-01T00:00:00-05:00"):
        await limiter.reserve(key, est())
    # 04:59:59 UTC on Dec 1 is still November in New York.
    clock.now = at("2026-12-01T04:59:59")
    with pytest.raises(lim.LimitError):
        await limiter.reserve(key, est())
    clock.now = at("2026-12-01T00:00:00", zone)
    await limiter.reserve(key, est())


async def test_report_only_budget_counts_but_never_refuses() -> None:
    clock = Clock("2026-12-02T10:00:00")
    limiter, store = make(clock)
    key = rules(budget(1.0, refuse=False))
    for _ in range(3):
        t = await limiter.reserve(key, est())
        limiter.settle(t, "p", "p:m", Usage(1, 0), 1.0, reached=True)
    assert list((await store.scan("team-a/cfg/alice/budgets/0")).values()) == [3.0]


async def test_in_flight_cap_and_release() -> None:
    clock = Clock("2026-12-02T10:00:00")
    limiter, _ = make(clock)
    key = rules(rate(max_in_flight=2))
    a = await limiter.reserve(key, est())
    await limiter.reserve(key, est())
    with pytest.raises(lim.LimitError, match="2 requests in flight"):
        await limiter.reserve(key, est())
    limiter.settle(a, "p", "p:m", None, 0.0, reached=False)
    limiter.settle(a, "p", "p:m", None, 0.0, reached=False)  # settles once only
    await limiter.reserve(key, est())
    with pytest.raises(lim.LimitError):
        await limiter.reserve(key, est())


async def test_cancelled_after_reaching_upstream_keeps_its_reservation() -> None:
    clock = Clock("2026-12-02T10:00:00")
    limiter, store = make(clock)
    key = rules(budget(100.0))
    t = await limiter.reserve(key, est(inp=3, out=4))  # $3 + $8
    limiter.settle(t, "p", "p:m", None, 0.0, reached=True)
    assert list((await store.scan("team-a/cfg/alice/budgets/")).values()) == [11.0]
    t = await limiter.reserve(key, est(inp=3, out=4))
    limiter.settle(t, "p", "p:m", None, 0.0, reached=False)  # refused before any upstream
    assert list((await store.scan("team-a/cfg/alice/budgets/")).values()) == [11.0]


async def test_rules_narrowed_to_providers_and_models() -> None:
    clock = Clock("2026-12-02T10:00:00")
    limiter, _ = make(clock)
    cloud = budget(1.0, providers=("cloud",))
    key = rules(cloud, rate(1, requests_per_minute=1, models=("local:small",)))
    for _ in range(3):  # neither rule covers local:big
        t = await limiter.reserve(key, est(provider="local", model="big"))
        limiter.settle(t, "local", "local:big", Usage(1, 1), 5.0, reached=True)
    await limiter.reserve(key, est(provider="local", model="small"))
    with pytest.raises(lim.LimitError):
        await limiter.reserve(key, est(provider="local", model="small"))
    # A call that fell back from local to cloud is charged to the cloud budget.
    t = await limiter.reserve(key, est(provider="local", model="big"))
    limiter.settle(t, "cloud", "cloud:x", Usage(1, 1), 2.0, reached=True)
    with pytest.raises(lim.LimitError, match=r"\$1.00 per day"):
        await limiter.reserve(key, est(provider="cloud", model="x"))


async def test_shared_counter_across_keys() -> None:
    clock = Clock("2026-12-02T10:00:00")
    limiter, _ = make(clock)
    alice = rules(rate(owner="*", requests_per_minute=2), key="cfg/alice")
    bob = rules(rate(owner="*", requests_per_minute=2), key="cfg/bob")
    await limiter.reserve(alice, est())
    await limiter.reserve(bob, est())
    with pytest.raises(lim.LimitError, match=r"'cfg/alice'.*\(shared by all its keys\)"):
        await limiter.reserve(alice, est())


class DownStore(MemoryStore):
    async def reserve(self, charges: Sequence[Charge]) -> tuple[int, list[float]]:
        raise StoreDown("connection refused")


async def test_store_down_fails_open_with_local_counting_and_alarm() -> None:
    clock = Clock("2026-12-02T10:00:00")
    alarms: list[bool] = []
    limiter = lim.Limiter(DownStore(clock=clock), clock=clock, on_store_error=alarms.append)
    key = rules(rate(requests_per_minute=1))
    t = await limiter.reserve(key, est())
    limiter.settle(t, "p", "p:m", Usage(1, 0), 0.0, reached=True)
    with pytest.raises(lim.LimitError):
        await limiter.reserve(key, est())
    assert alarms == [True, True]
    assert limiter.store_down


async def test_store_down_fails_closed_when_asked() -> None:
    clock = Clock("2026-12-02T10:00:00")
    limiter = lim.Limiter(DownStore(clock=clock), clock=clock, on_store_down=lim.CLOSED)
    with pytest.raises(lim.LimitError) as refused:
        await limiter.reserve(rules(rate(requests_per_minute=1)), est())
    assert refused.value.status == 503


async def test_memory_store_kept_across_restart(tmp_path: Path) -> None:
    clock = Clock("2026-12-02T10:00:00")
    path = tmp_path / "limits.json"
    store = MemoryStore(path, clock=clock)
    limiter = lim.Limiter(store, clock=clock)
    key = rules(budget(10.0), rate(max_in_flight=5))
    t = await limiter.reserve(key, est())
    limiter.settle(t, "p", "p:m", Usage(1, 0), 4.0, reached=True)
    await limiter.reserve(key, est())  # in flight when the process stops
    await store.close()
    again = MemoryStore(path, clock=clock)
    values = await again.scan("team-a/")
    assert list(values.values()) == [5.0]  # $4 settled + $1 reserved; in-flight not kept
    clock.now = at("2026-12-20T00:00:00")  # expired counters are not loaded
    assert await MemoryStore(path, clock=clock).scan("team-a/") == {}


def test_memory_store_ignores_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "limits.json"
    path.write_bytes(b"{not json")
    assert MemoryStore(path).values == {}
