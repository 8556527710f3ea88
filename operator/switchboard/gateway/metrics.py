"""Prometheus metrics of one gateway process (own registry, no global state).

With `--workers N` each process keeps its own counters; scrape each pod's /metrics and sum, or
run one worker per pod and scale with replicas (the recommended shape).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "switchboard_requests",
            "Client requests by surface, served provider and model, and HTTP status.",
            ["surface", "provider", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "switchboard_request_duration_seconds",
            "Time from request to the last byte of the response.",
            ["surface"],
            buckets=_LATENCY,
            registry=r,
        )
        self.ttft = Histogram(
            "switchboard_time_to_first_token_seconds",
            "Time from request to the first byte of a streamed answer.",
            ["surface"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tokens = Counter(
            "switchboard_tokens",
            "Tokens by kind: input (uncached), output, cache_read, cache_write.",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "switchboard_cost_usd",
            "Cost in USD from usage and the model's prices.",
            ["provider", "model"],
            registry=r,
        )
        self.fallbacks = Counter(
            "switchboard_fallbacks",
            "Candidates given up for the next one, by provider, model and reason.",
            ["provider", "model", "reason"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "switchboard_upstream_errors",
            "Upstream failures by kind: connect, timeout, first_token_timeout, status_5xx, "
            "status_429, context_length, status_4xx, stream.",
            ["provider", "kind"],
            registry=r,
        )
        self.reloads = Counter(
            "switchboard_config_reloads",
            "Routing config loads by result (ok, failed).",
            ["result"],
            registry=r,
        )
        self.config_hash = Gauge(
            "switchboard_config_info",
            "The routing config served (value 1), by hash.",
            ["hash", "namespace"],
            registry=r,
        )

        self._children: dict[tuple[object, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: label validation is paid once per series."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def served(self, config_hash: str, namespace: str) -> None:
        self.config_hash.clear()
        self.config_hash.labels(config_hash, namespace).set(1)
