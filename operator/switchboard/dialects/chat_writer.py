"""Chat chunks out: the half of a stream translator shared by every pair whose client is Chat."""

from __future__ import annotations

import orjson

from switchboard.dialects import common, errors, sse
from switchboard.dialects.types import Ctx, Dialect, Json, Usage


class ChatWriter:
    """Encodes Chat Completions chunks, the closing usage chunk and [DONE], exactly once."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self._id = f"chatcmpl-{ctx.request_id}"
        self._model = ctx.response_model
        self._started = False
        self._finished = False
        self._finish_reason = "stop"
        self._tools: dict[object, int] = {}  # reader's key -> tool_call index
        self._text_head = b""  # a text chunk up to its text, once the id and model are known

    def _data(self, choices: list[Json], **extra: object) -> bytes:
        data = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.ctx.created,
            "model": self._model,
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def _chunk(self, delta: Json, finish: str | None = None) -> bytes:
        return self._data([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}])

    def start(self, upstream_id: object = None, model: object = None) -> bytes:
        """The first chunk (the assistant role), once."""
        if self._started:
            return b""
        self._started = True
        self._text_head = b""  # the id and model may change
        if isinstance(upstream_id, str) and upstream_id:  # another type: the gateway's id
            self._id = f"chatcmpl-{upstream_id}"
        if isinstance(model, str) and model:
            self._model = model
        return self._chunk({"role": "assistant", "content": ""})

    def text(self, text: str) -> bytes:
        # The bulk of a stream: one orjson.dumps of the text in a template of `_chunk`'s bytes.
        head = self._text_head or self._head()
        return head + orjson.dumps(text) + b'},"finish_reason":null,"logprobs":null}]}\n\n'

    def _head(self) -> bytes:
        self._text_head = (
            b'data: {"id":%b,"object":"chat.completion.chunk","created":%b,"model":%b,'
            b'"choices":[{"index":0,"delta":{"content":'
            % (orjson.dumps(self._id), orjson.dumps(self.ctx.created), orjson.dumps(self._model))
        )
        return self._text_head

    def has_tool(self, key: object) -> bool:
        return key in self._tools

    def tool_start(self, key: object, call_id: object, name: object) -> bytes:
        index = self._tools[key] = len(self._tools)
        call = {
            "index": index,
            "id": call_id
            if isinstance(call_id, str) and call_id
            else f"call_{self.ctx.request_id}_{index}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return self._chunk({"tool_calls": [call]})

    def tool_delta(self, key: object, partial_json: str) -> bytes:
        index = self._tools.get(key)
        if index is None or not partial_json:
            return b""
        return self._chunk(
            {"tool_calls": [{"index": index, "function": {"arguments": partial_json}}]}
        )

    def tool_done(self, key: object) -> bytes:
        return b""

    def stop(self, reason: str, sequence: str | None = None) -> None:
        """The stop reason, in Anthropic's words (the richest of the three)."""
        self._finish_reason = common.STOP_TO_FINISH.get(reason, "stop")

    def finish(self) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        out = self._chunk({}, self._finish_reason)
        if self.ctx.include_usage:
            out += self._data([], usage=common.chat_usage(self.usage))
        return out + sse.DONE

    def error(self, message: str) -> bytes:
        self._finished = True
        return errors.stream_error(Dialect.CHAT, message)
