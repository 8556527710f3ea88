"""(2) The shared handler on a bare asyncio.Protocol that parses requests with httptools (llhttp,
as the gateway's upstream client parses responses): no request object, no router, no
StreamResponse, one task per request, one `transport.write` per non-stream response.

    python bench/accept/h1_server.py --port P --upstream http://127.0.0.1:U

The HTTP/1.1 rules it keeps (RFC 9112), and how:
- keep-alive: HTTP/1.1 unless `connection: close`, HTTP/1.0 only with `connection: keep-alive`
  (llhttp's `should_keep_alive`); a connection with no request being answered and no byte for
  75 s (idle, or a request head or body stalled half-way) is closed (one sweep a second over
  all connections, not a timer per request);
- pipelining: requests that arrive while one is answered wait in order (reading pauses beyond
  `PIPELINE` of them); responses go out in request order;
- chunked request bodies: decoded by llhttp (chunk extensions and trailers too);
- `Expect: 100-continue`: `100 Continue` is sent when the request's turn comes (at once on an
  idle connection), never when its declared body is over the limit (413 and close instead);
- limits: a request line or header field over 8190 bytes, or a head over 64 KiB, is 431 and
  the connection closes; a body over 10 MiB (declared or received) is 413 and closes;
- unparseable requests (bad framing, both Content-Length and Transfer-Encoding, bad chunk
  sizes: llhttp's strict mode) are 400 and close; `Upgrade` is refused with 400;
- a client that closes its connection cancels its request's task (the upstream exchange is
  closed, as aiohttp's handler_cancellation does in the gateway);
- write back-pressure: while the client's socket buffer is over the high-water mark the
  upstream stream is paused (pause_writing/resume_writing);
- the gateway's connection cap: past 10,000 connections, 503 and close.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import sys
from collections import deque
from pathlib import Path

import httptools
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accept.common import ERROR_400, KEEPALIVE, MAX_BODY, MAX_HEAD, Upstream, wants_stream

from switchboard.gateway import server as gateway_server
from switchboard.gateway.upstream import Response

MAX_HEAD_TOTAL = 64 * 1024
"""Bytes of a whole request head (request line and all header fields)."""
PIPELINE = 16
"""Complete requests kept waiting behind the one being answered before reading pauses."""
MAX_CONNECTIONS = 10_000

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
}


class _Refused(Exception):
    """A request refused while it is parsed: its status, then the connection closes."""

    def __init__(self, status: int) -> None:
        self.status = status


class _Request:
    __slots__ = (
        "body",
        "error",
        "expect",
        "head",
        "headers",
        "keep_alive",
        "length",
        "method",
        "size",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.url = b""
        self.method = b""
        self.version = "1.1"
        self.head = 0
        self.headers: dict[bytes, bytes] = {}
        """Lower-cased names (the gateway reads authorization, x-api-key, anthropic-beta,
        traceparent); a repeated field keeps its last value."""
        self.body: list[bytes] = []
        self.size = 0
        self.length = 0
        """The declared Content-Length (0 when none or chunked)."""
        self.expect = False
        self.keep_alive = True
        self.error = 0
        """A status to answer and close with (a request refused while parsed), else 0."""


class Server:
    """What the connections share: the upstream, the Date header, the idle sweep."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.conns: set[Conn] = set()
        self.loop = asyncio.get_running_loop()
        self.date = b""
        self._tick()

    def _tick(self) -> None:
        now = self.loop.time()
        self.date = email.utils.formatdate(usegmt=True).encode()
        late = now - KEEPALIVE
        for conn in [c for c in self.conns if c.task is None and c.idle_since < late]:
            conn.close()
        self.loop.call_later(1.0, self._tick)


