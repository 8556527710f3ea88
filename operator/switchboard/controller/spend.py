"""Budget spend -> an AccessKeyConfig's status and its BudgetExhausted events. Pure.

The gateway counts each budget under a counter id (`routing.limits.rules`) per calendar window
(`routing.windows.calendar`); this module names the same counters for one AccessKeyConfig
(`counters`), and turns what the store holds for the current windows into the status fields
`budgets[]`, `spend` and `resets` (`status`), or, without a shared store, into a status that
says where to look instead (`unknown`). `exhausted` lists the budgets whose current window is
spent, each with an event name that is the same for the whole window (the event is posted once
per window, whichever operator replica or restart posts it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from switchboard.api import access_key as api
from switchboard.routing import limits, windows

UNKNOWN_SPEND = "unknown: in-process store; see `switchboard usage`"
"""`status.spend` when the operator has no shared store to read (`--limits-redis-url`)."""


@dataclass(frozen=True, slots=True)
class Counter:
    """One budget of one AccessKeyConfig, for one key (scope key) or for all (shared)."""

    budget: int
    key: str | None
    """The key's name; None for a budget shared by all keys of the object."""
    rule: api.Budget
    counter: str


@dataclass(frozen=True, slots=True)
class Reading:
    counter: Counter
    window: windows.Span
    spent: float

    @property
    def store_key(self) -> str:
        """The counter of this window (`routing.limits.budget_key`)."""
        return limits.budget_key(self.counter.counter, self.window.label)

    @property
    def resets(self) -> str:
        return windows.rfc3339(self.window.end, self.counter.rule.time_zone)


def counters(namespace: str, name: str, spec: api.AccessKeyConfigSpec) -> list[Counter]:
    """Every budget counter of the object: one per shared budget, one per key otherwise."""
    out: list[Counter] = []
    for i, rule in enumerate(spec.budgets):
        if rule.scope is api.Scope.SHARED:
            owners: list[str | None] = [None]
        else:
            owners = [key.name for key in spec.keys]
        for owner in owners:
            counter = limits.counter(namespace, name, rule.scope, owner or "", kind="budgets", i=i)
            out.append(Counter(i, owner, rule, counter))
    return out


def readings(found: list[Counter], now: float) -> list[Reading]:
    """Each counter in its current window, spend 0 (fill in with `with_values`)."""
    return [
        Reading(c, windows.calendar(c.rule.window.value, c.rule.time_zone, now), 0.0) for c in found
    ]


def with_values(pending: list[Reading], values: list[float]) -> list[Reading]:
    return [Reading(r.counter, r.window, v) for r, v in zip(pending, values, strict=True)]


def status(found: list[Reading]) -> dict[str, Any]:
    """`budgets[]`, `spend` (the first budget, its highest-spending key when per key) and
    `resets`; all None when the object has no budget (clears what an older spec left)."""
    if not found:
        return {"budgets": None, "spend": None, "resets": None}
    entries = [
        {
            "budget": r.counter.budget,
            **({"key": r.counter.key} if r.counter.key is not None else {}),
            "spentUsd": round(r.spent, 6),
            "usd": r.counter.rule.usd,
            "window": r.window.label,
            "resets": r.resets,
        }
        for r in found
    ]
    first = [r for r in found if r.counter.budget == found[0].counter.budget]
    top = max(first, key=lambda r: r.spent)
    rule = top.counter.rule
    spend = f"${top.spent:.2f} / ${rule.usd:.2f} {rule.window.value}"
    if top.counter.key is not None:
        spend += f" ({top.counter.key}, highest of {len(first)} keys)"
    return {"budgets": entries, "spend": spend[:128], "resets": top.resets}


def unknown(has_budgets: bool) -> dict[str, Any]:
    """Status without a shared store: the counters are in the gateway pod's process."""
    return {"budgets": None, "spend": UNKNOWN_SPEND if has_budgets else None, "resets": None}


def changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    old = old or {}
    return any(old.get(k) != v for k, v in new.items())


@dataclass(frozen=True, slots=True)
class Exhausted:
    reading: Reading
    event_name: str
    message: str


def exhausted(name: str, uid: str, found: list[Reading]) -> list[Exhausted]:
    """The budgets spent in their current window; `event_name` is fixed per object, counter
    and window (so a second post of the same exhaustion is refused as already there)."""
    out: list[Exhausted] = []
    for r in found:
        rule = r.counter.rule
        if r.spent < rule.usd:
            continue
        digest = hashlib.sha256(f"{uid}/{r.store_key}".encode()).hexdigest()[:16]
        who = f"key {r.counter.key!r}" if r.counter.key is not None else "all keys (shared budget)"
        then = (
            f"requests are refused (429) until {r.resets}"
            if rule.on_exhausted is api.OnExhausted.REFUSE
            else f"onExhausted is 'report': requests still pass; the window resets at {r.resets}"
        )
        message = (
            f"spec.budgets[{r.counter.budget}] of ${rule.usd:.2f} per {rule.window.value} is "
            f"spent for {who}: ${r.spent:.4f} in the window of {r.window.label}; {then}"
        )
        out.append(Exhausted(r, f"{name[:200]}.budget-exhausted.{digest}", message))
    return out
