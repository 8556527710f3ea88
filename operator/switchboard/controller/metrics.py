"""Prometheus metrics of the operator (own registry, no global state) and its /metrics server.

Labels are bounded: the three kinds, severities, results and API call names. No object,
namespace or Secret name is ever a label value. The series read from the Reconciler's state
(objects by kind and readiness, compile problems, namespaces not published, the largest config)
are computed at scrape time on the event loop's thread, where that state lives, so a scrape
never sees it half-updated. Served by aiohttp on the operator's loop (`serve`), on its own port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from switchboard.api.kinds import KINDS
from switchboard.routing.problems import Severity

log = logging.getLogger("switchboard.operator")
DEFAULT_PORT = 9091
NOT_PUBLISHED_REASONS = ("compile", "error")
"""`compile`: the namespace's config could not be compiled (too large); `error`: its reconcile
failed (an API error writing the Secret or a status) and is being retried."""


@dataclass
class State:
    """What the Reconciler reports for the scrape-time series (plain dicts, one loop thread)."""

    problems: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    """Per namespace: (kind, severity) -> problems in its last compile."""
    not_published: dict[str, str] = field(default_factory=dict)
    """Namespace -> reason (NOT_PUBLISHED_REASONS) while its current config is not published."""
    config_bytes: dict[str, int] = field(default_factory=dict)
    """Namespace -> size of the routing Secret value last written or confirmed."""
    objects: Callable[[], Iterator[tuple[str, dict[str, Any]]]] = lambda: iter(())
    """(kind, body) of every object the operator holds (set by the Reconciler)."""


def ready_of(body: dict[str, Any]) -> str:
    """The Ready condition's status in lower case ("true", "false"), "unknown" without one."""
    for condition in (body.get("status") or {}).get("conditions") or ():
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown")).lower()
    return "unknown"


class _StateCollector:
    def __init__(self, state: State) -> None:
        self.state = state

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        objects = GaugeMetricFamily(
            "switchboard_operator_objects",
            "Objects the operator holds, by kind and Ready condition (true, false, unknown: "
            "no status written yet).",
            labels=["kind", "ready"],
        )
        counts = {(k, r): 0 for k in KINDS for r in ("true", "false", "unknown")}
        for kind, body in self.state.objects():
            key = (kind, ready_of(body))
            counts[key] = counts.get(key, 0) + 1
        for (kind, ready), count in sorted(counts.items()):
            objects.add_metric([kind, ready], count)
        yield objects
        problems = GaugeMetricFamily(
            "switchboard_operator_compile_problems",
            "Problems found by the last compile of every namespace, by object kind and "
            "severity (error: that part is not served; warning: served, but look).",
            labels=["kind", "severity"],
        )
        totals = {(k, s.value): 0 for k in KINDS for s in Severity}
        for by_kind in list(self.state.problems.values()):
            for key, count in by_kind.items():
                totals[key] = totals.get(key, 0) + count
        for (kind, severity), count in sorted(totals.items()):
            problems.add_metric([kind, severity], count)
        yield problems
        unpublished = GaugeMetricFamily(
            "switchboard_operator_namespaces_not_published",
            "Namespaces whose current routing config is not in their Secret, by reason "
            "(compile: too large to compile; error: the reconcile failed and is retried).",
            labels=["reason"],
        )
        reasons = dict.fromkeys(NOT_PUBLISHED_REASONS, 0)
        for reason in self.state.not_published.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in reasons.items():
            unpublished.add_metric([reason], count)
        yield unpublished
        largest = GaugeMetricFamily(
            "switchboard_operator_config_bytes",
            "Size of the largest routing config in a Secret written or confirmed by this "
            "process (base64 value; a Secret holds at most 1 MiB).",
        )
        largest.add_metric([], max(self.state.config_bytes.values(), default=0))
        yield largest


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.state = State()
        r.register(_StateCollector(self.state))
        self.reconciles = Counter(
            "switchboard_operator_reconciles",
            "Namespace reconciles (compile, publish, status) by result (ok, failed).",
            ["result"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "switchboard_operator_reconcile_duration_seconds",
            "Time of one namespace's reconcile: compile, Secret write, status patches.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.publishes = Counter(
            "switchboard_operator_publishes",
            "Routing Secret writes by result: written, unchanged (already held this config), "
            "skipped (empty config and no Secret, or namespace being deleted), failed.",
            ["result"],
            registry=r,
        )
        self.published_at = Gauge(
            "switchboard_operator_config_published_timestamp_seconds",
            "Unix time at which a routing config was last written or confirmed in its Secret.",
            registry=r,
        )
        self.api_errors = Counter(
            "switchboard_operator_api_errors",
            "Failed Kubernetes API calls by call: read_secret, publish, status, event, "
            "budget_status, budget_event, peering.",
            ["call"],
            registry=r,
        )
        self.active = Gauge(
            "switchboard_operator_active",
            "1 while this replica is the active one (standalone, or first by kopf peering "
            "priority, as the budget loop last read it); 0 while it waits.",
            registry=r,
        )
        self.budget_rounds = Counter(
            "switchboard_operator_budget_rounds",
            "Budget status rounds by result: ok, store_error (the limits store did not answer "
            "for some object), failed (a bug; logged), passive (another replica is active).",
            ["result"],
            registry=r,
        )
        self.budget_success = Gauge(
            "switchboard_operator_budget_last_success_timestamp_seconds",
            "Unix time of the end of the last budget status round in which every read answered.",
            registry=r,
        )
        self.budget_store_up: Gauge | None = None
        for result in ("ok", "failed"):
            self.reconciles.labels(result)
        for result in ("written", "unchanged", "skipped", "failed"):
            self.publishes.labels(result)
        for result in ("ok", "store_error", "failed", "passive"):
            self.budget_rounds.labels(result)

    def with_store(self) -> Gauge:
        """`switchboard_operator_budget_store_up`, registered only when a store is configured
        (without one the spend is unknown by design, not down)."""
        if self.budget_store_up is None:
            self.budget_store_up = Gauge(
                "switchboard_operator_budget_store_up",
                "1 while the gateways' limits store answered the last budget read, else 0.",
                registry=self.registry,
            )
        return self.budget_store_up

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def serve(metrics: OperatorMetrics, host: str, port: int) -> web.AppRunner | None:
    """Serve GET /metrics on host:port; None (logged) when the port cannot be bound: the
    operator's work goes on without metrics."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"content-type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%d (%s); /metrics is off", host, port, exc)
        await runner.cleanup()
        return None
    log.info("metrics: GET /metrics on %s:%d", host, port)
    return runner
