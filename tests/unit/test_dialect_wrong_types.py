"""Upstream stream fields of the wrong JSON type, in every direction (docs/translation.md,
"Fields of the wrong type").

Covers: each field a stream reader (`stream_readers.ChatReader`, `MessagesReader`,
`ResponsesReader`) hands to a writer or to the accounting, replaced in a well-formed upstream
stream by each wrong type (number, object, list, null, bool where a string is expected; a
string, float, bool, list or null where an integer is expected), for the two translated
clients of each upstream (6 directions), and the token counts the same-dialect pass-through
reads (`identity.*Stream`). Each row says what the table in the docs says: the client's stream
ends with its dialect's error event (`error`), or the value is ignored and the stream ends
normally (`ignore`). Either way: no exception, exactly one terminal event, every other event
valid for the client's official SDK type (strict), and usage of non-negative integers.
"""

from __future__ import annotations

import copy
from typing import Any

import anthropic.types as at
import orjson
import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from switchboard.dialects import registry, sse
from switchboard.dialects.types import Ctx, Dialect, Usage
from tests.support.sdk_strict import strict

CHAT, MESSAGES, RESPONSES = Dialect.CHAT, Dialect.MESSAGES, Dialect.RESPONSES

EVENT_SDK: dict[Dialect, Any] = {
    CHAT: ChatCompletionChunk,
    RESPONSES: ResponseStreamEvent,
    MESSAGES: at.RawMessageStreamEvent,
}
EVENT_TYPES = {d: TypeAdapter(t) for d, t in EVENT_SDK.items()}

ARGS = '{"city": "Paris"}'


def _chat_choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


CHAT_STREAM: list[Any] = [
    _chat_choice({"role": "assistant", "content": "Hello"}),  # 0
    _chat_choice({"refusal": "no"}),  # 1
    _chat_choice(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                }
            ]
        }
    ),  # 2
    _chat_choice({"tool_calls": [{"index": 0, "function": {"arguments": ARGS}}]}),  # 3
    _chat_choice({}, "tool_calls"),  # 4
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-model",
        "choices": [],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    },  # 5
    "[DONE]",
]

MESSAGES_STREAM: list[Any] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "up-model",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 2},
        },
    },  # 0
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },  # 1
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hmm"},
    },  # 2
    {"type": "content_block_stop", "index": 0},  # 3
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "text_delta", "text": "Hello"},
    },  # 5
    {"type": "content_block_stop", "index": 1},  # 6
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
    },  # 7
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": ARGS},
    },  # 8
    {"type": "content_block_stop", "index": 2},  # 9
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 5},
    },  # 10
    {"type": "message_stop"},  # 11
]

_CALL = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather"}
RESPONSES_STREAM: list[Any] = [
    {
        "type": "response.created",
        "response": {"id": "resp_1", "model": "up-model", "status": "in_progress"},
    },  # 0
    {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hello",
    },  # 1
    {"type": "response.refusal.delta", "item_id": "msg_1", "delta": "no"},  # 2
    {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "delta": "hmm"},  # 3
    {
        "type": "response.output_item.added",
        "output_index": 1,
        "item": {**_CALL, "arguments": "", "status": "in_progress"},
    },  # 4
    {
        "type": "response.function_call_arguments.delta",
        "item_id": "fc_1",
        "output_index": 1,
        "delta": ARGS,
    },  # 5
    {
        "type": "response.output_item.done",
        "output_index": 1,
        "item": {**_CALL, "arguments": ARGS, "status": "completed"},
    },  # 6
    {
        "type": "response.completed",
        "response": {
            "id": "resp_1",
            "model": "up-model",
            "status": "completed",
            "usage": {
                "input_tokens": 10,
                "output_tokens": 5,
                "total_tokens": 15,
                "input_tokens_details": {"cached_tokens": 2},
            },
        },
    },  # 7
]

STREAMS = {CHAT: CHAT_STREAM, MESSAGES: MESSAGES_STREAM, RESPONSES: RESPONSES_STREAM}

STRINGS = [7, 0, 1.5, {"a": 1}, {}, ["x"], [], None, True, False]
"""Wrong values where a string is expected (an object, a list, a number, null, a bool)."""
INTEGERS = ["0", "1", 1.5, 1.0, True, False, None, [1], {}]
"""Wrong values where an integer is expected."""
COUNTS = ["12", 12.5, 1e30, True, None, [12], {"n": 12}, -3]
"""Wrong token counts (and a negative one)."""

Row = tuple[Dialect, int, tuple[Any, ...], list[Any], str | dict[str, str]]

