"""The request path's calls: `estimate()` and `Limiter.admit()` (no coroutine) or else
`reserve()` before the fallback loop, `settle()` after it.

A key without limits or budgets never gets here (`Access.rules` is None): the request path
pays one attribute test. The store is chosen by `LimitsSettings`: Redis/Valkey when a URL is
set (several replicas), otherwise the in-process store, kept in `file` across restarts.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchboard.dialects.types import Dialect, Json
from switchboard.gateway import errors
from switchboard.gateway.accounting import Outcome
from switchboard.gateway.limits import limiter as lim
from switchboard.gateway.limits.redis_store import RedisSettings, RedisStore
from switchboard.gateway.limits.store import MemoryStore
from switchboard.gateway.metrics import Metrics
from switchboard.gateway.table import Route
from switchboard.routing import config as rc

DEFAULT_OUTPUT_TOKENS = 4096
"""Output reserved for a model of a provider without listed models, when the request sets none."""
log = logging.getLogger("switchboard.gateway.limits")


@dataclass(frozen=True)
class LimitsSettings:
    redis_url: str | None = None
    """redis:// or rediss:// URL of a Redis/Valkey shared by the replicas; None: in-process."""
    redis_password: str | None = None
    """From the environment (SWITCHBOARD_LIMITS_REDIS_PASSWORD, a Secret); never logged."""
    redis_ca_file: str | None = None
    """CA bundle for rediss://."""
    file: Path | None = None
    """In-process store: where counters are kept across restarts (a volume); None: memory only."""
    on_store_down: str = lim.OPEN
    """open (count in the process, raise the alarm metric) or closed (answer 503)."""
    inflight_lapse: float = 10.0
    """Redis: seconds after which a replica that stopped answering no longer holds in-flight
    slots (SWITCHBOARD_LIMITS_INFLIGHT_LAPSE; `RedisSettings.inflight_lapse`)."""

    @classmethod
    def from_env(cls, **overrides: Any) -> LimitsSettings:
        env = os.environ
        values: dict[str, Any] = {
            "redis_url": env.get("SWITCHBOARD_LIMITS_REDIS_URL") or None,
            "redis_password": env.get("SWITCHBOARD_LIMITS_REDIS_PASSWORD") or None,
            "redis_ca_file": env.get("SWITCHBOARD_LIMITS_REDIS_CA_FILE") or None,
            "file": Path(env["SWITCHBOARD_LIMITS_FILE"])
            if env.get("SWITCHBOARD_LIMITS_FILE")
            else None,
            "on_store_down": env.get("SWITCHBOARD_LIMITS_ON_STORE_DOWN", lim.OPEN),
        }
        if env.get("SWITCHBOARD_LIMITS_INFLIGHT_LAPSE"):
            values["inflight_lapse"] = _seconds(env["SWITCHBOARD_LIMITS_INFLIGHT_LAPSE"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["on_store_down"] not in (lim.OPEN, lim.CLOSED):
            raise ValueError("on_store_down must be 'open' or 'closed'")
        return cls(**values)


def build_store(settings: LimitsSettings) -> RedisStore | MemoryStore:
    if settings.redis_url:
        return RedisStore(
            RedisSettings(
                settings.redis_url,
                password=settings.redis_password,
                ca_file=settings.redis_ca_file,
                inflight_lapse=settings.inflight_lapse,
            )
        )
    return MemoryStore(settings.file)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError(
            f"SWITCHBOARD_LIMITS_INFLIGHT_LAPSE={text!r} is not a number of seconds above 0; "
            "set e.g. 10"
        )
    return value


def build(settings: LimitsSettings, metrics: Metrics) -> lim.Limiter:
    store = build_store(settings)

    def store_error(down: bool) -> None:
        metrics.limit_store_down.set(1 if down else 0)
        if down:
            metrics.limit_store_errors.inc()

    def reject(key: str, kind: str) -> None:
        metrics.child(metrics.limit_rejections, key, kind).inc()

    return lim.Limiter(
        store,
        on_store_down=settings.on_store_down,
        on_store_error=store_error,
        on_reject=reject,
    )


def _output(surface: Dialect, body: Json, meta: rc.Model | None) -> int:
    """The output the request may use on a model: what it asks (its API's output field, a
    positive integer: Chat's `max_tokens`, else `max_completion_tokens`) within the model's
    limit."""
    if surface is Dialect.CHAT:
        asked = body.get("max_tokens") or body.get("max_completion_tokens")
    else:
        asked = body.get("max_output_tokens" if surface is Dialect.RESPONSES else "max_tokens")
    if type(asked) is not int or asked <= 0:  # (a bool is not an int here)
        asked = 0
    if meta is None:
        return asked or DEFAULT_OUTPUT_TOKENS
    return meta.max_tokens if not asked or asked > meta.max_tokens else asked


def estimate(surface: Dialect, body: Json, route: Route, prompt: int) -> lim.Estimate:
    """An upper bound of the request on the route's first candidate; `prompt` is the body's
    inspect.estimate_prompt_tokens (computed once per request, shared with resolve.plan)."""
    target = route.chain[0]
    meta = target.meta
    output = _output(surface, body, meta)
    price = meta.price if meta is not None else None
    return lim.Estimate(target.provider, target.ref, prompt, output, price)


def admit(
    limiter: lim.Limiter,
    rules: lim.KeyRules,
    surface: Dialect,
    body: Json,
    route: Route,
    *,
    prompt: int,
) -> lim.Ticket | None:
    """`limiter.admit()` of the request's `estimate()`, without making it: the reservation
    within this replica's leases, or None (then `reserve()`)."""
    target = route.chain[0]
    meta = target.meta
    output = _output(surface, body, meta)
    if meta is None:
        cost = 0.0
    else:
        p = meta.price  # as Estimate.cost
        cost = (prompt * p.input + output * p.output) / 1_000_000
    return limiter.admit(rules, target.provider, target.ref, float(prompt + output), cost)


async def reserve(limiter: lim.Limiter, rules: lim.KeyRules, est: lim.Estimate) -> lim.Ticket:
    """The reservation, asked of the store (after `limiter.admit()`, the plain-call fast path
    within this replica's leases, returned None); a limit reached is the client's 429."""
    try:
        return await limiter.reserve(rules, est)
    except lim.LimitError as exc:
        raise errors.GatewayError(exc.message, status=exc.status, headers=exc.headers) from None


def settle(limiter: lim.Limiter, counts: dict[str, int], out: Outcome) -> None:
    """Settle `out.ticket` with what the request used, on the candidate that served or was
    tried last (`out.target`; None: none was tried), and count the request in `counts` (by
    key; tokens and cost by key are counted for every key by the accounting). A client that
    went away after the request reached an upstream (499): its usage, if the upstream sent
    none yet, is unknown, and the reservation is kept as spent."""
    ticket = out.ticket
    assert ticket is not None
    usage = out.usage
    cancelled = out.status == 499 and out.attempts > 0
    if cancelled and (usage is None or not usage.output_tokens):
        usage = None  # cut before the upstream's usage arrived: keep the reservation
    target = out.target
    if target is None:
        limiter.settle(ticket, "", "", usage, out.cost, reached=cancelled)
    else:
        limiter.settle(ticket, target.provider, target.ref, usage, out.cost, reached=cancelled)
    key = ticket.plan.rules.key
    counts[key] = counts.get(key, 0) + 1
