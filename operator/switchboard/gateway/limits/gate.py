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
from urllib.parse import urlsplit

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
    slots (--limits-inflight-lapse, SWITCHBOARD_LIMITS_INFLIGHT_LAPSE;
    `RedisSettings.inflight_lapse`)."""

    @classmethod
    def from_env(cls, **overrides: Any) -> LimitsSettings:
        """The settings of `SWITCHBOARD_LIMITS_*`, each replaced by its flag's value when not
        None (`FLAGS`). A bad value is a ValueError naming the variable or flag, the value and
        what is accepted (the CLIs print it as one line and exit 2)."""
        given: dict[str, tuple[str, Any]] = {}
        for field, variable in ENV.items():
            if overrides.get(field) is not None:
                given[field] = (FLAGS[field], overrides[field])
            elif os.environ.get(variable):
                given[field] = (variable, os.environ[variable])
        values: dict[str, Any] = {}
        for field, (name, given_value) in given.items():
            value = given_value
            if field == "file":
                value = Path(value)
                shown = _show(name, str(given_value))
                if value.is_dir():
                    raise ValueError(
                        f"{shown} is a directory; set the path of a file in it (the counters "
                        "are written there)"
                    )
                if not value.parent.is_dir():
                    raise ValueError(
                        f"{shown}: no such directory {str(value.parent)!r}; create it (a "
                        "volume) or set another path"
                    )
            elif field == "redis_url":
                _check_url(name, value)
            elif field == "on_store_down" and value not in (lim.OPEN, lim.CLOSED):
                raise ValueError(f"{_show(name, value)} is not accepted: set open or closed")
            elif field == "inflight_lapse":
                value = _seconds(name, value)
            elif field == "redis_ca_file" and not os.path.isfile(value):
                raise ValueError(f"{_show(name, value)} is not a file; set a PEM CA bundle's path")
            values[field] = value
        return cls(**values)


ENV = {
    "redis_url": "SWITCHBOARD_LIMITS_REDIS_URL",
    "redis_password": "SWITCHBOARD_LIMITS_REDIS_PASSWORD",
    "redis_ca_file": "SWITCHBOARD_LIMITS_REDIS_CA_FILE",
    "file": "SWITCHBOARD_LIMITS_FILE",
    "on_store_down": "SWITCHBOARD_LIMITS_ON_STORE_DOWN",
    "inflight_lapse": "SWITCHBOARD_LIMITS_INFLIGHT_LAPSE",
}
"""`LimitsSettings` field -> the environment variable it is read from."""
FLAGS = {
    "redis_url": "--limits-redis-url",
    "redis_password": "SWITCHBOARD_LIMITS_REDIS_PASSWORD",  # no flag: a Secret, never argv
    "redis_ca_file": "SWITCHBOARD_LIMITS_REDIS_CA_FILE",
    "file": "--limits-file",
    "on_store_down": "--limits-on-store-down",
    "inflight_lapse": "--limits-inflight-lapse",
}
"""`LimitsSettings` field -> the flag of `switchboard gateway` (and `usage`) that overrides it."""


def _show(name: str, value: object) -> str:
    return f"{name} {value!r}" if name.startswith("--") else f"{name}={value!r}"


def _check_url(name: str, url: str) -> None:
    """What redis-py accepts, checked here so that a bad URL is not a traceback later."""
    accepted = "set redis://HOST:PORT/DB, rediss://HOST:PORT/DB (TLS) or unix:///PATH"
    parts = urlsplit(url)
    shown = _show(name, _redacted(url))
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{shown} is not a Redis URL; {accepted}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(f"{shown} has a port that is not a number; {accepted}") from None


def _redacted(url: str) -> str:
    """The URL without its password (in the user part or a unix:// query)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if ":" in userinfo:
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:<redacted>{at}{hostport}")
    return parts._replace(query="<redacted>" if parts.query else "").geturl()


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


def _seconds(name: str, value: str | float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ValueError(f"{_show(name, value)} is not a number of seconds above 0; set e.g. 10")
    return seconds


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
    cost = lim.upper_cost(meta.price, prompt, output) if meta is not None else 0.0
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
