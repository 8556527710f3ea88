"""Chat chunks out: the half of a stream translator shared by every pair whose client is Chat."""

from __future__ import annotations

import orjson

from switchboard.dialects import common, sse
from switchboard.dialects.types import Ctx, Json, Usage


class ChatWriter:
    """Encodes Chat Completions chunks, the closing usage chunk and [DONE], exactly once."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self._id = f"chatcmpl-{ctx.request_id}"
        self._model = ctx.response_model
        self._finished = False
        self._finish_reason = "stop"

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
        data = {"error": {"message": message, "type": "upstream_error", "code": None}}
        return b"data: " + orjson.dumps(data) + b"\n\n"
