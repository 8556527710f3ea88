"""Same dialect on both sides: the body passes through with the model, the output limit and the
stream's usage option rewritten, and usage is read on the way back (cheaply: only the events
that carry it are parsed)."""

from __future__ import annotations

import orjson

from switchboard.dialects import common, errors, sse, stream_readers
from switchboard.dialects.types import Ctx, Dialect, Json, Usage

_MAX_FIELD = {
    Dialect.CHAT: "max_tokens",
    Dialect.RESPONSES: "max_output_tokens",
    Dialect.MESSAGES: "max_tokens",
}


def request(dialect: Dialect, body: Json, ctx: Ctx) -> Json:
    out = dict(body)
    out["model"] = ctx.upstream_model
    if ctx.max_tokens is not None:
        field = _MAX_FIELD[dialect]
        if dialect is Dialect.CHAT and "max_completion_tokens" in body:
            # Keep the client's field: OpenAI's reasoning models refuse `max_tokens`.
            field = "max_completion_tokens"
            out.pop("max_tokens", None)
        out[field] = ctx.max_tokens
    if dialect is Dialect.CHAT and ctx.stream:
        options = dict(out.get("stream_options") or {})
        options["include_usage"] = True
        out["stream_options"] = options
    if dialect is Dialect.RESPONSES:
        out.setdefault("store", False)
    return out


_SHAPE = {
    Dialect.CHAT: ("choices", "a list 'choices'"),
    Dialect.RESPONSES: ("output", "a list 'output'"),
    Dialect.MESSAGES: ("content", "a list 'content' (and 'type': 'message')"),
}


def check_answer(dialect: Dialect, body: object) -> None:
    """A non-stream answer has its API's shape: the top-level fields every SDK reads (two dict
    lookups). A 200 without them is the upstream's failure (MalformedPayload), not an answer
    to pass on or translate."""
    field, what = _SHAPE[dialect]
    if (
        not isinstance(body, dict)
        or not isinstance(body.get(field), list)
        or (dialect is Dialect.MESSAGES and body.get("type", "message") != "message")
    ):
        raise errors.MalformedPayload(f"the upstream's answer has no {what}")


def usage(dialect: Dialect, body: Json) -> Usage:
    if dialect is Dialect.CHAT:
        return common.usage_from_chat(body.get("usage"))
    if dialect is Dialect.RESPONSES:
        return common.usage_from_responses(body.get("usage"))
    return common.usage_from_messages(body.get("usage"))


def _value_start(data: bytes, key: bytes) -> bytes:
    """The first byte of `key`'s value in a JSON object, found without parsing it (b"" when
    the key is absent): upstreams write JSON compactly (vLLM, Ollama, llama.cpp) or with
    spaces (Python servers)."""
    at = data.find(key)
    if at < 0:
        return b""
    rest = data[at + len(key) :].lstrip(b" \t\r\n")
    return rest[1:].lstrip(b" \t\r\n")[:1] if rest[:1] == b":" else b""


def _load(data: bytes) -> Json | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _message(data: bytes, *path: str) -> str:
    """The error message at `path` in an upstream error event (parsed only for errors)."""
    value: object = _load(data)
    for key in path:
        if not isinstance(value, dict):
            break  # `{"error": "text"}` (TGI, Ollama): the text is the message
        value = value.get(key)
    return str(value or "upstream error")


UNDECODABLE = stream_readers.UNDECODABLE

_ERROR_STARTS = (b'{"error"', b'{"object":"error"', b'{"object": "error"')
"""How upstream error chunks begin (OpenAI and TGI; vLLM's older shape), checked without a
scan of every chunk."""


_PASS_ERRORS = (b'data: {"error"', b'data: {"object"')
"""Chunks that may be an error (OpenAI's and TGI's, vLLM's older shape): decoded, not passed."""


def _plain_usage(chunk: bytes) -> bool:
    """Every `"usage"` in the chunk is `"usage":null` (or with a space)."""
    plain = chunk.count(b'"usage":null') + chunk.count(b'"usage": null')
    return chunk.count(b'"usage"') == plain


_TYPE_FRONT = (b'{"type":"', b'{"type": "')
"""How Anthropic's and OpenAI's events (and the servers that copy them) begin their data:
the `type` first, written compactly or with a space (Python servers)."""


