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
from switchboard.gateway.limits.redis_store import Claim, Lease
from switchboard.gateway.limits.store import LIVE, Charge, MemoryStore, Store, StoreDown
from switchboard.routing import config as rc
from switchboard.routing import windows
from switchboard.routing.limits import budget_key

LIVE_TTL = 900.0
"""An in-flight counter expires this long after its last reservation: only a backstop, since
in Redis a dead replica's slots stop counting one lapse after its last heartbeat
(`RedisSettings.inflight_lapse`)."""
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
    plans: dict[str, _Plan] = field(default_factory=dict, compare=False, repr=False)
    """The limiter's plans of this key by target ref (`Limiter._plan`): a new KeyRules, as
    every reload makes, starts without any."""

    @classmethod
    def of(cls, grant: rc.Grant) -> KeyRules | None:
        if not grant.limits and not grant.budgets:
            return None
        return cls(grant.key, grant.limits, grant.budgets)


@dataclass(slots=True)
class Estimate:
    """An upper bound of what a request will use, known before the call."""

    provider: str
    ref: str
    input_tokens: int
    output_tokens: int
    price: rc.Price | None

    @property
    def tokens(self) -> float:
        return float(self.input_tokens + self.output_tokens)

    @property
    def cost(self) -> float:
        return upper_cost(self.price, self.input_tokens, self.output_tokens)


def upper_cost(price: rc.Price | None, input_tokens: int, output_tokens: int) -> float:
    """What a request of at most these tokens costs at `price` (None: free), in USD."""
    if price is None:
        return 0.0
    return (input_tokens * price.input + output_tokens * price.output) / 1_000_000


@dataclass(slots=True)
class _Held:
    charge: Charge
    kind: str
    rule: rc.RateRule | rc.BudgetRule


_Planned = tuple[str, str, "rc.RateRule | rc.BudgetRule", float | None, float]
"""(counter key, kind, rule, limit, expires) of one charge."""
_Delta = tuple[str, float, float]
"""(counter key, amount, expires): a correction for `Store.add`."""


@dataclass(slots=True)
class _Plan:
    """What every request of one key on one target charges, valid from `start` to `until`
    (the minute, and the budget windows): computed once, not per request. Entry i of each
    list is one counter."""

    rules: KeyRules
    provider: str
    ref: str
    start: float
    until: float
    entries: list[_Planned]
    keys: list[str]
    amounts: list[float]
    """1 for a request and an in-flight slot; 0, replaced per request, for tokens and cost."""
    limits: list[float | None]
    expires: list[float]
    tpm: list[tuple[int, rc.RateRule]]
    """Tokens-per-minute entries (their amount: the request's tokens) ..."""
    tpm_at: list[int]
    """... their indexes alone ..."""
    usd: list[int]
    """... and budget entries (their amount: its cost)."""
    release: list[_Delta]
    """What settling gives back of the in-flight slots ..."""
    inflight: list[int]
    """... and their entries."""
    rpm_headers: list[tuple[int, float, str]]
    """Limited requests-per-minute entries: (index, limit, the limit's header text)."""
    tpm_headers: list[tuple[int, float, str]]
    usd_headers: list[tuple[int, float, str, str]]
    """Refusing budgets: (index, limit, the limit's header text, the window's reset time)."""
    claim: Claim
    """The plan's counters as the store's fast path takes them (`RedisStore.take`)."""
    leased: dict[str, str] = field(default_factory=dict)
    """The headers of requests admitted from leases (`Limiter.admit`), shared by them (never
    changed once made): valid while the leases (the same list) and the second stay those
    below."""
    leased_head: bytes = b""
    """... and the same as header lines (`_lines`)."""
    leased_for: list[Lease] | None = None
    leased_until: float = 0.0
    """(The end of the second they were made in.)"""

    def charges(self, amounts: list[float]) -> list[Charge]:
        return list(map(Charge, self.keys, amounts, self.limits, self.expires))


