"""The shared counter store on Redis or Valkey, for several gateway replicas.

Reservations are atomic in a Lua script (check all counters of a request, then add to all of
them, with their expiry), so replicas never admit past a limit together: the request that
crosses is the last to pass, whichever replica it reached. The fast path is batching:
reservations and settlements that arrive while a round trip is on the wire go out together on
the next one, settlements summed per counter and the reservations of one AccessKeyConfig in one
script call that takes them in order, so a busy replica pays about one round trip and one
script call per batch, not per request. Settlements (`add`) never delay a request.

Far from a limit there is a faster path: leases. After a reservation passes, the replica asks
for a share of each of its counters (128 requests' worth, granted only with four times that
left, added to the counter in Redis at once) and admits the next requests that fit in its open
leases without a round trip (`take()`, a plain call: the limiter's fast path); settlements of
leased counters go to the lease. A lease half spent, or in its last `RENEW_SECONDS`, asks for
the next one, which replaces it; a lease is given back (its unused part subtracted) within
`LEASE_SECONDS`. Leases are counted in Redis, so replicas never admit past a limit together;
near a limit no lease is granted and every reservation is exact again (docs/limits.md).

Counter keys are `<prefix>{<namespace>/<config>}/<rest>` (`routing.limits.redis_key`, shared
with the operator, which reads budgets into status): the hash tag keeps all counters of one
AccessKeyConfig in one Redis Cluster slot, as one script needs.

In-flight counters (`store.LIVE`) are per replica: in Redis each is a hash (named with
`SLOTS` in place of `#live`) holding, per replica id (random per process start), that replica's
share and the Redis time until which it counts (`<id>:t`). Reservations and leases set the
deadline `inflight_lapse` seconds ahead; while this replica holds a share of a counter, a
background task (not the request path) pushes its deadlines on every `inflight_lapse / 3`
seconds (`BEAT`). The scripts count only shares whose deadline has not passed, and drop the
others: the slots of a replica that died (SIGKILL, OOM, node loss) or stopped answering come
back `inflight_lapse` seconds (default 10) after its last heartbeat, instead of when the
counter expires. A store that closes drops its shares at once.

When Redis does not answer (connection refused, timeout), `reserve()` raises StoreDown at once
and keeps doing so for `retry_interval` seconds without trying (the limiter then counts in the
process if `on_store_down` is `open`); settlements made meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from switchboard.gateway.limits.store import LIVE, Charge, StoreDown
from switchboard.routing.limits import REDIS_PREFIX, counter_of, redis_key

log = logging.getLogger("switchboard.gateway.limits")

SLOTS = "#slots"
"""In Redis, an in-flight counter `...#live` is the hash `...#slots` (a new name: replicas of
the version that kept it as a plain number count apart during a rolling upgrade, instead of
failing on a key of the wrong type)."""

# Shared by the scripts: ARGV[1] is this replica's id, ARGV[2] its lapse (ms). An in-flight
# hash holds per replica id its share and, under `<id>:t`, the Redis time (ms) until which the
# share counts. `live(key)` is the sum of the shares that count (never below 0 each; this
# replica's always: it is running the script), dropping the others (a dead replica's).
# `hold(key, amount, expiry)` adds to this replica's share (a negative share, left by
# settlements after its share was dropped, starts again from 0) and pushes its deadline.
_LIVE_LUA = (
    f"local SLOTS = '{SLOTS}'\n"
    + """
