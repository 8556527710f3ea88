"""The shared counter store on Redis or Valkey, for several gateway replicas.

Every reservation is one atomic Lua script (check all counters of the request, then add to
all of them, with their expiry), so replicas never admit past a limit together: the request
that crosses is the last to pass, whichever replica it reached. The fast path is batching:
reservations and settlements that arrive while a round trip is on the wire go out together in
one pipeline on the next one, so a busy replica pays about one round trip per batch, not per
request. Settlements (`add`) need no answer and never delay a request.

Counter keys are `<prefix>{<namespace>/<config>}/<rest>`: the hash tag keeps all counters of
one AccessKeyConfig in one Redis Cluster slot, as one script needs.

When Redis does not answer (connection refused, timeout), `reserve()` raises StoreDown at once
and keeps doing so for `retry_interval` seconds without trying (the limiter then counts in the
process if `on_store_down` is `open`); settlements made meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from switchboard.gateway.limits.store import Charge, StoreDown

log = logging.getLogger("switchboard.gateway.limits")

# KEYS: the counters; ARGV: per counter amount, limit ('' for none), expiry in Unix ms.
# Returns {-1, value after, ...} or {index (0-based) of the refusing counter, value, ...}.
RESERVE = """
local n = #KEYS
local values = {}
for i = 1, n do
  values[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, n do
  local limit = ARGV[(i - 1) * 3 + 2]
  if limit ~= '' and values[i] >= tonumber(limit) then
    local out = {i - 1}
    for j = 1, n do out[j + 1] = tostring(values[j]) end
    return out
  end
end
local out = {-1}
for i = 1, n do
  out[i + 1] = redis.call('INCRBYFLOAT', KEYS[i], ARGV[(i - 1) * 3 + 1])
  redis.call('PEXPIREAT', KEYS[i], ARGV[(i - 1) * 3 + 3])
end
return out
"""


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
    prefix: str = "switchboard:"


def redis_key(prefix: str, counter: str) -> str:
    namespace, _, rest = counter.partition("/")
    config, _, rest = rest.partition("/")
    return f"{prefix}{{{namespace}/{config}}}/{rest}"


def counter_of(prefix: str, key: str) -> str:
    return key.removeprefix(prefix).replace("{", "", 1).replace("}", "", 1)


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
        self._sha: str | None = None
        self._reserves: list[tuple[list[Charge], asyncio.Future[tuple[int, list[float]]]]] = []
        self._adds: list[tuple[str, float, float]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._down_until = 0.0
        self.lost_adds = 0
        """Settlements dropped because the store was down."""

    def _key(self, counter: str) -> str:
        return redis_key(self.settings.prefix, counter)

    # --- the Store protocol -----------------------------------------------------------------

    async def reserve(self, charges: Sequence[Charge]) -> tuple[int, list[float]]:
        if time.monotonic() < self._down_until:
            raise StoreDown("redis is down (retrying shortly)")
        future: asyncio.Future[tuple[int, list[float]]] = asyncio.get_running_loop().create_future()
        self._reserves.append((list(charges), future))
        self._kick()
        return await future

    def add(self, deltas: Sequence[tuple[str, float, float]]) -> None:
        if time.monotonic() < self._down_until:
            self.lost_adds += len(deltas)
            return
        self._adds.extend(deltas)
        self._kick()

    async def read(self, keys: Sequence[str]) -> list[float]:
        if not keys:
            return []
        try:
            values = await self.client.mget([self._key(k) for k in keys])
        except (RedisError, OSError) as exc:
            raise StoreDown(f"redis: {type(exc).__name__}") from None
        return [float(v) if v is not None else 0.0 for v in values]

    async def scan(self, prefix: str) -> dict[str, float]:
        namespace, _, rest = prefix.partition("/")
        config, _, rest = rest.partition("/")
        if config:
            pattern = f"{self.settings.prefix}{{{namespace}/{config}}}/{rest}*"
        else:
            pattern = f"{self.settings.prefix}{{{namespace}/*"
        out: dict[str, float] = {}
        try:
            keys = [k async for k in self.client.scan_iter(match=pattern, count=500)]
            values = await self.client.mget(keys) if keys else []
        except (RedisError, OSError) as exc:
            raise StoreDown(f"redis: {type(exc).__name__}") from None
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                out[counter_of(self.settings.prefix, key)] = float(value)
        return out

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        if self._adds:
            await self._flush()
        await self.client.aclose()

    # --- batching ---------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._reserves or self._adds:
                await self._flush()
        finally:
            self._flushing = None

    async def _flush(self) -> None:
        reserves, self._reserves = self._reserves, []
        adds, self._adds = self._adds, []
        try:
            if self._sha is None:
                self._sha = await self.client.script_load(RESERVE)
            results = await self._pipeline(reserves, adds)
        except NoScriptError:  # the server restarted without our script: load it again
            self._sha = None
            self._reserves[:0] = reserves
            self._adds[:0] = adds
            return
        except (RedisError, OSError) as exc:
            self._down(exc, reserves, adds)
            return
        except Exception as exc:  # a bug must not leave requests waiting for ever
            log.error("limit store: unexpected failure", exc_info=exc)
            self._down(exc, reserves, adds)
            return
        for (charges, future), result in zip(reserves, results, strict=True):
            if future.done():
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
    ) -> list[object]:
        assert self._sha is not None
        pipe = self.client.pipeline(transaction=False)
        for key, amount, expires in adds:
            name = self._key(key)
            pipe.incrbyfloat(name, amount)
            pipe.pexpireat(name, int(expires * 1000))
        for charges, _ in reserves:
            args: list[str | float | int] = []
            for c in charges:
                args += [repr(c.amount), "" if c.limit is None else repr(c.limit)]
                args.append(int(c.expires * 1000))
            pipe.evalsha(self._sha, len(charges), *[self._key(c.key) for c in charges], *args)
        results: list[object] = await pipe.execute(raise_on_error=False)
        for result in results[: 2 * len(adds)]:
            if isinstance(result, NoScriptError):
                raise result
        tail = results[2 * len(adds) :]
        if any(isinstance(r, NoScriptError) for r in tail):
            raise NoScriptError("NOSCRIPT")
        return tail

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