@dataclass(slots=True)
class Ticket:
    """One request's reservation, settled exactly once."""

    plan: _Plan
    """The counters charged (the key's rules, the target reserved for) ..."""
    amounts: list[float]
    """... and what was added to each of them."""
    store: Store | MemoryStore
    headers: dict[str, str]
    """The remaining-quota headers, for an error answer ..."""
    head: bytes = b""
    """... and the same as header lines, for the answer (gateway/responses.py)."""
    leases: list[Lease] | None = None
    """Admitted from these leases of this replica (entry i: counter i of the plan), which
    settling adjusts directly while they are open; None: reserved in the store."""
    settled: bool = False

    @property
    def rules(self) -> KeyRules:
        return self.plan.rules


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
        self._spans: dict[tuple[str, str], windows.Span] = {}
        self._take: Callable[[Claim, list[float]], list[Lease] | None] | None = getattr(
            store, "take", None
        )
        """The store's synchronous fast path (RedisStore: its leases), if it has one."""
        self._resets: dict[tuple[float, str], str] = {}

    def charges(self, rules: KeyRules, est: Estimate, now: float) -> list[_Held]:
        """The charges of a request of `rules` estimated as `est` at `now`."""
        plan = self._plan(rules, est.provider, est.ref, now)
        amounts = self._amounts(plan, est.tokens, est.cost)
        return [
            _Held(charge, entry[1], entry[2])
            for charge, entry in zip(plan.charges(amounts), plan.entries, strict=True)
        ]

    @staticmethod
    def _amounts(plan: _Plan, tokens: float, cost: float) -> list[float]:
        """What a request of `tokens` and `cost` adds to each counter of `plan`."""
        amounts = plan.amounts.copy()
        for i in plan.tpm_at:
            amounts[i] = tokens
        for i in plan.usd:
            amounts[i] = cost
        return amounts

    def _plan(self, rules: KeyRules, provider: str, ref: str, now: float) -> _Plan:
        """The counters a request of `rules` on (provider, ref) charges at `now`: computed once
        per key, target and minute (windows, key names, header texts), not per request."""
        cached = rules.plans.get(ref)
        if (
            cached is not None
            and cached.provider == provider
            and cached.start <= now < cached.until
        ):
            return cached
        minute = windows.minute(now)
        valid_until = minute.end
        entries: list[_Planned] = []
        resets: dict[int, str] = {}
        for rule in rules.limits:
            if not _covers(rule, provider, ref):
                continue
            c = rule.counter
            if rule.requests_per_minute is not None:
                key = f"{c}/rpm@{minute.label}"
                entries.append((key, RPM, rule, rule.requests_per_minute, minute.end))
            if rule.tokens_per_minute is not None:
                key = f"{c}/tpm@{minute.label}"
                entries.append((key, TPM, rule, rule.tokens_per_minute, minute.end))
            if rule.max_in_flight is not None:
                # Expiry refreshed with the plan, each minute: at least LIVE_TTL - 60 s ahead.
                entries.append((f"{c}{LIVE}", INFLIGHT, rule, rule.max_in_flight, now + LIVE_TTL))
        for budget in rules.budgets:
            if not _covers(budget, provider, ref):
                continue
            span = self._span(budget.window, budget.time_zone, now)
            valid_until = min(valid_until, span.end)
            limit = budget.usd if budget.refuse else None
            key = budget_key(budget.counter, span.label)
            resets[len(entries)] = self._reset(span, budget.time_zone)
            entries.append((key, USD, budget, limit, span.end + KEEP_AFTER))
        amounts: list[float] = []
        tpm: list[tuple[int, rc.RateRule]] = []
        usd: list[int] = []
        release: list[_Delta] = []
        inflight: list[int] = []
        rpm_headers: list[tuple[int, float, str]] = []
        tpm_headers: list[tuple[int, float, str]] = []
        usd_headers: list[tuple[int, float, str, str]] = []
        for i, (key, kind, counted, limit, expires) in enumerate(entries):
            amounts.append(1.0 if kind in (RPM, INFLIGHT) else 0.0)
            if kind == INFLIGHT:
                release.append((key, -1.0, expires))
                inflight.append(i)
            elif kind == TPM:
                assert isinstance(counted, rc.RateRule)
                tpm.append((i, counted))
            elif kind == USD:
                usd.append(i)
            if limit is None or kind == INFLIGHT:
                continue
            if kind == RPM:
                rpm_headers.append((i, limit, str(int(limit))))
            elif kind == TPM:
                tpm_headers.append((i, limit, str(int(limit))))
            else:
                usd_headers.append((i, limit, f"{limit:.2f}", resets[i]))
        if len(rules.plans) > 1000:  # bounded (open models): targets; rebuilt when dropped
            rules.plans.clear()
        keys = [e[0] for e in entries]
        limits = [e[3] for e in entries]
        expiries = [e[4] for e in entries]
        plan = _Plan(
            rules,
            provider,
            ref,
            minute.start,
            valid_until,
            entries,
            keys,
            amounts,
            limits,
            expiries,
            tpm,
            [i for i, _ in tpm],
            usd,
            release,
            inflight,
            rpm_headers,
            tpm_headers,
            usd_headers,
            Claim(keys, limits, expiries),
        )
        rules.plans[ref] = plan
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

    def admit(
        self, rules: KeyRules, provider: str, ref: str, tokens: float, cost: float
    ) -> Ticket | None:
        """The fast path, without a coroutine: the reservation of a request of `tokens` and
        `cost` at most (`Estimate.tokens`, `.cost`) on the target `ref` when the store can take
        it at once (Redis: within this replica's leases); None when `reserve()` must ask the
        store."""
        take = self._take
        if take is None or self.store_down:
            return None
        now = self.clock()
        plan = rules.plans.get(ref)
        if plan is None or not plan.start <= now < plan.until or plan.provider != provider:
            plan = self._plan(rules, provider, ref, now)
        amounts = plan.amounts.copy()  # _amounts(), inlined: this runs for every request
        for i in plan.tpm_at:
            amounts[i] = tokens
        for i in plan.usd:
            amounts[i] = cost
        leases = take(plan.claim, amounts)
        if leases is None:
            return None
        if leases is not plan.leased_for or now >= plan.leased_until:
            self._leased_headers(plan, leases, now)
        return Ticket(plan, amounts, self.store, plan.leased, plan.leased_head, leases)

    def _leased_headers(self, plan: _Plan, leases: list[Lease], now: float) -> None:
        """The headers of the requests admitted from `leases`, made once per plan, leases and
        second: their remaining figures are as of the leases' grant (each lease counted whole
        as used), which never shows more than the store has left."""
        headers = plan.leased = self._headers(plan, [lease.ceiling for lease in leases], now)
        plan.leased_head = _lines(headers)
        plan.leased_for = leases
        plan.leased_until = math.floor(now) + 1.0

    async def reserve(self, rules: KeyRules, est: Estimate) -> Ticket:
        """Reserve the request or raise LimitError (429 naming the key and the limit)."""
        now = self.clock()
        plan = self._plan(rules, est.provider, est.ref, now)
        amounts = self._amounts(plan, est.tokens, est.cost)
        ticket = Ticket(plan, amounts, self.store, {})
        if not amounts:
            return ticket
        charges = plan.charges(amounts)
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
            _, kind, rule, _, _ = plan.entries[refused]
            error = self._refusal(rules.key, kind, rule, values[refused], now)
            self.on_reject(rules.key, error.kind)
            raise error
        ticket.headers = self._headers(plan, values, now)
        ticket.head = _lines(ticket.headers)
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
        plan = ticket.plan
        leases = ticket.leases
        if leases is not None and usage is not None and ref == plan.ref:  # (ref: provider:model)
            # The common case, first: admitted from this replica's leases and served by the
            # reserved target. The corrections go into the leases (Redis learns them when a
            # lease is given back); a lease given back since goes through the store.
            amounts = ticket.amounts
            keys = plan.keys
            late: list[_Delta] = []
            for i in plan.inflight:  # the slots; the request counts stay
                lease = leases[i]
                if lease.open:
                    lease.used -= 1.0
                else:
                    late.append((keys[i], -1.0, plan.expires[i]))
            if plan.tpm:
                counted = usage.input_tokens + usage.output_tokens + usage.cache_write_tokens
                for i, rule in plan.tpm:
                    change = (
                        counted + usage.cache_read_tokens if rule.count_cache_reads else counted
                    ) - amounts[i]
                    if change:
                        lease = leases[i]
                        if lease.open:
                            lease.used += change
                        else:
                            late.append((keys[i], change, plan.expires[i]))
            for i in plan.usd:
                change = cost - amounts[i]
                if change:
                    lease = leases[i]
                    if lease.open:
                        lease.used += change
                    else:
                        late.append((keys[i], change, plan.expires[i]))
            if late:
                self._add(ticket, late)
            return
        deltas = plan.release.copy()  # the in-flight slots; the request counts stay
        same = provider == plan.provider and ref == plan.ref
        if same and usage is not None:  # the common case, first: served by the reserved target
            amounts = ticket.amounts
            keys = plan.keys
            expires = plan.expires
            if plan.tpm:
                counted = usage.input_tokens + usage.output_tokens + usage.cache_write_tokens
                for i, rule in plan.tpm:
                    actual = float(
                        counted + usage.cache_read_tokens if rule.count_cache_reads else counted
                    )
                    if actual != amounts[i]:
                        deltas.append((keys[i], actual - amounts[i], expires[i]))
            for i in plan.usd:
                if cost != amounts[i]:
                    deltas.append((keys[i], cost - amounts[i], expires[i]))
        elif usage is not None or not reached:  # else: cancelled unseen, the reservation stays
            # Served by a fallback (a rule that does not cover it gets 0), or no usage (0).
            amounts = ticket.amounts
            keys = plan.keys
            entries = plan.entries
            for i, rule in plan.tpm:
                actual = self._used(
                    TPM, rule=rule, provider=provider, ref=ref, usage=usage, cost=cost
                )
                if actual != amounts[i]:
                    deltas.append((keys[i], actual - amounts[i], plan.expires[i]))
            for i in plan.usd:
                actual = self._used(
                    USD, rule=entries[i][2], provider=provider, ref=ref, usage=usage, cost=cost
                )
                if actual != amounts[i]:
                    deltas.append((keys[i], actual - amounts[i], plan.expires[i]))
        if usage is not None and not same:
            # Served by a fallback that rules not reserved for may cover: add its usage there.
            seen = {entry[2].counter for entry in plan.entries}
            other = Estimate(provider, ref, 0, 0, None)
            for h in self.charges(ticket.rules, other, self.clock()):
                if h.rule.counter in seen or h.kind in (RPM, INFLIGHT):
                    continue
                actual = self._used(
                    h.kind, rule=h.rule, provider=provider, ref=ref, usage=usage, cost=cost
                )
                if actual:
                    deltas.append((h.charge.key, actual, h.charge.expires))
        if deltas:
            self._add(ticket, deltas)

    def _add(self, ticket: Ticket, deltas: list[_Delta]) -> None:
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

    def _refusal(
        self, key: str, kind: str, rule: rc.RateRule | rc.BudgetRule, value: float, now: float
    ) -> LimitError:
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
        if kind == INFLIGHT:
            return LimitError(
                f"key {key!r} has {rule.max_in_flight} requests in flight, its limit ({where}); "
                "retry when one has finished",
                429,
                {"retry-after": "1"},
                "in_flight",
            )
        minute = windows.minute(now)
        wait = max(1, math.ceil(minute.end - now))
        if kind == RPM:
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

    @staticmethod
    def _headers(plan: _Plan, values: list[float], now: float) -> dict[str, str]:
        """The tightest counter of each kind, as OpenAI's x-ratelimit-* headers do (the limit
        and reset texts are the plan's; only the remaining figures are formatted here)."""
        headers: dict[str, str] = {}
        if plan.rpm_headers or plan.tpm_headers:
            reset = _MINUTE_RESETS[int(now % 60.0)]  # ceil(60 - now % 60) seconds
            if plan.rpm_headers:
                remaining, text = _tightest(plan.rpm_headers, values)
                headers["x-ratelimit-limit-requests"] = text
                headers["x-ratelimit-remaining-requests"] = (
                    str(int(remaining)) if remaining > 0 else "0"
                )
                headers["x-ratelimit-reset-requests"] = reset
            if plan.tpm_headers:
                remaining, text = _tightest(plan.tpm_headers, values)
                headers["x-ratelimit-limit-tokens"] = text
                headers["x-ratelimit-remaining-tokens"] = (
                    str(int(remaining)) if remaining > 0 else "0"
                )
                headers["x-ratelimit-reset-tokens"] = reset
        if plan.usd_headers:
            best = None
            for i, limit, text, reset_at in plan.usd_headers:
                remaining = limit - values[i]
                if best is None or remaining < best[0]:
                    best = (remaining, text, reset_at)
            assert best is not None
            headers["x-switchboard-budget-limit-usd"] = best[1]
            headers["x-switchboard-budget-remaining-usd"] = f"{max(0.0, best[0]):.6f}"
            headers["x-switchboard-budget-reset"] = best[2]
        return headers


def _lines(headers: dict[str, str]) -> bytes:
    """Headers as the lines of an HTTP head (the limiter's own ASCII texts: names, numbers,
    RFC 3339 times; never a client's or an upstream's)."""
    return "".join([f"{name}: {value}\r\n" for name, value in headers.items()]).encode("ascii")


_MINUTE_RESETS = tuple(f"{60 - second}s" for second in range(60))
"""The x-ratelimit-reset-* text by the second of the minute."""


def _tightest(entries: list[tuple[int, float, str]], values: list[float]) -> tuple[float, str]:
    """(remaining, limit text) of the entry with the least left."""
    i, limit, text = entries[0]
    best, best_text = limit - values[i], text
    for i, limit, text in entries[1:]:
        remaining = limit - values[i]
        if remaining < best:
            best, best_text = remaining, text
    return best, best_text
