"""(3) The shared handler as a granian RSGI application: granian (Rust: hyper's HTTP/1.1 on a
tokio runtime) accepts, parses and writes; Python sees a scope and a protocol object per
request and runs the handler on its asyncio loop (uvloop).

    ACCEPT_UPSTREAM=http://127.0.0.1:U granian --interface rsgi --workers 1 \
        --runtime-threads 1 --runtime-mode st --loop uvloop --http 1 --no-ws \
        --backlog 4096 --no-access-log --log-level warning \
        --host 127.0.0.1 --port P bench.accept.granian_app:app

(bench/accept/compare.py starts it so.) A stream is relayed chunk by chunk with
`await transport.send_bytes(chunk)`: RSGI has no synchronous write, so the relay cannot run
inside the upstream connection's callback as the gateway's does; it is one task wake-up per
chunk. The 10 MiB body limit is checked on Content-Length before the body is read, and counted
while a chunked body is read (RSGI's `await proto()` has no limit of its own).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accept.common import ERROR_400, MAX_BODY, Upstream, wants_stream

_JSON = [("content-type", "application/json")]
_SSE = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]


class App:
    def __init__(self) -> None:
        self.upstream = Upstream(os.environ.get("ACCEPT_UPSTREAM", "http://127.0.0.1:19000"))

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        pass

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        pass

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        if scope.path != "/v1/chat/completions":
            proto.response_bytes(404, _JSON, ERROR_400)
            return
        if scope.method != "POST":
            proto.response_bytes(405, _JSON, ERROR_400)
            return
        length = scope.headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_BODY:
                proto.response_bytes(413, _JSON, ERROR_400)
                return
            body = await proto()
        else:  # chunked (or no body): counted as it comes
            parts = []
            size = 0
            async for chunk in proto:
                size += len(chunk)
                if size > MAX_BODY:
                    proto.response_bytes(413, _JSON, ERROR_400)
                    return
                parts.append(chunk)
            body = b"".join(parts)
        try:
            if not wants_stream(body):
                status, data = await self.upstream.answer(body)
                proto.response_bytes(status, _JSON, data)
                return
            response = await self.upstream.stream(body)
        except Exception:
            proto.response_bytes(502, _JSON, ERROR_400)
            return
        try:
            transport = proto.response_stream(response.status, _SSE)
            while chunk := await response.next_chunk():
                await transport.send_bytes(chunk)
        finally:
            response.release()


app = App()
