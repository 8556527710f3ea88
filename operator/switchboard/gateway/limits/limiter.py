"""Reserve before the call, settle after it: the limits and budgets of one client key.

`reserve()` runs once per request, before the fallback loop, against the rules of the key that
cover the route's first candidate. It adds, in one atomic store operation: 1 request to each
requests-per-minute counter, an upper bound of the request's tokens (the prompt estimate plus
its output limit) to each tokens-per-minute counter, 1 to each in-flight counter, and the cost of
that upper bound to each budget. A counter already at or over its limit refuses the request
(429, nothing added): so the request that crosses a limit is the last to pass, and requests in
flight are bounded by their reservations.

`settle()` runs once per request, whatever happened (answer, upstream failure, stream cut,
client gone): it replaces each reservation with the real usage of the candidate that served
(a rule that does not cover it gets 0; one that covers only it gets the usage added), releases
the in-flight slot, and keeps the request count. A request cancelled before its usage was known
keeps its reservation as spent: the upstream may have worked on it.

When the store is down, `on_store_down` decides: `open` (default) counts in this process and
raises the `switchboard_limit_store_down` alarm; `closed` answers 503.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from switchboard.dialects.types import Usage
from switchboard.gateway.limits.store import LIVE, Charge, MemoryStore, Store, StoreDown
from switchboard.routing import config as rc
from switchboard.routing import windows
from switchboard.routing.limits import budget_key

LIVE_TTL = 900.0
"""An in-flight counter expires this long after its last reservation (a replica that died
with requests in flight does not hold their slots for ever)."""
KEEP_AFTER = 7 * 86400.0
"""A budget counter is kept this long after its window ends (for `switchboard usage`)."""
OPEN = "open"
CLOSED = "closed"
log = logging.getLogger("switchboard.gateway.limits")

RPM, TPM, INFLIGHT, USD = "rpm", "tpm", "inflight", "usd"


class LimitError(Exception):
    """A request the limits refuse (429) or cannot check (503). Plain data; the request path
    turns it into a GatewayError in the client's shape."""

    def __init__(self, message: str, status: int, headers: dict[str, str], kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers
        self.kind = kind


@dataclass(frozen=True, slots=True)
class KeyRules:
    """The rules of one client key, from its Grant."""

    key: str
    limits: tuple[rc.RateRule, ...]
    budgets: tuple[rc.BudgetRule, ...]

    @classmethod
    def of(cls, grant: rc.Grant) -> KeyRules | None:
        if not grant.limits and not grant.budgets:
            return None
        return cls(grant.key, grant.limits, grant.budgets)


@dataclass(frozen=True, slots=True)
class Estimate:
    """An upper bound of what a request will use, known before the call."""

    provider: str
    ref: str
    input_tokens: int
    output_tokens: int
    price: rc.Price | None

    @property
    def cost(self) -> float:
        p = self.price
        if p is None:
            return 0.0
        return (self.input_tokens * p.input + self.output_tokens * p.output) / 1_000_000


@dataclass(slots=True)
class _Held:
    charge: Charge
    kind: str
    rule: rc.RateRule | rc.BudgetRule


@dataclass(slots=True)
class Ticket:
    """One request's reservation, settled exactly once."""

    rules: KeyRules
    estimate: Estimate
    held: list[_Held]
    store: Store | MemoryStore
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


_Planned = tuple[str, str, "rc.RateRule | rc.BudgetRule", float | None, float]
"""(counter key, kind, rule, limit, expires) of one charge."""


def _covers(rule: rc.RateRule | rc.BudgetRule, provider: str, ref: str) -> bool:
    if rule.providers and provider not in rule.providers:
        return False
    return not rule.models or ref in rule.models


def tokens(rule: rc.RateRule, usage: Usage) -> int:
    total = usage.input_tokens + usage.output_tokens + usage.cache_write_tokens
    return total + usage.cache_read_tokens if rule.count_cache_reads else total


def _where(counter: str) -> str:
    # counter: '<namespace>/<config>/<key or *>/<limits|budgets>/<index>'
    parts = counter.split("/")
    shared = " (shared by all its keys)" if parts[2] == "*" else ""
    return f"AccessKeyConfig {parts[0]}/{parts[1]} spec.{parts[3]}[{parts[4]}]{shared}"


class Limiter:
    def __init__(
        self,
        store: Store | MemoryStore,
        *,
        clock: Callable[[], float] = time.time,
        on_store_down: str = OPEN,
        on_store_error: Callable[[bool], None] | None = None,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.on_store_down = on_store_down
        self.local = store if isinstance(store, MemoryStore) else MemoryStore(clock=clock)
        """Counts while the shared store is down (fail open)."""
        self.on_store_error = on_store_error or (lambda down: None)
        """Called with True when the store fails and False when it answers again."""
        self.on_reject = on_reject or (lambda key, kind: None)
        self.store_down = False
        self._plans: dict[tuple[int, str, str], tuple[KeyRules, float, float, list[_Planned]]] = {}
        self._spans: dict[tuple[str, str], windows.Span] = {}
        self._fixed: dict[str, _Held] = {}
        """Request and in-flight charges (amount 1), shared by the requests of one plan; never
        mutated."""
        self._resets: dict[tuple[float, str], str] = {}

    def charges(self, rules: KeyRules, est: Estimate, now: float) -> list[_Held]:
        plan = self._plan(rules, est.provider, est.ref, now)
        tokens = float(est.input_tokens + est.output_tokens)
        cost = est.cost
        held: list[_Held] = []
        for key, kind, rule, limit, expires in plan:
            if kind == TPM:
                held.append(_Held(Charge(key, tokens, limit, expires), kind, rule))
            elif kind == USD:
                held.append(_Held(Charge(key, cost, limit, expires), kind, rule))
            else:  # 1 request or 1 slot: the same charge for every request of this plan
                fixed = self._fixed.get(key)
                if fixed is None or fixed.rule is not rule or fixed.charge.expires != expires:
                    fixed = self._fixed[key] = _Held(Charge(key, 1.0, limit, expires), kind, rule)
                held.append(fixed)
        return held

    def _plan(self, rules: KeyRules, provider: str, ref: str, now: float) -> list[_Planned]:
        """The counters a request of `rules` on (provider, ref) charges at `now`: computed once
        per key, target and minute (windows, key names), not per request."""
        cached = self._plans.get((id(rules), provider, ref))
        if cached is not None and cached[0] is rules and cached[1] <= now < cached[2]:
            return cached[3]
        minute = windows.minute(now)
        valid_until = minute.end
        plan: list[_Planned] = []
        for rule in rules.limits:
            if not _covers(rule, provider, ref):
                continue
            c = rule.counter
            if rule.requests_per_minute is not None:
                key = f"{c}/rpm@{minute.label}"
                plan.append((key, RPM, rule, rule.requests_per_minute, minute.end))
            if rule.tokens_per_minute is not None:
                key = f"{c}/tpm@{minute.label}"
                plan.append((key, TPM, rule, rule.tokens_per_minute, minute.end))
            if rule.max_in_flight is not None:
                # Expiry refreshed with the plan, each minute: at least LIVE_TTL - 60 s ahead.
                plan.append((f"{c}{LIVE}", INFLIGHT, rule, rule.max_in_flight, now + LIVE_TTL))
        for budget in rules.budgets:
            if not _covers(budget, provider, ref):
                continue
            span = self._span(budget.window, budget.time_zone, now)
            valid_until = min(valid_until, span.end)
            limit = budget.usd if budget.refuse else None
            key = budget_key(budget.counter, span.label)
            plan.append((key, USD, budget, limit, span.end + KEEP_AFTER))
        if len(self._plans) > 10_000:  # bounded: keys x targets; rebuilt when dropped
            self._plans.clear()
            self._fixed.clear()
        self._plans[(id(rules), provider, ref)] = (rules, minute.start, valid_until, plan)
        return plan

    def _span(self, window: str, time_zone: str, now: float) -> windows.Span:
        """`windows.calendar`, cached while `now` is inside the window."""
        span = self._spans.get((window, time_zone))
        if span is None or not span.start <= now < span.end:
            span = self._spans[(window, time_zone)] = windows.calendar(window, time_zone, now)
        return span

    def _reset(self, span: windows.Span, time_zone: str) -> str:
        text = self._resets.get((span.end, time_zone))
        if text is None:
            if len(self._resets) > 1000:
                self._resets.clear()
            text = self._resets[(span.end, time_zone)] = windows.rfc3339(span.end, time_zone)
        return text

    async def reserve(self, rules: KeyRules, est: Estimate) -> Ticket:
        """Reserve the request or raise LimitError (429 naming the key and the limit)."""
        now = self.clock()
        held = self.charges(rules, est, now)
        ticket = Ticket(rules, est, held, self.store)
        if not held:
            return ticket
        charges = [h.charge for h in held]
        try:
            refused, values = await self.store.reserve(charges)
            if self.store_down:
                self.store_down = False
                self.on_store_error(False)
        except StoreDown as exc:
            if not self.store_down:
                log.error("limit store down (%s); on_store_down=%s", exc, self.on_store_down)
            self.store_down = True
            self.on_store_error(True)
            if self.on_store_down == CLOSED:
                raise LimitError(
                    "the gateway cannot check this key's limits right now (its counter store "
                    "is down); retry shortly",
                    503,
                    {"retry-after": "1"},
                    "store",
                ) from None
            ticket.store = self.local
            refused, values = self.local.reserve_now(charges)
        if refused >= 0:
            error = self._refusal(rules.key, held[refused], values[refused], now)
            self.on_reject(rules.key, error.kind)
            raise error
        ticket.headers = self._headers(held, values, now)
        return ticket

    def settle(
        self,
        ticket: Ticket,
        provider: str,
        ref: str,
        usage: Usage | None,
        cost: float,
        *,
        reached: bool,
    ) -> None:
        """Replace the reservation by what the request used (see the module docstring).

        `provider`/`ref`: the candidate that served (or was tried last); `usage` None with
        `reached` True: cancelled after reaching the upstream, the reservation is kept.
        """
        if ticket.settled:
            return
        ticket.settled = True
        now = self.clock()
        deltas: list[tuple[str, float, float]] = []
        keep = usage is None and reached
        seen: set[str] = set()
        for h in ticket.held:
            charge = h.charge
            seen.add(h.rule.counter)
            if h.kind == INFLIGHT:
                deltas.append((charge.key, -1.0, charge.expires))
            elif h.kind == RPM or keep:
                continue
            else:
                actual = self._used(
                    h.kind, rule=h.rule, provider=provider, ref=ref, usage=usage, cost=cost
                )
                if actual != charge.amount:
                    deltas.append((charge.key, actual - charge.amount, charge.expires))
        if usage is not None and (provider, ref) != (ticket.estimate.provider, ticket.estimate.ref):
            # Served by a fallback that rules not reserved for may cover: add its usage there.
            est = Estimate(provider, ref, 0, 0, None)
            for h in self.charges(ticket.rules, est, now):
                if h.rule.counter in seen or h.kind in (RPM, INFLIGHT):
                    continue
                actual = self._used(
                    h.kind, rule=h.rule, provider=provider, ref=ref, usage=usage, cost=cost
                )
                if actual:
                    deltas.append((h.charge.key, actual, h.charge.expires))
        if deltas:
            try:
                ticket.store.add(deltas)
            except StoreDown:
                self.local.add(deltas)

    @staticmethod
    def _used(
        kind: str,
        *,
        rule: rc.RateRule | rc.BudgetRule,
        provider: str,
        ref: str,
        usage: Usage | None,
        cost: float,
    ) -> float:
        if usage is None or not _covers(rule, provider, ref):
            return 0.0
        if kind == TPM:
            assert isinstance(rule, rc.RateRule)
            return float(tokens(rule, usage))
        return cost

    # --- answers ----------------------------------------------------------------------------

    def _refusal(self, key: str, h: _Held, value: float, now: float) -> LimitError:
        rule = h.rule
        where = _where(rule.counter)
        if isinstance(rule, rc.BudgetRule):
            span = windows.calendar(rule.window, rule.time_zone, now)
            reset = windows.rfc3339(span.end, rule.time_zone)
            wait = max(1, math.ceil(span.end - now))
            return LimitError(
                f"key {key!r} has spent its budget of ${rule.usd:.2f} per {rule.window} "
                f"(${value:.4f} spent; {where}); the budget resets at {reset}",
                429,
                {
                    "retry-after": str(wait),
                    "x-should-retry": "false",
                    "x-switchboard-budget-reset": reset,
                    "x-switchboard-budget-remaining-usd": "0",
                },
                "budget",
            )
        if h.kind == INFLIGHT:
            return LimitError(
                f"key {key!r} has {rule.max_in_flight} requests in flight, its limit ({where}); "
                "retry when one has finished",
                429,
                {"retry-after": "1"},
                "in_flight",
            )
        minute = windows.minute(now)
        wait = max(1, math.ceil(minute.end - now))
        if h.kind == RPM:
            what, limit, kind = "requests", rule.requests_per_minute, "requests"
        else:
            what, limit, kind = "tokens", rule.tokens_per_minute, "tokens"
        return LimitError(
            f"key {key!r} reached its limit of {limit} {what} per minute ({where}); "
            f"retry after {wait} s",
            429,
            {
                "retry-after": str(wait),
                f"x-ratelimit-limit-{kind}": str(limit),
                f"x-ratelimit-remaining-{kind}": "0",
                f"x-ratelimit-reset-{kind}": f"{wait}s",
            },
            kind,
        )

    def _headers(self, held: list[_Held], values: list[float], now: float) -> dict[str, str]:
        """The tightest counter of each kind, as OpenAI's x-ratelimit-* headers do."""
        rpm = tpm = usd = None
        for h, value in zip(held, values, strict=True):
            kind = h.kind
            limit = h.charge.limit
            if limit is None or kind == INFLIGHT:
                continue
            remaining = limit - value
            if kind == RPM:
                if rpm is None or remaining < rpm[0]:
                    rpm = (remaining, limit)
            elif kind == TPM:
                if tpm is None or remaining < tpm[0]:
                    tpm = (remaining, limit)
            elif usd is None or remaining < usd[0]:
                usd = (remaining, limit, h)
        headers: dict[str, str] = {}
        if rpm is not None or tpm is not None:
            reset = f"{max(0, math.ceil(60.0 - now % 60.0))}s"
            if rpm is not None:
                headers["x-ratelimit-limit-requests"] = str(int(rpm[1]))
                headers["x-ratelimit-remaining-requests"] = str(int(max(0.0, rpm[0])))
                headers["x-ratelimit-reset-requests"] = reset
            if tpm is not None:
                headers["x-ratelimit-limit-tokens"] = str(int(tpm[1]))
                headers["x-ratelimit-remaining-tokens"] = str(int(max(0.0, tpm[0])))
                headers["x-ratelimit-reset-tokens"] = reset
        if usd is not None:
            rule = usd[2].rule
            assert isinstance(rule, rc.BudgetRule)
            span = self._span(rule.window, rule.time_zone, now)
            headers["x-switchboard-budget-limit-usd"] = f"{usd[1]:.2f}"
            headers["x-switchboard-budget-remaining-usd"] = f"{max(0.0, usd[0]):.6f}"
            headers["x-switchboard-budget-reset"] = self._reset(span, rule.time_zone)
        return headers
