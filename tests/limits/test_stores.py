"""The counter stores against the same contract: the in-process store and a real redis-server.

Covers, on both: reserve adds to every counter or to none; the charge that crosses a limit
passes and the next is refused; count-only charges never refuse; corrections (`add`); reads and
scans by prefix; expiry. On Redis: three store instances (three replicas) reserving 300 times
concurrently against one limit admit exactly the limit; far from a limit, leases admit most
requests without a script call, never past the limit, and Redis holds exactly what was used
once they are given back; leases are renewed before they end; the remaining-quota headers of
leased requests are as of the lease's grant, never above what Redis has left; counters carry
their expiry; a flushed script is loaded again (the batch's settlements applied once); the
store down raises StoreDown at once and the limiter counts locally (fail open) until Redis is
back; counters survive a Redis restart with persistence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.dialects.types import Usage
from switchboard.gateway.limits import limiter as lim
from switchboard.gateway.limits.redis_store import (
    LEASE_REQUESTS,
    LEASE_SECONDS,
    Claim,
    RedisSettings,
    RedisStore,
)
from switchboard.gateway.limits.store import Charge, MemoryStore, StoreDown
from switchboard.routing import config as rc
from switchboard.routing.limits import redis_key
from tests.support import wait
from tests.support.redis_server import RedisServer

LATER = time.time() + 3600
PREFIX = "team-a/cfg/"


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[MemoryStore | RedisStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    s = RedisStore(RedisSettings(redis_server.url, prefix=f"t{time.monotonic_ns()}:"))
    yield s
    await s.close()


async def eventually(check: object, timeout: float = 10) -> None:
    """Until `check()` holds; an assertion failing in it, or the store down, is not yet."""
    assert callable(check)

    async def holds() -> bool:
        assert await check()
        return True

    await wait.until(holds, timeout=timeout, step=0.02, retry=(AssertionError, StoreDown))


async def test_reserve_all_or_nothing_and_crossing(store: MemoryStore | RedisStore) -> None:
    a, b = f"{PREFIX}a/limits/0/x", f"{PREFIX}a/budgets/0@d"
    assert await store.reserve([Charge(a, 1, 2, LATER), Charge(b, 1.5, 2, LATER)]) == (
        -1,
        [1.0, 1.5],
    )
    # b is at 1.5 < 2: passes and crosses to 3.0
    assert await store.reserve([Charge(a, 1, 2, LATER), Charge(b, 1.5, 2, LATER)]) == (
        -1,
        [2.0, 3.0],
    )
    refused, values = await store.reserve([Charge(b, 1, 2, LATER), Charge(a, 1, None, LATER)])
    assert refused == 0
    assert values == [3.0, 2.0]
    assert await store.read([a, b, f"{PREFIX}none"]) == [2.0, 3.0, 0.0]
    # count-only charges never refuse
    assert (await store.reserve([Charge(a, 1, None, LATER)]))[0] == -1


async def test_add_and_scan(store: MemoryStore | RedisStore) -> None:
    key = f"{PREFIX}*/budgets/1@2026-12-01"
    await store.reserve([Charge(key, 2.0, 10, LATER)])
    store.add([(key, -1.25, LATER), (f"{PREFIX}bob/budgets/0@2026-12-01", 0.5, LATER)])
    await eventually(
        lambda: _equals(
            store.scan(PREFIX),
            {key: 0.75, f"{PREFIX}bob/budgets/0@2026-12-01": 0.5},
        )
    )


async def _equals(awaitable: object, expected: object) -> bool:
    return await awaitable == expected  # type: ignore[misc]


async def test_three_replicas_admit_exactly_the_limit(redis_server: RedisServer) -> None:
    prefix = f"r{time.monotonic_ns()}:"
    stores = [RedisStore(RedisSettings(redis_server.url, prefix=prefix)) for _ in range(3)]
    key = f"{PREFIX}*/limits/0/rpm@m1"
    results = await asyncio.gather(
        *(stores[i % 3].reserve([Charge(key, 1, 50, LATER)]) for i in range(300))
    )
    assert sum(1 for refused, _ in results if refused == -1) == 50
    assert await stores[0].read([key]) == [50.0]
    ttl = await stores[0].client.pexpiretime(redis_key(prefix, key))
    assert abs(ttl - LATER * 1000) < 1000
    for s in stores:
        await s.close()


async def test_leases_far_from_the_limit_never_overshoot_and_settle_exactly(
    redis_server: RedisServer,
) -> None:
    """Three replicas on a limit far above one request: most reservations are admitted from
    leases without a script call; together they never pass the limit; near it they go exact
    (a held lease may refuse at most one lease early); given back, Redis holds what was used."""
    prefix = f"l{time.monotonic_ns()}:"
    stores = [RedisStore(RedisSettings(redis_server.url, prefix=prefix)) for _ in range(3)]
    key, live = f"{PREFIX}*/limits/0/tpm@m1", f"{PREFIX}*/limits/0#live"
    limit = 5000.0
    before = await _script_calls(stores[0])
    admitted = [0, 0, 0]

    async def client(i: int) -> None:
        store = stores[i % 3]
        while True:
            refused, _ = await store.reserve(
                [Charge(key, 2, limit, LATER), Charge(live, 1, 1e9, LATER)]
            )
            if refused >= 0:
                return
            admitted[i % 3] += 1
            await asyncio.sleep(0)
            store.add([(key, -1.0, LATER), (live, -1.0, LATER)])  # settle: used 1 of 2, slot freed

    await asyncio.gather(*(client(i) for i in range(6)))  # 2 per replica: few to batch
    total = sum(admitted)
    calls = await _script_calls(stores[0]) - before
    assert calls * 4 < total, (calls, total)  # the fast path: far fewer round trips than requests
    assert all(admitted), admitted
    # The in-flight leases given back (within LEASE_SECONDS) while the replicas live: every
    # slot free (a store that closes drops its in-flight shares whatever they are).
    await eventually(lambda: _equals(stores[0].read([live]), [0.0]))
    for s in stores:
        await s.close()
    used = await _read_after(redis_server, prefix, key)
    assert used == total  # reserved 2, settled 1 each: given back leases leave exactly that
    assert await _read_after(redis_server, prefix, live) == 0
    # Never past the limit; at most a lease (LEASE_REQUESTS requests of 2) per replica early.
    assert total <= limit
    assert total >= limit - 3 * LEASE_REQUESTS * 2, total


async def test_leases_are_renewed_before_they_end(redis_server: RedisServer) -> None:
    """Steady reservations over several lease lifetimes stay on the fast path: a lease in its
    last quarter second asks for the next one, which replaces it, instead of the reservations
    falling back to a script call each time a lease ends (before: one miss per second)."""
    store = RedisStore(RedisSettings(redis_server.url, prefix=f"r{time.monotonic_ns()}:"))
    key, live = f"{PREFIX}*/limits/0/rpm@m1", f"{PREFIX}*/limits/0#live"
    charges = [Charge(key, 1, 1e9, LATER), Charge(live, 1, 1e9, LATER)]
    amounts = [c.amount for c in charges]
    keys = [c.key for c in charges]
    claim = Claim(keys, [c.limit for c in charges], [c.expires for c in charges])
    assert (await store.reserve(charges))[0] == -1  # the first asks Redis, then leases
    await eventually(lambda: _leased(store, keys))
    misses = 0
    end = time.monotonic() + 3.5 * LEASE_SECONDS
    while time.monotonic() < end:
        if store.take(claim, amounts) is None:
            misses += 1
            assert (await store.reserve(charges))[0] == -1
        store.add([(live, -1.0, LATER)])
        await asyncio.sleep(0.005)
    await store.close()
    assert misses <= 1, misses  # (at most one renewal slower than a quarter second)


async def test_leased_headers_are_as_of_the_grant_never_above_what_redis_has_left(
    redis_server: RedisServer,
) -> None:
    """Requests admitted from a lease carry the remaining budget as of the lease's grant, the
    whole lease counted as used: the counter in Redis then, never more than Redis has left
    (before: the grant's base plus this replica's use, which counts the unused lease as free)."""
    prefix = f"h{time.monotonic_ns()}:"
    store = RedisStore(RedisSettings(redis_server.url, prefix=prefix))
    limiter = lim.Limiter(store)
    rule = rc.BudgetRule(counter="team-a/cfg/a/budgets/0", usd=1000, window="day", time_zone="UTC")
    rules = lim.KeyRules("cfg/a", (), (rule,))
    est = lim.Estimate("p", "p:m", 1, 0, rc.Price(input=10_000))  # $0.01 a request
    await limiter.reserve(rules, est)  # the first asks Redis, then leases

    async def leased() -> bool:
        return bool(store.leases)

    await eventually(leased)

    async def as_of_the_grant() -> bool:  # (again if the lease ended meanwhile: a slow machine)
        lease = next(iter(store.leases.values()))
        tickets = [limiter.admit(rules, "p", "p:m", est.tokens, est.cost) for _ in range(3)]
        counter = await _read_after(redis_server, prefix, lease.key)
        assert store.leases.get(lease.key) is lease and lease.open
        assert lease.granted == pytest.approx(LEASE_REQUESTS * 0.01)
        for t in tickets:
            assert t is not None
            remaining = float(t.headers["x-switchboard-budget-remaining-usd"])
            assert remaining == pytest.approx(1000 - counter, abs=1e-6)  # the lease counted
        return True

    await eventually(as_of_the_grant)
    await store.close()


async def _leased(store: RedisStore, keys: list[str]) -> bool:
    return all(k in store.leases for k in keys)


async def test_count_only_counters_count_locally_and_land_in_redis(
    redis_server: RedisServer,
) -> None:
    """A budget that only reports has no limit to protect: after the first request the replica
    counts it in the process (no script call, cost 0 included) and adds it up in Redis."""
    prefix = f"c{time.monotonic_ns()}:"
    s = RedisStore(RedisSettings(redis_server.url, prefix=prefix))
    key, free = f"{PREFIX}*/budgets/1@d", f"{PREFIX}*/budgets/2@d"
    before = await _script_calls(s)
    for _ in range(50):
        refused, _ = await s.reserve([Charge(key, 0.5, None, LATER), Charge(free, 0, None, LATER)])
        assert refused == -1
    s.add([(key, -0.25, LATER)])
    assert await _script_calls(s) - before <= 2
    await s.close()
    assert await _read_after(redis_server, prefix, key) == 24.75
    assert await _read_after(redis_server, prefix, free) == 0


async def _script_calls(store: RedisStore) -> int:
    stats = await store.client.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def _read_after(server: RedisServer, prefix: str, key: str) -> float:
    s = RedisStore(RedisSettings(server.url, prefix=prefix, leases=False))
    try:
        return (await s.read([key]))[0]
    finally:
        await s.close()


async def test_script_flushed_is_loaded_again(redis_server: RedisServer) -> None:
    s = RedisStore(RedisSettings(redis_server.url, prefix=f"f{time.monotonic_ns()}:"))
    key = f"{PREFIX}a/limits/0/rpm@m1"
    await s.reserve([Charge(key, 1, 5, LATER)])
    await s.client.script_flush()
    assert (await s.reserve([Charge(key, 1, 5, LATER)])) == (-1, [2.0])
    await s.close()


async def test_settlements_count_once_when_the_script_was_flushed(
    redis_server: RedisServer,
) -> None:
    """A batch whose script call meets NOSCRIPT is sent again, but not its settlements: they
    were applied (before: applied twice)."""
    s = RedisStore(RedisSettings(redis_server.url, prefix=f"n{time.monotonic_ns()}:"))
    budget, rpm = f"{PREFIX}*/budgets/0@d", f"{PREFIX}*/limits/0/rpm@m1"
    await s.reserve([Charge(budget, 1.0, 100, LATER)])
    await s.client.script_flush()
    s.add([(budget, 1.0, LATER)])  # queued, then in the same round trip as:
    assert await s.reserve([Charge(rpm, 1, 5, LATER)]) == (-1, [1.0])
    assert await s.read([budget, rpm]) == [2.0, 1.0]
    await s.close()


def _rules() -> lim.KeyRules:
    rule = rc.RateRule(counter="team-a/cfg/a/limits/0", requests_per_minute=2)
    return lim.KeyRules("cfg/a", (rule,), ())


async def test_store_down_fails_open_then_recovers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    store = RedisStore(RedisSettings(server.url, retry_interval=0.2))
    alarms: list[bool] = []
    limiter = lim.Limiter(store, on_store_error=alarms.append)
    est = lim.Estimate("p", "p:m", 1, 1, None)
    await limiter.reserve(_rules(), est)
    server.stop()
    with pytest.raises(StoreDown):
        await store.reserve([Charge(f"{PREFIX}x", 1, 1, LATER)])
    # fail open: counted in the process, and the limit still holds there
    t = await limiter.reserve(_rules(), est)
    assert limiter.store_down and t.store is limiter.local
    limiter.settle(t, "p", "p:m", Usage(1, 1), 0.0, reached=True)
    await limiter.reserve(_rules(), est)
    with pytest.raises(lim.LimitError):
        await limiter.reserve(_rules(), est)
    server.start()

    async def back() -> bool:
        try:
            await limiter.reserve(lim.KeyRules("cfg/b", (), ()), est)
            await store.reserve([Charge(f"{PREFIX}y", 1, None, LATER)])
        except StoreDown:
            return False
        return True

    await eventually(back)
    await limiter.reserve(_rules(), est)  # the shared count (1) was lost with the server
    assert not limiter.store_down
    assert alarms[-1] is False and True in alarms
    await store.close()
    server.stop()


async def test_counts_survive_a_redis_restart_with_persistence(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, persist=True)
    server.start()
    store = RedisStore(RedisSettings(server.url))
    key = f"{PREFIX}*/budgets/0@2026-12-01"
    await store.reserve([Charge(key, 3.5, 10, LATER)])
    store.add([(key, 1.0, LATER)])
    await eventually(lambda: _equals(store.read([key]), [4.5]))
    server.restart()
    await eventually(lambda: _equals(store.read([key]), [4.5]))
    await store.close()
    server.stop()
