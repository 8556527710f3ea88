"""AccessKeyConfig limits and budgets -> the rules each key carries in the RoutingConfig.

Pure, like the rest of the compiler. Each rule gets a counter id that names where the gateway
keeps its count: `<namespace>/<config>/<key>/limits/<index>` for scope `key`, and
`<namespace>/<config>/*/limits/<index>` for scope `shared` (every key of the object points
at the same counter). Reordering the list moves counts to other counters (they start at 0).

The counters' names in a store are here too, so that the gateway (which counts) and the
operator (which reads budgets into status) agree: a budget's counter in a window is
`<counter>@<window label>` (`budget_key`), and in Redis/Valkey every counter is
`<prefix>{<namespace>/<config>}/<rest>` (`redis_key`; the hash tag keeps one AccessKeyConfig's
counters in one Redis Cluster slot, as one script needs).

`findings()` checks the rules against what the namespace serves and returns warnings: a
provider or model a rule names that is not served, and a budget that covers models without
prices ("cost is 0: this budget never fires").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from switchboard.api import access_key as api
from switchboard.routing import config as rc
from switchboard.routing import refs
from switchboard.routing.problems import Reason

SHARED = "*"
REDIS_PREFIX = "switchboard:"
"""Default prefix of every counter in Redis/Valkey."""


@dataclass(frozen=True)
class Finding:
    path: str
    message: str
    reason: Reason


def counter(namespace: str, config: str, scope: api.Scope, key: str, *, kind: str, i: int) -> str:
    owner = SHARED if scope is api.Scope.SHARED else key
    return f"{namespace}/{config}/{owner}/{kind}/{i}"


def budget_key(counter: str, window_label: str) -> str:
    """The counter of a budget in one window (`routing.windows.calendar(...).label`)."""
    return f"{counter}@{window_label}"


def redis_key(prefix: str, counter: str) -> str:
    """`team-a/cfg/alice/budgets/0@2026-12-01` -> `switchboard:{team-a/cfg}/alice/...`."""
    namespace, _, rest = counter.partition("/")
    config, _, rest = rest.partition("/")
    return f"{prefix}{{{namespace}/{config}}}/{rest}"


def counter_of(prefix: str, key: str) -> str:
    """The inverse of `redis_key`."""
    return key.removeprefix(prefix).replace("{", "", 1).replace("}", "", 1)


def rules(
    namespace: str, config: str, key: str, spec: api.AccessKeyConfigSpec
) -> tuple[tuple[rc.RateRule, ...], tuple[rc.BudgetRule, ...]]:
    """The rate rules and budget rules that apply to one key of one AccessKeyConfig."""
    limits = tuple(
        rc.RateRule(
            counter=counter(namespace, config, rule.scope, key, kind="limits", i=i),
            requests_per_minute=rule.requests_per_minute,
            tokens_per_minute=rule.tokens_per_minute,
            count_cache_reads=rule.count_cache_reads,
            max_in_flight=rule.max_in_flight,
            providers=tuple(sorted(set(rule.providers))),
            models=tuple(sorted(set(rule.models))),
        )
        for i, rule in enumerate(spec.limits)
    )
    budgets = tuple(
        rc.BudgetRule(
            counter=counter(namespace, config, rule.scope, key, kind="budgets", i=i),
            usd=rule.usd,
            window=rule.window.value,
            time_zone=rule.time_zone,
            refuse=rule.on_exhausted is api.OnExhausted.REFUSE,
            providers=tuple(sorted(set(rule.providers))),
            models=tuple(sorted(set(rule.models))),
        )
        for i, rule in enumerate(spec.budgets)
    )
    return limits, budgets


def reachable(
    providers: dict[str, rc.Provider],
    agents: dict[str, rc.Agent],
    allowed_providers: Iterable[str],
    allowed_models: Iterable[str] | None,
    allowed_agents: Iterable[str],
) -> set[tuple[str, str]]:
    """(provider, model id) pairs the keys may end up on; an open provider gives (name, '')."""
    out: set[tuple[str, str]] = set()
    models = set(allowed_models) if allowed_models is not None else None
    for name in allowed_providers:
        provider = providers[name]
        if provider.open_models:
            out.add((name, ""))
        for model_id in provider.models:
            if models is None or f"{name}:{model_id}" in models:
                out.add((name, model_id))
    for name in allowed_agents:
        for candidate in agents[name].chain:
            provider = providers[candidate.provider]
            out.add((candidate.provider, "" if provider.open_models else candidate.model))
    return out


def _covers(rule: api.RateLimit | api.Budget, provider: str, model: str) -> bool:
    if rule.providers and provider not in rule.providers:
        return False
    return not rule.models or f"{provider}:{model}" in rule.models


def findings(
    spec: api.AccessKeyConfigSpec,
    providers: dict[str, rc.Provider],
    targets: set[tuple[str, str]],
) -> list[Finding]:
    """Warnings about the limits and budgets of one AccessKeyConfig (all are still in effect)."""
    out: list[Finding] = []
    groups: list[tuple[str, int, api.RateLimit | api.Budget]] = [
        *(("limits", i, r) for i, r in enumerate(spec.limits)),
        *(("budgets", i, r) for i, r in enumerate(spec.budgets)),
    ]
    for kind, i, rule in groups:
        for j, name in enumerate(rule.providers):
            if name not in providers:
                out.append(
                    Finding(
                        f"spec.{kind}[{i}].providers[{j}]",
                        f"CustomProvider {name!r} is not served in this namespace, so this "
                        f"rule counts nothing on it; fix the name or remove it",
                        Reason.PROVIDER_NOT_FOUND,
                    )
                )
        for j, ref in enumerate(rule.models):
            split = refs.split_ref(ref)
            provider = providers.get(split[0]) if split else None
            if (
                split is None
                or provider is None
                or (not provider.open_models and split[1] not in provider.models)
            ):
                out.append(
                    Finding(
                        f"spec.{kind}[{i}].models[{j}]",
                        f"{ref!r} is not a served model, so this rule counts nothing on it; "
                        "fix the reference or remove it",
                        Reason.MODEL_NOT_FOUND,
                    )
                )
    for i, budget in enumerate(spec.budgets):
        covered = sorted(t for t in targets if _covers(budget, t[0], t[1]))
        free = [t for t in covered if not _priced(providers[t[0]], t[1])]
        if not free:
            continue
        names = ", ".join(f"{p}:{m}" if m else f"{p} (any model)" for p, m in free[:5])
        more = f" and {len(free) - 5} more" if len(free) > 5 else ""
        if len(free) == len(covered):
            message = (
                f"cost is 0: this budget never fires; no model it covers has a price ({names}"
                f"{more}); add cost to the models of their CustomProvider"
            )
        else:
            message = (
                f"cost is 0 for {names}{more}: calls to them never count towards this budget; "
                "add cost to those models of their CustomProvider"
            )
        out.append(Finding(f"spec.budgets[{i}]", message, Reason.BUDGET_WITHOUT_PRICES))
    return out


def _priced(provider: rc.Provider, model_id: str) -> bool:
    model = provider.models.get(model_id)
    if model is None:
        return False
    p = model.price
    return bool(p.input or p.output or p.cache_read or p.cache_write)
