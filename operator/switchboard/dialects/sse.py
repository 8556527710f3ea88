"""Server-sent events: an incremental decoder that takes any split of the byte stream, and encode().

One implementation for every stream, on the hot path, so it is written for speed: it splits on
blank lines with `bytes.find` and parses only the `event:` and `data:` fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Event:
    event: str | None
    data: bytes


class Decoder:
    """Feed bytes as they arrive; get the complete events they finish."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            # CRLF or CR line endings: normalise, keeping a trailing CR for the next chunk.
            tail = b"\r" if buffer.endswith(b"\r") else b""
            buffer = buffer[: len(buffer) - len(tail)].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            buffer += tail
        events: list[Event] = []
        start = 0
        find = buffer.find
        while (end := find(b"\n\n", start)) >= 0:
            event = _parse(buffer[start:end])
            if event is not None:
                events.append(event)
            start = end + 2
        self._buffer = buffer[start:] if start else buffer
        return events

    @property
    def buffered(self) -> bool:
        """Bytes of an unfinished event are waiting for the next chunk."""
        return bool(self._buffer)

    def close(self) -> list[Event]:
        """Events left when the stream ended without a final blank line."""
        rest, self._buffer = self._buffer.rstrip(b"\r\n"), b""
        event = _parse(rest) if rest else None
        return [event] if event is not None else []


_NAMES = {
    name.encode(): name
    for name in [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.refusal.delta",
        "response.refusal.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "response.reasoning_summary_text.delta",
    ]
}
"""Event names every stream repeats, so that they are not decoded again for each event."""


def _parse(block: bytes) -> Event | None:
    # Fast paths for what every server sends: `data: ...` and `event: x\ndata: ...`, one line.
    if block.startswith(b"data: "):
        if b"\n" not in block:
            return Event(None, block[6:])
    elif block.startswith(b"event: "):
        eol = block.find(b"\n")
        if eol > 0 and block.startswith(b"data: ", eol + 1) and block.find(b"\n", eol + 1) < 0:
            raw = block[7:eol]
            return Event(_NAMES.get(raw) or raw.decode("utf-8", "replace"), block[eol + 7 :])
    return _parse_fields(block)


def _parse_fields(block: bytes) -> Event | None:
    """Any other block: comments, fields without a space, multi-line data, `id:`, `retry:`."""
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # ':' comment
            continue
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data and name is None:
        return None
    return Event(name, b"\n".join(data))


def encode(event: str | None, data: bytes) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
