"""Anthropic-compatible and Responses upstreams whose streams leave out the `event:` lines, or
name an event otherwise than its data's `type`, through a real gateway process to the official
SDKs.

Covers: an upstream process (this module run as `python -m tests.gateway.test_unnamed_events
PORT`) writes exact SSE bytes: Anthropic's stream with every `event:` line left out, or with
names that disagree with the data's `type` (`event: ping` on a text delta, `event:
content_block_delta` on the `message_delta` that carries the usage), written one event per
write or cut into 7-byte writes (the relay's pass-through and its decode path); and a Responses
stream without `event:` lines. The anthropic SDK's stream gets the text, the stop reason and
the usage (it drops an event without a name: `anthropic._streaming.Stream.__stream__` skips
`sse.event is None`, and before, the gateway passed such events on as they came); the openai
SDK gets the Responses text and usage, and as a Chat client the translated text and usage of
both upstreams; every event the client gets is named by its data's
`type` (docs/translation.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import anthropic
import httpx
import openai
import orjson
import pytest
from aiohttp import web

from tests.gateway.conftest import KEY, Gateway, scripted_gateway

pytestmark = pytest.mark.gateway

TEXT = "Hello, unnamed world"
INPUT_TOKENS, OUTPUT_TOKENS = 12, 7

MESSAGES = [
    b'{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
    b'"model":"m","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":12,"output_tokens":1}}}',
    b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    b'{"type": "ping"}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello,"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" unnamed"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}',
    b'{"type":"content_block_stop","index":0}',
    b'{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":7}}',
    b'{"type":"message_stop"}',
]
RENAMED = {4: b"ping", 7: b"content_block_delta"}
"""Events that a `renamed` upstream names otherwise than their data's type."""

RESPONSES = [
    b'{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":'
    b'"response","created_at":1,"model":"m","status":"in_progress","output":[],'
    b'"parallel_tool_calls":true,"tool_choice":"auto","tools":[]}}',
    b'{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":'
    b'{"id":"msg_1","type":"message","role":"assistant","status":"in_progress","content":[]}}',
    b'{"type":"response.content_part.added","sequence_number":2,"item_id":"msg_1",'
    b'"output_index":0,"content_index":0,"part":{"type":"output_text","text":"",'
    b'"annotations":[]}}',
    b'{"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1",'
    b'"output_index":0,"content_index":0,"delta":"Hello,","logprobs":[]}',
    b'{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1",'
    b'"output_index":0,"content_index":0,"delta":" unnamed world","logprobs":[]}',
    b'{"type":"response.output_text.done","sequence_number":5,"item_id":"msg_1",'
    b'"output_index":0,"content_index":0,"text":"Hello, unnamed world","logprobs":[]}',
    b'{"type":"response.completed","sequence_number":6,"response":{"id":"resp_1","object":'
    b'"response","created_at":1,"model":"m","status":"completed","output":[{"id":"msg_1",'
    b'"type":"message","role":"assistant","status":"completed","content":[{"type":'
    b'"output_text","text":"Hello, unnamed world","annotations":[]}]}],'
    b'"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"usage":{"input_tokens":12,'
    b'"input_tokens_details":{"cached_tokens":0},"output_tokens":7,'
    b'"output_tokens_details":{"reasoning_tokens":0},"total_tokens":19}}}',
]


def _body(events: list[bytes], model: str) -> bytes:
    """The stream's bytes for a model named `<bare|renamed>-<whole|cut>`."""
    out = b""
    for i, data in enumerate(events):
        name = RENAMED.get(i) if model.startswith("renamed") else None
        out += (b"event: " + name + b"\n" if name else b"") + b"data: " + data + b"\n\n"
    return out


async def _serve(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = str(body["model"])
    events = MESSAGES if request.path.endswith("/messages") else RESPONSES
    raw = _body(events, model)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if model.endswith("-cut"):  # reads that end inside events: the relay's decode path
        pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    else:
        pieces = [e + b"\n\n" for e in raw.split(b"\n\n")[:-1]]
    for piece in pieces:  # one write each (aiohttp sends with TCP_NODELAY)
        await response.write(piece)
    await response.write_eof()
    return response


def main(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/messages", _serve)
    app.router.add_post("/v1/responses", _serve)
    app.router.add_get("/ready", lambda _: web.Response(text="ok"))  # type: ignore[arg-type,return-value]
    web.run_app(app, host="127.0.0.1", port=port, print=None)


MODELS = ["bare-whole", "bare-cut", "renamed-whole", "renamed-cut"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    providers = [
        ("anth", "", "anthropic-messages", MODELS),
        ("resp", "/v1", "openai-responses", MODELS),
    ]
    with scripted_gateway(
        "tests.gateway.test_unnamed_events", tmp_path_factory.mktemp("unnamed"), providers
    ) as served:
        yield served


def _names(raw: bytes) -> list[tuple[str | None, object]]:
    """Each event of an SSE body: its `event:` name (None without one) and its data's type."""
    out: list[tuple[str | None, object]] = []
    for block in raw.decode().split("\n\n"):
        lines = block.split("\n")
        name = next((x[7:] for x in lines if x.startswith("event: ")), None)
        data = next((x[6:] for x in lines if x.startswith("data: ")), None)
        if data is not None:
            out.append((name, orjson.loads(data).get("type")))
    return out


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_sdk_reads_a_stream_whose_upstream_left_out_or_misnamed_its_events(
    gateway: Gateway, model: str
) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    with client.messages.stream(
        model=f"anth:{model}", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == TEXT
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)


@pytest.mark.parametrize("model", MODELS[:2])
def test_openai_sdk_reads_a_responses_stream_without_event_lines(
    gateway: Gateway, model: str
) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    events = list(client.responses.create(model=f"resp:{model}", input="hi", stream=True))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == TEXT
    assert events[-1].type == "response.completed"
    usage = events[-1].response.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (12, 7)


@pytest.mark.parametrize("provider", ["anth", "resp"])
@pytest.mark.parametrize("model", MODELS[:2])
def test_chat_client_on_an_upstream_without_event_lines(
    gateway: Gateway, provider: str, model: str
) -> None:
    """The translated stream (the readers' text-delta fast path and the decode path)."""
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=f"{provider}:{model}",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)


ASK = {
    "anth": ("/v1/messages", {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}),
    "resp": ("/v1/responses", {"input": "hi"}),
}


@pytest.mark.parametrize(
    ("provider", "model"),
    [*(("anth", m) for m in MODELS), ("resp", "bare-whole"), ("resp", "bare-cut")],
)
def test_every_event_the_client_gets_is_named_by_its_type(
    gateway: Gateway, provider: str, model: str
) -> None:
    path, body = ASK[provider]
    with httpx.stream(
        "POST",
        gateway.url + path,
        json={**body, "model": f"{provider}:{model}", "stream": True},
        headers={"Authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        raw = response.read()
    names = _names(raw)
    assert len(names) == len(MESSAGES if provider == "anth" else RESPONSES)
    assert all(name == typed for name, typed in names), raw


if __name__ == "__main__":
    main(int(sys.argv[1]))
