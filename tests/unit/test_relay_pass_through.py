"""The relay's pass-through of same-dialect streams (relay.chunk_translator with the
`pass_through` of identity.ChatStream, MessagesStream and ResponsesStream).

Covers: chunks of plain events go out as the very bytes that came, with no event decoded; and,
as a property, for every golden Chat upstream stream and for streams built from every kind of
chunk the scan must catch (usage objects, `"usage":null`, errors in OpenAI's and vLLM's shapes,
[DONE], keep-alive comments, multi-line and CRLF events, `data: {` inside a content string, an
event without `data`), cut into reads at random places, with and without the client asking
for usage: the client's bytes, the usage read and the failure seen are those of decoding and
feeding every event, `finish()` included. The same property for Anthropic Messages and OpenAI
Responses streams: every golden upstream stream of the dialect and streams built from every
kind of event (the deltas passed; message_start, message_delta, message_stop, content_block_start
without its fields, response.completed/incomplete/failed with usage and error events decoded;
servers that leave out `event:` lines (the client's events named all the same), `event:`
names that disagree with the data's `type` (the type names the client's event),
comments, `id:` lines, multi-line data, CRLF, a non-ASCII name, data that is not JSON), cut
into reads at random places and cut off at a random byte. And the translated fast path of
Messages and Responses clients on a Chat server (stream_readers.ChatReader.pass_through):
the same property over the Chat streams, with chunks that are more than text (several
choices, tool calls, a finish reason beside text, content that is not a string, errors that
carry `choices`). And the readers' fast path for the text deltas of Anthropic and Responses
upstreams (stream_readers.MessagesReader.pass_through, ResponsesReader.pass_through), for
every client of another dialect: the same property over those dialects' streams (golden,
golden without `event:` lines, built from every kind of event and of delta: texts that are
not strings, missing, escaped or empty, other delta types, a duplicate `type`, another name,
spaced JSON, two `event:` lines), with and without the client's stop sequences (enforced by
the gateway for a Responses upstream).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.dialects import identity, registry, sse
from switchboard.dialects.types import Ctx, Dialect
from switchboard.gateway import relay


def _golden(dialect: str) -> list[Path]:
    streams = Path(__file__).resolve().parents[1] / "golden" / "streams" / dialect
    return sorted(p for p in streams.glob("*.sse") if p.name.count(".") == 1)


GOLDEN = _golden("chat")


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


def _feed_reads(
    translator: registry.Stream, raw: bytes, cuts: list[int], fast: bool
) -> tuple[object, ...]:
    """`raw` cut at `cuts` into reads, through the relay's chunk_translator (`fast`: offered to
    `pass_through` first) or decoded and fed event by event: the client's bytes, the usage and
    the failure."""
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


def _through(raw: bytes, cuts: list[int], include_usage: bool, fast: bool) -> tuple[object, ...]:
    return _feed_reads(identity.ChatStream(_ctx(include_usage)), raw, cuts, fast)


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


def _event(name: bytes | None, data: bytes) -> bytes:
    return (b"event: " + name + b"\n" if name is not None else b"") + b"data: " + data + b"\n\n"


def _typed(name: str, body: bytes) -> bytes:
    """An event as Anthropic and OpenAI send it: `event:` and data whose `type` says the same."""
    return _event(name.encode(), b'{"type":"' + name.encode() + b'"' + body + b"}")


def _variants(pieces: list[bytes]) -> list[bytes]:
    """Each event also without its `event:` line (servers that leave it out)."""
    bare = [p.split(b"\n", 1)[1] for p in pieces if p.startswith(b"event: ")]
    return pieces + bare


MESSAGES_NAMED = _variants(
    [
        _typed(
            "message_start",
            b',"message":{"id":"m","type":"message","role":"assistant","model":"up",'
            b'"content":[],"usage":{"input_tokens":7,"output_tokens":1}}',
        ),
        _typed("content_block_start", b',"index":0,"content_block":{"type":"text","text":""}'),
        _typed("content_block_start", b',"index":0,"content_block":{"type":"text"}'),
        _typed("content_block_delta", b',"index":0,"delta":{"type":"text_delta","text":"tok "}'),
        _typed("content_block_delta", b',"index":0,"delta":{"type":"text_delta","text":"\\n"}'),
        _typed(
            "content_block_delta",
            b',"index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":"}',
        ),
        _typed("ping", b""),
        _typed("content_block_stop", b',"index":0'),
        _typed(
            "message_delta",
            b',"delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}',
        ),
        _typed("message_delta", b',"delta":{},"usage":{"output_tokens":4}'),
        _typed("message_stop", b""),
        _typed("error", b',"error":{"type":"overloaded_error","message":"Overloaded"}'),
    ]
)
MESSAGES_PIECES = [
    *MESSAGES_NAMED,
    # The data's type decides and names the client's event (identity.kind), not the name: a
    # mismatch either way, a type after another field, a name with a quote or an escape.
    _event(b"content_block_delta", b'{"type":"message_delta","usage":{"output_tokens":50}}'),
    _event(b"message_delta", b'{"type":"content_block_delta","usage":{"output_tokens":60}}'),
    _event(b"ping", b'{"index":0,"type":"message_delta","usage":{"output_tokens":90}}'),
    _event(b"content_block_delta", b'{"index":0,"type":"content_block_delta"}'),
    _event(b'content_block"delta', b'{"type":"content_block"delta"}'),
    _event(b"content_block\\", b'{"type":"content_block\\","x":1}'),
    _event(b"content_block_delta", b'{"type": "content_block_delta","index":0}'),
    _event(None, b'{"type": "content_block_delta","index":0}'),
    _event(None, b'{"type": "message_delta","usage":{"output_tokens":30}}'),
    _event(b"content_block_delta", b'{"type":"message\\nstop"}'),
    _event(None, b'{"type":""}'),
    _event(b"ping", b'{"type":7}'),
    _event(b"content_block_delta", b"[not an object]"),
    _event(b"content_block_delta", b'{"broken'),
    _event(b"\xc3\xa9v\xc3\xa9nement", b'{"type":"x"}'),
    _event(b"", b'{"type":"content_block_delta"}'),
    b"event:content_block_delta\ndata:{}\n\n",
    b": keep-alive\n\n",
    b"id: 4\n" + _typed("content_block_delta", b""),
    b'event: content_block_delta\ndata: {"type":\ndata: "content_block_delta"}\n\n',
    _typed("content_block_delta", b',"index":0').replace(b"\n", b"\r\n"),
    b"event: ping\n\n",
    b'event: content_block_delta\ndata: {"text":"a\rdata: b"}\n\n',
    # without `event:`: a type written with an escape, a type after another field, no quote
    _event(None, b'{"type":"message\\u005fdelta","usage":{"output_tokens":70}}'),
    _event(None, b'{"index":0,"type":"message_delta","usage":{"output_tokens":80}}'),
    _event(None, b'{"type":"message_delta'),
]

RESPONSES_NAMED = _variants(
    [
        _typed("response.created", b',"response":{"id":"r","status":"in_progress","output":[]}'),
        _typed("response.output_item.added", b',"output_index":0,"item":{"type":"message"}'),
        _typed("response.output_text.delta", b',"item_id":"i","delta":"tok ","sequence_number":3'),
        _typed("response.function_call_arguments.delta", b',"item_id":"f","delta":"{\\"a"'),
        _typed("response.refusal.delta", b',"item_id":"i","delta":"no"'),
        _typed("response.output_text.done", b',"item_id":"i","text":"tok tok "'),
        _typed(
            "response.completed",
            b',"response":{"status":"completed","usage":{"input_tokens":11,'
            b'"input_tokens_details":{"cached_tokens":4},"output_tokens":6}}',
        ),
        _typed(
            "response.incomplete",
            b',"response":{"status":"incomplete","usage":{"input_tokens":3,"output_tokens":2}}',
        ),
        _typed(
            "response.failed",
            b',"response":{"status":"failed","error":{"code":"server_error","message":"crash"},'
            b'"usage":{"input_tokens":5,"output_tokens":1}}',
        ),
        _typed("error", b',"code":"rate_limit","message":"slow down"'),
    ]
)
RESPONSES_PIECES = [
    *RESPONSES_NAMED,
    _event(b"response.output_text.delta", b'{"type":"response.completed","response":{}}'),
    _event(b"response.created", b'{"item_id":"i","type":"response.output_text.delta"}'),
    _event(b"response.output_text.delta", b'{"type": "response.output_text.delta"}'),
    _event(None, b'{"type": "response.output_text.delta","delta":"s"}'),
    _event(b"response.output_text.delta", b'{"type":"response.refusal.delta"}'),
    _event(b"response.completed", b'{"type":"response.output_text.delta","delta":"x"}'),
    _event(b"response.output_text.delta", b"[1]"),
    _event(b"response.\xff.delta", b'{"type":"x"}'),
    b"event:response.output_text.delta\ndata:{}\n\n",
    b": keep-alive\n\n",
    b"id: 9\n" + _typed("response.output_text.delta", b""),
    _typed("response.output_text.delta", b"").replace(b"\n", b"\r\n"),
    b'event: response.output_text.delta\ndata: {"type":\ndata: "x"}\n\n',
    b'event: response.output_text.delta\ndata: {"delta":"a\rdata: b"}\n\n',
    _event(None, b'{"type":"response.\\u0063ompleted","response":{"usage":{"input_tokens":9}}}'),
    _event(None, b'{"sequence_number":1,"type":"error","message":"late type"}'),
    _event(None, b'{"type":"error'),
]

NAMED = {
    Dialect.MESSAGES: (_golden("messages"), MESSAGES_PIECES),
    Dialect.RESPONSES: (_golden("responses"), RESPONSES_PIECES),
}
SCTX = _ctx(True)
STREAMS: dict[Dialect, type[identity.MessagesStream | identity.ResponsesStream]] = {
    Dialect.MESSAGES: identity.MessagesStream,
    Dialect.RESPONSES: identity.ResponsesStream,
}


def _named_through(dialect: Dialect, raw: bytes, cuts: list[int], fast: bool) -> tuple[object, ...]:
    assert registry.get(dialect, dialect).stream is STREAMS[dialect]
    return _feed_reads(STREAMS[dialect](SCTX), raw, cuts, fast)


def test_plain_messages_and_responses_events_are_passed_on_as_they_came() -> None:
    for dialect, delta, touched in [
        (Dialect.MESSAGES, MESSAGES_PIECES[3], MESSAGES_PIECES[8]),
        (Dialect.RESPONSES, RESPONSES_PIECES[2], RESPONSES_PIECES[6]),
    ]:
        translator = STREAMS[dialect](SCTX)
        translate = relay.chunk_translator(translator, sse.Decoder())
        for read in [delta, delta + delta + delta]:
            assert translate(read) is read  # nothing decoded, joined or copied
        bare = delta.split(b"\n", 1)[1]  # a server that leaves out `event:` lines
        # the client gets each event named by its data's type, still without a decode
        assert translate(bare) == delta
        assert translate(bare + delta + bare) == delta * 3
        assert translator.pass_through(delta + touched) is None  # usage: decoded
        assert translator.pass_through(bare + touched.split(b"\n", 1)[1]) is None
        spaced = delta.replace(b'{"type":"', b'{"type": "', 1)  # a Python server
        assert translate(spaced) is spaced
        assert translate(spaced.split(b"\n", 1)[1]) == spaced
        # a name that is not the data's type: decoded (`identity.kind`: the type names it)
        renamed = b"event: ping\n" + delta.split(b"\n", 1)[1]
        assert translator.pass_through(renamed) is None
        assert translate(renamed) == delta


def test_every_pair_of_messages_and_responses_events() -> None:
    """Each kind of event after each other (and alone), in one read and one read per event."""
    for dialect, (_, pieces) in NAMED.items():
        for first in pieces:
            for second in [b"", *pieces]:
                raw = first + second
                for cuts in ([], [len(first)]):
                    fast = _named_through(dialect, raw, cuts, fast=True)
                    assert fast == _named_through(dialect, raw, cuts, fast=False), raw


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([Dialect.MESSAGES, Dialect.RESPONSES]),
    st.data(),
    st.lists(st.integers(0, 6000), max_size=12),
    st.sampled_from(["anywhere", "on borders", "every event"]),
    st.one_of(st.none(), st.integers(0, 6000)),
)
def test_messages_and_responses_same_bytes_usage_and_failure_as_decoding_every_event(
    dialect: Dialect, data: st.DataObject, cuts: list[int], reads: str, cut_off: int | None
) -> None:
    golden, pieces = NAMED[dialect]
    raw = data.draw(
        st.one_of(
            st.sampled_from(golden).map(Path.read_bytes),
            st.lists(st.sampled_from(pieces), max_size=14).map(b"".join),
        )
    )
    if cut_off is not None:  # the upstream's connection dropped at some byte
        raw = raw[:cut_off]
    if reads != "anywhere":  # reads that end where events end, as a server's writes usually do
        borders = [i + 2 for i in range(len(raw)) if raw.startswith(b"\n\n", i)]
        if reads == "every event":
            cuts = borders
        elif borders:
            cuts = [borders[c % len(borders)] for c in cuts]
    fast = _named_through(dialect, raw, cuts, fast=True)
    slow = _named_through(dialect, raw, cuts, fast=False)
    assert fast == slow


def _bare(raw: bytes) -> bytes:
    return b"".join(line + b"\n" for line in raw.split(b"\n")[:-1] if line[:7] != b"event: ")


def test_servers_without_event_lines_are_read_by_the_datas_type() -> None:
    """A server that leaves out `event:` lines: usage, the stop and errors are read from the
    data's `type`, as from the names (before, the stream counted no usage and a complete
    answer ended with the cut-off error), and the client gets the very bytes of a server that
    names its events (before, the events went out without names, and the anthropic SDKs
    dropped every one of them)."""
    for dialect, (golden, _) in NAMED.items():
        for path in golden:
            raw = path.read_bytes()
            named = _named_through(dialect, raw, [], fast=False)
            for fast in (False, True):
                assert _named_through(dialect, _bare(raw), [], fast) == named, path


def test_every_event_the_client_gets_is_named_by_its_data_type() -> None:
    """Whatever names the upstream wrote or left out, each event the client gets has an
    `event:` line, the same as its data's `type` (when the data has one)."""
    for dialect, (golden, pieces) in NAMED.items():
        for raw in [*(p.read_bytes() for p in golden), *pieces]:
            for upstream in (raw, _bare(raw)):
                for fast in (False, True):
                    out = _named_through(dialect, upstream, [], fast)[0]
                    for event in sse.Decoder().feed(out):  # type: ignore[arg-type]
                        typed = identity.kind(sse.Event(None, event.data))
                        if typed is not None:
                            assert event.event == typed, (upstream, out)