# (upstream, event, path, wrong values, outcome): "error", "ignore", or per value (repr) where
# null differs (a field a server may write as null: null is "left out").
ROWS: list[Row] = [
    # Chat upstream (ChatReader): Chat writes null for what it leaves out.
    (CHAT, 0, ("id",), STRINGS, "ignore"),
    (CHAT, 0, ("model",), STRINGS, "ignore"),
    (CHAT, 0, ("choices", 0, "delta", "content"), STRINGS, {"None": "ignore"}),
    (CHAT, 1, ("choices", 0, "delta", "refusal"), STRINGS, {"None": "ignore"}),
    (CHAT, 2, ("choices", 0, "delta", "tool_calls", 0, "id"), STRINGS, "ignore"),
    (
        CHAT,
        2,
        ("choices", 0, "delta", "tool_calls", 0, "function", "name"),
        STRINGS,
        {"None": "ignore"},
    ),
    (
        CHAT,
        3,
        ("choices", 0, "delta", "tool_calls", 0, "function", "arguments"),
        STRINGS,
        {"None": "ignore"},
    ),
    (CHAT, 2, ("choices", 0, "delta", "tool_calls", 0, "index"), INTEGERS, {"None": "ignore"}),
    (CHAT, 3, ("choices", 0, "delta", "tool_calls", 0, "index"), INTEGERS, {"None": "ignore"}),
    (CHAT, 4, ("choices", 0, "finish_reason"), STRINGS, {"None": "ignore"}),
    (CHAT, 5, ("usage", "prompt_tokens"), COUNTS, "ignore"),
    (CHAT, 5, ("usage", "completion_tokens"), COUNTS, "ignore"),
    (CHAT, 5, ("usage", "prompt_tokens_details", "cached_tokens"), COUNTS, "ignore"),
    # Messages upstream (MessagesReader).
    (MESSAGES, 0, ("message", "id"), STRINGS, "ignore"),
    (MESSAGES, 0, ("message", "model"), STRINGS, "ignore"),
    (MESSAGES, 0, ("message", "usage", "input_tokens"), COUNTS, "ignore"),
    (MESSAGES, 0, ("message", "usage", "cache_read_input_tokens"), COUNTS, "ignore"),
    (MESSAGES, 2, ("delta", "thinking"), STRINGS, "ignore"),
    (MESSAGES, 4, ("content_block", "text"), STRINGS, {"None": "ignore"}),
    (MESSAGES, 5, ("delta", "text"), STRINGS, "error"),
    (MESSAGES, 7, ("index",), INTEGERS, "error"),
    (MESSAGES, 7, ("content_block", "id"), STRINGS, "ignore"),
    (MESSAGES, 7, ("content_block", "name"), STRINGS, {"None": "ignore"}),
    (MESSAGES, 8, ("index",), INTEGERS, "error"),
    (MESSAGES, 8, ("delta", "partial_json"), STRINGS, "error"),
    (MESSAGES, 9, ("index",), INTEGERS, "error"),
    (MESSAGES, 10, ("delta", "stop_reason"), STRINGS, {"None": "ignore"}),
    (MESSAGES, 10, ("usage", "output_tokens"), COUNTS, "ignore"),
    # Responses upstream (ResponsesReader).
    (RESPONSES, 0, ("response", "id"), STRINGS, "ignore"),
    (RESPONSES, 0, ("response", "model"), STRINGS, "ignore"),
    (RESPONSES, 1, ("delta",), STRINGS, "error"),
    (RESPONSES, 2, ("delta",), STRINGS, "error"),
    (RESPONSES, 3, ("delta",), STRINGS, "ignore"),
    (RESPONSES, 4, ("item", "id"), STRINGS, "error"),
    (RESPONSES, 4, ("item", "call_id"), STRINGS, "ignore"),
    (RESPONSES, 4, ("item", "name"), STRINGS, {"None": "ignore"}),
    (RESPONSES, 5, ("item_id",), STRINGS, "error"),
    (RESPONSES, 5, ("delta",), STRINGS, "error"),
    (RESPONSES, 6, ("item", "id"), STRINGS, "error"),
    (RESPONSES, 7, ("response", "status"), STRINGS, "ignore"),
    (RESPONSES, 7, ("response", "usage", "input_tokens"), COUNTS, "ignore"),
    (RESPONSES, 7, ("response", "usage", "output_tokens"), COUNTS, "ignore"),
    (
        RESPONSES,
        7,
        ("response", "usage", "input_tokens_details", "cached_tokens"),
        COUNTS,
        "ignore",
    ),
]


def _outcome(row: Row, value: Any) -> str:
    rule = row[4]
    if isinstance(rule, str):
        return rule
    return rule.get(repr(value), "error")


def _cases() -> list[Any]:
    cases = []
    for row in ROWS:
        upstream = row[0]
        for client in (d for d in Dialect if d is not upstream):
            for value in row[3]:
                path = ".".join(str(p) for p in row[2])
                name = f"{client.value}<-{upstream.value}:{row[1]}:{path}={value!r}"
                cases.append(pytest.param(client, row, value, id=name))
    return cases


def _replace(event: Any, path: tuple[Any, ...], value: Any) -> Any:
    event = copy.deepcopy(event)
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


def _encode(upstream: Dialect, event: Any) -> sse.Event:
    if event == "[DONE]":
        return sse.Event(None, b"[DONE]")
    name = None if upstream is CHAT else event["type"]
    return sse.Event(name, orjson.dumps(event))


