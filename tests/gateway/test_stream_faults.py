"""Upstream failures a real gateway process must catch, against fault-injecting fake upstreams.

Covers (issue #10 items 2 and 4):
- stream fallback on an in-stream error event sent after HTTP 200 and before the first content
  (Anthropic `event: error` overloaded_error after `message_start`, an OpenAI Chat
  `{"error": ...}` chunk, Responses `response.failed` and `error`), for every upstream API and
  every client API: the next candidate answers, the client sees one clean stream;
- the same error after the first content: the client's stream ends with an error event in its
  own API's shape, and the access log (status 502), `switchboard_requests_total{status="502"}`
  and `switchboard_upstream_errors_total{kind="stream_error"}` say so;
- answers checked: a same-API 200 without the API's shape, and an SSE stream whose events are
  not JSON, fall back before the first byte and end with an error event after it;
- a provider's 401/403 is a 502 that names the provider and the fix, never the client's own
  auth error; an upstream error that echoes the provider key is scrubbed and cut, in the
  client's answer and in the gateway's log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.gateway.conftest import (
    KEY,
    PROVIDER_KEY,
    SECRET_LABEL,
    Gateway,
    Upstreams,
    render_text,
    start_gateway,
)
from tests.support import wait

pytestmark = pytest.mark.gateway

DIALECTS = ("chat", "resp", "anth")
"""The fake upstreams (conftest `upstreams`): vLLM Chat, Responses, Anthropic Messages."""
CLIENTS = ("chat", "responses", "messages")
FALLBACK = {"chat": "anth", "resp": "chat", "anth": "chat"}
"""The working candidate behind each failing one: another provider."""
LATE = {"chat": 2, "resp": 5, "anth": 4}
"""Events each fake sends up to and including its first text delta. The order of events decides
(error before the first content: fallback; after: error event), however the upstream's bytes
are cut into reads."""
DONE = {
    "chat": "data: [DONE]",
    "responses": "event: response.completed",
    "messages": "message_stop",
}

MODELS = {
    "chat": [
        "m",
        "m@error_event_after=1",
        f"m@error_event_after={LATE['chat']}",
        f"m@error_event_after={LATE['chat']},echo_key",
        "m@bad_shape",
        "m@bad_sse=0",
        "m@bad_sse=2",
        "m@unauthorized,echo_key",
        "m@status=403",
        "m@status=500,echo_key",
    ],
    "resp": [
        "m",
        "m@error_event_after=1",
        "m@error_event_after=1,error_event=error",
        f"m@error_event_after={LATE['resp']}",
        "m@bad_shape",
        "m@bad_sse=0",
        "m@bad_sse=5",
    ],
    "anth": [
        "m",
        "m@error_event_after=1",
        f"m@error_event_after={LATE['anth']}",
        "m@bad_shape",
        "m@bad_sse=0",
        "m@bad_sse=4",
    ],
}


def _agents() -> dict[str, list[str]]:
    agents: dict[str, list[str]] = {}
    for up in DIALECTS:
        back = f"{FALLBACK[up]}:m"
        agents[f"early-{up}"] = [f"{up}:m@error_event_after=1", back]
        agents[f"late-{up}"] = [f"{up}:m@error_event_after={LATE[up]}", back]
        agents[f"shape-{up}"] = [f"{up}:m@bad_shape", back]
        agents[f"sse-{up}"] = [f"{up}:m@bad_sse=0", back]
    agents["early-resp-error"] = ["resp:m@error_event_after=1,error_event=error", "chat:m"]
    agents["auth-401"] = ["chat:m@unauthorized,echo_key", "anth:m"]
    agents["auth-403"] = ["chat:m@status=403", "anth:m"]
    return agents


def manifests(u: Upstreams) -> str:
    ports = {"chat": u.chat, "resp": u.responses, "anth": u.anthropic}
    apis = {"chat": "openai-completions", "resp": "openai-responses", "anth": "anthropic-messages"}
    out = ""
    for name in DIALECTS:
        base = f"http://127.0.0.1:{ports[name]}" + ("" if name == "anth" else "/v1")
        models = "".join(f'    - {{id: "{m}", maxTokens: 512}}\n' for m in MODELS[name])
        out += (
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
            f"metadata: {{name: {name}}}\nspec:\n  baseUrl: {base}\n  api: {apis[name]}\n"
            "  apiKeySecretRef: {name: provider-key, key: key}\n"
            f"  models:\n{models}---\n"
        )
    for agent, chain in _agents().items():
        out += (
            "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\n"
            f"metadata: {{name: {agent}}}\nspec:\n  model: '{chain[0]}'\n"
            f"  fallbacks: {chain[1:]}\n---\n"
        )
    return out + keys_manifest()


@pytest.fixture(scope="module")
def gw(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("stream-faults")
    served = start_gateway(render_text(manifests(upstreams), work), work / "gateway.log")
    yield served
    served.process.stop()


def body(client: str, model: str, *, stream: bool) -> dict[str, Any]:
    if client == "chat":
        return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if client == "responses":
        return {"model": model, "input": "hi", "stream": stream}
    return {
        "model": model,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }


PATHS = {"chat": "chat/completions", "responses": "responses", "messages": "messages"}


def call(gw: Gateway, client: str, model: str, *, stream: bool) -> tuple[httpx.Response, str]:
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/{PATHS[client]}",
        headers={"authorization": f"Bearer {KEY}"},
        json=body(client, model, stream=stream),
        timeout=30,
    ) as response:
        text = response.read().decode()
    return response, text


def access_lines(gw: Gateway, model: str) -> list[dict[str, Any]]:
    lines = []
    for line in gw.log_text.splitlines():
        if line.startswith("{") and '"surface"' in line:
            entry = orjson.loads(line)
            if entry.get("model") == model:
                lines.append(entry)
    return lines


def next_line(gw: Gateway, model: str, seen: int) -> dict[str, Any]:
    """The access-log line after the `seen` ones for `model` (lines are flushed every 200 ms)."""
    lines = wait.wait_for(
        lambda: (got := access_lines(gw, model)) and len(got) > seen and got,
        f"an access-log line for {model}",
        10,
    )
    return lines[seen]


def keys_manifest() -> str:
    """The provider key, the client key `full` and an AccessKeyConfig that allows everything:
    the tail of every manifest set of this module and test_cancellation.py."""
    return (
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: provider-key, labels: {SECRET_LABEL}}}\n"
        f"stringData: {{key: {PROVIDER_KEY}}}\n---\n"
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: keys, labels: {SECRET_LABEL}}}\nstringData: {{full: {KEY}}}\n"
        "---\napiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\n"
        "metadata: {name: full}\n"
        "spec:\n  keys: [{name: full, secretRef: {name: keys, key: full}}]\n"
        "  allowedProviders: ['*']\n  allowedAgents: ['*']\n"
    )


def wait_metric(gw: Gateway, name: str, value: float, **labels: str) -> None:
    """Until the metric reaches `value` (a request is recorded once its handler returns)."""
    wait.wait_for(lambda: gw.metric(name, **labels) >= value, f"{name}{labels} at {value}", 10)
    assert gw.metric(name, **labels) == value


def assert_error_event(client: str, text: str) -> None:
    """The stream ends with an error event in the client's own API's shape."""
    events = [e for e in text.split("\n\n") if e.strip()]
    last = events[-1]
    if client == "messages":
        assert last.startswith("event: error\ndata: "), last
        data = orjson.loads(last.split("data: ", 1)[1])
        assert data["type"] == "error" and data["error"]["message"]
    elif client == "responses":
        assert last.startswith(("event: error\n", "event: response.failed\n")), last
    else:
        data = orjson.loads(last.removeprefix("data: "))
        assert data["error"]["message"], last
    assert DONE[client] not in text


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("agent", [*(f"early-{d}" for d in DIALECTS), "early-resp-error"])
def test_error_event_before_content_falls_back(gw: Gateway, agent: str, client: str) -> None:
    up = agent.split("-")[1]
    before = gw.metric("switchboard_fallbacks_total", provider=up, reason="stream_error")
    seen = len(access_lines(gw, agent))
    response, text = call(gw, client, agent, stream=True)
    assert response.status_code == 200
    assert response.headers["x-switchboard-attempts"] == "2"
    assert response.headers["x-switchboard-provider"] == FALLBACK[up]
    assert DONE[client] in text and "Overloaded" not in text and "said:" in text
    wait_metric(gw, "switchboard_fallbacks_total", before + 1, provider=up, reason="stream_error")
    line = next_line(gw, agent, seen)
    assert line["status"] == 200 and line["fallbacks"] == [f"{up}:{_first(agent)}:stream_error"]


def _first(agent: str) -> str:
    return _agents()[agent][0].split(":", 1)[1]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("up", DIALECTS)
def test_error_event_after_content_is_a_clean_error(gw: Gateway, up: str, client: str) -> None:
    agent = f"late-{up}"
    errors = gw.metric("switchboard_upstream_errors_total", provider=up, kind="stream_error")
    failed = gw.metric("switchboard_requests_total", provider=up, status="502")
    seen = len(access_lines(gw, agent))
    response, text = call(gw, client, agent, stream=True)
    assert response.status_code == 200
    assert response.headers["x-switchboard-attempts"] == "1"
    assert "You" in text
    assert_error_event(client, text)
    line = next_line(gw, agent, seen)
    assert line["status"] == 502 and "mid-stream" in line["error"]
    wait_metric(gw, "switchboard_requests_total", failed + 1, provider=up, status="502")
    wait_metric(
        gw, "switchboard_upstream_errors_total", errors + 1, provider=up, kind="stream_error"
    )


def test_echoed_key_in_an_error_event_is_scrubbed(gw: Gateway) -> None:
    model = f"chat:m@error_event_after={LATE['chat']},echo_key"
    response, text = call(gw, "chat", model, stream=True)
    assert response.status_code == 200
    assert_error_event("chat", text)
    assert "[redacted]" in text
    assert PROVIDER_KEY not in text and PROVIDER_KEY not in gw.log_text


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("up", DIALECTS)
def test_answer_without_the_api_shape_falls_back(
    gw: Gateway, up: str, client: str, stream: bool
) -> None:
    """Non-stream: a 200 `{"ok": true}`; stream: a `data:` line that is not JSON."""
    agent = f"shape-{up}" if not stream else f"sse-{up}"
    seen = len(access_lines(gw, agent))
    response, text = call(gw, client, agent, stream=stream)
    assert response.status_code == 200, text
    assert response.headers["x-switchboard-attempts"] == "2"
    assert response.headers["x-switchboard-provider"] == FALLBACK[up]
    assert "said:" in text and "Bad Gateway" not in text
    kind = "stream_error" if stream else "bad_answer"
    assert next_line(gw, agent, seen)["fallbacks"][0].endswith(f":{kind}")


@pytest.mark.parametrize("up", DIALECTS)
def test_answer_without_the_api_shape_alone_is_a_502(gw: Gateway, up: str) -> None:
    client = {"chat": "chat", "resp": "responses", "anth": "messages"}[up]
    response, text = call(gw, client, f"{up}:m@bad_shape", stream=False)
    assert response.status_code == 502
    assert "unexpected shape" in text


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("up", DIALECTS)
def test_undecodable_sse_after_content_is_a_clean_error(gw: Gateway, up: str, client: str) -> None:
    model = f"{up}:m@bad_sse={LATE[up]}"
    seen = len(access_lines(gw, model))
    response, text = call(gw, client, model, stream=True)
    assert response.status_code == 200
    assert "You" in text and "Bad Gateway" not in text
    assert_error_event(client, text)
    assert next_line(gw, model, seen)["status"] == 502


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("client", CLIENTS)
def test_provider_auth_failure_is_a_502_naming_the_provider(
    gw: Gateway, client: str, status: int
) -> None:
    model = "chat:m@unauthorized,echo_key" if status == 401 else "chat:m@status=403"
    response, text = call(gw, client, model, stream=False)
    assert response.status_code == 502, text
    message = orjson.loads(text)["error"]["message"]
    assert f"provider 'chat' rejected its credentials (HTTP {status})" in message
    assert "apiKeySecretRef" in message
    assert PROVIDER_KEY not in text and PROVIDER_KEY not in gw.log_text
    # With another candidate, the agent answers from it.
    agent = f"auth-{status}"
    response, text = call(gw, client, agent, stream=False)
    assert response.status_code == 200 and response.headers["x-switchboard-provider"] == "anth"


@pytest.mark.parametrize("client", CLIENTS)
def test_echoed_provider_key_is_scrubbed_and_cut(gw: Gateway, client: str) -> None:
    response, text = call(gw, client, "chat:m@status=500,echo_key", stream=False)
    assert response.status_code == 502
    message = orjson.loads(text)["error"]["message"]
    assert "[redacted]" in message and PROVIDER_KEY not in text
    assert len(message) < 700  # the upstream's 2,000-character text, cut to 512
    assert PROVIDER_KEY not in gw.log_text


def test_log_lines_are_json(gw: Gateway) -> None:
    """The access-log reader above sees every request line (guards the helper itself)."""
    seen = len(access_lines(gw, "chat:m"))
    call(gw, "chat", "chat:m", stream=False)
    assert next_line(gw, "chat:m", seen)["status"] == 200
