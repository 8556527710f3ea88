"""The fake upstreams speak the real wire shapes: the official SDKs, unchanged but for base URL
and key, read every answer. These tests are about the fakes, so the gateway tests can trust them.

Covers:
- every OpenAI Chat shape (openai, vllm, lmstudio, litellm, tgi, ollama, llamacpp) through
  `openai.AsyncOpenAI`: non-stream and stream with `stream_options.include_usage` (a final
  usage chunk with `choices: []`; Ollama's usage only on its last chunk), TGI's model "tgi" and
  `system_fingerprint`, Ollama's `fp_ollama`, vLLM's `cached_tokens` only with caching on and
  OpenAI's always, `max_tokens` / `max_completion_tokens` ending in finish reason `length`,
  images accepted, `/v1/models`;
- tool calls, stream and non-stream: a tool call with JSON arguments when tools are offered and
  the user asks about the weather or `tool_choice` forces one; the text quoting a tool result;
- `responses` through `client.responses.create`: text, the exact SSE event sequence with
  cached tokens in `response.completed`, a function call round trip, `incomplete` on
  `max_output_tokens`;
- `anthropic` through `anthropic.AsyncAnthropic`: text, `messages.stream` with the exact event
  sequence, `tool_use` with `input_json_delta`, cache read and creation usage, `max_tokens`
  required, `api_key` and `strict_headers` (401 / 400 as the API phrases them);
- faults from every source (server setting, `POST /_fault`, `x-fault` header, model suffix)
  and of every kind: 500 / 503 / 429 with `retry-after` / 529 in each shape's error body, each
  shape's context-length error body and status, `delay`, `delay_first_token` (headers first),
  `chunk_delay`, `stall_after` (connection kept open; the server still stops at once),
  `drop_after` (the SDK sees a broken stream), `unauthorized`, connection refused on
  `free_port()`; unknown faults refused;
- request recording (`Upstream.requests`, `GET` / `DELETE /_requests`);
- `python -m tests.upstreams` as a process: ready line, an answer, a clean exit on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.upstreams import server
from tests.upstreams.server import Upstream

ROOT = Path(__file__).resolve().parents[2]
CHAT_SHAPES = server.OPENAI_SHAPES
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"

Start = Callable[..., Awaitable[Upstream]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """`await start(shape="tgi", cached=2)`: a started fake, stopped after the test."""
    running: list[Upstream] = []

    async def _start(**options: Any) -> Upstream:
        upstream = await Upstream(**options).start()
        running.append(upstream)
        return upstream

    yield _start
    for upstream in running:
        await upstream.stop()


def oai(upstream: Upstream, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=upstream.base_url, api_key="sk-test", max_retries=0, **options
    )


def ant(upstream: Upstream, key: str = "sk-ant-test") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=upstream.root_url, api_key=key, max_retries=0)


async def post(
    url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        return response.status, dict(response.headers), await response.read()


# --- OpenAI Chat shapes --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", CHAT_SHAPES)
async def test_chat_non_stream(start: Start, shape: str) -> None:
    upstream = await start(shape=shape, model="qwen2.5-coder:32b")
    async with oai(upstream) as client:
        completion = await client.chat.completions.create(
            model="qwen2.5-coder:32b", messages=[{"role": "user", "content": "hello there"}]
        )
        models = await client.models.list()
    assert completion.choices[0].message.content == "You said: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == ("tgi" if shape == "tgi" else "qwen2.5-coder:32b")
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 4
    fingerprint = {"tgi": "3.0.1-native", "ollama": "fp_ollama", "openai": "fp_fake"}.get(shape)
    assert completion.system_fingerprint == fingerprint
    assert [m.id for m in models.data] == ["qwen2.5-coder:32b"]


@pytest.mark.parametrize("shape", CHAT_SHAPES)
async def test_chat_stream_with_usage(start: Start, shape: str) -> None:
    upstream = await start(shape=shape)
    async with oai(upstream) as client:
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "stream me please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream me please"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    assert with_usage[0].usage is not None and with_usage[0].usage.completion_tokens == 5
    if shape == "ollama":  # usage rides on the finishing chunk
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:  # a final chunk of its own, with no choices
        assert chunks[-1].choices == []


@pytest.mark.parametrize("shape", CHAT_SHAPES)
async def test_chat_stream_without_usage(start: Start, shape: str) -> None:
    upstream = await start(shape=shape)
    async with oai(upstream) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    has_usage = any(c.usage is not None for c in chunks)
    assert has_usage == (shape == "ollama")  # Ollama sends it whether asked or not


@pytest.mark.parametrize(
    ("shape", "cached", "expected"),
    [("vllm", 0, None), ("vllm", 3, 3), ("openai", 0, 0), ("litellm", 2, 2), ("tgi", 2, None)],
)
async def test_chat_cached_tokens(
    start: Start, shape: str, cached: int, expected: int | None
) -> None:
    upstream = await start(shape=shape, cached=cached)
    async with oai(upstream) as client:
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "a b c d e f"}]
        )
    assert completion.usage is not None
    details = completion.usage.prompt_tokens_details
    assert (details.cached_tokens if details else None) == expected


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_chat_length_limit(start: Start, field: str) -> None:
    def limit(n: int) -> dict[str, Any]:
        return {field: n}

    upstream = await start(shape="vllm")
    async with oai(upstream) as client:
        completion = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "one two three four"}],
            **limit(3),
        )
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "one two three four"}],
            stream=True,
            **limit(2),
        )
        chunks = [c async for c in stream]
    assert completion.choices[0].message.content == "You said: one"
    assert completion.choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said:"
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_chat_accepts_images(start: Start) -> None:
    upstream = await start(shape="lmstudio")
    async with oai(upstream) as client:
        completion = await client.chat.completions.create(
            model="m",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image_url", "image_url": {"url": IMAGE}},
                    ],
                }
            ],
        )
    assert completion.choices[0].message.content == "You said: what is this"
    sent = upstream.requests[-1]["body"]["messages"][0]["content"][1]
    assert sent["image_url"]["url"] == IMAGE


@pytest.mark.parametrize("shape", ["vllm", "ollama", "tgi"])
async def test_chat_tool_round_trip(start: Start, shape: str) -> None:
    upstream = await start(shape=shape)
    ask: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    async with oai(upstream) as client:
        completion = await client.chat.completions.create(
            model="m", messages=ask, tools=[WEATHER_TOOL]
        )
        stream = await client.chat.completions.create(
            model="m", messages=ask, tools=[WEATHER_TOOL], stream=True
        )
        chunks = [c async for c in stream]
        calls: dict[int, dict[str, str]] = {}
        for c in chunks:
            for part in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                entry = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += part.id or ""
                assert part.function is not None
                entry["name"] += part.function.name or ""
                entry["arguments"] += part.function.arguments or ""
        message = completion.choices[0].message
        assert message.tool_calls is not None
        call: Any = message.tool_calls[0]
        follow_up: Any = [
            *ask,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ]
        answer = await client.chat.completions.create(
            model="m", messages=follow_up, tools=[WEATHER_TOOL]
        )
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"Paris"}'
    assert calls == {0: {"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert answer.choices[0].message.content == "Tool said: sunny, 21 C"


async def test_chat_forced_tool(start: Start) -> None:
    upstream = await start(shape="openai")
    async with oai(upstream) as client:
        required = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
        )
        auto = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL]
        )
    assert required.choices[0].message.tool_calls is not None
    assert auto.choices[0].message.content == "You said: hi"


# --- OpenAI Responses ----------------------------------------------------------------------------


async def test_responses_non_stream(start: Start) -> None:
    upstream = await start(shape="responses", cached=2)
    async with oai(upstream) as client:
        response = await client.responses.create(model="gpt-x", input="hello responses")
        limited = await client.responses.create(
            model="gpt-x", input="one two three", max_output_tokens=16
        )
    assert response.output_text == "You said: hello responses"
    assert response.status == "completed"
    assert response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert response.usage.output_tokens == 4
    assert limited.status == "completed"


async def test_responses_stream_events(start: Start) -> None:
    upstream = await start(shape="responses", cached=1)
    async with oai(upstream) as client:
        stream = await client.responses.create(model="gpt-x", input="stream it", stream=True)
        events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "You said: stream it"
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.input_tokens_details.cached_tokens == 1


async def test_responses_function_call(start: Start) -> None:
    upstream = await start(shape="responses")
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    async with oai(upstream) as client:
        first = await client.responses.create(
            model="m",
            input="weather in Paris?",
            tools=[tool],
        )
        stream = await client.responses.create(
            model="m",
            input="weather in Paris?",
            tools=[tool],
            stream=True,
        )
        kinds = [e.type async for e in stream]
        call = first.output[0]
        assert call.type == "function_call"
        items: Any = [
            {"role": "user", "content": "weather in Paris?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "snow"},
        ]
        second = await client.responses.create(model="m", input=items, tools=[tool])
    assert call.name == "get_weather" and call.arguments == '{"city":"Paris"}'
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-1] == "response.completed"
    assert second.output_text == "Tool said: snow"


async def test_responses_incomplete(start: Start) -> None:
    upstream = await start(shape="responses")
    async with oai(upstream) as client:
        response = await client.responses.create(
            model="m", input="a b c d e f g h i j k l m n o p q r", max_output_tokens=16
        )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


# --- Anthropic Messages --------------------------------------------------------------------------


async def test_anthropic_non_stream(start: Start) -> None:
    upstream = await start(shape="anthropic", cached=2, cache_write=1)
    async with ant(upstream) as client:
        message = await client.messages.create(
            model="claude-x",
            max_tokens=100,
            system="be brief",
            messages=[{"role": "user", "content": "hello claude"}],
        )
        models = await client.models.list()
    assert message.content[0].type == "text" and message.content[0].text == "You said: hello claude"
    assert message.stop_reason == "end_turn"
    assert message.usage.cache_read_input_tokens == 2
    assert message.usage.cache_creation_input_tokens == 1
    assert message.usage.output_tokens == 4
    assert [m.id for m in models.data] == ["fake-model"]
    headers = {k.lower(): v for k, v in upstream.requests[0]["headers"].items()}
    # This SDK release sends the key as a Bearer token; older ones as x-api-key. Both work.
    key = headers.get("x-api-key") or headers["authorization"].removeprefix("Bearer ")
    assert key == "sk-ant-test" and "anthropic-version" in headers


async def test_anthropic_stream_events(start: Start) -> None:
    upstream = await start(shape="anthropic", cached=3)
    async with (
        ant(upstream) as client,
        client.messages.stream(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "a stream"}]
        ) as stream,
    ):
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    raw = [k for k in kinds if k not in ("text", "input_json")]  # the SDK's derived events
    assert raw == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert final.content[0].type == "text" and final.content[0].text == "You said: a stream"
    assert final.usage.cache_read_input_tokens == 3
    assert final.usage.output_tokens == 4
    _, _, body = await post(
        f"{upstream.root_url}/v1/messages",
        {
            "model": "m",
            "max_tokens": 9,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert b'event: ping\ndata: {"type":"ping"}\n\n' in body  # the SDK hides pings


async def test_anthropic_tool_use(start: Start) -> None:
    upstream = await start(shape="anthropic")
    tool: Any = {
        "name": "get_weather",
        "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    ask: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    async with ant(upstream) as client:
        message = await client.messages.create(
            model="m",
            max_tokens=100,
            messages=ask,
            tools=[tool],
        )
        async with client.messages.stream(
            model="m",
            max_tokens=100,
            messages=ask,
            tools=[tool],
        ) as stream:
            kinds = [e.type async for e in stream]
            streamed = await stream.get_final_message()
        forced = await client.messages.create(
            model="m",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
            tools=[tool],
            tool_choice={"type": "tool", "name": "get_weather"},
        )
        use = message.content[0]
        assert use.type == "tool_use"
        follow_up: Any = [
            *ask,
            {"role": "assistant", "content": [use.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "rain"}],
            },
        ]
        answer = await client.messages.create(
            model="m",
            max_tokens=100,
            messages=follow_up,
            tools=[tool],
        )
    assert message.stop_reason == "tool_use"
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    assert "input_json" in kinds
    assert streamed.content[0].type == "tool_use" and streamed.content[0].input == {"city": "Paris"}
    assert forced.stop_reason == "tool_use"
    assert answer.content[0].type == "text" and answer.content[0].text == "Tool said: rain"


async def test_anthropic_limits_and_headers(start: Start) -> None:
    upstream = await start(shape="anthropic", api_key="sk-ant-right", strict_headers=True)
    url = f"{upstream.root_url}/v1/messages"
    body: Any = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    good = {"x-api-key": "sk-ant-right", "anthropic-version": "2023-06-01"}
    status, _, text = await post(url, body, good)
    assert status == 400 and b"max_tokens: Field required" in text
    status, _, text = await post(url, {**body, "max_tokens": 5}, {"x-api-key": "sk-ant-right"})
    assert status == 400 and b"anthropic-version: header is required" in text
    status, _, text = await post(url, {**body, "max_tokens": 5}, {"anthropic-version": "1"})
    assert status == 401 and b"x-api-key header is required" in text
    async with ant(upstream, key="sk-ant-wrong") as wrong, ant(upstream, "sk-ant-right") as right:
        with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
            await wrong.messages.create(model="m", max_tokens=5, messages=body["messages"])
        message = await right.messages.create(
            model="m", max_tokens=3, messages=[{"role": "user", "content": "one two three"}]
        )
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text" and message.content[0].text == "You said: one"


async def test_openai_api_key(start: Start) -> None:
    upstream = await start(shape="vllm", api_key="sk-provider")
    async with oai(upstream) as wrong, oai(upstream, default_headers={}) as _:
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
    async with openai.AsyncOpenAI(
        base_url=upstream.base_url, api_key="sk-provider", max_retries=0
    ) as right:
        ok = await right.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert ok.choices[0].message.content == "You said: x"
    assert upstream.requests[-1]["headers"]["Authorization"] == "Bearer sk-provider"


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [*CHAT_SHAPES, "responses", "anthropic"])
async def test_context_length_bodies(start: Start, shape: str) -> None:
    upstream = await start(shape=shape)
    path = {"responses": "/v1/responses", "anthropic": "/v1/messages"}.get(
        shape, "/v1/chat/completions"
    )
    body = {
        "model": "m",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "x"}],
        "input": "x",
    }
    status, _, text = await post(upstream.root_url + path, body, {"x-fault": "context_length"})
    expected_status, expected = server.CONTEXT_ERRORS[shape]
    assert (status, json.loads(text)) == (expected_status, expected)
    phrase = {
        "vllm": b"maximum context length is 4096 tokens",
        "tgi": b"`inputs` tokens + `max_new_tokens` must be <= 4096",
        "ollama": b"the input length exceeds the context length",
        "llamacpp": b"exceeds the available context size",
        "anthropic": b"prompt is too long: 210000 tokens > 200000 maximum",
    }.get(shape, b"context")
    assert phrase in text


@pytest.mark.parametrize(
    ("shape", "status", "error"),
    [
        ("openai", 500, openai.InternalServerError),
        ("vllm", 503, openai.InternalServerError),
        ("tgi", 429, openai.RateLimitError),
        ("ollama", 429, openai.RateLimitError),
    ],
)
async def test_status_faults_openai(
    start: Start, shape: str, status: int, error: type[openai.APIStatusError]
) -> None:
    upstream = await start(shape=shape)
    async with oai(upstream) as client:
        with pytest.raises(error) as raised:
            await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "x"}],
                extra_headers={"x-fault": f"status={status},retry_after=7"},
            )
    assert raised.value.status_code == status
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.InternalServerError, "overloaded_error"),
    ],
)
async def test_status_faults_anthropic(
    start: Start, status: int, error: type[anthropic.APIStatusError], kind: str
) -> None:
    upstream = await start(shape="anthropic", fault={"status": str(status)})
    async with ant(upstream) as client:
        with pytest.raises(error) as raised:
            await client.messages.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
    assert raised.value.status_code == status
    body: Any = raised.value.body
    assert body["error"]["type"] == kind
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "1"


async def test_fault_sources(start: Start) -> None:
    """Server setting < POST /_fault < x-fault header < model suffix; DELETE clears."""
    upstream = await start(shape="vllm", fault={"status": "500"})
    url = f"{upstream.root_url}/v1/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert (await post(url, body))[0] == 500
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{upstream.root_url}/_fault", json={"status": 503}) as r:
            assert await r.json() == {"fault": {"status": "503"}}
        assert (await post(url, body))[0] == 503
        assert (await post(url, body, {"x-fault": "status=429"}))[0] == 429
        assert (await post(url, {**body, "model": "m@status=502"}, {"x-fault": "status=429"}))[
            0
        ] == 502
        assert (await post(url, {**body, "model": "m@fault=500"}))[0] == 500
        async with session.post(f"{upstream.root_url}/_fault", json={"sttus": 1}) as r:
            assert r.status == 400 and "unknown faults ['sttus']" in (await r.json())["error"]
        async with session.delete(f"{upstream.root_url}/_fault") as r:
            assert await r.json() == {"fault": {}}
        async with session.get(f"{upstream.root_url}/_fault") as r:
            assert await r.json() == {"fault": {}}
    assert (await post(url, body))[0] == 200
    upstream.set_fault(context_length=True)
    assert (await post(url, body))[0] == 400


async def test_delay_and_first_token_delay(start: Start) -> None:
    upstream = await start(shape="vllm")
    url = f"{upstream.root_url}/v1/chat/completions"
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as session:
        began = time.monotonic()
        async with session.post(url, json=body, headers={"x-fault": "delay_first_token=0.4"}) as r:
            headers_at = time.monotonic() - began
            await r.content.readuntil(b"\n\n")
            first_at = time.monotonic() - began
            await r.read()
        began = time.monotonic()
        async with session.post(url, json=body, headers={"x-fault": "delay=0.3"}) as r:
            delayed_headers_at = time.monotonic() - began
            await r.read()
        began = time.monotonic()
        async with session.post(url, json=body, headers={"x-fault": "chunk_delay=0.05"}) as r:
            await r.read()
            paced = time.monotonic() - began
    assert headers_at < 0.3
    assert first_at >= 0.4
    assert delayed_headers_at >= 0.3
    assert paced >= 0.05 * 4  # 6 events, 5 pauses
    status, _, _ = await post(url, {**body, "stream": False}, {"x-fault": "delay_first_token=0.2"})
    assert status == 200


async def test_stall_keeps_the_connection_and_stops_fast(start: Start) -> None:
    upstream = await start(shape="vllm")
    async with oai(upstream, timeout=0.5) as client:
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "one two three four"}],
            stream=True,
            extra_headers={"x-fault": "stall_after=2"},
        )
        got: list[str] = []
        with pytest.raises(openai.APITimeoutError):
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
        await stream.close()
    assert got == ["", "You"]
    # A stream stalled while the server stops does not hold the stop up.
    url = f"{upstream.root_url}/v1/chat/completions"
    body = {
        "model": "m@stall_after=1",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as r:
        assert r.status == 200
        await r.content.readuntil(b"\n\n")
        began = time.monotonic()
        await upstream.stop()
        assert time.monotonic() - began < 1.5


@pytest.mark.parametrize("shape", ["vllm", "anthropic"])
async def test_drop_mid_stream(start: Start, shape: str) -> None:
    upstream = await start(shape=shape, fault={"drop_after": "3"})
    if shape == "vllm":
        async with oai(upstream) as client:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "a b c d"}], stream=True
            )
            with pytest.raises(openai.APIConnectionError):
                async for _ in stream:
                    pass
            await stream.close()
    else:
        async with ant(upstream) as client:
            # The Anthropic SDK lets its HTTP library's error through on a broken stream.
            with pytest.raises(Exception, match="incomplete chunked read"):
                async with client.messages.stream(
                    model="m", max_tokens=50, messages=[{"role": "user", "content": "a b c d"}]
                ) as messages:
                    async for _ in messages:
                        pass


async def test_unauthorized_fault_and_connection_refused(start: Start) -> None:
    upstream = await start(shape="tgi")
    async with oai(upstream) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model="m@unauthorized", messages=[{"role": "user", "content": "x"}]
            )
    dead = Upstream(port=server.free_port())
    async with oai(dead) as client:
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )


async def test_bad_json_is_a_400(start: Start) -> None:
    upstream = await start(shape="ollama")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{upstream.root_url}/v1/chat/completions", data=b"{not json") as r,
    ):
        assert r.status == 400
    assert upstream.requests[-1]["body"] is None


# --- recording -----------------------------------------------------------------------------------


async def test_requests_recorded(start: Start) -> None:
    upstream = await start(shape="litellm")
    async with oai(upstream) as client:
        await client.chat.completions.create(
            model="openai/gpt-x", messages=[{"role": "user", "content": "x"}], max_tokens=77
        )
    assert upstream.requests[0]["path"] == "/v1/chat/completions"
    assert upstream.requests[0]["body"]["max_tokens"] == 77
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{upstream.root_url}/_requests") as r:
            recorded = await r.json()
        assert recorded[0]["body"]["model"] == "openai/gpt-x"
        assert recorded[0]["headers"]["Authorization"] == "Bearer sk-test"
        async with session.delete(f"{upstream.root_url}/_requests") as r:
            assert await r.json() == []
    assert upstream.requests == []


async def test_context_manager_and_unknown_shape() -> None:
    async with Upstream(shape="openai") as upstream:
        status, _, _ = await post(f"{upstream.base_url}/models", None)
        assert status == 405
    with pytest.raises(ValueError, match="unknown shape 'grpc'"):
        await Upstream(shape="grpc").start()


# --- as a process --------------------------------------------------------------------------------


async def test_cli_process() -> None:
    port = server.free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.upstreams",
            "--shape",
            "vllm",
            "--port",
            str(port),
            "--model",
            "qwen2.5-coder:32b",
            "--cached",
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.decode().strip() == f"fake vllm upstream ready on http://127.0.0.1:{port}"
        async with openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0
        ) as client:
            models = await client.models.list()
            answer = await client.chat.completions.create(
                model="qwen2.5-coder:32b", messages=[{"role": "user", "content": "hi"}]
            )
        assert [m.id for m in models.data] == ["qwen2.5-coder:32b"]
        assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
        assert answer.usage.prompt_tokens_details.cached_tokens == 1
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
