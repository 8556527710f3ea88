"""In-flight slots on Redis across replicas: a dead replica's slots come back after the lapse.

Covers, on a real redis-server: a replica (a RedisStore in a subprocess) holding the only slot
of a `maxInFlight: 1` counter is SIGKILLed, and another replica is admitted again once the
killed one's heartbeat lapsed (`RedisSettings.inflight_lapse`, short here); the same for a
lease of in-flight slots (the counter read back to 0); a live replica's request held over many
lapses keeps its slot (the heartbeat), and frees it when settled; a store that closes frees its
slots at once; after a Redis restart that lost the counts, the settlement of a request reserved
before it never adds headroom (a negative share counts as 0); the gateway's setting
(`SWITCHBOARD_LIMITS_INFLIGHT_LAPSE`) is read and checked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from switchboard.gateway.limits.gate import LimitsSettings, build_store
from switchboard.gateway.limits.redis_store import LEASE_REQUESTS, RedisSettings, RedisStore
from switchboard.gateway.limits.store import LIVE, Charge, StoreDown
from tests.support import wait
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
LAPSE = 0.5
"""The test setting (default 10 s): seconds after a replica's last heartbeat."""
LATER = time.time() + 3600
SLOT = f"team-a/cfg/*/limits/0{LIVE}"
Holder = Callable[..., subprocess.Popen[bytes]]

HOLDER = textwrap.dedent(
    """
    import asyncio, sys, time
    from switchboard.gateway.limits import redis_store
    from switchboard.gateway.limits.redis_store import RedisSettings, RedisStore
    from switchboard.gateway.limits.store import Charge
    from tests.support.wait import until

    # A lease of this replica stays open until it is killed (no renewal, no give-back).
    redis_store.LEASE_SECONDS, redis_store.RENEW_SECONDS = 3600.0, 900.0

    async def main(url, prefix, key, lapse, limit, count, marker):
        store = RedisStore(RedisSettings(url, prefix=prefix, inflight_lapse=lapse))
        later = time.time() + 3600
        for _ in range(count):
            refused, _ = await store.reserve([Charge(key, 1, limit, later)])
            assert refused == -1, refused

        async def leased():
            await store.reserve([Charge(key, 1, limit, later)])
            return key in store.leases

        if limit > 1000:  # far from the limit: a lease of the in-flight counter
            await until(leased, "the in-flight lease", timeout=60)
        with open(marker, "w") as f:
            f.write("held")
        await asyncio.Event().wait()  # until killed

    url, prefix, key, lapse, limit, count, marker = sys.argv[1:]
    asyncio.run(main(url, prefix, key, float(lapse), float(limit), int(count), marker))
    """
)


@pytest.fixture
def prefix() -> str:
    return f"i{time.monotonic_ns()}:"


@pytest.fixture
def holder(redis_server: RedisServer, prefix: str, tmp_path: Path) -> Iterator[Holder]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(limit: float, count: int = 1) -> subprocess.Popen[bytes]:
        """A replica in its own process that reserves `count` slots and holds them."""
        marker = tmp_path / f"held-{len(procs)}"
        args = [redis_server.url, prefix, SLOT, str(LAPSE), str(limit), str(count), str(marker)]
        log = (tmp_path / f"holder-{len(procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, *args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        log.close()
        procs.append(proc)

        def held() -> bool:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / f"holder-{len(procs) - 1}.log").read_text())
            return marker.exists()

        wait.wait_for(held, "the holder reserved its slots", timeout=60)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _store(url: str, prefix: str, lapse: float = LAPSE) -> RedisStore:
    return RedisStore(RedisSettings(url, prefix=prefix, inflight_lapse=lapse))


async def _refused(store: RedisStore, limit: float) -> bool:
    refused, _ = await store.reserve([Charge(SLOT, 1, limit, LATER)])
    return refused == 0


def _kill(proc: subprocess.Popen[bytes]) -> float:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return time.monotonic()


async def test_a_killed_replicas_slot_comes_back_after_the_lapse(
    redis_server: RedisServer, prefix: str, holder: Holder
) -> None:
    """maxInFlight 1 in front of a single-slot server: the replica holding the slot dies by
    SIGKILL (no settlement, no close); another replica is refused until the dead one's
    heartbeat lapsed, then admitted (before: refused until the counter expired, 15 min)."""
    proc = holder(1)
    other = _store(redis_server.url, prefix)
    try:
        assert await _refused(other, 1)  # the slot is held by the other process
        killed = _kill(proc)

        async def admitted() -> bool:
            return not await _refused(other, 1)

        await wait.until(admitted, "the dead replica's slot came back", timeout=30, step=0.02)
        print(f"slot back {time.monotonic() - killed:.2f} s after SIGKILL (lapse {LAPSE} s)")
        assert await _refused(other, 1)  # now this replica holds it: the limit still holds
    finally:
        await other.close()