CROSS_PIECES = [
    *PIECES,
    _chunk(b'{"content":"\\u00e9t\\u00e9 \\"quoted\\"\\n"}'),
    _chunk(b'{"content":"x","tool_calls":[{"index":0,"id":"c1","function":{"name":"f"}}]}'),
    _chunk(b'{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}'),
    _chunk(b'{"content":7}'),
    _chunk(b'{"content":"x"}').replace(b'"finish_reason":null', b'"finish_reason":"length"'),
    _chunk(b'{"refusal":"no"}'),
    _chunk(b'{"content":"x"}', b',"object":"error","message":"bad"'),
    _chunk(b"[]"),
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"}},'
    b'{"index":1,"delta":{"content":"b"}}]}\n\n',
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"}}],"usage":{}}\n\n',
    b'data: {"id":"c","choices":[7]}\n\n',
    b'data: {"broken\n\n',
    # JSON across lines: valid JSON, but the second line is no `data:` field
    b'data: {"id":"c",\n"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n',
]


def _cross_through(client: Dialect, raw: bytes, cuts: list[int], fast: bool) -> tuple[object, ...]:
    translator = registry.get(client, Dialect.CHAT).stream(SCTX)
    assert not fast or hasattr(translator, "pass_through")
    return _feed_reads(translator, raw, cuts, fast)


