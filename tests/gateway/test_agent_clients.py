"""Coding agents' own requests through a real gateway process to the fake upstreams (issue #11).

Covers the three failures found with real clients, each checked on the wire with the fake
upstream's request record (`GET /_requests`):
- Claude Code's first request (a `{"role": "system"}` turn inside `messages`, sent with
  `anthropic-beta: mid-conversation-system-2026-04-07`, adaptive thinking, `output_config`,
  `context_management`, `metadata.user_id`) on Chat and Responses upstreams, streamed and not:
  answered, the system turn in place as a system message / developer item, thinking as the
  reasoning effort of a `reasoning: true` model, `context_management` not sent;
- Codex CLI's default tools (a `namespace` tool wrapping functions, hosted `web_search`) on Chat
  and Messages upstreams: answered, the namespace flattened upstream and its call returned
  under the namespace and name the client knows, `web_search` left out and named in
  `x-switchboard-dropped-tools` and the access log; an Agent with `hostedTools: refuse`
  answers 400 instead;
- the client's `anthropic-beta` header reaches an Anthropic upstream merged with the
  provider's own `anthropic-beta`; a request without it sends the provider's alone.
Also: `GET /` and `HEAD /` answer 200 (clients probe them).
"""

from __future__ import annotations

import time
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

pytestmark = pytest.mark.gateway

PROVIDER_BETA = "provider-beta-2025-01-01"


def _manifests(u: Upstreams) -> str:
    def provider(name: str, port: int, api: str, extra: str = "") -> str:
        base = f"http://127.0.0.1:{port}" + ("" if api == "anthropic-messages" else "/v1")
        return (
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
            f"metadata: {{name: {name}}}\nspec:\n  baseUrl: {base}\n  api: {api}\n"
            f"  apiKeySecretRef: {{name: provider-key, key: key}}\n{extra}"
            "  models:\n    - {id: m, reasoning: true, contextWindow: 100000, maxTokens: 512, "
            "cost: {}}\n---\n"
        )

    return (
        provider("chat", u.chat, "openai-completions")
        + provider("resp", u.responses, "openai-responses")
        + provider(
            "anth",
            u.anthropic,
            "anthropic-messages",
            f"  headers: {{anthropic-beta: {PROVIDER_BETA}}}\n",
        )
        + "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\nmetadata: {name: strict-tools}\n"
        "spec:\n  model: 'chat:m'\n  hostedTools: refuse\n---\n"
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: provider-key, labels: {SECRET_LABEL}}}\n"
        f"stringData: {{key: {PROVIDER_KEY}}}\n---\n"
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: keys, labels: {SECRET_LABEL}}}\n"
        f"stringData: {{full: {KEY}}}\n"
        "---\napiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\n"
        "metadata: {name: full}\nspec:\n"
        "  keys: [{name: full, secretRef: {name: keys, key: full}}]\n"
        "  allowedProviders: ['*']\n  allowedAgents: ['*']\n"
    )


@pytest.fixture(scope="module")
def agents_gateway(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("agents-gateway")
    served = start_gateway(render_text(_manifests(upstreams), work), work / "gateway.log")
    yield served
    served.process.stop()


def _port(u: Upstreams, provider: str) -> int:
    return {"chat": u.chat, "resp": u.responses, "anth": u.anthropic}[provider]


def _last_request(u: Upstreams, provider: str) -> dict[str, Any]:
    records = httpx.get(f"http://127.0.0.1:{_port(u, provider)}/_requests").json()
    assert records, f"{provider} received no request"
    last: dict[str, Any] = records[-1]
    return last


def _clear(u: Upstreams, provider: str) -> None:
    httpx.delete(f"http://127.0.0.1:{_port(u, provider)}/_requests")


def _header(record: dict[str, Any], name: str) -> str | None:
    for key, value in record["headers"].items():
        if key.lower() == name:
            return str(value)
    return None


def _post(gw: Gateway, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}{path}",
        content=orjson.dumps(body),
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json", **headers},
        timeout=30,
    )


