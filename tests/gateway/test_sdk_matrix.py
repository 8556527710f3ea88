"""Every client surface against every upstream mode, with the official SDKs, as users call them.

Covers, for the 3 x 3 combinations of client API (OpenAI Chat Completions, OpenAI Responses,
Anthropic Messages) and upstream `api` (openai-completions, openai-responses,
anthropic-messages):
- non-streaming and streaming answers parse with the SDK and carry the upstream's text;
- usage arrives (in the stream too) and the served provider/model headers are set;
- a tool-call round trip: the model calls `get_weather`, the client sends the result back, the
  model answers with it;
- what reached the upstream: the upstream model id, a max-tokens value where required, the
  provider key, and never the client's key.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import KEY, PROVIDER_KEY, Gateway, Upstreams

UPSTREAMS = ["chat", "resp", "anth"]
WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

pytestmark = pytest.mark.gateway


def oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)


def ant(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)


def _last_request(u: Upstreams, provider: str) -> dict[str, Any]:
    port = {"chat": u.chat, "resp": u.responses, "anth": u.anthropic}[provider]
    requests: list[dict[str, Any]] = httpx.get(f"http://127.0.0.1:{port}/_requests").json()
    return requests[-1]


def _check_upstream_request(u: Upstreams, provider: str) -> None:
    sent = _last_request(u, provider)
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert sent["body"]["model"] == "m"
    assert KEY not in str(headers)
    if provider == "anth":
        assert headers["x-api-key"] == PROVIDER_KEY
        assert sent["body"]["max_tokens"] <= 512
    else:
        assert headers["authorization"] == f"Bearer {PROVIDER_KEY}"


@pytest.mark.parametrize("provider", UPSTREAMS)
def test_chat_client(gateway: Gateway, upstreams: Upstreams, provider: str) -> None:
    client = oai(gateway)
    raw = client.chat.completions.with_raw_response.create(
        model=f"{provider}:m", messages=[{"role": "user", "content": "hello world"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "You said: hello world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-switchboard-provider"] == provider
    assert raw.headers["x-switchboard-model"] == "m"
    assert raw.headers["x-switchboard-attempts"] == "1"
    _check_upstream_request(upstreams, provider)

    chunks = list(
        client.chat.completions.create(
            model=f"{provider}:m",
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream please"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    without = list(
        client.chat.completions.create(
            model=f"{provider}:m", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(c.usage is None for c in without)


@pytest.mark.parametrize("provider", UPSTREAMS)
def test_messages_client(gateway: Gateway, upstreams: Upstreams, provider: str) -> None:
    client = ant(gateway)
    message = client.messages.create(
        model=f"{provider}:m",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello claude"}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "You said: hello claude"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    _check_upstream_request(upstreams, provider)
    with client.messages.stream(
        model=f"{provider}:m", max_tokens=100, messages=[{"role": "user", "content": "a stream"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "You said: a stream"
    assert final.usage.output_tokens > 0
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("provider", UPSTREAMS)
def test_responses_client(gateway: Gateway, upstreams: Upstreams, provider: str) -> None:
    client = oai(gateway)
    response = client.responses.create(
        model=f"{provider}:m", instructions="be brief", input="hello responses"
    )
    assert response.output_text == "You said: hello responses"
    assert response.usage is not None and response.usage.output_tokens > 0
    _check_upstream_request(upstreams, provider)
    events = list(client.responses.create(model=f"{provider}:m", input="stream it", stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "You said: stream it"
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage is not None


@pytest.mark.parametrize("provider", UPSTREAMS)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip_chat(gateway: Gateway, provider: str, stream: bool) -> None:
    client = oai(gateway)
    messages: list[Any] = [{"role": "user", "content": "what is the weather in Paris?"}]
    if stream:
        calls: dict[int, dict[str, str]] = {}
        for chunk in client.chat.completions.create(
            model=f"{provider}:m", messages=messages, tools=[WEATHER_TOOL_OPENAI], stream=True
        ):
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = call.id or entry["id"]
                if call.function is not None:
                    entry["name"] = call.function.name or entry["name"]
                    entry["arguments"] += call.function.arguments or ""
        call = calls[0]
    else:
        first = client.chat.completions.create(
            model=f"{provider}:m", messages=messages, tools=[WEATHER_TOOL_OPENAI]
        )
        assert first.choices[0].finish_reason == "tool_calls"
        tool_call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        call = {
            "id": tool_call.id,
            "name": tool_call.function.name,  # type: ignore[union-attr]
            "arguments": tool_call.function.arguments,
        }  # type: ignore[union-attr]
    assert call["name"] == "get_weather"
    assert '"city"' in call["arguments"]
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"},
    ]
    final = client.chat.completions.create(
        model=f"{provider}:m", messages=messages, tools=[WEATHER_TOOL_OPENAI]
    )
    assert final.choices[0].message.content == "Tool said: sunny, 21 C"


@pytest.mark.parametrize("provider", UPSTREAMS)
def test_tool_round_trip_messages(gateway: Gateway, provider: str) -> None:
    client = ant(gateway)
    tools: Any = [
        {
            "name": "get_weather",
            "description": "Weather of a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    with client.messages.stream(
        model=f"{provider}:m", max_tokens=100, tools=tools, messages=messages
    ) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "rain"}],
        },
    ]
    final = client.messages.create(
        model=f"{provider}:m", max_tokens=100, tools=tools, messages=messages
    )
    assert final.content[0].type == "text" and final.content[0].text == "Tool said: rain"


@pytest.mark.parametrize("provider", UPSTREAMS)
def test_tool_round_trip_responses(gateway: Gateway, provider: str) -> None:
    client = oai(gateway)
    tools: Any = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    first = client.responses.create(model=f"{provider}:m", input="weather in Paris?", tools=tools)
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather"
    final = client.responses.create(
        model=f"{provider}:m",
        tools=tools,
        input=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "snow"},
        ],
    )
    assert final.output_text == "Tool said: snow"
