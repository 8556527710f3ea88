"""Upstream stream fields of the wrong JSON type, through a real gateway process to the
official SDKs (docs/translation.md, "Fields of the wrong type").

Covers: an upstream process (this module run as `python -m tests.gateway.test_wrong_type_deltas
PORT`) writes exact SSE bytes, chosen by the model name: an Anthropic stream whose tool call's
`input_json_delta.partial_json` is a number, a Chat stream whose `refusal` delta is a number,
a Chat stream whose tool call's `index` is a string, each after some text (so the client's
stream has begun); and a Chat stream whose first chunk's `choices` is a number (read by the
hold-back of the same-dialect pass-through). The openai SDK (a Chat client on the Anthropic
upstream) and the anthropic SDK (a Messages client on the Chat upstream) raise their own API
error from the client's error event, not a connection error nor a TypeError of their
accumulators, and the text before it arrived; the pass-through answers 200 and ends with
[DONE], not a 500.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from aiohttp import web

from tests.gateway.conftest import KEY, Gateway, scripted_gateway

pytestmark = pytest.mark.gateway

MESSAGES_ARGS_NUMBER = [
    b'{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
    b'"model":"m","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":12,"output_tokens":1}}}',
    b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}',
    b'{"type":"content_block_stop","index":0}',
    b'{"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
    b'"id":"toolu_1","name":"weather","input":{}}}',
    b'{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":7}}',
    b'{"type":"content_block_stop","index":1}',
    b'{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
    b'"usage":{"output_tokens":7}}',
    b'{"type":"message_stop"}',
]


def _chunk(delta: bytes, finish: bytes = b"null") -> bytes:
    return (
        b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":' + delta + b',"finish_reason":' + finish + b"}]}"
    )


_USAGE = (
    b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
)
CHAT = {
    "refusal-number": [
        _chunk(b'{"role":"assistant","content":"Hello"}'),
        _chunk(b'{"refusal":7}'),
        _chunk(b"{}", b'"stop"'),
        _USAGE,
        b"[DONE]",
    ],
    "index-string": [
        _chunk(b'{"role":"assistant","content":"Hello"}'),
        _chunk(
            b'{"tool_calls":[{"index":"0","id":"call_1","type":"function",'
            b'"function":{"name":"weather","arguments":""}}]}'
        ),
        _chunk(b"{}", b'"tool_calls"'),
        _USAGE,
        b"[DONE]",
    ],
    "choices-number": [
        b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":7,'
        b'"x":{"delta":1}}',
        _chunk(b'{"role":"assistant","content":"Hello"}'),
        _chunk(b"{}", b'"stop"'),
        _USAGE,
        b"[DONE]",
    ],
}


async def _serve(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if request.path.endswith("/messages"):
        events = MESSAGES_ARGS_NUMBER
        named = True
    else:
        events = CHAT[str(body["model"])]
        named = False
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for data in events:  # one write each (aiohttp sends with TCP_NODELAY)
        name = data[9 : data.index(b'"', 9)] if named else b""
        await response.write((b"event: " + name + b"\n" if named else b"") + b"data: " + data)
        await response.write(b"\n\n")
    await response.write_eof()
    return response


def main(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/messages", _serve)
    app.router.add_post("/v1/chat/completions", _serve)
    app.router.add_get("/ready", lambda _: web.Response(text="ok"))  # type: ignore[arg-type,return-value]
    web.run_app(app, host="127.0.0.1", port=port, print=None)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    providers = [
        ("anth", "", "anthropic-messages", ["args-number"]),
        ("chat", "/v1", "openai-completions", list(CHAT)),
    ]
    with scripted_gateway(
        "tests.gateway.test_wrong_type_deltas", tmp_path_factory.mktemp("wrongtypes"), providers
    ) as served:
        yield served


def test_openai_chat_client_gets_an_api_error_for_a_number_partial_json(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="anth:args-number", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = ""
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert not isinstance(raised.value, openai.APIConnectionError)
    assert "partial_json" in str(raised.value)
    assert text == "Hello"


@pytest.mark.parametrize("model", ["refusal-number", "index-string"])
def test_anthropic_client_gets_an_api_error_for_a_wrong_typed_chat_delta(
    gateway: Gateway, model: str
) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    text = ""
    with (
        pytest.raises(anthropic.APIError) as raised,
        client.messages.stream(
            model=f"chat:{model}", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        for piece in stream.text_stream:
            text += piece
    assert not isinstance(raised.value, anthropic.APIConnectionError)
    assert text == "Hello"


def test_chat_pass_through_of_a_number_choices_is_not_a_500(gateway: Gateway) -> None:
    """The hold-back reads a same-dialect Chat stream's first chunks for content: a `choices`
    that is not a list is no content, and the bytes pass on as the upstream wrote them."""
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={
            "model": "chat:choices-number",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ) as response:
        raw = response.read()
    assert response.status_code == 200, raw
    assert b'"choices":7' in raw and b'"content":"Hello"' in raw
    assert raw.endswith(b"data: [DONE]\n\n")


if __name__ == "__main__":
    main(int(sys.argv[1]))
