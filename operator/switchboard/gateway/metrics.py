"""Prometheus metrics of one gateway process (own registry, no global state).

With `--workers N` each process keeps its own counters; scrape each pod's /metrics and sum, or
run one worker per pod and scale with replicas (the recommended shape).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_BOUNDS: tuple[str, ...] = tuple(floatToGoString(b) for b in _LATENCY)  # type: ignore[no-untyped-call]
"""The `le` labels, written as prometheus_client writes them (1 -> "1.0")."""
KINDS = ("input", "output", "cache_read", "cache_write")
"""The token kinds of switchboard_tokens and switchboard_key_tokens, in RequestStats' order."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stats = RequestStats()
        r.register(self.stats)
        self.fallbacks = Counter(
            "switchboard_fallbacks",
            "Candidates given up for the next one, by provider, model and reason.",
            ["provider", "model", "reason"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "switchboard_upstream_errors",
            "Upstream failures by kind: connect, timeout, first_token_timeout, status_5xx, "
            "status_429, context_length, status_4xx, provider_auth, bad_answer, stream_error, "
            "stream.",
            ["provider", "kind"],
            registry=r,
        )
        self.reloads = Counter(
            "switchboard_config_reloads",
            "Routing config loads by result (ok, failed).",
            ["result"],
            registry=r,
        )
        self.connections_refused = Counter(
            "switchboard_connections_refused",
            "Client connections answered 503 and closed: past --max-connections.",
            registry=r,
        )
        self.config_ok = Gauge(
            "switchboard_config_last_reload_successful",
            "1 while the last routing config given to this process loaded, 0 after a refusal.",
            registry=r,
        )
        self.refused_providers = Gauge(
            "switchboard_config_refused_providers",
            "Providers of the served config left out because they cannot be rendered.",
            registry=r,
        )
        self.config_hash = Gauge(
            "switchboard_config_info",
            "The routing config served (value 1), by hash.",
            ["hash", "namespace"],
            registry=r,
        )

        # Limits and budgets (gateway/limits/): keys with limits only, named as in the config.
        self.limit_rejections = Counter(
            "switchboard_limit_rejections",
            "Requests refused by a key's limits, by key and limit (requests, tokens, in_flight, "
            "budget).",
            ["key", "limit"],
            registry=r,
        )
        # Requests of keys with limits (switchboard_key_requests), and tokens and cost by key
        # for every key (limits or not): plain dicts in RequestStats below.
        self.limit_store_down = Gauge(
            "switchboard_limit_store_down",
            "1 while the shared limit store does not answer (limits are counted in-process).",
            registry=r,
        )
        self.limit_store_errors = Counter(
            "switchboard_limit_store_errors",
            "Reservations the shared limit store failed to answer.",
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


class RequestStats:
    """The series every request touches (requests, latency, time to first token, tokens,
    cost, and the requests of keys with limits), kept as plain dicts and turned into
    Prometheus samples at scrape time.

    prometheus_client's own objects take a lock and walk the buckets in Python on every
    observation; this is one dict update per series. Everything runs on the event loop's
    thread, the scrape included, so nothing needs a lock. The exported names, labels and
    bucket bounds are those of a prometheus_client Counter and Histogram.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, int], int] = {}
        self.latency: dict[str, list[float]] = {}
        self.ttft: dict[str, list[float]] = {}
        self.usage: dict[tuple[str, str], list[float]] = {}
        """By (provider, model): tokens of each of KINDS, then USD."""
        self.key_usage: dict[str, list[float]] = {}
        """By key name (names come from the config: bounded): the same five numbers."""
        self.key_requests: dict[str, int] = {}
        """Requests of keys with limits, by key name (counted by limits.gate.settle)."""

    def request(self, surface: str, provider: str, model: str, status: int) -> None:
        key = (surface, provider, model, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    @staticmethod
    def observe(histograms: dict[str, list[float]], surface: str, seconds: float) -> None:
        """Counts per bucket (not cumulative), then the sum, in one list per surface."""
        counts = histograms.get(surface)
        if counts is None:
            counts = histograms[surface] = [0.0] * (len(_LATENCY) + 2)
        counts[bisect.bisect_left(_LATENCY, seconds)] += 1
        counts[-1] += seconds

    def add_usage(
        self, provider: str, model: str, key: str, tokens: tuple[int, int, int, int], usd: float
    ) -> None:
        """One request's tokens (in the order of KINDS) and cost, by provider and model and,
        when the key is known, by key: two dict lookups, whatever the kinds."""
        row = self.usage.get((provider, model))
        if row is None:
            row = self.usage[(provider, model)] = [0.0] * 5
        rows = [row]
        if key:
            by_key = self.key_usage.get(key)
            if by_key is None:
                by_key = self.key_usage[key] = [0.0] * 5
            rows.append(by_key)
        a, b, c, d = tokens
        for r in rows:
            r[0] += a
            r[1] += b
            r[2] += c
            r[3] += d
            r[4] += usd

    def describe(self) -> list[Metric]:
        return []  # no duplicate-name check against the registry's other collectors needed

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "switchboard_requests",
            "Client requests by surface, served provider and model, and HTTP status.",
            labels=["surface", "provider", "model", "status"],
        )
        for (surface, provider, model, status), count in self.requests.items():
            requests.add_metric([surface, provider, model, str(status)], count)
        yield requests
        yield self._histogram(
            "switchboard_request_duration_seconds",
            "Time from request to the last byte of the response.",
            self.latency,
        )
        yield self._histogram(
            "switchboard_time_to_first_token_seconds",
            "Time from request to the first byte of a streamed answer.",
            self.ttft,
        )
        tokens = CounterMetricFamily(
            "switchboard_tokens",
            "Tokens by kind: input (uncached), output, cache_read, cache_write.",
            labels=["provider", "model", "kind"],
        )
        for (provider, model), row in self.usage.items():
            for kind, used in zip(KINDS, row, strict=False):
                if used:  # a kind never used is no series (as with a labelled Counter)
                    tokens.add_metric([provider, model, kind], used)
        yield tokens
        cost = CounterMetricFamily(
            "switchboard_cost_usd",
            "Cost in USD from usage and the model's prices.",
            labels=["provider", "model"],
        )
        for (provider, model), row in self.usage.items():
            if row[4]:
                cost.add_metric([provider, model], row[4])
        yield cost
        key_tokens = CounterMetricFamily(
            "switchboard_key_tokens",
            "Tokens by the access key's name (AccessKeyConfig keys[].name) and kind.",
            labels=["key", "kind"],
        )
        for key, row in self.key_usage.items():
            for kind, used in zip(KINDS, row, strict=False):
                if used:
                    key_tokens.add_metric([key, kind], used)
        yield key_tokens
        key_cost = CounterMetricFamily(
            "switchboard_key_cost_usd",
            "Cost in USD by the access key's name: sum by (key) equals the sum of cost_usd "
            "in that key's access-log lines.",
            labels=["key"],
        )
        for key, row in self.key_usage.items():
            if row[4]:
                key_cost.add_metric([key], row[4])
        yield key_cost
        key_requests = CounterMetricFamily(
            "switchboard_key_requests",
            "Requests of keys with limits, by key.",
            labels=["key"],
        )
        for key, count in self.key_requests.items():
            key_requests.add_metric([key], count)
        yield key_requests

    @staticmethod
    def _histogram(name: str, doc: str, data: dict[str, list[float]]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=["surface"])
        for surface, counts in data.items():
            buckets = []
            total = 0.0
            for bound, count in zip(_BOUNDS, counts, strict=False):
                total += count
                buckets.append((bound, total))
            buckets.append(("+Inf", total + counts[len(_LATENCY)]))
            family.add_metric([surface], buckets, sum_value=counts[-1])
        return family