def test_every_pair_of_chat_chunks_translated() -> None:
    for client in (Dialect.MESSAGES, Dialect.RESPONSES):
        for first in CROSS_PIECES:
            for second in [b"", *CROSS_PIECES]:
                raw = first + second
                for cuts in ([], [len(first)]):
                    fast = _cross_through(client, raw, cuts, fast=True)
                    assert fast == _cross_through(client, raw, cuts, fast=False), raw


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([Dialect.MESSAGES, Dialect.RESPONSES]),
    st.one_of(
        st.sampled_from(GOLDEN).map(Path.read_bytes),
        st.lists(st.sampled_from(CROSS_PIECES), max_size=12).map(b"".join),
    ),
    st.lists(st.integers(0, 3000), max_size=12),
    st.sampled_from(["anywhere", "on borders", "every event"]),
)
def test_translated_chat_streams_same_bytes_usage_and_failure_as_decoding_every_event(
    client: Dialect, raw: bytes, cuts: list[int], reads: str
) -> None:
    if reads != "anywhere":
        borders = [i + 2 for i in range(len(raw)) if raw.startswith(b"\n\n", i)]
        if reads == "every event":
            cuts = borders
        elif borders:
            cuts = [borders[c % len(borders)] for c in cuts]
    assert _cross_through(client, raw, cuts, True) == _cross_through(client, raw, cuts, False)