def _ctx() -> Ctx:
    return Ctx("up-model", "served", None, True, include_usage=True, request_id="r1", created=1)


def _run(client: Dialect, upstream: Dialect, events: list[Any]) -> tuple[bytes, Any]:
    translator = registry.get(client, upstream).stream(_ctx())
    out = b"".join(translator.feed(_encode(upstream, e)) for e in events)
    return out + translator.finish(), translator


def _is_error(dialect: Dialect, data: Any) -> bool:
    if dialect is CHAT:
        return isinstance(data, dict) and "error" in data and "choices" not in data
    return isinstance(data, dict) and data.get("type") == "error"


def _check_usage(usage: Usage) -> None:
    for field in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        value = getattr(usage, field)
        assert type(value) is int and value >= 0, (field, value)


def _client_events(client: Dialect, out: bytes) -> list[Any]:
    """Every client event's data, each checked against the client's SDK type (strict); the
    error event (not in the SDKs' unions) and [DONE] as they are."""
    events: list[Any] = []
    for event in sse.Decoder().feed(out):
        if event.data == b"[DONE]":
            events.append("[DONE]")
            continue
        data = orjson.loads(event.data)
        if not _is_error(client, data) and not (client is MESSAGES and data["type"] == "ping"):
            EVENT_TYPES[client].validate_python(data)
            strict(EVENT_SDK[client], data)
        events.append(data)
    return events


def _normal_end(client: Dialect, events: list[Any]) -> bool:
    if client is CHAT:
        return events[-1] == "[DONE]"
    if client is MESSAGES:
        return events[-1]["type"] == "message_stop"
    return events[-1]["type"] in ("response.completed", "response.incomplete")


@pytest.mark.parametrize("upstream", [CHAT, MESSAGES, RESPONSES], ids=lambda d: d.value)
def test_well_formed_streams_end_normally(upstream: Dialect) -> None:
    """The base streams themselves: every direction ends normally, with the tool call and the
    usage read (what each row changes one field of)."""
    for client in (d for d in Dialect if d is not upstream):
        out, translator = _run(client, upstream, STREAMS[upstream])
        events = _client_events(client, out)
        assert translator.failed is None, translator.failed
        assert _normal_end(client, events)
        assert b"Paris" in out and b"weather" in out
        assert translator.usage.output_tokens == 5


@pytest.mark.parametrize(("client", "row", "value"), _cases())
def test_wrong_type(client: Dialect, row: Row, value: Any) -> None:
    upstream, at, path = row[0], row[1], row[2]
    events = list(STREAMS[upstream])
    events[at] = _replace(events[at], path, value)
    out, translator = _run(client, upstream, events)  # no exception, whatever the value
    client_events = _client_events(client, out)
    errors = [e for e in client_events if _is_error(client, e)]
    _check_usage(translator.usage)
    if _outcome(row, value) == "error":
        assert len(errors) == 1 and _is_error(client, client_events[-1]), out
        assert translator.failed is not None
        assert not _normal_end(client, client_events)
    else:
        assert errors == [], out
        assert translator.failed is None
        assert _normal_end(client, client_events), out
    assert translator.finish() == b""  # ended once


IDENTITY_ROWS: list[tuple[Dialect, int, tuple[Any, ...]]] = [
    (CHAT, 5, ("usage", "prompt_tokens")),
    (CHAT, 5, ("usage", "completion_tokens")),
    (CHAT, 5, ("usage", "prompt_tokens_details", "cached_tokens")),
    (MESSAGES, 0, ("message", "usage", "input_tokens")),
    (MESSAGES, 0, ("message", "usage", "cache_read_input_tokens")),
    (MESSAGES, 10, ("usage", "output_tokens")),
    (RESPONSES, 7, ("response", "usage", "input_tokens")),
    (RESPONSES, 7, ("response", "usage", "output_tokens")),
    (RESPONSES, 7, ("response", "usage", "input_tokens_details", "cached_tokens")),
]


@pytest.mark.parametrize("value", COUNTS, ids=repr)
@pytest.mark.parametrize(("dialect", "at", "path"), IDENTITY_ROWS, ids=str)
def test_pass_through_usage(dialect: Dialect, at: int, path: tuple[Any, ...], value: Any) -> None:
    """The same-dialect pass-through reads usage only: a wrong token count counts as 0 (the
    client gets the upstream's bytes), and the stream ends as the upstream ended it."""
    events = list(STREAMS[dialect])
    events[at] = _replace(events[at], path, value)
    out, translator = _run(dialect, dialect, events)
    _check_usage(translator.usage)
    assert translator.failed is None
    assert out.endswith(b"data: [DONE]\n\n" if dialect is CHAT else b"\n\n")
    if path[-1] not in ("output_tokens", "completion_tokens") or at == 0:
        assert translator.usage.output_tokens == 5  # (the one read that changed nothing)
    elif dialect is MESSAGES:  # message_delta's count is cumulative: message_start's stays
        assert translator.usage.output_tokens == 1
    else:
        assert translator.usage.output_tokens == 0
