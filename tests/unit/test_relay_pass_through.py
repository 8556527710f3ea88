"""The relay's pass-through of same-dialect Chat streams (relay.chunk_translator with
identity.ChatStream.pass_through).

Covers: chunks of plain events go out as the very bytes that came, with no event decoded; and,
as a property, for every golden Chat upstream stream and for streams built from every kind of
chunk the scan must catch (usage objects, `"usage":null`, errors in OpenAI's and vLLM's shapes,
[DONE], keep-alive comments, multi-line and CRLF events, `data: {` inside a content string, an
event without `data`), cut into reads at random places, with and without the client asking
for usage: the client's bytes, the usage read and the failure seen are those of decoding and
feeding every event, `finish()` included.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.dialects import identity, sse
from switchboard.dialects.types import Ctx
from switchboard.gateway import relay

GOLDEN = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "golden" / "streams" / "chat").glob("*.sse")
    if p.name.count(".") == 1
)


def _chunk(delta: bytes, extra: bytes = b"") -> bytes:
    return (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":' + delta + b',"finish_reason":null}]' + extra + b"}\n\n"
    )


PIECES = [
    _chunk(b'{"content":"tok "}'),
    _chunk(b'{"content":"tok "}', b',"usage":null'),
    _chunk(b'{"content":"a \\"usage\\" word"}', b', "usage": null'),
    _chunk(b'{"content":"data: {not an event"}'),
    _chunk(b'{"role":"assistant","content":""}'),
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,'
    b'"total_tokens":8}}\n\n',
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n',
    b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n',
    b'data: {"object":"error","message":"vllm says no","code":400}\n\n',
    b"data: [DONE]\n\n",
    b": keep-alive\n\n",
    b'data: {"id":"c",\ndata: "choices":[]}\n\n',
    _chunk(b'{"content":"crlf"}').replace(b"\n", b"\r\n"),
    b"event: ping\n\n",
    b"data: \n\n",
]


def _ctx(include_usage: bool) -> Ctx:
    return Ctx("up", "p:up", 128, True, include_usage, "r", 1)


def _through(raw: bytes, cuts: list[int], include_usage: bool, fast: bool) -> tuple[object, ...]:
    translator = identity.ChatStream(_ctx(include_usage))
    decoder = sse.Decoder()
    if fast:
        translate = relay.chunk_translator(translator, decoder)
    else:
        feed = translator.feed
        translate = lambda chunk: b"".join([feed(e) for e in decoder.feed(chunk)])  # noqa: E731
    out = b""
    last = 0
    for cut in [*sorted(c for c in cuts if c <= len(raw)), len(raw)]:
        out += translate(raw[last:cut])
        last = cut
    out += b"".join(translator.feed(e) for e in decoder.close())
    out += translator.finish()
    return out, translator.usage, translator.failed


def test_plain_chunks_are_passed_on_as_they_came() -> None:
    translator = identity.ChatStream(_ctx(False))
    translate = relay.chunk_translator(translator, sse.Decoder())
    reads = [PIECES[0], PIECES[1] + PIECES[0] + PIECES[2]]
    for read in reads:
        out = translate(read)
        assert out is read  # the same object: nothing decoded, joined or copied
    assert translator.pass_through(PIECES[6]) is None  # a usage object: decoded
    assert translator.pass_through(b"data: [DONE]\n\n") is None


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.sampled_from(GOLDEN).map(Path.read_bytes),
        st.lists(st.sampled_from(PIECES), max_size=12).map(b"".join),
    ),
    st.lists(st.integers(0, 3000), max_size=12),
    st.booleans(),
    st.booleans(),
)
def test_same_bytes_usage_and_failure_as_decoding_every_event(
    raw: bytes, cuts: list[int], include_usage: bool, on_borders: bool
) -> None:
    if on_borders:  # reads that end where events end, as a server's writes usually do
        borders = [i + 2 for i in range(len(raw)) if raw.startswith(b"\n\n", i)]
        cuts = [borders[c % len(borders)] for c in cuts] if borders else cuts
    fast = _through(raw, cuts, include_usage, fast=True)
    slow = _through(raw, cuts, include_usage, fast=False)
    assert fast == slow
