"""Responses events out: the half of a stream translator shared by every pair whose client is
Responses. The reading half (Chat chunks, Messages events) calls `start`, `text`,
`tool_start`, `tool_delta`, `tool_done` and `stop`; this class numbers the events, keeps the output
items for `response.completed` and closes everything exactly once.
"""

from __future__ import annotations

import orjson

from switchboard.dialects import common, errors
from switchboard.dialects.types import Ctx, Dialect, Json, Usage


def response_object(
    ctx: Ctx,
    *,
    response_id: str,
    model: str,
    output: list[Json],
    usage: Usage | None,
    status: str,
    incomplete_reason: str = "max_output_tokens",
) -> Json:
    incomplete = {"reason": incomplete_reason} if status == "incomplete" else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": ctx.created,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": common.responses_usage(usage) if usage is not None else None,
        "metadata": {},
    }


def finished_response(
    ctx: Ctx, upstream_model: object, output: list[Json], usage: Usage, stop_reason: str
) -> Json:
    """A whole (non-streamed) response for a client, its status from an Anthropic stop reason."""
    status, reason = status_for(stop_reason)
    model = upstream_model if isinstance(upstream_model, str) and upstream_model else None
    return response_object(
        ctx,
        response_id=f"resp_{ctx.request_id}",
        model=model or ctx.response_model,
        output=output,
        usage=usage,
        status=status,
        incomplete_reason=reason,
    )


def status_for(stop_reason: str) -> tuple[str, str]:
    """Responses `status` and `incomplete_details.reason` for an Anthropic stop reason."""
    if stop_reason in ("max_tokens", "model_context_window_exceeded"):
        return "incomplete", "max_output_tokens"
    if stop_reason == "refusal":
        return "incomplete", "content_filter"
    return "completed", "max_output_tokens"


def message_item(ctx: Ctx, parts: list[Json], status: str = "completed", number: int = 0) -> Json:
    """An assistant message item; `number` tells apart the messages of one response."""
    return {
        "type": "message",
        "id": f"msg_{ctx.request_id}_{number}" if number else f"msg_{ctx.request_id}",
        "status": status,
        "role": "assistant",
        "content": parts,
    }


def call_item(
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    status: str,
    *,
    names: dict[str, tuple[str, str]] | None = None,
) -> Json:
    """A function_call item; a flattened namespace tool's call goes back under its namespace
    and name (`names`: `Ctx.tool_names`)."""
    item = {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }
    if names is not None and name in names:
        item["namespace"], item["name"] = names[name]
    return item


_TEXT_HEAD = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"item_id":%b,"output_index":%d,"content_index":0,"delta":'
)
_TEXT_TAIL = b',"logprobs":[],"sequence_number":'
"""A text delta event around its text and number, as `_event` writes it (orjson, compact)."""


