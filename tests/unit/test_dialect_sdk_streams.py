"""Every golden client stream, read by the official SDK's own stream machinery.

Covers: the event *sequences* the translators write, not just each event's shape: the openai
SDK's Chat accumulator (`ChatCompletionStreamState`: tool-call deltas by index, finish reason,
usage chunk), its Responses accumulator (`ResponseStreamState`: output indexes, content parts,
item ids, the terminal event) and the anthropic SDK's `messages.stream()` (block indexes,
`input_json_delta` parsed into tool input, `message_delta` usage). The final object each SDK
builds must agree with the translator's usage, and an upstream error must reach the client as
its SDK's error. The SDKs run unchanged; only the HTTP transport serves the golden bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses._responses import ResponseStreamState

STREAMS = Path(__file__).resolve().parents[1] / "golden" / "streams"
CASES = sorted(p for p in STREAMS.glob("*/*.*.sse"))


def _usage(path: Path) -> dict[str, int]:
    usage: dict[str, int] = json.loads(path.with_suffix(".usage.json").read_text())
    return usage


def _openai(raw: bytes) -> openai.OpenAI:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    http = httpx.Client(transport=httpx.MockTransport(serve))
    return openai.OpenAI(api_key="k", base_url="http://gateway/v1", http_client=http)


def _anthropic(raw: bytes) -> anthropic.Anthropic:
    def serve(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    http = httpx2.Client(transport=httpx2.MockTransport(serve))
    return anthropic.Anthropic(api_key="k", base_url="http://gateway", http_client=http)


def _chat(raw: bytes, usage: dict[str, int]) -> None:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    stream = _openai(raw).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    for chunk in stream:
        state.handle_chunk(chunk)
    completion = state.current_completion_snapshot
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls", "content_filter")
    for call in choice.message.tool_calls or ():
        json.loads(call.function.arguments)
    assert completion.usage is not None
    details = completion.usage.prompt_tokens_details
    assert (details.cached_tokens or 0 if details else 0) == usage["cache_read_tokens"]
    assert completion.usage.completion_tokens == usage["output_tokens"]


def _responses(raw: bytes, usage: dict[str, int]) -> None:
    state: ResponseStreamState[Any] = ResponseStreamState(
        input_tools=openai.omit, text_format=openai.omit
    )
    final = None
    stream = _openai(raw).responses.create(model="m", input="hi", stream=True)
    for event in stream:
        for out in state.handle_event(event):
            if out.type in ("response.completed", "response.incomplete"):
                final = out.response
            assert out.type != "error", "an upstream error is the Responses error event"
    assert final is not None
    for item in final.output:
        if item.type == "function_call":
            json.loads(item.arguments)
    assert final.usage is not None
    assert final.usage.input_tokens_details.cached_tokens == usage["cache_read_tokens"]
    assert final.usage.output_tokens == usage["output_tokens"]


def _messages(raw: bytes, usage: dict[str, int]) -> None:
    client = _anthropic(raw)
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = stream.get_final_message()
    assert message.stop_reason is not None
    for block in message.content:
        if block.type == "tool_use":
            assert isinstance(block.input, dict) and block.input
    assert message.usage.input_tokens == usage["input_tokens"]
    assert message.usage.output_tokens == usage["output_tokens"]
    assert (message.usage.cache_read_input_tokens or 0) == usage["cache_read_tokens"]


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_sdk_reads_the_whole_stream(path: Path) -> None:
    client = path.name.split(".")[1]
    raw = path.read_bytes()
    usage = _usage(path)
    if path.name.startswith("error."):
        if client == "responses":
            stream = _openai(raw).responses.create(model="m", input="hi", stream=True)
            assert [e.type for e in stream][-1] in ("error", "response.failed")
            return
        with pytest.raises((openai.APIError, anthropic.APIError)):
            {"chat": _chat, "messages": _messages}[client](raw, usage)
        return
    {"chat": _chat, "responses": _responses, "messages": _messages}[client](raw, usage)