def kind(event: sse.Event) -> str | None:
    """An Anthropic or Responses event's kind: its data's `type`, or the `event:` name when the
    data has none (None: neither). The data decides, not the name: the SDKs dispatch on it once
    an event is through (the anthropic SDKs and openai-node let only named events through,
    then build the event from its data; openai-python and Codex read the data only), and so do
    the translators (stream_readers). The type is read from the front when it comes first, as
    every server writes it; decoded otherwise. A type with a line break is no name."""
    data = event.data
    for front in _TYPE_FRONT:
        if data.startswith(front):
            at = len(front)
            end = data.find(b'"', at)
            if end > 0 and b"\\" not in data[at:end]:
                return data[at:end].decode("utf-8", "replace")
            break
    value = _load(data)
    typed = value.get("type") if value is not None else None
    if isinstance(typed, str) and "\n" not in typed and "\r" not in typed:
        return typed
    return event.event


def _plain_events(chunk: bytes, touched: frozenset[bytes]) -> int:
    """How many events `chunk` is when it is whole events that `feed` gives back unchanged
    (found by a scan, not a decode); -2 when it is such events but some come without their
    `event:` line (`_named` writes it); -1 otherwise (a comment, `id:`, multi-line data, CR, a
    cut event, a name that is not its data's type: for the caller to decode and `feed` event
    by event). Each event is one `data: {"type":"<type>"...}` line (or `{"type": "`) and a
    blank line, LF endings, after an `event: <type>` line (an ASCII name, the same as the
    data's type: `kind`) or without one; the type not in `touched` (the events the translator
    reads or changes) and written without an escape."""
    if not chunk.endswith(b"\n\n") or b"\r" in chunk:
        return -1
    find, starts, size = chunk.find, chunk.startswith, len(chunk)
    events = start = 0
    bare = False
    while start < size:
        if starts(b"event: ", start):
            eol = find(b"\n", start)  # the event line's end (the chunk ends with one)
            at = eol + 16  # the type's first byte in `data: {"type":"`
            if not starts(b'data: {"type":"', eol + 1):
                if not starts(b'data: {"type": "', eol + 1):
                    return -1
                at += 1
            quote = find(b'"', at)
            name = chunk[at:quote]
            if name != chunk[start + 7 : eol] or not name.isascii():
                return -1
        else:
            at = start + 15
            if not starts(b'data: {"type":"', start):
                if not starts(b'data: {"type": "', start):
                    return -1
                at += 1
            quote = find(b'"', at)
            name = chunk[at:quote]
            bare = True
        end = find(b"\n", at)  # the data line's end
        if quote < 0 or quote > end or name in touched or b"\\" in name:
            return -1
        if not starts(b"\n", end + 1):
            return -1
        events += 1
        start = end + 2
    return -2 if bare else events


def _named(chunk: bytes) -> bytes:
    """A chunk that `_plain_events` passed (-2) with each event's `event: <type>` line written
    where the server left it out, as `feed` writes it."""
    out: list[bytes] = []
    start, find, size = 0, chunk.find, len(chunk)
    while start < size:
        end = find(b"\n\n", start) + 2
        if chunk.startswith(b"data: ", start):
            at = find(b'"', start + 14) + 1  # after `data: {"type":` and its quote
            out.append(b"event: " + chunk[at : find(b'"', at)] + b"\n")
        out.append(chunk[start:end])
        start = end
    return b"".join(out)


