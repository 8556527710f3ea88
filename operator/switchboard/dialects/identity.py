"""Same dialect on both sides: the body passes through with the model, the output limit and the
stream's usage option rewritten, and usage is read on the way back (cheaply: only the events
that carry it are parsed)."""

from __future__ import annotations

import orjson

from switchboard.dialects import common, sse
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
        out[_MAX_FIELD[dialect]] = ctx.max_tokens
        if dialect is Dialect.CHAT:
            out.pop("max_completion_tokens", None)
    if dialect is Dialect.CHAT and ctx.stream:
        options = dict(out.get("stream_options") or {})
        options["include_usage"] = True
        out["stream_options"] = options
    if dialect is Dialect.RESPONSES:
        out.setdefault("store", False)
    return out


def usage(dialect: Dialect, body: Json) -> Usage:
    if dialect is Dialect.CHAT:
        return common.usage_from_chat(body.get("usage"))
    if dialect is Dialect.RESPONSES:
        return common.usage_from_responses(body.get("usage"))
    return common.usage_from_messages(body.get("usage"))


class ChatStream:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self._done = False

    def feed(self, event: sse.Event) -> bytes:
        data = event.data
        if data == b"[DONE]":
            self._done = True
            return sse.DONE
        if b'"usage":{' in data:
            chunk = orjson.loads(data)
            self.usage = common.usage_from_chat(chunk.get("usage"))
            if not self.ctx.include_usage:
                if not chunk.get("choices"):
                    return b""
                chunk["usage"] = None
                data = orjson.dumps(chunk)
        return b"data: " + data + b"\n\n"

    def finish(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        return sse.DONE

    def error(self, message: str) -> bytes:
        data = {"error": {"message": message, "type": "upstream_error", "code": None}}
        return b"data: " + orjson.dumps(data) + b"\n\n"


class MessagesStream:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()

    def feed(self, event: sse.Event) -> bytes:
        if event.event in ("message_start", "message_delta"):
            data = orjson.loads(event.data)
            if event.event == "message_start":
                self.usage = common.usage_from_messages((data.get("message") or {}).get("usage"))
            else:
                u = data.get("usage") or {}
                self.usage.output_tokens = int(u.get("output_tokens") or 0)
                if u.get("input_tokens"):
                    self.usage.input_tokens = int(u["input_tokens"])
        return sse.encode(event.event, event.data)

    def finish(self) -> bytes:
        return b""

    def error(self, message: str) -> bytes:
        data = {"type": "error", "error": {"type": "api_error", "message": message}}
        return sse.encode("error", orjson.dumps(data))


class ResponsesStream:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self._seq = 0

    def feed(self, event: sse.Event) -> bytes:
        if event.event in ("response.completed", "response.incomplete", "response.failed"):
            data = orjson.loads(event.data)
            self.usage = common.usage_from_responses((data.get("response") or {}).get("usage"))
        self._seq += 1
        return sse.encode(event.event, event.data)

    def finish(self) -> bytes:
        return b""

    def error(self, message: str) -> bytes:
        data = {
            "type": "error",
            "code": "upstream_error",
            "message": message,
            "param": None,
            "sequence_number": self._seq,
        }
        return sse.encode("error", orjson.dumps(data))
