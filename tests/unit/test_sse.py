"""The SSE decoder and encoder (switchboard.dialects.sse).

Covers: LF, CRLF and lone-CR line endings; multi-line data joined by LF; comments and unknown
fields ignored; `event:` with and without the space; a final event without a blank line
(close()); and, as a property, the same events whatever the byte splits, for random events
with random line endings, and encode() round-trips through the decoder.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.dialects import sse


def _decode(raw: bytes, cuts: list[int] | None = None) -> list[tuple[str | None, bytes]]:
    decoder = sse.Decoder()
    got: list[sse.Event] = []
    last = 0
    for cut in sorted(c for c in cuts or [] if c <= len(raw)):
        got += decoder.feed(raw[last:cut])
        last = cut
    got += decoder.feed(raw[last:])
    got += decoder.close()
    return [(e.event, e.data) for e in got]


def test_line_endings() -> None:
    for eol in (b"\n", b"\r\n", b"\r"):
        raw = b"event: a" + eol + b"data: 1" + eol + eol + b"data: 2" + eol + eol
        assert _decode(raw) == [("a", b"1"), (None, b"2")]


def test_multi_line_data_comments_and_unknown_fields() -> None:
    raw = b": keep-alive\n\nid: 7\nretry: 10\nevent:x\ndata:a\ndata: b\ndata\n\n"
    assert _decode(raw) == [("x", b"a\nb\n")]


def test_only_one_leading_space_is_stripped() -> None:
    assert _decode(b"data:  two\n\n") == [(None, b" two")]


def test_close_flushes_an_unterminated_event() -> None:
    decoder = sse.Decoder()
    assert decoder.feed(b"data: [DONE]") == []
    assert [(e.event, e.data) for e in decoder.close()] == [(None, b"[DONE]")]
    assert decoder.close() == []


def test_crlf_split_between_cr_and_lf() -> None:
    raw = b"data: 1\r\n\r\ndata: 2\r\n\r\n"
    for cut in range(len(raw) + 1):
        assert _decode(raw, [cut]) == [(None, b"1"), (None, b"2")], cut


def test_encode() -> None:
    assert sse.encode(None, b"{}") == b"data: {}\n\n"
    assert sse.encode("ping", b"{}") == b"event: ping\ndata: {}\n\n"


payload = st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b)
events = st.lists(
    st.tuples(st.one_of(st.none(), st.sampled_from(["message_start", "ping", "x"])), payload),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    events,
    st.lists(st.integers(0, 400), max_size=10),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.booleans(),
)
def test_any_split(
    evts: list[tuple[str | None, bytes]], cuts: list[int], eol: bytes, comments: bool
) -> None:
    raw = b"".join(
        (b": c" + eol if comments else b"")
        + (b"event: " + name.encode() + eol if name else b"")
        + b"data: "
        + data
        + eol
        + eol
        for name, data in evts
    )
    assert _decode(raw, cuts) == list(evts)


@settings(max_examples=200, deadline=None)
@given(events, st.lists(st.integers(0, 400), max_size=10))
def test_encode_round_trips(evts: list[tuple[str | None, bytes]], cuts: list[int]) -> None:
    raw = b"".join(sse.encode(name, data) for name, data in evts)
    assert _decode(raw, cuts) == list(evts)