class ResponsesWriter:
    """Encodes numbered Responses events; `finish()` closes open items and sends
    `response.completed` (or `response.incomplete`) with usage, once."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self.status = "completed"
        self.incomplete_reason = "max_output_tokens"
        self._seq = 0
        self._id = f"resp_{ctx.request_id}"
        self._model = ctx.response_model
        self._started = False
        self._finished = False
        self._output: list[Json] = []
        self._text: Json | None = None  # the open message item
        self._messages = 0  # message items so far
        self._chunks: list[str] = []  # its text so far
        self._calls: dict[object, Json] = {}  # reader's key -> function_call item
        self._open_calls: list[Json] = []
        self._text_head = b""  # the open message's text delta event up to the text

    def _event(self, data: Json) -> bytes:
        data["sequence_number"] = self._seq
        self._seq += 1
        return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def start(self, upstream_id: object = None, model: object = None) -> bytes:
        """`response.created` and `response.in_progress`, once."""
        if self._started:
            return b""
        self._started = True
        if isinstance(model, str) and model:
            self._model = model
        response = response_object(
            self.ctx,
            response_id=self._id,
            model=self._model,
            output=[],
            usage=None,
            status="in_progress",
        )
        return self._event({"type": "response.created", "response": response}) + self._event(
            {"type": "response.in_progress", "response": response}
        )

    def text(self, text: str) -> bytes:
        out = b"" if self._text is not None else self._open_text()
        self._chunks.append(text)
        seq = self._seq
        self._seq = seq + 1
        return b"%b%b%b%d}\n\n" % (out + self._text_head, orjson.dumps(text), _TEXT_TAIL, seq)

    def _open_text(self) -> bytes:
        item = message_item(self.ctx, [], "in_progress", self._messages)
        self._messages += 1
        self._text = item
        self._output.append(item)
        index = len(self._output) - 1
        self._text_head = _TEXT_HEAD % (orjson.dumps(item["id"]), index)
        part = {"type": "output_text", "text": "", "annotations": []}
        return self._event(
            {"type": "response.output_item.added", "output_index": index, "item": dict(item)}
        ) + self._event(
            {
                "type": "response.content_part.added",
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
                "part": part,
            }
        )

    def close_text(self) -> bytes:
        item = self._text
        if item is None:
            return b""
        self._text = None
        index = self._output.index(item)
        text = "".join(self._chunks)
        self._chunks = []
        part = {"type": "output_text", "text": text, "annotations": []}
        item["content"] = [part]
        item["status"] = "completed"
        common_fields = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return (
            self._event(
                {"type": "response.output_text.done", **common_fields, "text": text, "logprobs": []}
            )
            + self._event({"type": "response.content_part.done", **common_fields, "part": part})
            + self._event(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
        )

    def tool_start(self, key: object, call_id: object, name: object) -> bytes:
        """A new function_call item; `key` is how the reader names it in later deltas."""
        out = self.close_text()
        number = len(self._calls)
        item = call_item(
            f"fc_{self.ctx.request_id}_{number}",
            call_id
            if isinstance(call_id, str) and call_id
            else f"call_{self.ctx.request_id}_{number}",
            name if isinstance(name, str) else "",
            "",
            "in_progress",
            names=self.ctx.tool_names,
        )
        self._calls[key] = item
        self._open_calls.append(item)
        self._output.append(item)
        return out + self._event(
            {
                "type": "response.output_item.added",
                "output_index": len(self._output) - 1,
                "item": dict(item),
            }
        )

    def has_tool(self, key: object) -> bool:
        return key in self._calls

    def tool_delta(self, key: object, delta: str) -> bytes:
        item = self._calls.get(key)
        if item is None or not delta:
            return b""
        item["arguments"] += delta
        return self._event(
            {
                "type": "response.function_call_arguments.delta",
                "item_id": item["id"],
                "output_index": self._output.index(item),
                "delta": delta,
            }
        )

    def tool_done(self, key: object) -> bytes:
        item = self._calls.get(key)
        if item is None or item not in self._open_calls:
            return b""
        self._open_calls.remove(item)
        item["status"] = "completed"
        index = self._output.index(item)
        return self._event(
            {
                "type": "response.function_call_arguments.done",
                "item_id": item["id"],
                "output_index": index,
                "name": item["name"],
                "arguments": item["arguments"],
            }
        ) + self._event({"type": "response.output_item.done", "output_index": index, "item": item})

    def stop(self, reason: str, sequence: str | None = None) -> None:
        """The stop reason, in Anthropic's words (the richest of the three)."""
        self.status, self.incomplete_reason = status_for(reason)

    def finish(self) -> bytes:
        if self._finished:
            return b""
        out = self.start()
        self._finished = True
        out += self.close_text()
        for key in [k for k, item in self._calls.items() if item in self._open_calls]:
            out += self.tool_done(key)
        response = response_object(
            self.ctx,
            response_id=self._id,
            model=self._model,
            output=self._output,
            usage=self.usage,
            status=self.status,
            incomplete_reason=self.incomplete_reason,
        )
        kind = "response.completed" if self.status == "completed" else "response.incomplete"
        return out + self._event({"type": kind, "response": response})

    def error(self, message: str) -> bytes:
        self._finished = True
        self._seq += 1
        return errors.stream_error(Dialect.RESPONSES, message, self._seq - 1)