def _delta(text: bytes, name: bytes | None = b"content_block_delta") -> bytes:
    return _event(
        name,
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
        + text
        + b"}}",
    )


def _rdelta(delta: bytes, name: bytes | None = b"response.output_text.delta") -> bytes:
    return _event(
        name,
        b'{"type":"response.output_text.delta","item_id":"i","output_index":0,'
        b'"content_index":0,"delta":' + delta + b',"sequence_number":4}',
    )


READER_PIECES = {
    Dialect.MESSAGES: [
        *MESSAGES_PIECES,
        _delta(b'"tok "'),
        _delta(b'"tok "', None),
        _delta(b'"\\u00e9t\\u00e9 \\"q\\"\\n"'),
        _delta(b'""'),
        _delta(b"7"),
        _delta(b"null"),
        _delta(b'"x"', b"ping"),
        _delta(b'"x"').replace(b'"type":"content_block_delta"', b'"type": "content_block_delta"'),
        _delta(b'"x"').replace(b',"text":"x"', b""),
        _delta(b'"x"').replace(b'"text_delta"', b'"thinking_delta"'),
        _delta(b'"x"').replace(b"}}\n", b',"type":"ping"}\n'),
        _event(b"content_block_delta", b'{"type":"content_block_delta","delta":[1]}'),
        _event(b"content_block_delta", b'{"type":"content_block_delta","delta":null}'),
        _event(b"content_block_delta", b'{"type":"content_block_delta_x","delta":{}}'),
        _event(b"content_block_delta", b'{"type":"content_block_delta"'),
        b"event: content_block_delta\nevent: content_block_delta\n" + _delta(b'"x"', None),
    ],
    Dialect.RESPONSES: [
        *RESPONSES_PIECES,
        _rdelta(b'"tok "'),
        _rdelta(b'"tok "', None),
        _rdelta(b'"\\u00e9t\\u00e9 \\"STOP"'),
        _rdelta(b'"ST"'),
        _rdelta(b'"OP and more"'),
        _rdelta(b'""'),
        _rdelta(b"7"),
        _rdelta(b'"x"', b"response.refusal.delta"),
        _rdelta(b'"x"').replace(b'{"type":"', b'{"type": "'),
        _rdelta(b'"x"').replace(b',"delta":"x"', b""),
        _rdelta(b'"x"').replace(b"4}\n", b'4,"type":"response.completed"}\n'),
        _event(b"response.output_text.delta", b'{"type":"response.output_text.delta_x"}'),
        _event(b"response.output_text.delta", b'{"type":"response.output_text.delta"'),
    ],
}
READER_PAIRS = [
    (Dialect.CHAT, Dialect.MESSAGES),
    (Dialect.RESPONSES, Dialect.MESSAGES),
    (Dialect.CHAT, Dialect.RESPONSES),
    (Dialect.MESSAGES, Dialect.RESPONSES),
]


