"""Upstream stream events in: the reading half of every translating stream.

A pair's `StreamTranslator` is one reader (the upstream's dialect) driving one writer (the
client's: `chat_writer`, `responses_writer`, `messages_writer`). Readers parse each upstream
event once and call the writer directly: there is no intermediate event type, and a Responses
upstream feeding a Messages client costs the same as one feeding a Chat client. Stop reasons
cross in Anthropic's vocabulary (`end_turn`, `stop_sequence`, `max_tokens`, `tool_use`,
`refusal`), the richest of the three.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from switchboard.dialects import common, sse
from switchboard.dialects.types import Usage


class Writer(Protocol):
    usage: Usage

    def start(self, upstream_id: object = None, model: object = None) -> bytes: ...
    def text(self, text: str) -> bytes: ...
    def has_tool(self, key: object) -> bool: ...
    def tool_start(self, key: object, call_id: object, name: object) -> bytes: ...
    def tool_delta(self, key: object, partial_json: str) -> bytes: ...
    def tool_done(self, key: object) -> bytes: ...
    def stop(self, reason: str, sequence: str | None = None) -> None: ...
    def finish(self) -> bytes: ...
    def error(self, message: str) -> bytes: ...


CUT_OFF = "the upstream ended the stream before the answer was complete"
UNDECODABLE = "the upstream sent a stream event that is not JSON"


class _Reader:
    __slots__ = ("_done", "_stopped", "_w", "failed")

    def __init__(self, writer: Writer) -> None:
        self._w = writer
        self._done = False
        self._stopped = False  # the upstream said how its answer ended
        self.failed: str | None = None
        """Why the stream ended in an error event (the upstream's error, an event that is
        not its dialect's, a cut-off), for the gateway's fallback and accounting."""

    def feed(self, event: sse.Event) -> bytes:
        """Client bytes for one upstream event; an event of the wrong shape ends the stream
        with the client's error event rather than an exception in the gateway."""
        if self._done:
            return b""
        if event.data[:1] not in b"{" and event.data != b"[DONE]":  # b"" (keep-alive) passes
            return self.error(UNDECODABLE)
        try:
            return self._feed(event)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            return self.error(f"malformed upstream event: {exc}")

    def _feed(self, event: sse.Event) -> bytes:
        raise NotImplementedError

    @property
    def usage(self) -> Usage:
        return self._w.usage

    def finish(self) -> bytes:
        """The upstream's bytes ended: close the client's stream, once. An upstream that ended
        without saying how its answer ended was cut off, and the client is told so with its
        error event rather than shown a normal ending."""
        if self._done:
            return b""
        if not self._stopped:
            return self.error(CUT_OFF)
        return self._close()

    def _close(self) -> bytes:
        self._done = True
        try:
            return self._w.finish()
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            return self.error(f"malformed upstream stream: {exc}")  # (a writer's own fault)

    def _stop(self, reason: str, sequence: str | None = None) -> None:
        self._stopped = True
        self._w.stop(reason, sequence)

    def error(self, message: str) -> bytes:
        self._done = True
        self.failed = message
        return self._w.error(message)


def _load(data: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _string(text: object, what: str) -> str:
    """Text for the writers, which keep and join it: anything else is a malformed event (the
    ResponsesWriter failed at the end of the stream on a number). The TypeError is `feed`'s:
    the client's error event ends the stream (docs/translation.md, "Fields of the wrong
    type")."""
    if type(text) is not str:
        raise TypeError(f"the {what} is {_kind(text)}, not a string")
    return text


def _optional(text: object, what: str) -> str:
    """`_string` for a field a server may leave out or write as null (Chat's convention):
    None is "" (nothing to write)."""
    if text is None:
        return ""
    if type(text) is not str:
        raise TypeError(f"the {what} is {_kind(text)}, not a string")
    return text


def _name(name: object, what: str) -> str | None:
    """A tool call's name (None: left out, as before); another type is malformed: a call that
    cannot be named cannot be run."""
    if name is not None and type(name) is not str:
        raise TypeError(f"the {what} is {_kind(name)}, not a string")
    return name


def _index(index: object, what: str) -> int:
    """A content block's or tool call's index, which tells the calls apart: anything but an
    integer (a bool, a float, a string) is malformed, since a delta filed under the wrong call
    would splice two calls' arguments or lose them."""
    if type(index) is not int:
        raise TypeError(f"the {what} is {_kind(index)}, not an integer")
    return index


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _error_message(error: Any) -> str:
    message = error.get("message") if isinstance(error, dict) else error
    return str(message or "upstream error")[:512]  # shown to the client: cut


class ChatReader(_Reader):
    """Upstream Chat Completions chunks (ended by `[DONE]`)."""

    __slots__ = ("_last_tool", "_refused")

    def __init__(self, writer: Writer) -> None:
        super().__init__(writer)
        self._last_tool: object = 0
        self._refused = False

    def _feed(self, event: sse.Event) -> bytes:
        if event.data == b"[DONE]":
            self._stopped = True  # some servers send no finish_reason
            return self._close()
        chunk, failure = common.read_chat_chunk(event.data)
        if failure is not None:
            return self.error(failure)
        if chunk is None:
            return b""
        w = self._w
        out = w.start(chunk.get("id"), chunk.get("model"))
        if isinstance(chunk.get("usage"), dict):
            w.usage = common.usage_from_chat(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = _optional(delta.get("content"), "delta's content")
            if text:
                out += w.text(text)
            else:
                refusal = _optional(delta.get("refusal"), "delta's refusal")
                if refusal:
                    self._refused = True
                    out += w.text(refusal)
            for call in delta.get("tool_calls") or ():
                # `index` names the call; a server that leaves it out names it by `id`, and
                # its later deltas (no id either) continue the last call.
                key = call.get("index")
                if key is None:
                    call_id = call.get("id")
                    key = call_id if type(call_id) is str and call_id else self._last_tool
                else:
                    _index(key, "tool call's index")
                self._last_tool = key
                function = call.get("function") or {}
                if not w.has_tool(key):
                    name = _name(function.get("name"), "tool call's function.name")
                    out += w.tool_start(key, call.get("id"), name)
                arguments = _optional(function.get("arguments"), "tool call's function.arguments")
                if arguments:
                    out += w.tool_delta(key, arguments)
            reason = choice.get("finish_reason")
            if reason is not None:
                if type(reason) is not str:
                    raise TypeError(f"the finish_reason is {_kind(reason)}, not a string")
                if reason:
                    stop = common.FINISH_TO_STOP.get(reason, "end_turn")
                    self._stop("refusal" if stop == "end_turn" and self._refused else stop)
        return out

    def pass_through(self, chunk: bytes) -> bytes | None:
        """The client's bytes for a read of whole plain text chunks (the bulk of a Chat
        stream: one choice whose delta has a `content` string, no tool call, no finish
        reason, no usage object, not an error), what `feed` gives for them: one orjson decode
        per chunk and the writer's `text`, with no sse.Event and no decoder buffer. None:
        anything else, before any state has changed, for the caller to decode and `feed`
        event by event (relay.chunk_translator)."""
        if self._done or not chunk.startswith(b"data: {") or b"\r" in chunk:
            return None
        find, size = chunk.find, len(chunk)
        if find(b"\n") == size - 2 and chunk[-1] == 10:  # one chunk, the usual read
            try:
                value = orjson.loads(chunk[6:-2])
            except orjson.JSONDecodeError:
                return None
            text = _plain_text(value)
            if text is None:
                return None
            w = self._w
            return w.start(value.get("id"), value.get("model")) + w.text(text)
        chunks: list[tuple[dict[str, Any], str]] = []
        start = 0
        while start < size:
            end = find(b"\n", start)
            if (
                end < 0
                or not chunk.startswith(b"\n", end + 1)
                or not chunk.startswith(b"data: {", start)
            ):
                return None
            try:
                value = orjson.loads(chunk[start + 6 : end])
            except orjson.JSONDecodeError:
                return None
            text = _plain_text(value)
            if text is None:
                return None
            chunks.append((value, text))
            start = end + 2
        w = self._w
        return b"".join([w.start(v.get("id"), v.get("model")) + w.text(t) for v, t in chunks])


def _plain_text(chunk: Any) -> str | None:
    """The text of a Chat chunk that is nothing but text (see ChatReader.pass_through)."""
    if not isinstance(chunk, dict) or chunk.get("object") == "error":
        return None
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1 or isinstance(chunk.get("usage"), dict):
        return None
    choice = choices[0]
    if not isinstance(choice, dict) or choice.get("finish_reason"):
        return None
    delta = choice.get("delta")
    if not isinstance(delta, dict) or delta.get("tool_calls"):
        return None
    text = delta.get("content")
    return text if type(text) is str and text else None


def _delta_events(chunk: bytes, fronts: tuple[bytes, bytes]) -> list[Any] | None:
    """The decoded data of each event of `chunk` when it is whole events whose one data line
    begins with one of `fronts` (`data: {"type":"<a text delta's type>"`, compact or spaced),
    after an `event:` line or none (the readers go by the data's type, never the name), LF
    endings: what the decoder would give `feed`, one orjson decode each and no sse.Event.
    None: anything else (another event, a comment, `id:`, multi-line data, CR, a cut event,
    data that is not JSON), for the caller to decode and `feed` event by event."""
    if not chunk.endswith(b"\n\n") or b"\r" in chunk:
        return None
    find, starts, size = chunk.find, chunk.startswith, len(chunk)
    out: list[Any] = []
    start = 0
    while start < size:
        at = find(b"\n", start) + 1 if starts(b"event: ", start) else start
        if not starts(fronts[0], at) and not starts(fronts[1], at):
            return None
        end = find(b"\n", at)  # the data line's end
        if not starts(b"\n", end + 1):
            return None
        try:
            out.append(orjson.loads(chunk[at + 6 : end]))
        except orjson.JSONDecodeError:
            return None
        start = end + 2
    return out


_MESSAGES_TEXT = (b'data: {"type":"content_block_delta"', b'data: {"type": "content_block_delta"')
_RESPONSES_TEXT = (
    b'data: {"type":"response.output_text.delta"',
    b'data: {"type": "response.output_text.delta"',
)


class MessagesReader(_Reader):
    """Upstream Anthropic Messages events (ended by `message_stop`)."""

    __slots__ = ()

    def _feed(self, event: sse.Event) -> bytes:
        data = _load(event.data)
        if data is None:
            return b""
        kind = data.get("type")
        w = self._w
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return w.text(_string(delta.get("text", ""), "text_delta's text"))
            if delta.get("type") == "input_json_delta":
                return w.tool_delta(
                    _index(data.get("index", 0), "content_block_delta's index"),
                    _string(delta.get("partial_json", ""), "input_json_delta's partial_json"),
                )
            return b""
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                return w.tool_start(
                    _index(data.get("index", 0), "content_block_start's index"),
                    block.get("id"),
                    _name(block.get("name"), "tool_use block's name"),
                )
            if block.get("type") == "text":
                text = _optional(block.get("text"), "text block's text")
                return w.text(text) if text else b""
            return b""
        if kind == "content_block_stop":
            return w.tool_done(_index(data.get("index", 0), "content_block_stop's index"))
        if kind == "message_start":
            message = data.get("message") or {}
            w.usage = common.usage_from_messages(message.get("usage"))
            return w.start(message.get("id"), message.get("model"))
        if kind == "message_delta":
            common.update_from_message_delta(w.usage, data.get("usage"))
            reason = _optional((data.get("delta") or {}).get("stop_reason"), "stop_reason")
            if reason:
                self._stop(reason)
            return b""
        if kind == "message_stop":
            self._stopped = True
            return self._close()
        if kind == "error":
            return self.error(_error_message(data.get("error")))
        return b""

    def pass_through(self, chunk: bytes) -> bytes | None:
        """The client's bytes for a read of whole text deltas (`content_block_delta` with a
        `text_delta` and a string text, the bulk of an Anthropic stream), what `feed` gives
        for them: one orjson decode per event (`_delta_events`) and the writer's `text`, no
        sse.Event and no decoder buffer. None: anything else, before any state has changed,
        for the caller to decode and `feed` event by event (relay.chunk_translator)."""
        if self._done:
            return None
        events = _delta_events(chunk, _MESSAGES_TEXT)
        if events is None:
            return None
        texts: list[str] = []
        for data in events:
            delta = data.get("delta") if type(data) is dict else None
            if type(delta) is not dict or data.get("type") != "content_block_delta":
                return None
            text = delta.get("text", "")
            if delta.get("type") != "text_delta" or type(text) is not str:
                return None
            texts.append(text)
        text_of = self._w.text
        return text_of(texts[0]) if len(texts) == 1 else b"".join([text_of(t) for t in texts])


class ResponsesReader(_Reader):
    """Upstream OpenAI Responses events (ended by `response.completed` or `.incomplete`).

    With `stops` (the client's stop sequences: a Responses upstream has none) the gateway
    enforces them: text is held back while its end may begin a stop sequence (at most
    len(longest) - 1 characters, so a match split across deltas is still found), the answer
    is cut at the first match, and what follows (text, calls) is left out; the stream still
    ends at the upstream's `response.completed`, so usage stays the upstream's count."""

    __slots__ = ("_calls", "_cut", "_held", "_refused", "_stops")

    def __init__(self, writer: Writer, stops: tuple[str, ...] | None = None) -> None:
        super().__init__(writer)
        self._calls = False
        self._refused = False
        self._stops = stops
        self._held = ""
        self._cut: str | None = None  # the stop sequence that matched

    def _text(self, delta: str) -> bytes:
        stops = self._stops
        if stops is None:
            return self._w.text(delta)
        if self._cut is not None:
            return b""
        text = self._held + delta
        kept, matched = common.cut_at_stop(text, stops)
        if matched is not None:
            self._cut = matched
            self._held = ""
        else:
            hold = common.stop_hold(text, stops)
            self._held = text[len(text) - hold :] if hold else ""
            kept = text[: len(text) - hold]
        return self._w.text(kept) if kept else b""

    def _feed(self, event: sse.Event) -> bytes:
        data = _load(event.data)
        if data is None:
            return b""
        kind = data.get("type")
        w = self._w
        if kind == "response.output_text.delta":
            return self._text(_string(data.get("delta", ""), "output_text delta"))
        if self._cut is not None and kind not in (
            "response.completed",
            "response.incomplete",
            "response.failed",
            "error",
        ):
            return b""  # after the gateway's stop sequence: nothing more reaches the client
        if kind == "response.function_call_arguments.delta":
            return w.tool_delta(
                _string(data.get("item_id", ""), "function_call_arguments.delta's item_id"),
                _string(data.get("delta", ""), "function_call_arguments.delta's delta"),
            )
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") != "function_call":
                return b""
            self._calls = True
            key = _string(item.get("id", ""), "function_call item's id")
            name = _name(item.get("name"), "function_call item's name")
            return self._flush() + w.tool_start(key, item.get("call_id"), name)
        if kind == "response.output_item.done":
            item = data.get("item") or {}
            if item.get("type") != "function_call":
                return b""
            return w.tool_done(_string(item.get("id", ""), "function_call item's id"))
        if kind == "response.refusal.delta":
            self._refused = True
            return w.text(_string(data.get("delta", ""), "refusal delta"))
        if kind == "response.created":
            response = data.get("response") or {}
            return w.start(response.get("id"), response.get("model"))
        if kind in ("response.completed", "response.incomplete"):
            response = data.get("response") or {}
            w.usage = common.usage_from_responses(response.get("usage"))
            out = self._flush()
            if self._cut is not None:
                self._stop("stop_sequence", self._cut)
                return out + self._close()
            reason = common.responses_stop(
                response.get("status"), response.get("incomplete_details"), self._calls
            )
            self._stop("refusal" if reason == "end_turn" and self._refused else reason)
            return out + self._close()
        if kind == "response.failed":
            return self.error(_error_message((data.get("response") or {}).get("error")))
        if kind == "error":
            return self.error(_error_message(data))
        return b""

    def pass_through(self, chunk: bytes) -> bytes | None:
        """The client's bytes for a read of whole `response.output_text.delta` events with a
        string delta (the bulk of a Responses stream), what `feed` gives for them: one orjson
        decode per event (`_delta_events`) and `_text` (the client's stop sequences
        included), no sse.Event and no decoder buffer. None: anything else, before any state
        has changed, for the caller to decode and `feed` event by event."""
        if self._done:
            return None
        events = _delta_events(chunk, _RESPONSES_TEXT)
        if events is None:
            return None
        texts: list[str] = []
        for data in events:
            if type(data) is not dict or data.get("type") != "response.output_text.delta":
                return None
            text = data.get("delta", "")
            if type(text) is not str:
                return None
            texts.append(text)
        text_of = self._text
        return text_of(texts[0]) if len(texts) == 1 else b"".join([text_of(t) for t in texts])

    def _flush(self) -> bytes:
        """Held-back text that turned out not to begin a stop sequence."""
        if not self._held:
            return b""
        held, self._held = self._held, ""
        return self._w.text(held)