def _sse_data(text: str) -> list[dict[str, Any]]:
    return [
        orjson.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


CLAUDE_CODE_BETA = "claude-code-20250219,mid-conversation-system-2026-04-07"


def _claude_code(model: str, stream: bool) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
            {"role": "system", "content": [{"type": "text", "text": "The user is in /work."}]},
            {"role": "system", "content": ""},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
            {"role": "user", "content": [{"type": "text", "text": "write the file"}]},
        ],
        "tools": [
            {
                "name": "Write",
                "description": "Write a file",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
            }
        ],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": "user_1_session_2"},
    }


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
@pytest.mark.parametrize("provider", ["chat", "resp"])
def test_claude_code_on_chat_and_responses_upstreams(
    agents_gateway: Gateway, upstreams: Upstreams, provider: str, stream: bool
) -> None:
    _clear(upstreams, provider)
    response = _post(
        agents_gateway,
        "/v1/messages",
        _claude_code(f"{provider}:m", stream),
        **{"anthropic-beta": CLAUDE_CODE_BETA, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.text
    if stream:
        events = _sse_data(response.text)
        text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
        assert events[-1]["type"] == "message_stop"
    else:
        text = "".join(b["text"] for b in response.json()["content"] if b["type"] == "text")
    assert text == "You said: write the file"
    sent = _last_request(upstreams, provider)["body"]
    assert "context_management" not in sent and "output_config" not in sent
    if provider == "chat":
        roles = [(m["role"], m["content"]) for m in sent["messages"]]
        assert roles[:3] == [
            ("system", "You are Claude Code."),
            ("user", "hello there"),
            ("system", "The user is in /work."),  # in place; the empty one dropped
        ]
        assert [r for r, _ in roles[3:]] == ["assistant", "user"]
        assert sent["reasoning_effort"] == "medium"
    else:
        assert sent["instructions"] == "You are Claude Code."
        assert sent["input"][1] == {"role": "developer", "content": "The user is in /work."}
        assert len(sent["input"]) == 4
        assert sent["reasoning"] == {"effort": "medium"}
    assert sent["user"] == "user_1_session_2"


NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Tools in the multi_agent_v1 namespace.",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "description": "Spawn an agent",
            "strict": False,
            "parameters": {"type": "object", "properties": {"message": {"type": "string"}}},
        }
    ],
}
SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Run a command",
    "strict": False,
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
}


def _codex(model: str, stream: bool) -> dict[str, Any]:
    return {
        "model": model,
        "instructions": "You are Codex.",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "sandbox"}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "what is the weather"}],
            },
        ],
        "tools": [NAMESPACE, SHELL, {"type": "web_search", "external_web_access": False}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": stream,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "conversation-1",
        "client_metadata": {"originator": "codex_exec"},
    }


@pytest.mark.parametrize("stream", [False, True], ids=["once", "stream"])
@pytest.mark.parametrize("provider", ["chat", "anth"])
def test_codex_default_tools_on_chat_and_messages_upstreams(
    agents_gateway: Gateway, upstreams: Upstreams, provider: str, stream: bool
) -> None:
    _clear(upstreams, provider)
    response = _post(agents_gateway, "/v1/responses", _codex(f"{provider}:m", stream))
    assert response.status_code == 200, response.text
    assert response.headers["x-switchboard-dropped-tools"] == "web_search"
    if stream:
        done = [e for e in _sse_data(response.text) if e["type"] == "response.completed"]
        output = done[0]["response"]["output"]
    else:
        output = response.json()["output"]
    calls = [item for item in output if item["type"] == "function_call"]
    assert [(c["namespace"], c["name"]) for c in calls] == [("multi_agent_v1", "spawn_agent")]
    sent = _last_request(upstreams, provider)["body"]
    if provider == "chat":
        names = [t["function"]["name"] for t in sent["tools"]]
    else:
        names = [t["name"] for t in sent["tools"]]
    assert names == ["multi_agent_v1__spawn_agent", "shell"]  # web_search left out
    # and named in the access log line (flushed every 200 ms: wait for it, with a deadline)
    deadline = time.monotonic() + 10
    while '"dropped_tools":["web_search"]' not in agents_gateway.log_text:
        assert time.monotonic() < deadline, "no access log line names the dropped tool"
        time.sleep(0.05)


def test_hosted_tools_refused_when_the_agent_says_so(agents_gateway: Gateway) -> None:
    response = _post(agents_gateway, "/v1/responses", _codex("strict-tools", False))
    assert response.status_code == 400
    assert "web_search" in response.json()["error"]["message"]


def test_anthropic_beta_merged_with_the_providers(
    agents_gateway: Gateway, upstreams: Upstreams
) -> None:
    body = {"model": "anth:m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    _clear(upstreams, "anth")
    beta = "context-management-2025-06-27,mid-conversation-system-2026-04-07"
    response = _post(agents_gateway, "/v1/messages", body, **{"anthropic-beta": beta})
    assert response.status_code == 200, response.text
    sent = _header(_last_request(upstreams, "anth"), "anthropic-beta")
    assert sent == f"{PROVIDER_BETA},{beta}"
    _clear(upstreams, "anth")
    response = _post(agents_gateway, "/v1/messages", body)
    assert response.status_code == 200, response.text
    assert _header(_last_request(upstreams, "anth"), "anthropic-beta") == PROVIDER_BETA


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_root_answers_200(agents_gateway: Gateway, method: str) -> None:
    assert httpx.request(method, f"{agents_gateway.url}/", timeout=10).status_code == 200