def _reader_through(
    pair: tuple[Dialect, Dialect], raw: bytes, cuts: list[int], *, fast: bool, stops: bool
) -> tuple[object, ...]:
    client, upstream = pair
    ctx = Ctx("up", "p:up", 128, True, True, "r", 1, stop=("STOP",) if stops else None)
    translator = registry.get(client, upstream).stream(ctx)
    assert hasattr(translator, "pass_through")
    return _feed_reads(translator, raw, cuts, fast)


def test_text_deltas_of_messages_and_responses_upstreams_skip_the_decoder() -> None:
    """A read of text deltas gives the writer's text chunks without an sse.Event: the same
    bytes as decoding, and None for anything else, before any state changed."""
    for client, upstream in READER_PAIRS:
        pieces = READER_PIECES[upstream]
        delta, named = pieces[-16 if upstream is Dialect.MESSAGES else -13], pieces[0]
        translator = registry.get(client, upstream).stream(SCTX)
        assert translator.pass_through(delta) not in (None, b"")  # type: ignore[union-attr]
        assert translator.pass_through(delta * 3) is not None  # type: ignore[union-attr]
        assert translator.pass_through(delta + named) is None  # type: ignore[union-attr]


def test_every_pair_of_events_through_the_reader_fast_paths() -> None:
    for client, upstream in READER_PAIRS:
        for first in READER_PIECES[upstream]:
            for second in [b"", *READER_PIECES[upstream]]:
                raw = first + second
                for cuts in ([], [len(first)]):
                    for stops in (False, True) if upstream is Dialect.RESPONSES else (False,):
                        pair = (client, upstream)
                        fast = _reader_through(pair, raw, cuts, fast=True, stops=stops)
                        slow = _reader_through(pair, raw, cuts, fast=False, stops=stops)
                        assert fast == slow, (client, upstream, raw)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(READER_PAIRS),
    st.data(),
    st.lists(st.integers(0, 6000), max_size=12),
    st.sampled_from(["anywhere", "on borders", "every event"]),
    st.one_of(st.none(), st.integers(0, 6000)),
)
def test_reader_fast_paths_same_bytes_usage_and_failure_as_decoding_every_event(
    pair: tuple[Dialect, Dialect],
    data: st.DataObject,
    cuts: list[int],
    reads: str,
    cut_off: int | None,
) -> None:
    upstream = pair[1]
    stops = data.draw(st.booleans())  # the client's stop sequences, enforced by the gateway
    raw = data.draw(
        st.one_of(
            st.sampled_from(NAMED[upstream][0]).map(Path.read_bytes),
            st.sampled_from(NAMED[upstream][0]).map(lambda p: _bare(p.read_bytes())),
            st.lists(st.sampled_from(READER_PIECES[upstream]), max_size=14).map(b"".join),
        )
    )
    if cut_off is not None:
        raw = raw[:cut_off]
    if reads != "anywhere":
        borders = [i + 2 for i in range(len(raw)) if raw.startswith(b"\n\n", i)]
        if reads == "every event":
            cuts = borders
        elif borders:
            cuts = [borders[c % len(borders)] for c in cuts]
    fast = _reader_through(pair, raw, cuts, fast=True, stops=stops)
    assert fast == _reader_through(pair, raw, cuts, fast=False, stops=stops)