async def test_a_killed_replicas_lease_of_slots_comes_back(
    redis_server: RedisServer, prefix: str, holder: Holder
) -> None:
    """Far from a large in-flight limit a replica leases slots (LEASE_REQUESTS at once): killed,
    its lease and its requests' slots stop counting after the lapse."""
    limit = 8.0 * LEASE_REQUESTS
    proc = holder(limit, count=3)
    other = _store(redis_server.url, prefix)
    try:
        held = (await other.read([SLOT]))[0]
        assert held >= LEASE_REQUESTS + 3 - 1, held  # a lease counts whole
        assert (await other.scan("team-a/cfg/"))[SLOT] >= held  # by its counter's name
        _kill(proc)

        async def freed() -> bool:
            return (await other.read([SLOT]))[0] == 0

        await wait.until(freed, "the dead replica's leased slots came back", timeout=30)
        for _ in range(3):
            assert not await _refused(other, 3)
        assert await _refused(other, 3)
    finally:
        await other.close()


async def test_a_live_replicas_long_request_keeps_its_slot(
    redis_server: RedisServer, prefix: str
) -> None:
    """A request held over many lapses: the heartbeat (every third of the lapse, not per
    request) keeps the live replica's slot; settled, the slot is free at once."""
    busy, other = _store(redis_server.url, prefix), _store(redis_server.url, prefix)
    try:
        assert (await busy.reserve([Charge(SLOT, 1, 1, LATER)]))[0] == -1
        started = time.monotonic()

        async def still_held_after_many_lapses() -> bool:
            assert await _refused(other, 1)  # at every poll, past every lapse
            return time.monotonic() - started > 6 * LAPSE

        await wait.until(still_held_after_many_lapses, "six lapses", timeout=60, step=0.05)
        busy.add([(SLOT, -1.0, LATER)])  # settled

        async def admitted() -> bool:
            return not await _refused(other, 1)

        await wait.until(admitted, "the settled slot is free", timeout=30)
    finally:
        await busy.close()
        await other.close()


async def test_a_closing_store_frees_its_slots_at_once(
    redis_server: RedisServer, prefix: str
) -> None:
    """A replica that stops (SIGTERM, then the store's close) frees its slots without waiting
    for the lapse (an hour here)."""
    leaving = _store(redis_server.url, prefix, lapse=3600)
    other = _store(redis_server.url, prefix, lapse=3600)
    try:
        assert (await leaving.reserve([Charge(SLOT, 1, 1, LATER)]))[0] == -1
        assert await _refused(other, 1)
        await leaving.close()
        assert not await _refused(other, 1)
    finally:
        await other.close()


async def test_settling_after_a_redis_restart_adds_no_headroom(tmp_path: Path) -> None:
    """Redis restarts without persistence (the counts are lost) while a request is in flight:
    its settlement leaves a negative share, which counts as 0 (before: the counter went to -1
    and admitted one request past the limit); the replica's next reservation counts from 0."""
    server = RedisServer(tmp_path)
    server.start()
    prefix = f"r{time.monotonic_ns()}:"
    first, second = _store(server.url, prefix), _store(server.url, prefix)
    try:
        assert (await first.reserve([Charge(SLOT, 1, 2, LATER)]))[0] == -1
        server.restart()

        async def answers() -> bool:
            return (await first.read([SLOT])) == [0.0]

        await wait.until(answers, "redis is back", timeout=30, retry=(StoreDown,))
        first.add([(SLOT, -1.0, LATER)])  # the request reserved before the restart ends

        async def settled() -> bool:
            fields = await first.client.hgetall(first._key(SLOT))
            return fields.get(first.replica) == "-1"

        await wait.until(settled, "the settlement reached redis", timeout=30)
        assert not await _refused(second, 2)
        assert not await _refused(second, 2)
        assert await _refused(second, 2)  # two in flight: the limit, not three
        assert await _refused(first, 2)
        second.add([(SLOT, -1.0, LATER)])

        async def one_free() -> bool:
            return (await second.read([SLOT])) == [1.0]

        await wait.until(one_free, "the settlement reached redis", timeout=30)
        assert (await first.reserve([Charge(SLOT, 1, 2, LATER)]))[0] == -1  # from 0, not -1
        assert await _refused(second, 2)
    finally:
        await first.close()
        await second.close()
        server.stop()


async def test_the_lapse_setting(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    monkeypatch.setenv("SWITCHBOARD_LIMITS_INFLIGHT_LAPSE", "2.5")
    store = build_store(LimitsSettings.from_env(redis_url=redis_server.url))
    assert isinstance(store, RedisStore) and store.settings.inflight_lapse == 2.5
    await store.close()
    monkeypatch.delenv("SWITCHBOARD_LIMITS_INFLIGHT_LAPSE")
    assert LimitsSettings.from_env().inflight_lapse == 10.0
    for bad in ("0", "-1", "ten", "inf"):
        monkeypatch.setenv("SWITCHBOARD_LIMITS_INFLIGHT_LAPSE", bad)
        with pytest.raises(ValueError, match="SWITCHBOARD_LIMITS_INFLIGHT_LAPSE"):
            LimitsSettings.from_env()