class ChatStream:
    """Chunks pass through; the usage chunk is read for billing and removed when the client
    did not ask for it (the gateway always asks the upstream)."""

    __slots__ = ("_before", "_done", "_last", "ctx", "failed", "usage")

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self._done = False
        self._before = self._last = b""  # the last two chunks, for finish() to look at
        self.failed: str | None = None
        """Why the stream ended in an error event (stream_readers._Reader.failed)."""

    def feed(self, event: sse.Event) -> bytes:
        if self._done:
            return b""
        data = event.data
        if data == b"[DONE]":
            self._done = True
            return sse.DONE
        if data[:1] not in b"{":  # neither JSON nor empty (a keep-alive)
            return self.error(UNDECODABLE)
        self._before, self._last = self._last, data
        if data.startswith(_ERROR_STARTS) and (error := _load(data)) and "choices" not in error:
            self._done = True  # the upstream's error ends the stream
            if error.get("object") == "error":  # vLLM's older shape, unknown to the SDK
                return self.error(str(error.get("message") or "upstream error"))
            self.failed = _message(data, "error", "message")
            return b"data: " + data + b"\n\n"
        if _value_start(data, b'"usage"') == b"{" and (chunk := _load(data)) is not None:
            self.usage = common.usage_from_chat(chunk.get("usage"))
            if not self.ctx.include_usage:
                if not chunk.get("choices"):
                    return b""
                chunk["usage"] = None
                data = orjson.dumps(chunk)
        return b"data: " + data + b"\n\n"

    def pass_through(self, chunk: bytes) -> bytes | None:
        """`chunk` itself when it is whole, plain chunk events that `feed` would give back
        unchanged, found by a scan instead of a decode per event: one-line `data: {...}`
        events with LF endings, none an error, [DONE] or a usage object (`"usage":null`, which
        OpenAI sends in every chunk when usage is asked for, is plain). None: anything else,
        for the caller to decode and `feed` event by event. The relay's common case (a Chat
        client on a Chat server): no `sse.Event`, no list, no copy per event."""
        if self._done or not chunk.startswith(b"data: {") or not chunk.endswith(b"\n\n"):
            return None
        end = len(chunk) - 2
        if b"\r" in chunk or (b'"usage"' in chunk and not _plain_usage(chunk)):
            return None
        if chunk.find(b"\n") == end:  # one event, the usual read
            if chunk.startswith(_PASS_ERRORS):
                return None
            # finish() looks for the finish reason's value: the framing around it is harmless.
            self._before, self._last = self._last, chunk
            return chunk
        events = chunk.count(b"\n\n")
        if (
            chunk.count(b"\n") != 2 * events  # one line per event
            or chunk.count(b"\n\ndata: {") != events - 1  # each a `data: {` line
            or chunk.startswith(_PASS_ERRORS)
            or b'\ndata: {"error"' in chunk
            or b'\ndata: {"object"' in chunk
        ):
            return None
        at = chunk.rfind(b"\n\n", 0, end)  # the last two events' data, for finish()
        before = chunk.rfind(b"\n\n", 0, at)
        self._before = chunk[before + 2 if before >= 0 else 0 : at]
        self._last = chunk[at + 2 :]
        return chunk

    def finish(self) -> bytes:
        """[DONE] if the upstream left it out after a finish reason; cut off before one, the
        client's error event."""
        if self._done:
            return b""
        key = b'"finish_reason"'
        if b'"' not in (_value_start(self._last, key), _value_start(self._before, key)):
            return self.error(stream_readers.CUT_OFF)  # (the usage chunk follows the finish)
        self._done = True
        return sse.DONE

    def error(self, message: str) -> bytes:
        self._done = True
        self.failed = message
        return errors.stream_error(Dialect.CHAT, message)


class MessagesStream:
    """Events pass through; usage is read from `message_start` and `message_delta`."""

    __slots__ = ("_done", "_stopped", "ctx", "failed", "usage")

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self._done = False
        self._stopped = False
        self.failed: str | None = None
        """Why the stream ended in an error event (stream_readers._Reader.failed)."""

    def feed(self, event: sse.Event) -> bytes:
        if self._done:
            return b""
        if event.data[:1] not in b"{":  # neither JSON nor empty (a keep-alive)
            return self.error(UNDECODABLE)
        name = kind(event)  # the data's type: the client's event is named by it
        if name in ("message_start", "message_delta"):
            data = _load(event.data) or {}
            if name == "message_start":
                message = data.get("message")
                usage = message.get("usage") if isinstance(message, dict) else None
                self.usage = common.usage_from_messages(usage)
            else:
                common.update_from_message_delta(self.usage, data.get("usage"))
                delta = data.get("delta")
                self._stopped = isinstance(delta, dict) and bool(delta.get("stop_reason"))
        elif name == "content_block_start":
            return sse.encode(name, _complete_block_start(event.data))
        elif name == "message_stop":
            self._done = True
        elif name == "error":
            self._done = True
            self.failed = _message(event.data, "error", "message")
        return sse.encode(name, event.data)

    def pass_through(self, chunk: bytes) -> bytes | None:
        """`chunk` itself when it is whole events that `feed` gives back unchanged (the
        deltas, `content_block_stop`, `ping`), found by a scan (`_plain_events`); None:
        anything else, for the caller to decode and `feed` event by event
        (relay.chunk_translator)."""
        if self._done:
            return None
        events = _plain_events(chunk, _MESSAGES_TOUCHED)
        if events < 0:
            return _named(chunk) if events == -2 else None
        return chunk

    def finish(self) -> bytes:
        """`message_stop` if the upstream left it out after its stop reason; cut off before
        one, the client's error event."""
        if self._done:
            return b""
        if not self._stopped:
            return self.error(stream_readers.CUT_OFF)
        self._done = True
        return sse.encode("message_stop", b'{"type":"message_stop"}')

    def error(self, message: str) -> bytes:
        self._done = True
        self.failed = message
        return errors.stream_error(Dialect.MESSAGES, message)


