"""The gateway's HTTP/1.1 client to model servers: keep-alive pools over asyncio protocols.

Why not aiohttp's or httpx's client: on the request path `ClientSession._request` alone was a
fifth of the gateway's CPU at 64 clients (py-spy, docs/performance.md), for machinery a proxy
does not use (cookies, redirects, tracing, URL objects, auto headers, per-request timer
objects). Here the request head is rendered once per reload (`Endpoint`), a request is one
`transport.write`, and the response is parsed by httptools (llhttp, the parser uvicorn uses):
status, headers, a Content-Length, chunked or close-delimited body. Measured in
docs/performance.md ("Upstream client").

Timeouts, as a provider's `timeouts` mean them:
- `connect`: opening a new connection (TCP, and TLS for https);
- `read`: the first response byte after the request is sent (the first token of a stream), and
  any later gap between body chunks;
- `total`: the whole exchange, from the request to the last body byte.

Host names are resolved at most once per 10 s per host (and once at a time), so a burst of new
connections to a Service name does not queue as many getaddrinfo calls on the executor's few
threads; with several addresses (a headless Service) new connections rotate over them, and an
address that refuses is skipped for the next.

A pooled connection that the server closed while it sat idle (uvicorn, behind vLLM, closes
them after 5 s) fails before a single response byte arrives; such a request is sent once more
on a new connection. Nothing else is retried here: fallback is the caller's business.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools

_MAX_BUFFER = 1 << 20
"""Body bytes held for a slow consumer before the socket stops being read."""


class UpstreamError(Exception):
    """The exchange failed; `message` is safe to show (no credentials, no bodies)."""


class ConnectError(UpstreamError):
    """No connection could be opened (refused, unreachable, DNS, TLS, or timed out)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Disconnected(UpstreamError):
    """The server closed the connection, or sent something that is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to POST, rendered once per routing-table reload."""

    url: str
    scheme: str
    host: str
    port: int
    headers: dict[str, str]
    """As configured (for inspection; requests send `head`)."""
    head: bytes
    """Request line and headers up to, not including, Content-Length."""
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    key: tuple[str, str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.scheme, self.host, self.port))

    @classmethod
    def build(
        cls,
        url: str,
        headers: dict[str, str],
        *,
        connect: float,
        read: float,
        total: float,
    ) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default = (parts.scheme == "https" and port == 443) or (
            parts.scheme == "http" and port == 80
        )
        host = parts.hostname
        authority = host if ":" not in host else f"[{host}]"
        if not default:
            authority = f"{authority}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1", f"host: {authority}"]
        for name, value in headers.items():
            if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                continue
            if any(c in name or c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} has a line break or NUL in its name or value")
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        return cls(url, parts.scheme, host, port, dict(headers), head, connect, read, total)