local me, lapse = ARGV[1], tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function is_live(key)
  return string.sub(key, -#SLOTS) == SLOTS
end
local function live(key)
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  local total = 0
  for name, value in pairs(h) do
    if string.sub(name, -2) ~= ':t' then
      if name == me or tonumber(h[name .. ':t'] or '0') > now then
        local n = tonumber(value)
        if n > 0 then total = total + n end
      else
        redis.call('HDEL', key, name, name .. ':t')
      end
    end
  end
  return total
end
local function hold(key, amount, expiry)
  local mine = tonumber(redis.call('HGET', key, me) or '0')
  if mine < 0 then mine = 0 end
  redis.call('HSET', key, me, string.format('%.17g', mine + amount), me .. ':t', now + lapse)
  redis.call('PEXPIREAT', key, math.max(expiry, now + 3 * lapse))
end
"""
)

# One call reserves a whole batch of requests, in order, as if each ran alone.
# KEYS: the distinct counters of the batch. ARGV[1], ARGV[2]: as in _LIVE_LUA; ARGV[3]: the
# number of requests; then per request its number of charges m and m times: key index
# (1-based), amount, limit ('' for none), expiry (Unix ms). Returns per request: the refusing
# charge's index (0-based) or -1, then the value of each of its counters (after adding when it
# passed, unchanged when refused).
RESERVE = (
    _LIVE_LUA
    + """
local cur, delta, expiry = {}, {}, {}
for i = 1, #KEYS do
  if is_live(KEYS[i]) then
    cur[i] = live(KEYS[i])
  else
    cur[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  delta[i] = 0
  expiry[i] = 0
end
local out = {}
local p = 4
for _ = 1, tonumber(ARGV[3]) do
  local m = tonumber(ARGV[p])
  p = p + 1
  local refused = -1
  for j = 0, m - 1 do
    local limit = ARGV[p + j * 4 + 2]
    if refused < 0 and limit ~= '' and cur[tonumber(ARGV[p + j * 4])] >= tonumber(limit) then
      refused = j
    end
  end
  out[#out + 1] = refused
  for j = 0, m - 1 do
    local k = tonumber(ARGV[p + j * 4])
    if refused < 0 then
      local amount = tonumber(ARGV[p + j * 4 + 1])
      cur[k] = cur[k] + amount
      delta[k] = delta[k] + amount
      expiry[k] = math.max(expiry[k], tonumber(ARGV[p + j * 4 + 3]))
    end
    out[#out + 1] = string.format('%.17g', cur[k])
  end
  p = p + m * 4
end
for i = 1, #KEYS do
  if expiry[i] > 0 then
    if is_live(KEYS[i]) then
      hold(KEYS[i], delta[i], expiry[i])
    else
      redis.call('INCRBYFLOAT', KEYS[i], string.format('%.17g', delta[i]))
      redis.call('PEXPIREAT', KEYS[i], expiry[i])
    end
  end
end
return out
"""
)


# Leases: a share of a counter's headroom taken by one replica, spent locally, given back.
# KEYS: the counters. ARGV[1], ARGV[2]: as in _LIVE_LUA; then per key: want, limit ('' for
# none), expiry (Unix ms). A counter far from its limit (at least 4 x want left) grants `want`,
# added to it at once; otherwise 0. Returns per key: the grant, then the counter's value before.
LEASE = (
    _LIVE_LUA
    + """
local out = {}
for i = 1, #KEYS do
  local want = tonumber(ARGV[i * 3])
  local limit = ARGV[i * 3 + 1]
  local inflight = is_live(KEYS[i])
  local cur
  if inflight then
    cur = live(KEYS[i])
  else
    cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  local grant = 0
  if limit == '' or tonumber(limit) - cur >= 4 * want then
    grant = want
    if inflight then
      hold(KEYS[i], grant, tonumber(ARGV[i * 3 + 2]))
    else
      redis.call('INCRBYFLOAT', KEYS[i], string.format('%.17g', grant))
      redis.call('PEXPIREAT', KEYS[i], tonumber(ARGV[i * 3 + 2]))
    end
  end
  out[#out + 1] = string.format('%.17g', grant)
  out[#out + 1] = string.format('%.17g', cur)
end
return out
"""
)
# The heartbeat: KEYS: the in-flight hashes this replica holds a share of. ARGV[1], ARGV[2]: as
# in _LIVE_LUA (a lapse of 0: the store closes). A share above 0 counts for another lapse (and
# keeps its hash at least three lapses); a share of 0 or below, or any share when the store
# closes, is dropped. Returns per key this replica's share before.
BEAT = (
    _LIVE_LUA
    + """
local out = {}
for i = 1, #KEYS do
  local mine = tonumber(redis.call('HGET', KEYS[i], me) or '0')
  if mine > 0 and lapse > 0 then
    redis.call('HSET', KEYS[i], me .. ':t', now + lapse)
    if redis.call('PTTL', KEYS[i]) < 3 * lapse then
      redis.call('PEXPIRE', KEYS[i], 3 * lapse)
    end
  else
    redis.call('HDEL', KEYS[i], me, me .. ':t')
  end
  out[#out + 1] = string.format('%.17g', mine)
end
return out
"""
)

LEASE_REQUESTS = 128
"""A lease is worth this many requests like the one that asked for it ..."""
LEASE_MIN_SHARE = 1 / 4096
"""... or this share of the limit if more (so that 0-cost charges lease too)."""
LEASE_SECONDS = 1.0
"""A lease is given back (its unused part subtracted in Redis) at most this long after it
was granted, so that the store's counters, `switchboard usage` and the operator's status are
at most about a second behind, and a replica never sits on headroom others need."""
RENEW_SECONDS = LEASE_SECONDS / 4
"""A lease used this close to its end asks for the next one, which replaces it when granted:
under steady load reservations never fall back to a round trip when a lease ends."""


@dataclass(slots=True, eq=False)
class Lease:
    """A share of one counter held by this replica: `granted` is already counted in Redis;
    `used` is what this replica's requests hold of it (reservations, then settlements)."""

    key: str
    granted: float
    ceiling: float
    """The counter in Redis just after the grant (this lease counted whole, the unused part
    of the lease it replaced given back): the remaining-quota headers of the requests admitted
    from it say `limit - ceiling`, as of the grant."""
    expires: float
    deadline: float
    used: float = 0.0
    renew_at: float = 0.0
    """From then on a reservation on this lease asks for the next one (`RENEW_SECONDS`)."""
    open: bool = True
    unlimited: bool = False
    """A count-only counter (a budget that reports): nothing to protect, so nothing granted;
    this replica counts locally and adds what it used when the lease is given back."""
    cap: float = math.inf
    """What `used` may reach: `granted` (infinite when unlimited) ..."""
    half: float = math.inf
    """... and past which a reservation asks for the next lease: half of it."""


_AGAIN = object()
"""The result of a reservation queued again (its script call met NOSCRIPT)."""


def _lease(
    key: str, granted: float, ceiling: float, expires: float, now: float, *, unlimited: bool = False
) -> Lease:
    deadline = now + LEASE_SECONDS
    return Lease(
        key,
        granted,
        ceiling,
        expires,
        deadline,
        renew_at=deadline - RENEW_SECONDS,
        unlimited=unlimited,
        cap=math.inf if unlimited else granted,
        half=math.inf if unlimited else granted / 2,
    )


@dataclass(slots=True)
class Claim:
    """The counters of one kind of request (a limiter's plan), entry i of each list one
    counter, and the leases `take()` last found for them."""

    keys: list[str]
    limits: list[float | None]
    expires: list[float]
    leases: list[Lease] | None = None
    """This replica's leases of `keys` as last found (all of them, or None) ..."""
    renew_at: float = math.inf
    """... and the earliest `renew_at` among them."""


def _untake(leases: Sequence[Lease], amounts: Sequence[float], failed: Lease | None) -> None:
    """Undo what `take()` took of `leases` before `failed` (all of them if None)."""
    for lease, amount in zip(leases, amounts, strict=False):
        if lease is failed:
            return
        lease.used -= amount


@dataclass(frozen=True)
class RedisSettings:
    url: str
    """redis://host:6379/0 or rediss:// (TLS)."""
    password: str | None = None
    """Taken from a Secret (SWITCHBOARD_LIMITS_REDIS_PASSWORD); never logged."""
    ca_file: str | None = None
    """CA bundle to verify a rediss:// server with."""
    timeout: float = 0.5
    """Seconds for connecting and for each round trip; past it the store counts as down."""
    retry_interval: float = 1.0
    """After a failure, seconds during which reservations go local without trying Redis."""
    prefix: str = REDIS_PREFIX
    leases: bool = True
    """Admit from per-replica leases far from the limits (the fast path); False: every
    reservation is a script call."""
    inflight_lapse: float = 10.0
    """Seconds after this replica's last heartbeat (sent every third of it while it holds
    in-flight slots) at which the other replicas stop counting its slots: how long the slots
    of a replica that died stay taken."""


class RedisStore:
    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        if settings.ca_file:
            self.client: aioredis.Redis = aioredis.Redis.from_url(
                settings.url,
                password=settings.password,
                socket_timeout=settings.timeout,
                socket_connect_timeout=settings.timeout,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
                ssl_ca_certs=settings.ca_file,
            )
        else:
            self.client = aioredis.Redis.from_url(
                settings.url,
                password=settings.password,
                socket_timeout=settings.timeout,
                socket_connect_timeout=settings.timeout,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            )
        self._leasing = settings.leases
        self.replica = os.urandom(8).hex()
        """This replica's id in the in-flight hashes (random per process start)."""
        self._lapse_ms = max(1, round(settings.inflight_lapse * 1000))
        self._sha: str | None = None
        self._lease_sha: str | None = None
        self._beat_sha: str | None = None
        self._holding: set[str] = set()
        """In-flight hashes (Redis names) this replica may hold a share of: the heartbeat's."""
        self._beat = False
        """A heartbeat is due on the next round trip."""
        self._beater: asyncio.Task[None] | None = None
        self.leases: dict[str, Lease] = {}
        self._wanted: dict[str, tuple[float, float | None, float]] = {}
        """Counters to lease on the next round trip: key -> (want, limit, expires)."""
        self._asked: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._reserves: list[tuple[list[Charge], asyncio.Future[tuple[int, list[float]]]]] = []
        self._adds: list[tuple[str, float, float]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._down_until = 0.0
        self.lost_adds = 0
        """Settlements dropped because the store was down."""

    def _key(self, counter: str) -> str:
        if counter.endswith(LIVE):
            counter = counter[: -len(LIVE)] + SLOTS
        return redis_key(self.settings.prefix, counter)

    def _counter(self, name: str) -> str:
        """The inverse of `_key`."""
        counter = counter_of(self.settings.prefix, name)
        return counter[: -len(SLOTS)] + LIVE if counter.endswith(SLOTS) else counter

    # --- the Store protocol -----------------------------------------------------------------

    async def reserve(self, charges: Sequence[Charge]) -> tuple[int, list[float]]:
        now = time.monotonic()
        if now < self._down_until:
            raise StoreDown("redis is down (retrying shortly)")
        if self.settings.leases and charges:
            keys, limits = [c.key for c in charges], [c.limit for c in charges]
            claim = Claim(keys, limits, [c.expires for c in charges])
            taken = self.take(claim, [c.amount for c in charges])
            if taken is not None:
                return -1, [lease.ceiling for lease in taken]
        future: asyncio.Future[tuple[int, list[float]]] = asyncio.get_running_loop().create_future()
        self._reserves.append((list(charges), future))
        self._kick()
        refused, values = await future
        if refused < 0 and self.settings.leases:
            self._want(charges)
        return refused, values

    def take(self, claim: Claim, amounts: Sequence[float]) -> list[Lease] | None:
        """The synchronous fast path: if every amount fits in an open lease of this replica,
        take them and return those leases (entry i the lease of `claim.keys[i]`; the same list
        while none of them is replaced: the limiter's header texts stay valid while it does
        not change, and settling adds to them directly); None when `reserve()` must ask Redis."""
        now = time.monotonic()
        if now < self._down_until:  # (0 while never down)
            return None
        leases = claim.leases
        if leases is None or now >= claim.renew_at:  # (no leases while leasing is off)
            return self._take_found(claim, amounts, now)
        renew = False
        for lease, amount in zip(leases, amounts, strict=True):
            used = lease.used + amount
            # half <= cap, and both are -inf once the lease is given back: one test mostly.
            if used > lease.half:
                if used > lease.cap:
                    _untake(leases, amounts, lease)
                    return self._take_found(claim, amounts, now)
                renew = True
            lease.used = used
        if renew:  # half spent: ask for the next lease before this one runs out
            self._want(list(map(Charge, claim.keys, amounts, claim.limits, claim.expires)))
        return leases

    def _take_found(self, claim: Claim, amounts: Sequence[float], now: float) -> list[Lease] | None:
        """`take()` with the leases looked up again (the claim has none yet, one of them was
        replaced or given back, or one is in its last `RENEW_SECONDS`)."""
        if not self._leasing:
            return None
        found = self.leases
        leases: list[Lease] = []
        renew = False
        for key, amount in zip(claim.keys, amounts, strict=True):
            lease = found.get(key)
            if lease is None:
                _untake(leases, amounts, None)
                claim.leases = None
                return None
            used = lease.used + amount
            if used > lease.half or now >= lease.renew_at:
                if used > lease.cap or now >= lease.deadline:
                    if now >= lease.deadline:
                        self._give_back(lease)
                    _untake(leases, amounts, None)
                    claim.leases = None
                    return None
                renew = True
            lease.used = used
            leases.append(lease)
        if renew:  # half spent or near its end: ask for the next lease before this one ends
            self._want(list(map(Charge, claim.keys, amounts, claim.limits, claim.expires)))
        if claim.leases != leases:  # (Lease compares by identity)
            claim.leases = leases  # a new list only when a lease changed: see take()
        claim.renew_at = min(lease.renew_at for lease in leases) if leases else math.inf
        return claim.leases

    def _want(self, charges: Sequence[Charge]) -> None:
        now = time.monotonic()
        for c in charges:
            if c.key in self._asked:
                continue
            lease = self.leases.get(c.key)
            ending = lease is not None and now >= lease.renew_at
            if c.limit is None:
                if lease is None or ending:
                    if lease is not None:
                        self._give_back(lease)
                    self.leases[c.key] = _lease(c.key, 0.0, 0.0, c.expires, now, unlimited=True)
                    self._sweep_soon()
                continue
            if (
                lease is not None
                and not ending
                and lease.used + LEASE_REQUESTS / 2 * c.amount <= lease.granted
            ):
                continue
            share = c.limit * LEASE_MIN_SHARE if c.limit is not None else 0.0
            want = max(LEASE_REQUESTS * c.amount, share)
            if want <= 0:
                continue
            self._asked.add(c.key)
            self._wanted[c.key] = (want, c.limit, c.expires)
        if self._wanted:
            self._kick()

    def _give_back(self, lease: Lease) -> None:
        """Close a lease: Redis keeps what was used of it, the rest is subtracted."""
        if not lease.open:
            return
        lease.open = False
        lease.half = lease.cap = -math.inf  # take() on a claim holding it looks again
        if self.leases.get(lease.key) is lease:
            del self.leases[lease.key]
        unused = lease.granted - lease.used
        if unused:
            self._adds.append((lease.key, -unused, lease.expires))
            self._kick()

    def add(self, deltas: Sequence[tuple[str, float, float]]) -> None:
        if self._down_until and time.monotonic() < self._down_until:  # 0: never down
            self.lost_adds += len(deltas)
            return
        leases = self.leases
        queued = False
        for delta in deltas:
            lease = leases.get(delta[0])
            if lease is not None:
                lease.used += delta[1]  # settled within the lease: Redis learns it at close
            else:
                self._adds.append(delta)
                queued = True
        if queued:  # a settlement taken whole by leases needs no round trip, nor a task
            self._kick()

    async def read(self, keys: Sequence[str]) -> list[float]:
        if not keys:
            return []
        values = await self._values([self._key(k) for k in keys])
        return [v if v is not None else 0.0 for v in values]

    async def scan(self, prefix: str) -> dict[str, float]:
        namespace, _, rest = prefix.partition("/")
        config, _, rest = rest.partition("/")
        if config:
            pattern = f"{self.settings.prefix}{{{namespace}/{config}}}/{rest}*"
        else:
            pattern = f"{self.settings.prefix}{{{namespace}/*"
        try:
            keys = [k async for k in self.client.scan_iter(match=pattern, count=500)]
        except (RedisError, OSError) as exc:
            raise StoreDown(f"redis: {type(exc).__name__}") from None
        values = await self._values(keys)
        return {
            self._counter(key): value
            for key, value in zip(keys, values, strict=True)
            if value is not None
        }

    async def _values(self, names: list[str]) -> list[float | None]:
        """Counters by their Redis names (None: missing): numbers with MGET, in-flight hashes
        as the sum of the shares that count at Redis's time (as the scripts count them)."""
        if not names:
            return []
        hashes = [name for name in names if name.endswith(SLOTS)]
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.mget(names)
            if hashes:
                pipe.time()
                for name in hashes:
                    pipe.hgetall(name)
            answers = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreDown(f"redis: {type(exc).__name__}") from None
        out = [float(v) if v is not None else None for v in answers[0]]
        if hashes:
            seconds, micros = answers[1]
            now = seconds * 1000 + micros // 1000
            live = {
                name: _live_shares(fields, now)
                for name, fields in zip(hashes, answers[2:], strict=True)
                if fields
            }
            out = [
                live.get(name) if name.endswith(SLOTS) else v
                for name, v in zip(names, out, strict=True)
            ]
        return out

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._beater is not None:
            self._beater.cancel()
        for lease in list(self.leases.values()):
            self._give_back(lease)
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        if self._adds:
            await self._flush()
        if self._holding:  # the requests of this store are over: free its slots now
            await self._leave()
        await self.client.aclose()

    # --- in-flight shares: the heartbeat ----------------------------------------------------

    def _hold(self, names: Sequence[str]) -> None:
        """This replica may now hold a share of these in-flight hashes: keep them alive."""
        self._holding.update(names)
        if self._beater is None:
            self._beater = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        """Every third of the lapse, while this replica holds in-flight shares, push their
        deadlines on the next round trip (batched with the requests' calls)."""
        try:
            while self._holding:
                await asyncio.sleep(self.settings.inflight_lapse / 3)
                self._beat = True
                self._kick()
        finally:
            self._beater = None

    def _beats(self, pipe: Any, lapse_ms: int) -> list[list[str]]:
        """Queue the heartbeat on `pipe`: one BEAT call per Cluster slot."""
        assert self._beat_sha is not None
        groups: dict[str, list[str]] = {}
        for name in self._holding:
            groups.setdefault(name.partition("}")[0], []).append(name)
        for names in groups.values():
            pipe.evalsha(self._beat_sha, len(names), *names, self.replica, lapse_ms)
        return list(groups.values())

    def _beaten(self, groups: list[list[str]], answers: list[object]) -> None:
        """Stop beating for the hashes where this replica's share was 0 or below (dropped)."""
        for names, answer in zip(groups, answers, strict=True):
            if not isinstance(answer, list):
                continue
            for name, share in zip(names, answer, strict=True):
                if float(share) <= 0:
                    self._holding.discard(name)

    async def _leave(self) -> None:
        """Drop this replica's shares (its requests are over), best effort."""
        try:
            if self._beat_sha is None:
                self._beat_sha = await self.client.script_load(BEAT)
            pipe = self.client.pipeline(transaction=False)
            self._beats(pipe, 0)
            await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            log.warning("limit store: in-flight slots not freed at close (%s)", type(exc).__name__)
        self._holding.clear()

    # --- batching ---------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._reserves or self._adds or self._wanted or self._beat:
                await self._flush()
        finally:
            self._flushing = None

    async def _flush(self) -> None:
        reserves, self._reserves = self._reserves, []
        adds, self._adds = self._adds, []
        wanted, self._wanted = self._wanted, {}
        beat, self._beat = self._beat, False
        try:
            if self._sha is None:
                self._sha = await self.client.script_load(RESERVE)
            if wanted and self._lease_sha is None:
                self._lease_sha = await self.client.script_load(LEASE)
            if beat and self._beat_sha is None:
                self._beat_sha = await self.client.script_load(BEAT)
            results, granted = await self._pipeline(reserves, adds, wanted, beat)
        except (RedisError, OSError) as exc:
            self._asked.difference_update(wanted)
            self._down(exc, reserves, adds)
            return
        except Exception as exc:  # a bug must not leave requests waiting for ever
            log.error("limit store: unexpected failure", exc_info=exc)
            self._asked.difference_update(wanted)
            self._down(exc, reserves, adds)
            return
        self._install(wanted, granted)
        for (charges, future), result in zip(reserves, results, strict=True):
            if future.done() or result is _AGAIN:
                continue
            if isinstance(result, Exception):
                future.set_exception(StoreDown(f"redis: {result}"))
                continue
            assert isinstance(result, list)
            future.set_result((int(result[0]), [float(v) for v in result[1 : len(charges) + 1]]))

    async def _pipeline(
        self,
        reserves: list[tuple[list[Charge], asyncio.Future[tuple[int, list[float]]]]],
        adds: list[tuple[str, float, float]],
        wanted: dict[str, tuple[float, float | None, float]],
        beat: bool = False,
    ) -> tuple[list[object], list[object]]:
        """Settlements summed per counter, then one script call per Cluster slot reserving
        every request of the batch in order, then one lease call per slot, then the heartbeat
        when due. Returns one result per reservation, and the lease calls' results.

        A script call that Redis no longer knows (NOSCRIPT: it restarted, or its scripts were
        flushed) is queued again, its script loaded on the next round trip: its reservations
        (their result `_AGAIN`), its leases, the heartbeat; never the settlements, which are
        plain commands and were applied."""
        assert self._sha is not None
        me: list[str | int] = [self.replica, self._lapse_ms]
        pipe = self.client.pipeline(transaction=False)
        summed: dict[str, list[float]] = {}
        for key, amount, expires in adds:
            entry = summed.setdefault(key, [0.0, expires])
            entry[0] += amount
            entry[1] = max(entry[1], expires)
        for key, (amount, expires) in summed.items():
            name = self._key(key)
            if name.endswith(SLOTS):  # this replica's share of an in-flight counter
                pipe.hincrbyfloat(name, self.replica, amount)
            else:
                pipe.incrbyfloat(name, amount)
            pipe.pexpireat(name, int(expires * 1000))
        groups: dict[str, list[int]] = {}
        for i, (charges, _) in enumerate(reserves):
            slot = charges[0].key.split("/", 2)[:2] if charges else ["", ""]
            groups.setdefault("/".join(slot), []).append(i)
        held: list[str] = []
        for members in groups.values():
            index: dict[str, int] = {}
            args: list[str | int] = [*me, len(members)]
            for i in members:
                charges = reserves[i][0]
                args.append(len(charges))
                for c in charges:
                    k = index.setdefault(c.key, len(index) + 1)
                    limit = "" if c.limit is None else repr(c.limit)
                    args += [k, repr(c.amount), limit, int(c.expires * 1000)]
            names = [self._key(k) for k in index]
            held += [name for name in names if name.endswith(SLOTS)]
            pipe.evalsha(self._sha, len(index), *names, *args)
        lease_groups: dict[str, list[str]] = {}
        for key in wanted:
            lease_groups.setdefault("/".join(key.split("/", 2)[:2]), []).append(key)
        for keys in lease_groups.values():
            lease_args: list[str | int] = [*me]
            for key in keys:
                want, cap, until = wanted[key]
                lease_args += [repr(want), "" if cap is None else repr(cap), int(until * 1000)]
            assert self._lease_sha is not None
            names = [self._key(k) for k in keys]
            held += [name for name in names if name.endswith(SLOTS)]
            pipe.evalsha(self._lease_sha, len(keys), *names, *lease_args)
        if held:
            self._hold(held)
        beaten = self._beats(pipe, self._lapse_ms) if beat else []
        results: list[object] = await pipe.execute(raise_on_error=False)
        tail = results[2 * len(summed) : 2 * len(summed) + len(groups)]
        end = len(results) - len(beaten)
        leased = results[2 * len(summed) + len(groups) : end]
        if any(isinstance(r, NoScriptError) for r in results[end:]):
            self._beat_sha = None
            self._beat = True
        self._beaten(beaten, results[end:])
        granted: list[object] = []
        for keys, answer in zip(lease_groups.values(), leased, strict=True):
            if isinstance(answer, NoScriptError):
                self._lease_sha = None
                self._wanted.update((key, wanted[key]) for key in keys)  # still asked
                continue
            pairs = answer if isinstance(answer, list) else None
            for j, name in enumerate(keys):
                granted.append((name, pairs[2 * j : 2 * j + 2] if pairs is not None else None))
        out: list[object] = [None] * len(reserves)
        again: list[int] = []
        for members, result in zip(groups.values(), tail, strict=True):
            if isinstance(result, NoScriptError):
                self._sha = None
                again += members
                continue
            if isinstance(result, Exception):
                for i in members:
                    out[i] = result
                continue
            assert isinstance(result, list)
            pos = 0
            for i in members:
                m = len(reserves[i][0])
                out[i] = result[pos : pos + m + 1]
                pos += m + 1
        if again:  # before those that came meanwhile, in their order
            self._reserves[:0] = [reserves[i] for i in sorted(again)]
            for i in again:
                out[i] = _AGAIN
        return out, granted

    def _install(
        self, wanted: dict[str, tuple[float, float | None, float]], granted: list[object]
    ) -> None:
        """Open the leases Redis granted (replacing this replica's old lease of a counter)."""
        now = time.monotonic()
        for item in granted:
            assert isinstance(item, tuple)
            key, result = item
            self._asked.discard(key)
            if not isinstance(result, list):
                continue
            grant, base = float(result[0]), float(result[1])
            if grant <= 0:
                continue
            ceiling = base + grant
            old = self.leases.get(key)
            if old is not None:
                if old.open:
                    ceiling -= old.granted - old.used  # given back now
                self._give_back(old)
            expires = wanted[key][2]
            self.leases[key] = _lease(key, grant, ceiling, expires, now)
        self._sweep_soon()

    def _sweep_soon(self) -> None:
        if self.leases and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Give back leases past their deadline while nobody reserves on them."""
        try:
            while self.leases:
                await asyncio.sleep(LEASE_SECONDS / 4)
                now = time.monotonic()
                for lease in list(self.leases.values()):
                    if now >= lease.deadline:
                        self._give_back(lease)
        finally:
            self._sweeper = None

    def _down(
        self,
        exc: BaseException,
        reserves: list[tuple[list[Charge], asyncio.Future[tuple[int, list[float]]]]],
        adds: list[tuple[str, float, float]],
    ) -> None:
        self._down_until = time.monotonic() + self.settings.retry_interval
        self.lost_adds += len(adds)
        log.warning("limit store: redis failed (%s)", type(exc).__name__)
        error = StoreDown(f"redis: {type(exc).__name__}")
        for _, future in reserves:
            if not future.done():
                future.set_exception(error)


def _live_shares(fields: dict[str, str], now_ms: int) -> float:
    """An in-flight hash's count at Redis time `now_ms`: the shares (each at least 0) whose
    deadline (`<id>:t`) has not passed, as the scripts count them."""
    total = 0.0
    for name, value in fields.items():
        if not name.endswith(":t") and float(fields.get(f"{name}:t", "0")) > now_ms:
            total += max(0.0, float(value))
    return total