class ResponsesStream:
    """Events pass through; usage is read from the event that ends the response."""

    __slots__ = ("_done", "_seq", "ctx", "failed", "usage")

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self._seq = 0
        self._done = False
        self.failed: str | None = None
        """Why the stream ended in an error event (stream_readers._Reader.failed)."""

    def feed(self, event: sse.Event) -> bytes:
        if self._done:
            return b""
        if event.data[:1] not in b"{":  # neither JSON nor empty (a keep-alive)
            return self.error(UNDECODABLE)
        name = kind(event)
        if name in _RESPONSE_ENDS:
            data = _load(event.data) or {}
            response = data.get("response")
            usage = response.get("usage") if isinstance(response, dict) else None
            self.usage = common.usage_from_responses(usage)
            self._done = True
            if name == "response.failed":
                error = response.get("error") if isinstance(response, dict) else None
                message = error.get("message") if isinstance(error, dict) else None
                self.failed = str(message or "the upstream's response failed")
        elif name == "error":
            self._done = True
            self.failed = _message(event.data, "message")
        self._seq += 1
        return sse.encode(name, event.data)

    def pass_through(self, chunk: bytes) -> bytes | None:
        """`chunk` itself when it is whole events that `feed` gives back unchanged (every
        event but the response's end and `error`: the deltas, items, parts), counted for the
        error event's sequence number, found by a scan (`_plain_events`); None: anything
        else, for the caller to decode and `feed` event by event (relay.chunk_translator)."""
        if self._done:
            return None
        events = _plain_events(chunk, _RESPONSES_TOUCHED)
        if events == -2:
            self._seq += chunk.count(b"\n\n")
            return _named(chunk)
        if events < 0:
            return None
        self._seq += events
        return chunk

    def finish(self) -> bytes:
        """Nothing after the response's last event; cut off before it, the error event."""
        return b"" if self._done else self.error(stream_readers.CUT_OFF)

    def error(self, message: str) -> bytes:
        self._done = True
        self.failed = message
        return errors.stream_error(Dialect.RESPONSES, message, self._seq)


_RESPONSE_ENDS = frozenset(("response.completed", "response.incomplete", "response.failed"))
_RESPONSES_TOUCHED = frozenset(e.encode() for e in (*_RESPONSE_ENDS, "error"))
_MESSAGES_TOUCHED = frozenset(
    (b"message_start", b"message_delta", b"message_stop", b"content_block_start", b"error")
)
"""The events whose data the identity streams read or change: decoded, never passed."""


_BLOCK_START_FIELDS: dict[str, dict[str, object]] = {
    "text": {"text": ""},
    "thinking": {"thinking": "", "signature": ""},
    "tool_use": {"input": {}},
    "server_tool_use": {"input": {}},
}


def _complete_block_start(data: bytes) -> bytes:
    """`content_block_start` with the fields Anthropic always sends, when a server left them
    out: llm-d-inference-sim sends `{"type": "text"}` without `"text": ""`, and the anthropic
    SDK's stream accumulator then fails on the first delta (`None += str`). Once per block, so
    the pass-through stays bytes for every delta."""
    loaded = _load(data)
    block = loaded.get("content_block") if isinstance(loaded, dict) else None
    if not isinstance(block, dict):
        return data
    missing = {
        k: v
        for k, v in _BLOCK_START_FIELDS.get(str(block.get("type")), {}).items()
        if k not in block
    }
    if not missing:
        return data
    assert isinstance(loaded, dict)
    loaded["content_block"] = {**block, **missing}
    return orjson.dumps(loaded)
