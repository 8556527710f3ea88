"""What a request did, for the metrics, the access log and the response headers: the
Outcome of one request, its cost, and the recording of both once the request is over."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from switchboard.dialects.types import Dialect, Usage
from switchboard.gateway import errors
from switchboard.gateway.accesslog import AccessLog
from switchboard.gateway.limits import limiter as lim
from switchboard.gateway.metrics import Metrics
from switchboard.gateway.table import Target
from switchboard.gateway.tracing import Trace


@dataclass
class Outcome:
    """What one request did, for the log line, the metrics and the response headers."""

    surface: Dialect
    asked: str = ""
    key: str = ""
    target: Target | None = None
    attempts: int = 0
    status: int = 200
    usage: Usage | None = None
    cost: float = 0.0
    ttft: float | None = None
    fallbacks: list[str] = field(default_factory=list)
    error: str | None = None
    dropped: list[str] | None = None
    """Hosted tools the translator left out (`x-switchboard-dropped-tools`)."""
    ticket: lim.Ticket | None = None
    """The key's limits reservation (gateway/limits/), settled once when the request ends."""
    trace: Trace | None = None
    """Set only while tracing is on (gateway/tracing.py)."""


class Accounting:
    """Records finished requests into the metrics and the access log."""

    def __init__(self, metrics: Metrics, access_log: AccessLog) -> None:
        self.metrics = metrics
        self.access_log = access_log

    def record(self, out: Outcome, seconds: float) -> None:
        """One finished request: its metrics and its access-log line."""
        m = self.metrics
        provider = out.target.provider if out.target else ""
        model = out.target.label if out.target else ""
        surface = out.surface.value
        stats = m.stats
        stats.request(surface, provider, model, out.status)
        stats.observe(stats.latency, surface, seconds)
        if out.ttft is not None:
            stats.observe(stats.ttft, surface, out.ttft)
        usage = out.usage
        if usage is not None:
            stats.add_usage(
                provider,
                model,
                out.key,
                (
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_tokens,
                    usage.cache_write_tokens,
                ),
                out.cost,
            )
        trace_id = out.trace.finish(out) if out.trace is not None else None
        if self.access_log.enabled:
            line: dict[str, Any] = {
                "surface": surface,
                "key": out.key,
                "model": errors.clip(out.asked),
                "provider": provider or None,
                "served_model": errors.clip(out.target.model_id) if out.target else None,
                "api": out.target.api if out.target else None,
                "attempts": out.attempts,
                "fallbacks": out.fallbacks,
                "status": out.status,
                "latency_ms": round(seconds * 1000, 3),
                "ttft_ms": round(out.ttft * 1000, 3) if out.ttft is not None else None,
                "cost_usd": round(out.cost, 8),
            }
            if usage is not None:
                line["tokens"] = {
                    "input": usage.input_tokens,
                    "output": usage.output_tokens,
                    "cache_read": usage.cache_read_tokens,
                    "cache_write": usage.cache_write_tokens,
                }
            if out.error:
                line["error"] = out.error
            if out.dropped:
                line["dropped_tools"] = out.dropped
            if trace_id:
                line["trace_id"] = trace_id
            self.access_log.write(line)


def cost(target: Target, usage: Usage) -> float:
    meta = target.meta
    if meta is None:
        return 0.0
    p = meta.price
    return (
        usage.input_tokens * p.input
        + usage.output_tokens * p.output
        + usage.cache_read_tokens * p.cache_read
        + usage.cache_write_tokens * p.cache_write
    ) / 1_000_000


def served_headers(out: Outcome) -> dict[str, str]:
    target = out.target
    assert target is not None
    headers = {
        "x-switchboard-provider": target.provider,
        "x-switchboard-model": target.model_id,
        "x-switchboard-api": target.api,
        "x-switchboard-attempts": str(out.attempts),
    }
    if out.dropped:
        headers["x-switchboard-dropped-tools"] = ",".join(out.dropped)
    return headers
