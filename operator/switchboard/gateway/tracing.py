"""OpenTelemetry traces of the request path: off unless the standard `OTEL_*` environment asks.

One SERVER span per request (`POST /v1/chat/completions`), one CLIENT child span per attempt
(`chat <model>`): a fallback is a failed attempt (`error.type` = the fallback reason: connect,
status_5xx, ...) followed by the next one. Attributes follow the OpenTelemetry GenAI semantic
conventions (`gen_ai.*`, `server.address`) plus `switchboard.key` (the key's *name*, never the
key), `switchboard.agent` and `switchboard.cost_usd`. The client's `traceparent` (W3C, or what
`OTEL_PROPAGATORS` names) is the root span's parent. No prompt text unless
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`; completions are never recorded.

Cost when off: `Tracing.from_env` returns None, the request path checks `tracing is None` once
per request and creates nothing. When on, a request records only timestamps while it runs (a
`Trace`); its spans are made, with those timestamps, when the request is over (`finish`, from
the accounting), so a stream's span ends with the stream and carries its final usage. The SDK's
batch processor exports them from its own thread over OTLP/HTTP (protobuf).

Turned on by (docs/operations.md, "Traces"): `OTEL_TRACES_EXPORTER=otlp`, or an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) with no exporter named.
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off. The SDK reads the rest:
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`,
`OTEL_EXPORTER_OTLP_*` (headers, timeout, compression, certificates).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.errors import SwitchboardError
from switchboard.gateway.errors import clip

if TYPE_CHECKING:
    from aiohttp import web
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

    from switchboard.gateway.accounting import Outcome
    from switchboard.gateway.table import Route, Target

log = logging.getLogger("switchboard.gateway")

SERVICE_NAME = "switchboard-gateway"
"""`service.name` unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name one."""
CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_SCOPE = "switchboard.gateway"
_TRUE = ("1", "true", "yes", "on")


class TracingError(SwitchboardError):
    """The OTEL_* environment asks for something this gateway cannot do."""


def wanted(environ: Mapping[str, str]) -> bool:
    """Does this environment turn tracing on? (See the module docstring.) TracingError for
    settings the gateway cannot follow: `switchboard gateway` checks them before it serves."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    exporters = {
        e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()
    }
    if exporters:
        if exporters - {"otlp", "none"}:
            raise TracingError(
                f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']!r}: the gateway exports "
                "traces over OTLP only; set it to 'otlp' (or 'none')"
            )
        on = "otlp" in exporters
    else:
        on = bool(
            environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if on and protocol not in ("", "http/protobuf"):
        raise TracingError(
            f"OTLP protocol {protocol!r}: the gateway sends OTLP over HTTP (protobuf); set "
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and point the endpoint at the "
            "receiver's HTTP port (4318 by default)"
        )
    return on


class Tracing:
    """The tracer of one gateway process, made on startup (after a `--workers` fork: the batch
    processor's export thread must belong to the process that ends spans)."""

    def __init__(self, provider: TracerProvider, *, capture_content: bool = False) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer(_SCOPE)
        self.capture_content = capture_content

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Tracing | None:
        """A Tracing exporting over OTLP/HTTP, or None when the environment leaves it off."""
        if not wanted(environ):
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes: dict[str, str] = {}
        named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""
        )
        if not named:
            attributes["service.name"] = SERVICE_NAME
        # The sampler (OTEL_TRACES_SAMPLER, _ARG) and the exporter's settings come from the
        # environment through the SDK itself.
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        capture = environ.get(CAPTURE_CONTENT, "").strip().lower() in _TRUE
        log.info(
            "tracing on: OTLP/HTTP to %s",
            environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or "http://localhost:4318",
        )
        return cls(provider, capture_content=capture)

    def begin(self, request: web.Request) -> Trace:
        return Trace(self, request)

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout) and stop the thread."""
        self.provider.shutdown()


class Trace:
    """One request's timestamps while it runs; its spans once it is over (`finish`)."""

    __slots__ = (
        "agent",
        "attempts",
        "carrier",
        "content",
        "method",
        "path",
        "start",
        "tracing",
    )

    def __init__(self, tracing: Tracing, request: web.Request) -> None:
        self.tracing = tracing
        self.start = time.time_ns()
        self.carrier = request.headers
        self.method = request.method
        self.path = request.path
        self.agent: str | None = None
        self.content: str | None = None
        self.attempts: list[list[Any]] = []
        """Per attempt: [target, start ns, end ns or None, failure kind or None]."""

    def attempt(self, target: Target, route: Route, body: Mapping[str, Any]) -> None:
        """An attempt starts on `target` (the hook at the top of the fallback loop)."""
        now = time.time_ns()
        if self.attempts and self.attempts[-1][2] is None:
            self.attempts[-1][2] = now
        self.attempts.append([target, now, None, None])
        if route.agent:
            self.agent = route.name
        if self.tracing.capture_content and self.content is None:
            messages = body.get("messages", body.get("input"))
            if messages is not None:
                self.content = orjson.dumps(messages).decode()

    def failed(self, kind: str) -> None:
        """The current attempt failed with this fallback reason."""
        if self.attempts:
            last = self.attempts[-1]
            last[2] = time.time_ns()
            last[3] = kind

    def finish(self, out: Outcome) -> str:
        """Make and end the request's spans; the trace id (32 hex digits) for the access log."""
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        tracer = self.tracing.tracer
        end = time.time_ns()
        parent = propagate.extract(self.carrier)
        root = tracer.start_span(
            f"{self.method} {self.path}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=self.start,
        )
        # Logged sampled or not: a client that sent a traceparent finds its request either way.
        trace_id = f"{root.get_span_context().trace_id:032x}"
        if not root.is_recording():  # sampled out: no attributes, no attempt spans
            return trace_id
        operation = "chat"
        attrs: dict[str, Any] = {
            "http.request.method": self.method,
            "url.path": self.path,
            "http.response.status_code": out.status,
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": clip(out.asked),
            "switchboard.surface": out.surface.value,
            "switchboard.attempts": out.attempts,
            "switchboard.cost_usd": out.cost,
        }
        if out.key:
            attrs["switchboard.key"] = out.key
        if self.agent:
            attrs["switchboard.agent"] = self.agent
        if out.fallbacks:
            attrs["switchboard.fallbacks"] = list(out.fallbacks)
        if out.target is not None:
            attrs["gen_ai.provider.name"] = out.target.provider
            attrs["gen_ai.response.model"] = clip(out.target.model_id)
        if out.usage is not None:
            attrs.update(_usage(out))
        if out.status >= 400:
            attrs["error.type"] = str(out.status)
        if self.content is not None:
            attrs["gen_ai.input.messages"] = self.content
        root.set_attributes(attrs)
        if out.status >= 500:
            root.set_status(Status(StatusCode.ERROR))
        context = trace.set_span_in_context(root, parent)
        for i, (target, start, stop, kind) in enumerate(self.attempts):
            served = i == len(self.attempts) - 1 and kind is None
            a: dict[str, Any] = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": target.provider,
                "gen_ai.request.model": clip(target.model_id),
                "server.address": target.endpoint.host,
                "server.port": target.endpoint.port,
                "switchboard.attempt": i + 1,
            }
            if kind is not None:
                a["error.type"] = kind
            elif served:
                a["gen_ai.response.model"] = clip(target.model_id)
                if out.usage is not None:
                    a.update(_usage(out))
                    a["switchboard.cost_usd"] = out.cost
                if out.status >= 500:
                    a["error.type"] = str(out.status)
            span = tracer.start_span(
                f"{operation} {clip(target.model_id)}",
                context=context,
                kind=SpanKind.CLIENT,
                attributes=a,
                start_time=start,
            )
            if "error.type" in a:
                span.set_status(Status(StatusCode.ERROR, a["error.type"]))
            span.end(end_time=stop if stop is not None else end)
        root.end(end_time=end)
        return trace_id


def _usage(out: Outcome) -> dict[str, int]:
    usage = out.usage
    assert usage is not None
    # The conventions count cached tokens in input_tokens; Usage keeps them apart.
    return {
        "gen_ai.usage.input_tokens": usage.input_tokens
        + usage.cache_read_tokens
        + usage.cache_write_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
    }
