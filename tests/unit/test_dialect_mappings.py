"""Small mappings the goldens exercise only in part.

Covers: the usage convention (uncached input) read from and written back to each dialect, so a
count survives any pair; reasoning effort <-> thinking budget, including a budget that cannot
fit the output limit; Anthropic error types by status; stop reasons round trip between Chat
and Messages; a Chat stream without usage asked keeps the usage for billing but does not show
it to the client.
"""

from __future__ import annotations

import orjson
import pytest

from switchboard.dialects import common, errors, registry, sse
from switchboard.dialects.types import Ctx, Dialect, Usage

USAGE = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=800, cache_write_tokens=50)


def test_usage_round_trips_through_every_dialect() -> None:
    assert common.usage_from_chat(common.chat_usage(USAGE)) == USAGE
    assert common.usage_from_responses(common.responses_usage(USAGE)) == USAGE
    assert common.usage_from_messages(common.messages_usage(USAGE)) == USAGE
    # OpenAI totals include the cache; Anthropic's input_tokens exclude it.
    assert common.chat_usage(USAGE)["prompt_tokens"] == 950
    assert common.messages_usage(USAGE)["input_tokens"] == 100


@pytest.mark.parametrize(
    ("effort", "max_tokens", "thinking"),
    [
        ("low", 8000, {"type": "enabled", "budget_tokens": 2048}),
        ("high", 8000, {"type": "enabled", "budget_tokens": 7999}),
        ("medium", 1000, None),  # no room for the 1024-token minimum
        ("bogus", 8000, None),
        (None, 8000, None),
    ],
)
def test_thinking_for(effort: str | None, max_tokens: int, thinking: object) -> None:
    assert common.thinking_for(effort, max_tokens) == thinking


def test_effort_for() -> None:
    assert common.effort_for({"type": "enabled", "budget_tokens": 2048}) == "low"
    assert common.effort_for({"type": "enabled", "budget_tokens": 10000}) == "medium"
    assert common.effort_for({"type": "enabled", "budget_tokens": 32000}) == "high"
    assert common.effort_for({"type": "disabled"}) is None


def test_thinking_replaces_sampling_settings_on_messages() -> None:
    body = {"model": "m", "input": "hi", "reasoning": {"effort": "low"}, "temperature": 0.3}
    ctx = Ctx("up", "p:up", 8000, False)
    out = registry.get(Dialect.RESPONSES, Dialect.MESSAGES).translate_request(body, ctx)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "temperature" not in out


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (504, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_anthropic_error_types(status: int, kind: str) -> None:
    body = orjson.loads(errors.render_error(Dialect.MESSAGES, status, "m"))
    assert body == {"type": "error", "error": {"type": kind, "message": "m"}}


def test_openai_error_shape_and_type_override() -> None:
    body = orjson.loads(errors.render_error(Dialect.CHAT, 429, "slow", type_="tokens"))
    assert body == {"error": {"message": "slow", "type": "tokens", "param": None, "code": "tokens"}}


@pytest.mark.parametrize("finish", ["stop", "length", "tool_calls", "content_filter"])
def test_finish_reasons_round_trip_through_messages(finish: str) -> None:
    assert common.STOP_TO_FINISH[common.FINISH_TO_STOP[finish]] == finish


def test_chat_stream_usage_is_billed_but_hidden_when_not_asked() -> None:
    translator = registry.get(Dialect.CHAT, Dialect.CHAT).stream(Ctx("up", "p:up", None, True))
    usage_chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }
    assert translator.feed(sse.Event(None, orjson.dumps(usage_chunk))) == b""
    assert translator.usage == Usage(9, 3, 0, 0)
    request = registry.get(Dialect.CHAT, Dialect.CHAT).translate_request(
        {"model": "x", "messages": [], "stream": True}, Ctx("up", "p:up", None, True)
    )
    assert request["stream_options"] == {"include_usage": True}