class _Conn(asyncio.Protocol):
    """One connection; parses one response at a time (no pipelining)."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_deadline",
        "_last",
        "_names",
        "_paused",
        "_read_timeout",
        "_sink",
        "_timer",
        "_waiter",
        "closed",
        "complete",
        "error",
        "got_bytes",
        "headers",
        "idle_in",
        "idle_since",
        "keep_alive",
        "key",
        "loop",
        "parser",
        "status",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int]) -> None:
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.idle_in: list[_Conn] | None = None
        """The pool's idle list while parked there, so that a close by the server removes it."""
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], None] | None = None
        self._last = self._deadline = self._read_timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] | None = None
        self._names: list[tuple[bytes, bytes]] = []
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.error: Exception | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Disconnected(f"invalid HTTP response ({exc})"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle_in is not None:
            self.idle_in.remove(self)
            self.idle_in = None
        if self.headers is not None and not self.complete and self._close_delimited():
            self.complete = True  # a body without length ends with the connection
            self._wake()
        elif not self.complete:
            self._fail(Disconnected("the server closed the connection"))

    def pause_writing(self) -> None:  # a request body bigger than the socket buffer
        pass

    def resume_writing(self) -> None:
        pass

    # --- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._names.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in self._names}
        self._wake()

    def on_body(self, body: bytes) -> None:
        sink = self._sink
        if sink is not None:
            self._last = self.loop.time()
            sink(body)
            return
        self._buffer.append(body)
        self._buffered += len(body)
        if self._buffered > _MAX_BUFFER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # not after `connection: close`
        self._wake()

    # --- helpers ------------------------------------------------------------------------------

    def _close_delimited(self) -> bool:
        headers = self.headers or {}
        return "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", ""
        )

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def wait(self, deadline: float, read_timeout: float, what: str) -> None:
        """Until the parser has moved on (headers, a body chunk or the end)."""
        if self.error is not None:
            raise self.error
        loop = self.loop
        now = loop.time()
        if now >= deadline:
            raise TimeoutError(f"the whole exchange took longer than its total timeout ({what})")
        waiter = self._waiter = loop.create_future()
        self._last = now
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._timer = loop.call_at(min(deadline, now + read_timeout), self._check)
        try:
            await waiter
        finally:
            self._timer.cancel()
            self._waiter = None

    def _check(self) -> None:
        """The read timer: fail the wait, or (chunks went to a sink meanwhile) wait on."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        due = min(self._deadline, self._last + self._read_timeout)
        if self.loop.time() >= due - 0.001:
            waiter.set_exception(TimeoutError())
        else:
            self._timer = self.loop.call_at(due, self._check)

    def take(self) -> bytes:
        """Everything buffered so far."""
        buffer = self._buffer
        data = buffer.popleft() if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data


class Response:
    """A response whose headers have arrived; read the body with `read()` or `chunks()`,
    then `release()` (returns a finished connection to the pool) or `close()`."""

    __slots__ = ("_conn", "_deadline", "_endpoint", "_pool", "headers", "status")

    def __init__(self, pool: Pool, conn: _Conn, endpoint: Endpoint, deadline: float) -> None:
        self._pool = pool
        self._conn: _Conn | None = conn
        self._endpoint = endpoint
        self._deadline = deadline
        self.status = conn.status
        assert conn.headers is not None
        self.headers = conn.headers

    async def read(self) -> bytes:
        """The whole body (usually already here: it came with the headers)."""
        conn = self._conn
        if conn is not None and conn.complete:
            return conn.take() if conn._buffer else b""
        parts = []
        while chunk := await self.next_chunk():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def next_chunk(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some), b"" at the end.
        TimeoutError when the wait exceeds the read timeout or the exchange its total;
        Disconnected when the connection breaks before the end."""
        conn = self._conn
        if conn is None:
            return b""
        endpoint = self._endpoint
        while True:
            if conn._buffer:
                return conn.take()
            if conn.complete:
                return b""
            await conn.wait(self._deadline, endpoint.read_timeout, endpoint.url)

    async def chunks(self) -> AsyncIterator[bytes]:
        """`next_chunk()` until the end."""
        while chunk := await self.next_chunk():
            yield chunk

    async def pipe(self, sink: Callable[[bytes], None]) -> None:
        """Hand each body chunk to `sink` as it arrives, inside the protocol's callback: no
        task switch per chunk. Returns at the end of the body; TimeoutError and Disconnected
        as for `chunks()`. `sink` must not block; it may call `pause()` and `resume()`."""
        conn = self._conn
        if conn is None:
            return
        if conn._buffer:
            sink(conn.take())
        endpoint = self._endpoint
        conn._sink = sink
        try:
            while not conn.complete:
                await conn.wait(self._deadline, endpoint.read_timeout, endpoint.url)
        finally:
            conn._sink = None

    def touch(self) -> None:
        """Restart the read timeout: the consumer, not the server, held the body back."""
        conn = self._conn
        if conn is not None:
            conn._last = conn.loop.time()

    def pause(self) -> None:
        conn = self._conn
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def resume(self) -> None:
        conn = self._conn
        if conn is not None and conn.transport is not None:
            conn.transport.resume_reading()

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.complete and conn.keep_alive and not conn._buffer and not conn.closed:
            self._pool._put(conn)
        else:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class Pool:
    """Keep-alive connections per (scheme, host, port); no limit on open connections."""

    def __init__(
        self,
        *,
        max_idle_per_host: int = 1024,
        idle_seconds: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        dns_seconds: float = 10.0,
    ) -> None:
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._resolving: dict[tuple[str, int], asyncio.Future[list[Any]]] = {}
        self._dns_seconds = dns_seconds
        self._max_idle = max_idle_per_host
        self._idle_seconds = idle_seconds
        self._ssl = ssl_context
        """The system's trust store unless given (tests pass their own CA)."""
        self._closed = False

    async def post(self, endpoint: Endpoint, body: bytes) -> Response:
        """Send the request and wait for the response headers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + endpoint.total_timeout
        conn = self._get(endpoint.key)
        if conn is not None:
            try:
                return await self._exchange(conn, endpoint, body, deadline)
            except Disconnected:
                if conn.got_bytes:
                    raise
                # an idle connection the server had closed: once more on a new one
        conn = await self._connect(endpoint, loop, deadline)
        return await self._exchange(conn, endpoint, body, deadline)

    async def _exchange(
        self, conn: _Conn, endpoint: Endpoint, body: bytes, deadline: float
    ) -> Response:
        conn._reset()
        transport = conn.transport
        assert transport is not None
        transport.write(b"%scontent-length: %d\r\n\r\n%s" % (endpoint.head, len(body), body))
        try:
            while conn.headers is None:
                await conn.wait(deadline, endpoint.read_timeout, endpoint.url)
        except BaseException:
            conn.close()
            raise
        return Response(self, conn, endpoint, deadline)

    def _get(self, key: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        conn = idle.pop()  # the most recently used: the likeliest to be alive
        conn.idle_in = None
        return conn

    def _put(self, conn: _Conn) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if self._closed or len(idle) >= self._max_idle:
            conn.close()
            return
        now = conn.loop.time()
        while idle and idle[0].idle_since < now - self._idle_seconds:
            idle[0].close()  # unused for idle_seconds: connection_lost takes it off the list
            idle.pop(0).idle_in = None
        conn.idle_since = now
        conn.idle_in = idle
        idle.append(conn)

    async def _connect(
        self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> _Conn:
        context = None
        if endpoint.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        timeout = min(endpoint.connect_timeout, max(deadline - loop.time(), 0.0))
        where = f"{endpoint.host}:{endpoint.port}"
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._addresses(endpoint.host, endpoint.port, loop)
                last: OSError | None = None
                for address in addresses:
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Conn(loop, endpoint.key),
                            address,
                            endpoint.port,
                            ssl=context,
                            server_hostname=endpoint.host if context else None,
                        )
                        return conn
                    except ssl.SSLError:
                        raise
                    except OSError as exc:  # refused or unreachable: the next address
                        last = exc
                assert last is not None
                raise last
        except TimeoutError:
            raise ConnectError(f"connecting to {where} timed out", timed_out=True) from None
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS with {where} failed: {exc.reason or exc}") from None
        except OSError as exc:
            self._dns.pop((endpoint.host, endpoint.port), None)  # resolve afresh next time
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(f"cannot connect to {where}: {reason}") from None

    async def _addresses(self, host: str, port: int, loop: asyncio.AbstractEventLoop) -> list[str]:
        """The host's addresses, resolved at most once per `dns_seconds` (and once at a time):
        a burst of new connections to a Service name would otherwise queue that many
        getaddrinfo calls on the default executor's few threads. Successive calls rotate the
        list, so the connections to a headless Service spread over its pods."""
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        key = (host, port)
        now = loop.time()
        cached = self._dns.get(key)
        if cached is None or cached[0] <= now:
            pending = self._resolving.get(key)
            if pending is None:
                pending = self._resolving[key] = asyncio.ensure_future(
                    loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                )
                pending.add_done_callback(lambda _: self._resolving.pop(key, None))
            infos = await asyncio.shield(pending)
            found = list(dict.fromkeys(str(info[4][0]) for info in infos))
            if not found:
                raise OSError(f"{host} has no address")
            cached = self._dns[key] = (now + self._dns_seconds, found)
        addresses = cached[1]
        if len(addresses) > 1:
            addresses.append(addresses.pop(0))
        return list(addresses)

    def idle(self) -> int:
        """Connections kept open for reuse."""
        return sum(len(v) for v in self._idle.values())

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in list(idle):
                conn.idle_in = None
                conn.close()
        self._idle.clear()
