"""What coding agents send, beyond the goldens: stop sequences enforced by the gateway on a
Responses upstream, and the strict SDK check the goldens rely on.

Covers: a streamed answer cut at the first stop sequence whatever the deltas' boundaries (every
split of the text into two and three deltas gives the whole text's cut, and never more than
len(longest) - 1 characters are held back); the stop reason and `stop_sequence` a Messages
client gets; held-back text that begins no stop sequence is sent at the end; the strict check
rejects an unknown key deep in a request and a wrong item of a nested list, both of which
pydantic's TypeAdapter over the same SDK TypedDict lets through; a Messages client's system
turn with a non-text block is refused in Anthropic's own words.
"""

from __future__ import annotations

import itertools

import orjson
import pytest
from anthropic.types import message_create_params
from pydantic import TypeAdapter

from switchboard.dialects import common, errors, registry, sse
from switchboard.dialects.types import Ctx, Dialect
from tests.support.sdk_strict import StrictError, strict


def _ctx(stops: tuple[str, ...]) -> Ctx:
    return Ctx("m", "p:m", 100, stream=True, request_id="r", stop=stops)


def _events(deltas: list[str]) -> list[sse.Event]:
    def event(data: dict[str, object]) -> sse.Event:
        return sse.Event(None, orjson.dumps(data))

    response = {"id": "resp_1", "model": "m", "status": "completed", "output": []}
    out = [event({"type": "response.created", "response": response})]
    out += [event({"type": "response.output_text.delta", "delta": d}) for d in deltas]
    usage = {"input_tokens": 3, "output_tokens": 5}
    out.append(event({"type": "response.completed", "response": {**response, "usage": usage}}))
    return out


def _stream_text(deltas: list[str], stops: tuple[str, ...]) -> tuple[str, str | None]:
    translator = registry.get(Dialect.MESSAGES, Dialect.RESPONSES).stream(_ctx(stops))
    raw = b"".join(translator.feed(e) for e in _events(deltas)) + translator.finish()
    text = ""
    sequence = reason = None
    for event in sse.Decoder().feed(raw):
        data = orjson.loads(event.data)
        if data["type"] == "content_block_delta":
            text += data["delta"]["text"]
        elif data["type"] == "message_delta":
            reason, sequence = data["delta"]["stop_reason"], data["delta"]["stop_sequence"]
    assert reason == ("stop_sequence" if sequence else "end_turn")
    return text, sequence


TEXTS = ["abc END def", "ENEND", "no stop here E", "x5y", "EN", "END"]
STOPS = ("END", "5")


@pytest.mark.parametrize("text", TEXTS)
def test_stop_found_whatever_the_delta_boundaries(text: str) -> None:
    expected = common.cut_at_stop(text, STOPS)
    for first, second in itertools.combinations_with_replacement(range(len(text) + 1), 2):
        deltas = [text[:first], text[first:second], text[second:]]
        got = _stream_text([d for d in deltas if d], STOPS)
        assert got == expected, deltas


def test_hold_back_is_bounded() -> None:
    assert common.stop_hold("abcEN", ("END", "5")) == 2
    assert common.stop_hold("abcE", ("END",)) == 1
    assert common.stop_hold("abc", ("END",)) == 0
    assert common.stop_hold("xxxxxxxx", ("xxxx",)) == 3  # at most len(longest) - 1


def test_strict_check_rejects_what_typeadapter_lets_through() -> None:
    params = message_create_params.MessageCreateParamsNonStreaming
    unknown = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "bogus": 1}]}],
    }
    nested = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "text", "text": 42}]}],
    }
    adapter = TypeAdapter(params)
    adapter.validate_python(unknown)  # today's check: both pass
    adapter.validate_python(nested)
    with pytest.raises(StrictError, match="bogus"):
        strict(params, unknown)
    with pytest.raises(StrictError, match=r"content\[0\]\.text"):
        strict(params, nested)


def test_system_turn_with_an_image_is_refused_in_anthropics_words() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "image", "source": {}}]},
        ],
    }
    with pytest.raises(errors.UnsupportedFeature) as caught:
        registry.get(Dialect.MESSAGES, Dialect.CHAT).translate_request(body, _ctx(()))
    assert caught.value.message == common.SYSTEM_ROLE_REFUSAL
    rendered = orjson.loads(errors.render_error(Dialect.MESSAGES, 400, caught.value.message))
    assert rendered["error"]["type"] == "invalid_request_error"
