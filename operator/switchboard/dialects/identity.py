"""Same dialect on both sides: the body passes through with the model, the output limit and the
stream's usage option rewritten, and usage is read on the way back (cheaply: only the events
that carry it are parsed). Anthropic and Responses events go out named by their data's `type`
(`kind`), whatever `event:` line the upstream wrote or left out."""

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


def _plain(names: list[str]) -> dict[bytes, bytes]:
    """The events of a dialect that its identity stream passes as they came (it neither reads
    nor changes them), each name to the bytes a well-formed event of it goes on with after
    `event: <name>`: `data: {"type":"<name>"` (`_SPACED`: with a space after the colon). A name
    outside them (the events the stream reads, a name it does not know, an escape) is
    decoded."""
    lines = {n.encode(): b'\ndata: {"type":"' + n.encode() + b'"' for n in names}
    _SPACED.update({line: line.replace(b'":"', b'": "', 1) for line in lines.values()})
    return lines


_SPACED: dict[bytes, bytes] = {}
"""`_plain`'s lines as Python servers write them (`{"type": "`), looked up on a miss."""


def _plain_events(chunk: bytes, plain: dict[bytes, bytes]) -> int:
    """How many events `chunk` is when it is whole, named events that `feed` gives back
    unchanged (found by a scan, not a decode), -1 otherwise (for `_bare_events`, then the
    decode). Each event is an `event: <name>` line, one `data: {"type":"<name>"...}` line (the
    same name: `kind`) and a blank line, LF endings, the name one of `plain`'s (`_plain`). The
    relay's hot path: per event two finds, a slice, a dict lookup and two prefix checks."""
    if not chunk.endswith(b"\n\n") or b"\r" in chunk:
        return -1
    find, starts, size = chunk.find, chunk.startswith, len(chunk)
    events = start = 0
    while start < size:
        if not starts(b"event: ", start):
            return -1
        eol = find(b"\n", start)  # the event line's end (the chunk ends with one)
        name = chunk[start + 7 : eol]
        line = plain.get(name)
        if line is None:
            return -1
        if not starts(line, eol):
            line = _SPACED[line]
            if not starts(line, eol):
                return -1
        end = find(b"\n", eol + len(line))  # the data line's end
        if not starts(b"\n", end + 1):
            return -1
        events += 1
        start = end + 2
    return events


def _bare_events(chunk: bytes, plain: dict[bytes, bytes]) -> bytes | None:
    """`chunk` with an `event: <type>` line written before each event that has none, as `feed`
    writes it, when it is whole events that `feed` otherwise gives back unchanged: named ones
    as `_plain_events` takes them, and unnamed `data: {"type":"<name>"...}` lines (a server
    that leaves out `event:` lines), the name one of `plain`'s. None: anything else."""
    if not chunk.endswith(b"\n\n") or b"\r" in chunk:
        return None
    find, starts, size = chunk.find, chunk.startswith, len(chunk)
    out: list[bytes] = []
    start = 0
    while start < size:
        if starts(b"event: ", start):
            eol = find(b"\n", start)
            name = chunk[start + 7 : eol]
            line = plain.get(name)
            if line is None:
                return None
            if not starts(line, eol):
                line = _SPACED[line]
                if not starts(line, eol):
                    return None
            end = find(b"\n", eol + len(line))
        else:
            at = start + 15  # the type's first byte in `data: {"type":"`
            if not starts(b'data: {"type":"', start):
                if not starts(b'data: {"type": "', start):
                    return None
                at += 1
            quote = find(b'"', at)
            name = chunk[at:quote]
            if name not in plain:
                return None
            out.append(b"event: " + name + b"\n")
            end = find(b"\n", quote)
        if not starts(b"\n", end + 1):
            return None
        out.append(chunk[start : end + 2])
        start = end + 2
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
        deltas, `content_block_stop`, `ping`, each named as its data's type), found by a
        scan (`_plain_events`); the same with the `event:` lines a server left out written
        in (`_bare_events`); None: anything else, for the caller to decode and `feed` event
        by event (relay.chunk_translator)."""
        if self._done:
            return None
        if _plain_events(chunk, _MESSAGES_PLAIN) < 0:
            return _bare_events(chunk, _MESSAGES_PLAIN)
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
        """`chunk` itself when it is whole events that `feed` gives back unchanged (the
        deltas, items, parts of `_RESPONSES_PLAIN`, each named as its data's type), counted
        for the error event's sequence number, found by a scan (`_plain_events`); the same
        with the `event:` lines a server left out written in (`_bare_events`); None:
        anything else, for the caller to decode and `feed` event by event
        (relay.chunk_translator)."""
        if self._done:
            return None
        events = _plain_events(chunk, _RESPONSES_PLAIN)
        if events < 0:
            named = _bare_events(chunk, _RESPONSES_PLAIN)
            if named is not None:
                self._seq += named.count(b"\n\n")
            return named
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
_MESSAGES_PLAIN = _plain(["content_block_delta", "content_block_stop", "ping"])
_RESPONSES_PLAIN = _plain(
    [
        f"response.{name}"
        for name in [
            "created",
            "in_progress",
            "queued",
            "output_item.added",
            "output_item.done",
            "content_part.added",
            "content_part.done",
            "output_text.delta",
            "output_text.done",
            "output_text.annotation.added",
            "function_call_arguments.delta",
            "function_call_arguments.done",
            "custom_tool_call_input.delta",
            "custom_tool_call_input.done",
            "refusal.delta",
            "refusal.done",
            "reasoning_summary_part.added",
            "reasoning_summary_part.done",
            "reasoning_summary_text.delta",
            "reasoning_summary_text.done",
            "reasoning_text.delta",
            "reasoning_text.done",
        ]
    ]
)
"""The events the identity streams pass as they came: every other one (message_start,
message_delta, message_stop, content_block_start, the response's end, error: read or changed;
a name not listed) is decoded and fed."""


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
