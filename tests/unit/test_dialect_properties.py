"""Property tests of the translators and the SSE decoder.

Covers: random valid requests of each client dialect, to every upstream dialect, give a dict or
a TranslationError (never another exception); random JSON-ish junk in place of a request gives
nothing but TranslationError or a dict; every golden upstream stream, cut at random places,
gives every client the same bytes as uncut; a stream cut off before the upstream said how the
answer ended gives every client its error event, never a normal ending. (The SSE decoder's
own properties: test_sse.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.dialects import errors, registry, sse
from switchboard.dialects.types import Ctx, Dialect


def fresh() -> Ctx:
    """A Ctx per request, as the gateway makes one: translators note what they dropped in it."""
    return Ctx("up", "p:up", 128, False)


text = st.text(max_size=20)
image_url = st.sampled_from(["data:image/png;base64,AAAA", "https://example.com/a.png"])
chat_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": image_url})}
    ),
)
tool_call = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=5),
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": st.just("f"), "arguments": st.sampled_from(["{}", '{"a":1}', "", "[1]"])}
        ),
    }
)
chat_message = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user"]),
            "content": st.one_of(text, st.lists(chat_part, max_size=3)),
        }
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.one_of(st.none(), text)},
        optional={"tool_calls": st.lists(tool_call, max_size=2)},
    ),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": text, "content": text}),
)
chat_request = st.fixed_dictionaries(
    {"model": st.just("m"), "messages": st.lists(chat_message, min_size=1, max_size=5)},
    optional={
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "stop": st.one_of(text, st.lists(text, max_size=2)),
        "tools": st.just([{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        "tool_choice": st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": "f"}}]
        ),
        "max_tokens": st.integers(1, 100),
        "stream": st.booleans(),
        "user": text,
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}]),
    },
)
block = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries(
        {
            "type": st.just("image"),
            "source": st.one_of(
                st.fixed_dictionaries(
                    {
                        "type": st.just("base64"),
                        "media_type": st.just("image/png"),
                        "data": st.just("AAAA"),
                    }
                ),
                st.fixed_dictionaries({"type": st.just("url"), "url": image_url}),
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_use"),
            "id": text,
            "name": st.just("f"),
            "input": st.dictionaries(text, st.integers(), max_size=2),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_result"),
            "tool_use_id": text,
            "content": st.one_of(
                text,
                st.lists(
                    st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2
                ),
            ),
        }
    ),
)
messages_request = st.fixed_dictionaries(
    {
        "model": st.just("m"),
        "max_tokens": st.integers(1, 100),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "assistant"]),
                    "content": st.one_of(text, st.lists(block, max_size=3)),
                }
            ),
            min_size=1,
            max_size=4,
        ),
    },
    optional={
        "system": st.one_of(
            text,
            st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2),
        ),
        "stop_sequences": st.lists(text, max_size=2),
        "temperature": st.floats(0, 1),
        "tool_choice": st.sampled_from(
            [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "f"}]
        ),
        "tools": st.just([{"name": "f", "input_schema": {"type": "object"}}]),
    },
)
item = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "developer"]), "content": text}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("function_call"),
            "call_id": text,
            "name": st.just("f"),
            "arguments": st.just("{}"),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("function_call_output"), "call_id": text, "output": text}
    ),
)
responses_request = st.fixed_dictionaries(
    {"model": st.just("m"), "input": st.one_of(text, st.lists(item, min_size=1, max_size=4))},
    optional={
        "instructions": text,
        "max_output_tokens": st.integers(1, 100),
        "tools": st.just([{"type": "function", "name": "f", "parameters": {}}]),
        "tool_choice": st.sampled_from(["auto", "required", {"type": "function", "name": "f"}]),
    },
)
junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "input",
                    "role",
                    "content",
                    "type",
                    "tools",
                    "tool_calls",
                    "system",
                    "stop",
                    "text",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


def _all_upstreams(client: Dialect, body: Any) -> None:
    for upstream in Dialect:
        try:
            out = registry.get(client, upstream).translate_request(body, fresh())
        except errors.TranslationError:
            continue
        assert isinstance(out, dict)


@settings(max_examples=150, deadline=None)
@given(chat_request)
def test_random_chat_requests(body: dict[str, Any]) -> None:
    _all_upstreams(Dialect.CHAT, body)


@settings(max_examples=150, deadline=None)
@given(messages_request)
def test_random_messages_requests(body: dict[str, Any]) -> None:
    _all_upstreams(Dialect.MESSAGES, body)


@settings(max_examples=150, deadline=None)
@given(responses_request)
def test_random_responses_requests(body: dict[str, Any]) -> None:
    _all_upstreams(Dialect.RESPONSES, body)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(Dialect)),
    st.dictionaries(
        st.sampled_from(
            ["model", "messages", "input", "system", "tools", "tool_choice", "stop", "instructions"]
        ),
        junk,
        max_size=5,
    ),
)
def test_junk_is_a_translation_error_or_a_dict(client: Dialect, body: dict[str, Any]) -> None:
    _all_upstreams(client, body)


GOLDEN_STREAMS = sorted(
    (Path(__file__).resolve().parents[1] / "golden" / "streams").glob("*/*.sse")
)
UPSTREAM_STREAMS = [p for p in GOLDEN_STREAMS if p.name.count(".") == 1]
SCTX = Ctx("up", "p:up", 128, True, True, "r", 1)


def _run(client: Dialect, upstream: Dialect, raw: bytes, cuts: list[int]) -> tuple[bytes, Any]:
    translator = registry.get(client, upstream).stream(SCTX)
    decoder = sse.Decoder()
    out = b""
    last = 0
    for cut in [*sorted(c for c in cuts if c <= len(raw)), len(raw)]:
        out += b"".join(translator.feed(e) for e in decoder.feed(raw[last:cut]))
        last = cut
    out += b"".join(translator.feed(e) for e in decoder.close())
    return out + translator.finish(), translator.usage


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(UPSTREAM_STREAMS),
    st.sampled_from(list(Dialect)),
    st.lists(st.integers(0, 6000), max_size=40),
    st.booleans(),
)
def test_any_split_of_an_upstream_stream(
    path: Path, client: Dialect, cuts: list[int], crlf: bool
) -> None:
    upstream = Dialect(path.parent.name)
    raw = path.read_bytes()
    whole, usage = _run(client, upstream, raw, [])
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    again, usage_again = _run(client, upstream, raw, cuts)
    assert again == whole
    assert usage_again == usage


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(UPSTREAM_STREAMS), st.sampled_from(list(Dialect)), st.data())
def test_a_stream_cut_off_ends_with_the_clients_error(
    path: Path, client: Dialect, data: st.DataObject
) -> None:
    """Upstream bytes that stop before the answer's end (a dropped connection) never look like
    a complete answer: the client's stream ends with its error event, exactly once."""
    upstream = Dialect(path.parent.name)
    events = sse.Decoder().feed(path.read_bytes())
    ends = {
        Dialect.CHAT: lambda e: b'"finish_reason":"' in e.data or b'"error"' in e.data,
        Dialect.MESSAGES: lambda e: e.event in ("message_delta", "error"),
        Dialect.RESPONSES: lambda e: (
            e.event in ("response.completed", "response.incomplete", "response.failed", "error")
        ),
    }
    first_end = next(i for i, e in enumerate(events) if ends[upstream](e))
    cut = data.draw(st.integers(0, first_end - 1)) if first_end else 0
    translator = registry.get(client, upstream).stream(SCTX)
    out = b"".join(translator.feed(e) for e in events[:cut]) + translator.finish()
    assert translator.finish() == b""
    last = sse.Decoder().feed(out)[-1]
    assert b"the upstream ended the stream before the answer was complete" in last.data