class Conn(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.parsing: _Request | None = None
        self.waiting: deque[_Request] = deque()
        self.task: asyncio.Task[None] | None = None
        self.stream: Response | None = None
        self.continued = False
        self.reading = True
        self.idle_since = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's: no subclass
        self.transport = tr
        if len(self.server.conns) >= MAX_CONNECTIONS:
            tr.write(gateway_server.BUSY)
            tr.close()
            return
        self.server.conns.add(self)
        self.idle_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)
        self.transport = None
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.idle_since = self.loop.time()  # a stalled partial request is swept as idle
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            self._refuse(refused.status if isinstance(refused, _Refused) else 400)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._refuse(400)

    def pause_writing(self) -> None:
        if self.stream is not None:
            self.stream.pause()

    def resume_writing(self) -> None:
        if self.stream is not None:
            self.stream.resume()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.parsing = _Request()
        self.continued = False

    def on_url(self, url: bytes) -> None:
        req = self.parsing
        assert req is not None
        req.url += url
        req.head += len(url)
        if len(req.url) > MAX_HEAD:
            raise _Refused(431)

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.parsing
        assert req is not None
        size = len(name) + len(value)
        req.head += size
        if size > MAX_HEAD or req.head > MAX_HEAD_TOTAL:
            raise _Refused(431)
        name = name.lower()
        req.headers[name] = value
        if name == b"expect":
            req.expect = value.lower() == b"100-continue"
        elif name == b"content-length" and value.isdigit():
            req.length = int(value)  # llhttp refuses a malformed or duplicate one itself

    def on_headers_complete(self) -> None:
        req = self.parsing
        assert req is not None
        parser = self.parser
        req.method = parser.get_method()
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        if req.length > MAX_BODY:
            raise _Refused(413)
        if req.expect and req.version == "1.1" and self.task is None and not self.waiting:
            self._continue()

    def on_body(self, data: bytes) -> None:
        req = self.parsing
        assert req is not None
        req.body.append(data)
        req.size += len(data)
        if req.size > MAX_BODY:
            raise _Refused(413)

    def on_message_complete(self) -> None:
        req, self.parsing = self.parsing, None
        assert req is not None
        self._queue(req)

    # -- answering ---------------------------------------------------------------------------

    def _continue(self) -> None:
        if not self.continued and self.transport is not None:
            self.continued = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _refuse(self, status: int) -> None:
        """A request that cannot be parsed or is over a limit: answered in its turn, then the
        connection closes; nothing after it is read."""
        req = _Request()
        req.error = status
        req.keep_alive = False
        self.parsing = None
        if self.transport is not None and self.reading:
            self.reading = False
            self.transport.pause_reading()
        self._queue(req)

    def _queue(self, req: _Request) -> None:
        if self.task is None:
            self.task = self.loop.create_task(self._serve(req))
            return
        self.waiting.append(req)
        if len(self.waiting) >= PIPELINE and self.reading and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()

    def _done(self, req: _Request) -> None:
        self.task = None
        transport = self.transport
        if transport is None:
            return
        if not req.keep_alive:
            transport.close()  # after the buffered response is written
            return
        if self.waiting:
            self.task = self.loop.create_task(self._serve(self.waiting.popleft()))
            return
        if not self.reading:
            self.reading = True
            transport.resume_reading()
        self.idle_since = self.loop.time()
        pending = self.parsing
        if pending is not None and pending.expect and pending.version == "1.1":
            self._continue()  # a pipelined request that waits for its 100 Continue

    def _head(self, status: int, req: _Request, fields: bytes) -> bytes:
        close = b"" if req.keep_alive else b"connection: close\r\n"
        return b"HTTP/%s %d %s\r\ndate: %s\r\nserver: switchboard\r\n%s%s\r\n" % (
            req.version.encode(),
            status,
            _REASONS.get(status, b"Unknown"),
            self.server.date,
            fields,
            close,
        )

    def _write(self, status: int, req: _Request, body: bytes) -> None:
        if self.transport is not None:
            fields = b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
            self.transport.write(self._head(status, req, fields) + body)

    async def _serve(self, req: _Request) -> None:
        try:
            if req.error:
                self._write(req.error, req, ERROR_400)
                return
            if req.url.split(b"?", 1)[0] != b"/v1/chat/completions":
                self._write(404, req, ERROR_400)
                return
            if req.method != b"POST":
                self._write(405, req, ERROR_400)
                return
            body = req.body[0] if len(req.body) == 1 else b"".join(req.body)
            if not wants_stream(body):
                status, data = await self.server.upstream.answer(body)
                self._write(status, req, data)
                return
            await self._stream(req, body)
        except asyncio.CancelledError:
            raise
        except Exception:
            req.keep_alive = False
            self._write(502, req, ERROR_400)
        finally:
            self._done(req)

    async def _stream(self, req: _Request, body: bytes) -> None:
        response = await self.server.upstream.stream(body)
        transport = self.transport
        try:
            if transport is None:
                return
            chunked = req.version == "1.1"
            if not chunked:
                req.keep_alive = False  # HTTP/1.0: the body ends with the connection
            fields = b"content-type: text/event-stream\r\ncache-control: no-cache\r\n"
            if chunked:
                fields += b"transfer-encoding: chunked\r\n"
            transport.write(self._head(response.status, req, fields))

            def sink(chunk: bytes) -> None:
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)

            self.stream = response
            await response.pipe(sink)
            if chunked:
                transport.write(b"0\r\n\r\n")
        finally:
            self.stream = None
            response.release()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(port: int, upstream: Upstream) -> None:
    loop = asyncio.get_running_loop()
    srv = Server(upstream)
    sock = gateway_server.listen("127.0.0.1", port)
    listener = await loop.create_server(lambda: Conn(srv), sock=sock, backlog=4096)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.port, Upstream(args.upstream)))


if __name__ == "__main__":
    main()
