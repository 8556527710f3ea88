"""OpenTelemetry traces from a real gateway process to a real OTLP receiver (the collector of
tools/otelcol), read back span by span.

Covers:
- a Chat request to an agent whose first candidate is down: one trace of three spans, the
  root SERVER span (child of the client's `traceparent`), a failed CLIENT attempt
  (`error.type=connect`, status ERROR) and the served attempt with usage and cost; GenAI
  attributes (operation, provider, request/response model, usage incl. cache tokens,
  `server.address`), the key's name and the agent; the trace id in the access-log line;
- a request without a `traceparent`: a new trace, root span without a parent;
- a stream: the root span ends after the last byte and carries the stream's final usage;
- no prompt or completion text and no key (client or provider) anywhere in what was exported;
  with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true the prompt (only) on the root;
- the resource's `service.name` from OTEL_SERVICE_NAME;
- an unsupported OTLP protocol or exporter stops `switchboard gateway` at startup with a
  message naming the variable;
- tracing off (no OTEL_* variables): no `trace_id` in the access log.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import (
    KEY,
    PRICES,
    PROVIDER_KEY,
    Gateway,
    Upstreams,
    manifests,
    render_text,
    start_gateway,
)
from tests.observability.conftest import (
    TRACE_ENV,
    Collector,
    access_lines,
    attrs,
    wait_for,
)

pytestmark = pytest.mark.gateway
PROMPT = "the secret recipe is 42 parts basil"
SERVER, CLIENT = 2, 3
STATUS_ERROR = 2


def post(gateway: Gateway, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {KEY}", **headers},
        timeout=30,
    )


def line_for(gateway: Gateway, trace_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((x for x in access_lines(gateway) if x.get("trace_id") == trace_id), None)

    line: dict[str, Any] = wait_for(f"the access-log line of trace {trace_id}", found)
    return line


def by_name(spans: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    roots = [s for s in spans if s["kind"] == SERVER]
    assert len(roots) == 1, spans
    attempts = sorted(
        (s for s in spans if s["kind"] == CLIENT), key=lambda s: attrs(s)["switchboard.attempt"]
    )
    return roots[0], attempts


def test_fallback_is_one_trace_under_the_clients_traceparent(
    traced_gateway: Gateway, collector: Collector
) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    response = post(
        traced_gateway,
        {"model": "fb-connect", "messages": [{"role": "user", "content": PROMPT}]},
        traceparent=f"00-{trace_id}-{parent}-01",
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-switchboard-attempts"] == "2"

    spans = collector.trace(trace_id, 3)
    assert len(spans) == 3
    root, (failed, served) = by_name(spans)
    assert root["parentSpanId"] == parent
    assert failed["parentSpanId"] == root["spanId"] == served["parentSpanId"]
    assert root["name"] == "POST /v1/chat/completions"
    assert {s["service"] for s in spans} == {"switchboard-test"}

    r = attrs(root)
    line = line_for(traced_gateway, trace_id)
    assert r["gen_ai.operation.name"] == "chat"
    assert r["gen_ai.request.model"] == "fb-connect"
    assert r["gen_ai.provider.name"] == "chat"
    assert r["gen_ai.response.model"] == "m"
    assert r["switchboard.key"] == "full/full"  # AccessKeyConfig/key name
    assert r["switchboard.agent"] == "fb-connect"
    assert r["http.response.status_code"] == 200
    assert r["switchboard.fallbacks"] == ["dead:m:connect"]
    assert "error.type" not in r

    f = attrs(failed)
    assert f["error.type"] == "connect"
    assert failed["status"]["code"] == STATUS_ERROR
    assert f["gen_ai.provider.name"] == "dead"
    assert f["gen_ai.request.model"] == "m"
    assert f["server.address"] == "127.0.0.1"
    assert "gen_ai.usage.output_tokens" not in f

    s = attrs(served)
    assert "error.type" not in s
    assert served["status"].get("code", 0) != STATUS_ERROR
    assert s["gen_ai.provider.name"] == "chat"
    assert s["gen_ai.response.model"] == "m"
    assert s["server.address"] == "127.0.0.1"
    tokens = line["tokens"]
    assert tokens["output"] > 0
    assert s["gen_ai.usage.output_tokens"] == tokens["output"]
    # The conventions count cached input in input_tokens; the access log keeps them apart.
    assert s["gen_ai.usage.input_tokens"] == (
        tokens["input"] + tokens["cache_read"] + tokens["cache_write"]
    )
    assert s["gen_ai.usage.cache_read.input_tokens"] == tokens["cache_read"] > 0
    assert s["gen_ai.usage.cache_creation.input_tokens"] == tokens["cache_write"]
    want = (
        tokens["input"] * PRICES["input"]
        + tokens["output"] * PRICES["output"]
        + tokens["cache_read"] * PRICES["cacheRead"]
    ) / 1e6
    assert s["switchboard.cost_usd"] == pytest.approx(want) == line["cost_usd"]
    assert r["gen_ai.usage.output_tokens"] == tokens["output"]
    assert r["switchboard.cost_usd"] == pytest.approx(want)
    # Attempts in order, inside the root span.
    assert int(root["startTimeUnixNano"]) <= int(failed["startTimeUnixNano"])
    assert int(failed["endTimeUnixNano"]) <= int(served["startTimeUnixNano"])
    assert int(served["endTimeUnixNano"]) <= int(root["endTimeUnixNano"])


def test_without_traceparent_a_new_trace_starts(
    traced_gateway: Gateway, collector: Collector
) -> None:
    before = len(access_lines(traced_gateway))
    response = post(
        traced_gateway, {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 200
    line = wait_for("the access-log line", lambda: access_lines(traced_gateway)[before:])[-1]
    trace_id = line["trace_id"]
    assert len(trace_id) == 32 and int(trace_id, 16)
    root, attempts = by_name(collector.trace(trace_id, 2))
    assert not root.get("parentSpanId")
    assert len(attempts) == 1 and "error.type" not in attrs(attempts[0])


def test_stream_span_ends_with_the_stream_and_carries_its_usage(
    traced_gateway: Gateway, collector: Collector
) -> None:
    trace_id = secrets.token_hex(16)
    body = {
        "model": "coder",
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST",
        f"{traced_gateway.url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {KEY}", "traceparent": f"00-{trace_id}-{'1' * 16}-01"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    root, (served,) = by_name(collector.trace(trace_id, 2))
    line = line_for(traced_gateway, trace_id)
    assert line["ttft_ms"] is not None
    out = line["tokens"]["output"]
    assert out > 0
    assert attrs(root)["gen_ai.usage.output_tokens"] == out
    assert attrs(served)["gen_ai.usage.output_tokens"] == out
    assert line["cost_usd"] > 0
    assert attrs(served)["switchboard.cost_usd"] == pytest.approx(line["cost_usd"])
    # The usage is complete only after the stream's last event: the spans were ended after it,
    # the served attempt with the request, both after the first token went out.
    assert served["endTimeUnixNano"] == root["endTimeUnixNano"]
    assert int(root["endTimeUnixNano"]) - int(root["startTimeUnixNano"]) >= line["ttft_ms"] * 1e6


def test_no_prompt_no_completion_no_key_exported(
    traced_gateway: Gateway, collector: Collector
) -> None:
    trace_id = secrets.token_hex(16)
    response = post(
        traced_gateway,
        {"model": "coder", "messages": [{"role": "user", "content": PROMPT}]},
        traceparent=f"00-{trace_id}-{'2' * 16}-01",
    )
    assert response.status_code == 200
    completion = response.json()["choices"][0]["message"]["content"]
    spans = collector.trace(trace_id, 2)
    for span in spans:
        assert "gen_ai.input.messages" not in attrs(span)
    exported = collector.out.read_text()
    for secret in (PROMPT, completion, KEY, PROVIDER_KEY):
        assert secret not in exported


def test_failed_request_root_span_names_the_status(
    traced_gateway: Gateway, collector: Collector
) -> None:
    trace_id = secrets.token_hex(16)
    response = post(
        traced_gateway,
        {"model": "fb-all-fail", "messages": [{"role": "user", "content": "hi"}]},
        traceparent=f"00-{trace_id}-{'3' * 16}-01",
    )
    assert response.status_code >= 500
    root, attempts = by_name(collector.trace(trace_id, 3))
    assert attrs(root)["error.type"] == str(response.status_code)
    assert root["status"]["code"] == STATUS_ERROR
    assert [attrs(a)["error.type"] for a in attempts] == ["status_5xx", "connect"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "PROTOCOL"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ],
)
def test_unsupported_otel_settings_stop_the_gateway(
    env: dict[str, str], named: str, tmp_path: Any
) -> None:
    config = tmp_path / "routing.json"
    config.write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "gateway", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot export traces" in result.stdout and named in result.stdout


def test_tracing_off_logs_no_trace_id(gateway: Gateway) -> None:
    before = len(access_lines(gateway))
    response = post(gateway, {"model": "coder", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    lines = wait_for("the access-log line", lambda: access_lines(gateway)[before:])
    assert all("trace_id" not in x for x in lines)


def test_prompt_recorded_only_when_asked(
    upstreams: Upstreams, collector: Collector, tmp_path: Path
) -> None:
    env = {
        **TRACE_ENV,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
    }
    served = start_gateway(
        render_text(manifests(upstreams), tmp_path), tmp_path / "gw.log", env=env
    )
    try:
        trace_id = secrets.token_hex(16)
        messages = [{"role": "user", "content": PROMPT}]
        response = post(
            served,
            {"model": "coder", "messages": messages},
            traceparent=f"00-{trace_id}-{'4' * 16}-01",
        )
        assert response.status_code == 200
        completion = response.json()["choices"][0]["message"]["content"]
        root, _ = by_name(collector.trace(trace_id, 2))
        assert json.loads(attrs(root)["gen_ai.input.messages"]) == messages
        assert completion not in json.dumps(root)
    finally:
        served.process.stop()
