"""Small mappings the goldens exercise only in part.

Covers: the usage convention (uncached input) read from and written back to each dialect, so a
count survives any pair; reasoning effort <-> thinking budget, including a budget that cannot
fit the output limit; Anthropic error types by status; stop reasons round trip between Chat
and Messages; a Chat stream without usage asked keeps the usage for billing but does not show
it to the client; pass-through streams read usage however the upstream spaces its JSON
(cache tokens in `message_delta` too) and survive malformed events; a Chat pass-through keeps
the client's output-limit field; Chat tool calls without `index` and a "stop" finish reason
(older Ollama) still reach a Messages client as tool_use; tool ids Anthropic would refuse;
vLLM's `{"object": "error"}` chunk ends every client's stream with that client's error; no
Anthropic thinking with a forced tool or in the middle of a tool loop; Chat tool results with
images reach Messages as image blocks.
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


@pytest.mark.parametrize(
    "data",
    [
        b'{"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3}}',
        b'{"id": "c", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}',
    ],
    ids=["compact", "spaced"],
)
def test_chat_passthrough_reads_usage_however_the_json_is_spaced(data: bytes) -> None:
    translator = registry.get(Dialect.CHAT, Dialect.CHAT).stream(Ctx("up", "p:up", None, True))
    assert translator.feed(sse.Event(None, b'{"id": "c", "usage": null, "choices": []}'))
    assert translator.feed(sse.Event(None, data)) == b""
    assert translator.usage == Usage(9, 3, 0, 0)


@pytest.mark.parametrize("dialect", list(Dialect))
def test_passthrough_streams_survive_malformed_events(dialect: Dialect) -> None:
    translator = registry.get(dialect, dialect).stream(Ctx("up", "p:up", None, True))
    for name in (None, "message_start", "message_delta", "response.completed"):
        translator.feed(sse.Event(name, b'{"usage": {'))
    assert translator.usage == Usage()


def test_messages_passthrough_reads_cache_tokens_from_message_delta() -> None:
    translator = registry.get(Dialect.MESSAGES, Dialect.MESSAGES).stream(
        Ctx("up", "p:up", None, True)
    )
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 5}}}
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 7, "cache_read_input_tokens": 100},
    }
    translator.feed(sse.Event("message_start", orjson.dumps(start)))
    translator.feed(sse.Event("message_delta", orjson.dumps(delta)))
    assert translator.usage == Usage(5, 7, 100, 0)


def test_chat_passthrough_keeps_the_clients_output_limit_field() -> None:
    pair = registry.get(Dialect.CHAT, Dialect.CHAT)
    ctx = Ctx("up", "p:up", 100, False)
    body = {"model": "x", "messages": [], "max_completion_tokens": 5000, "max_tokens": 5000}
    assert pair.translate_request(body, ctx)["max_completion_tokens"] == 100
    assert "max_tokens" not in pair.translate_request(body, ctx)
    assert pair.translate_request({"model": "x", "messages": []}, ctx)["max_tokens"] == 100


def _chunk(delta: dict[str, object], finish: str | None = None) -> sse.Event:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return sse.Event(None, orjson.dumps({"id": "c", "model": "m", "choices": [choice]}))


def test_tool_calls_without_index_and_a_stop_finish_reach_messages_as_tool_use() -> None:
    """Older Ollama: whole tool calls without `index`, then finish_reason "stop"."""
    translator = registry.get(Dialect.MESSAGES, Dialect.CHAT).stream(Ctx("up", "p:up", 9, True))
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"id": "b", "type": "function", "function": {"name": "f", "arguments": '{"x":2}'}},
    ]
    out = translator.feed(_chunk({"role": "assistant", "tool_calls": calls}))
    out += translator.feed(_chunk({}, "stop")) + translator.feed(sse.Event(None, b"[DONE]"))
    events = [orjson.loads(e.data) for e in sse.Decoder().feed(out)]
    starts = [e["content_block"]["id"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["a", "b"]
    inputs = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert inputs == ['{"x":1}', '{"x":2}']
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"


def test_tool_ids_anthropic_refuses_are_rewritten_alike_in_call_and_result() -> None:
    assert common.messages_tool_id("toolu_01-A") == "toolu_01-A"
    assert common.messages_tool_id("functions.get_weather:0") == "functions_get_weather_0"
    assert common.messages_tool_id(None) is None


@pytest.mark.parametrize("client", list(Dialect))
def test_a_vllm_error_chunk_ends_every_clients_stream_with_its_error(client: Dialect) -> None:
    translator = registry.get(client, Dialect.CHAT).stream(Ctx("up", "p:up", 9, True))
    error = {"object": "error", "message": "out of memory", "type": "InternalServerError"}
    out = translator.feed(sse.Event(None, orjson.dumps(error)))
    assert b"out of memory" in out
    assert translator.feed(sse.Event(None, b"[DONE]")) in (b"", sse.DONE)


@pytest.mark.parametrize("client", [Dialect.CHAT, Dialect.RESPONSES])
def test_no_thinking_where_anthropic_would_refuse_it(client: Dialect) -> None:
    pair = registry.get(client, Dialect.MESSAGES)
    ctx = Ctx("up", "p:up", 8000, False)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    if client is Dialect.CHAT:
        ask = {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low"}
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        loop = [
            *ask["messages"],
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]
        forced = {"type": "function", "function": {"name": "f"}}
        key = "messages"
    else:
        tools = [{"type": "function", "name": "f", "parameters": {}}]
        ask = {"input": "hi", "reasoning": {"effort": "low"}}
        loop = [
            {"role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ]
        forced = {"type": "function", "name": "f"}
        key = "input"
    assert "thinking" in pair.translate_request({"model": "m", **ask}, ctx)
    for choice in ("required", forced):
        body = {"model": "m", **ask, "tools": tools, "tool_choice": choice}
        assert "thinking" not in pair.translate_request(body, ctx)
    assert "thinking" not in pair.translate_request({"model": "m", **ask, key: loop}, ctx)


def test_chat_tool_results_with_images_reach_messages_as_blocks() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    text = {"type": "text", "text": "x"}
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "look"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "shot", "arguments": ""}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": [text, image]},
        ],
    }
    out = registry.get(Dialect.CHAT, Dialect.MESSAGES).translate_request(
        body, Ctx("up", "p:up", 100, False)
    )
    result = out["messages"][-1]["content"][0]
    assert [b["type"] for b in result["content"]] == ["text", "image"]
    assert result["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "AAAA",
    }
