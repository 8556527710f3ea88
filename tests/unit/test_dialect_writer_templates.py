"""The writers' text deltas rendered from byte templates (chat_writer, messages_writer,
responses_writer `text`).

Covers, as a property over any text (quotes, backslashes, control characters, line separators,
non-ASCII, emoji) and any upstream id and model: each writer's text event is byte for byte the
event its dict path renders (`orjson.dumps` of the whole event), in the first and later blocks
and items, after a tool call, and for the Chat writer when `start()` comes after text (the id
and model change).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.dialects import chat_writer, messages_writer, responses_writer
from switchboard.dialects.types import Ctx

CTX = Ctx("up", "p:up", 128, True, True, "r1", 1700000000)
texts = st.text(min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4), st.text(max_size=5), st.text(max_size=5))
def test_chat_text_chunks(parts: list[str], upstream_id: str, model: str) -> None:
    w = chat_writer.ChatWriter(CTX)
    assert w.text(parts[0]) == w._chunk({"content": parts[0]})  # before start()
    w.start(upstream_id, model)
    for part in parts:
        assert w.text(part) == w._chunk({"content": part})


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4), st.booleans())
def test_messages_text_deltas(parts: list[str], tool_between: bool) -> None:
    w = messages_writer.MessagesWriter(CTX)
    w.start("u", "m")
    for round_ in range(2):
        if tool_between or round_:
            w.tool_start(round_, "call", "f")
        for i, part in enumerate(parts):
            out = w.text(part)
            expected = messages_writer._event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": w._block,
                    "delta": {"type": "text_delta", "text": part},
                },
            )
            assert out.endswith(expected)
            assert i == 0 or out == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4), st.booleans())
def test_responses_text_deltas(parts: list[str], tool_between: bool) -> None:
    w = responses_writer.ResponsesWriter(CTX)
    w.start("u", "m")
    for round_ in range(2):
        if tool_between or round_:
            w.tool_start(round_, "call", "f")
        for i, part in enumerate(parts):
            out = w.text(part)
            item = w._text
            assert item is not None
            w._seq -= 1  # render the same event, numbered alike, through the dict path
            expected = w._event(
                {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": len(w._output) - 1,
                    "content_index": 0,
                    "delta": part,
                    "logprobs": [],
                }
            )
            assert out.endswith(expected)
            assert i == 0 or out == expected
    assert w._chunks == parts  # the item's text, for output_text.done
