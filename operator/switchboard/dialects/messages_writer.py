"""Anthropic Messages events out: the half of a stream translator shared by every pair whose
client is Messages. The reading half (Chat chunks, Responses events) calls `start`, `text`,
`tool_start`, `tool_delta`, `tool_done` and `stop`; this class numbers the content blocks, opens
and closes them, and ends with `message_delta` (stop reason, usage) and `message_stop`, once.
"""

from __future__ import annotations

import orjson

from switchboard.dialects import common, errors
from switchboard.dialects.types import Ctx, Dialect, Json, Usage


def message_id(upstream_id: object, ctx: Ctx) -> str:
    """The upstream's id when it is a string, else the gateway's."""
    if isinstance(upstream_id, str) and upstream_id:
        return f"msg_{upstream_id}"
    return f"msg_{ctx.request_id}"


def message_object(
    ctx: Ctx,
    *,
    upstream_id: object,
    model: object,
    content: list[Json],
    stop_reason: str | None,
    usage: Usage | None = None,
) -> Json:
    return {
        "id": message_id(upstream_id, ctx),
        "type": "message",
        "role": "assistant",
        "model": model if isinstance(model, str) and model else ctx.response_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": common.messages_usage(usage)
        if usage is not None
        else {"input_tokens": 0, "output_tokens": 0},
    }


def finished_message(
    ctx: Ctx, upstream: Json, content: list[Json], stop_reason: str, usage: Usage
) -> Json:
    """A whole (non-streamed) message for a client, with the upstream's id and model."""
    return message_object(
        ctx,
        upstream_id=upstream.get("id"),
        model=upstream.get("model"),
        content=content,
        stop_reason=stop_reason,
        usage=usage,
    )


def tool_use_block(ctx: Ctx, call_id: object, name: object, number: int, value: object) -> Json:
    return {
        "type": "tool_use",
        "id": call_id
        if isinstance(call_id, str) and call_id
        else f"toolu_{ctx.request_id}_{number}",
        "name": name if isinstance(name, str) else "",
        "input": value,
    }


def _event(name: str, data: Json) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_TEXT_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"text_delta","text":'
)
"""A text delta event up to its text, as `_event` writes it (orjson, compact, in this order)."""


class MessagesWriter:
    """Encodes Anthropic stream events with content blocks numbered from 0."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self.stop_reason = "end_turn"
        self._sequence: str | None = None
        self._started = False
        self._finished = False
        self._block = -1
        self._open: str | None = None  # "text" or "tool"
        self._tools: dict[object, int] = {}  # reader's key -> block index
        self._text_head = b""  # the open text block's delta event up to the text

    def start(self, upstream_id: object = None, model: object = None) -> bytes:
        """`message_start`, once."""
        if self._started:
            return b""
        self._started = True
        message = message_object(
            self.ctx, upstream_id=upstream_id, model=model, content=[], stop_reason=None
        )
        return _event("message_start", {"type": "message_start", "message": message})

    def close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def _open_block(self, kind: str, block: Json) -> bytes:
        out = self.close_block()
        self._block += 1
        self._open = kind
        return out + _event(
            "content_block_start",
            {"type": "content_block_start", "index": self._block, "content_block": block},
        )

    def text(self, text: str) -> bytes:
        if self._open == "text":  # the bulk of a stream: one orjson.dumps of the text
            return self._text_head + orjson.dumps(text) + b"}}\n\n"
        out = self._open_block("text", {"type": "text", "text": ""})
        self._text_head = _TEXT_HEAD % self._block
        return out + self._text_head + orjson.dumps(text) + b"}}\n\n"

    def has_tool(self, key: object) -> bool:
        return key in self._tools

    def tool_start(self, key: object, call_id: object, name: object) -> bytes:
        """A new tool_use block; `key` is how the reader names it in later deltas."""
        block = tool_use_block(self.ctx, call_id, name, len(self._tools), {})
        out = self._open_block("tool", block)
        self._tools[key] = self._block
        return out

    def tool_delta(self, key: object, partial_json: str) -> bytes:
        index = self._tools.get(key)
        if index is None or not partial_json:
            return b""
        return _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": partial_json},
            },
        )

    def tool_done(self, key: object) -> bytes:
        if self._open == "tool" and self._tools.get(key) == self._block:
            return self.close_block()
        return b""

    def stop(self, reason: str, sequence: str | None = None) -> None:
        """The stop reason, in Anthropic's words (the richest of the three), and the stop
        sequence that matched (the gateway's own, on a Responses upstream)."""
        self.stop_reason = reason
        self._sequence = sequence

    def finish(self) -> bytes:
        if self._finished:
            return b""
        out = self.start()
        self._finished = True
        out += self.close_block()
        if self.stop_reason == "end_turn" and self._tools:
            self.stop_reason = "tool_use"  # some servers say "stop" after tool calls
        out += _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": self._sequence},
                "usage": common.messages_usage(self.usage),
            },
        )
        return out + _event("message_stop", {"type": "message_stop"})

    def error(self, message: str) -> bytes:
        self._finished = True
        return errors.stream_error(Dialect.MESSAGES, message)
