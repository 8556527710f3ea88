"""The gateway's per-request metrics (plain dicts, exported at scrape time) expose exactly what
prometheus_client's own Counter and Histogram would for the same observations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from switchboard.gateway import metrics as gm

OBSERVED = [0.0, 0.001, 0.005, 0.0050001, 0.3, 1, 1.5, 299.9, 300, 301, 1e6]


def _samples(registry: CollectorRegistry, prefix: str) -> list[str]:
    return sorted(
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith(prefix) and "_created" not in line
    )


def test_histograms_and_counters_match_prometheus_client() -> None:
    ours = gm.Metrics()
    reference = CollectorRegistry()
    latency = Histogram(
        "switchboard_request_duration_seconds",
        "Time from request to the last byte of the response.",
        ["surface"],
        buckets=gm._LATENCY,
        registry=reference,
    )
    requests = Counter(
        "switchboard_requests",
        "Client requests by surface, served provider and model, and HTTP status.",
        ["surface", "provider", "model", "status"],
        registry=reference,
    )
    tokens = Counter(
        "switchboard_tokens",
        "Tokens by kind: input (uncached), output, cache_read, cache_write.",
        ["provider", "model", "kind"],
        registry=reference,
    )
    for i, seconds in enumerate(OBSERVED):
        surface = ("chat", "messages")[i % 2]
        ours.stats.observe(ours.stats.latency, surface, seconds)
        latency.labels(surface).observe(seconds)
        ours.stats.request(surface, "p", "m", 200 if i % 3 else 502)
        requests.labels(surface, "p", "m", "200" if i % 3 else "502").inc()
        ours.stats.add_usage("p", "m", "k", (0, i, 0, 2 * i), 0.0)
        if i:
            tokens.labels("p", "m", "output").inc(i)
            tokens.labels("p", "m", "cache_write").inc(2 * i)
    for prefix in (
        "switchboard_request_duration_seconds",
        "switchboard_requests_total",
        "switchboard_tokens_total",
    ):
        assert _samples(ours.registry, prefix) == _samples(reference, prefix)
