"""The gateway's HTTP/1.1 client to model servers: keep-alive pools over asyncio protocols.

Why not aiohttp's or httpx's client: on the request path `ClientSession._request` alone was a
fifth of the gateway's CPU at 64 clients (py-spy, docs/performance.md), for machinery a proxy
does not use (cookies, redirects, tracing, URL objects, auto headers, per-request timer
objects). Here the request head is rendered once per reload (`Endpoint`), a request is one
`transport.write`, and the response is parsed by httptools (llhttp, the parser uvicorn uses).
Measured in docs/performance.md ("Upstream client"); the conformance table of what it survives
is tests/gateway/test_upstream_conformance.py.

The protocol rules (RFC 9112, RFC 9110 §15.2), one connection parsing one exchange at a time:
- interim 1xx responses (100, 102, 103, any other) are read and dropped, any number of them,
  until the final response; 101 Switching Protocols is refused (the connection is closed);
- a connection goes back to the pool only when its response ended cleanly (Content-Length
  reached or the last chunk and its trailers read), the server did not say `connection: close`
  (HTTP/1.0 without keep-alive counts as saying it), the whole request was written, and no byte
  arrived after the end. Any byte after the end of a response (past Content-Length, after the
  last chunk, while the connection sits idle) closes the connection: it is never read as the
  start of the next response. A body without a length ends with the connection (a clean close;
  a reset is an error) and never returns it to the pool;
- a request is sent again only when a pooled connection is found unusable BEFORE it was
  written: closed, readable (EOF or stray bytes waiting, checked with poll(2) as httpcore does)
  or idle longer than `idle_seconds`. Once written, a request is never resent here, whatever
  happens, since the server may have read it: fallback is the caller's business;
- limits (`Settings`): response head bytes (status line, headers, interim responses and
  trailers), non-stream body bytes, connections per host (further requests queue, in order,
  for the connect timeout);
- write back-pressure: a request body the socket cannot take at once stays in the transport's
  buffer; the read timeout covers a write stalled that long, and a connection with bytes of the
  request still unsent is never reused;
- `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` are honoured (gateway/dial.py): CONNECT tunnels for
  https, absolute-form requests for http; a provider's own CA bundle (`Endpoint.ca_pem`)
  replaces the system trust store for that provider.

Timeouts, as a provider's `timeouts` mean them:
- `connect`: a connection (DNS, TCP, proxy CONNECT, TLS), or a free slot under the per-host
  limit;
- `read`: the first byte of the final response after the request is sent (the first token of a
  stream; interim 1xx responses do not restart it), any later gap between body chunks, and a
  request write stalled by a server that does not read;
- `total`: the whole exchange, from the request to the last body byte.

Errors (each `message` safe to show: no credentials, no bodies); timeouts are the built-in
TimeoutError:

    UpstreamError                 the exchange failed
    ├── ConnectError              no connection: refused, DNS, TLS, proxy, or timed out
    │   └── PoolTimeout           no free slot under max_connections_per_host in time
    ├── Disconnected              the connection ended before the response did
    │   └── ProtocolError         the bytes are not an HTTP/1.1 response we accept (unparseable,
    │                             101, duplicate Content-Length, bad chunk sizes, ...)
    └── ResponseTooLarge          a limit of `Settings` was crossed (the gateway answers 502)
        ├── HeadersTooLarge       max_header_bytes
        └── BodyTooLarge          max_body_bytes
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from switchboard.gateway import dial
from switchboard.gateway.http1 import (
    BodyTooLarge,
    Conn,
    ConnectError,
    Disconnected,
    HeadersTooLarge,
    Host,
    PoolTimeout,
    ProtocolError,
    ResponseTooLarge,
    UpstreamError,
)

__all__ = [
    "BodyTooLarge",
    "ConnectError",
    "Disconnected",
    "Endpoint",
    "HeadersTooLarge",
    "Pool",
    "PoolTimeout",
    "ProtocolError",
    "Response",
    "ResponseTooLarge",
    "Settings",
    "UpstreamError",
]


_WRITE_PIECE = 256 * 1024
"""A request body larger than this is written in pieces of this size, under back-pressure."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Limits and pooling of the upstream client (`switchboard gateway --upstream-*` flags)."""

    max_header_bytes: int = 64 * 1024
    """Bytes of one response's head: status line and header fields, interim 1xx responses
    before it and trailers after a chunked body included. More is a HeadersTooLarge (502)."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Bytes of a response body read whole (non-stream answers and error bodies). More is a
    BodyTooLarge (502). Streams are relayed as they come and not capped here."""
    max_connections_per_host: int = 2048
    """Open connections per (scheme, host, port, CA); further requests wait, first come first
    served, for the connect timeout, then fail with PoolTimeout."""
    max_idle_per_host: int = 1024
    """Idle keep-alive connections kept per host; more are closed on release."""
    idle_seconds: float = 4.0
    """An idle connection unused this long is closed, not reused: below the 5 s after which
    uvicorn (vLLM, SGLang) closes an idle connection, so a request never races that close."""
    dns_seconds: float = 10.0
    """How long a host name's addresses are reused before it is resolved again."""
    trust_env: bool = True
    """Honour HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment."""


def _ca_context(pem: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"the CA bundle is not valid PEM certificates ({exc})") from None


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
    """Request line (origin form) and headers up to, not including, Content-Length."""
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    ca_pem: str | None = None
    """PEM CA certificates that replace the system trust store for this endpoint (https)."""
    origin: bytes = b""
    """`http://host:port`: through a plain-http proxy the request line is `POST ` + origin +
    `head[5:]` (absolute form), so a copy with another `head` (gateway/beta.py) stays right."""
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    """Built from `ca_pem`, once per reload."""
    key: tuple[str, str, int, str] = field(init=False)
    """What a pooled connection is shared by: scheme, host, port and the CA's digest."""
    where: str = field(init=False)
    """`host:port`, for messages."""

    def __post_init__(self) -> None:
        ca = hashlib.sha256(self.ca_pem.encode()).hexdigest()[:16] if self.ca_pem else ""
        object.__setattr__(self, "key", (self.scheme, self.host, self.port, ca))
        object.__setattr__(self, "where", f"{self.host}:{self.port}")

    @classmethod
    def build(
        cls,
        url: str,
        headers: dict[str, str],
        *,
        connect: float,
        read: float,
        total: float,
        ca_pem: str | None = None,
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
        lines = [f"host: {authority}"]
        for name, value in headers.items():
            if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                continue
            if any(c in name or c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} has a line break or NUL in its name or value")
            lines.append(f"{name}: {value}")
        rest = "".join(f"{line}\r\n" for line in lines)
        head = f"POST {target} HTTP/1.1\r\n{rest}".encode("latin-1")
        context = None
        if ca_pem is not None and parts.scheme == "https":
            context = _ca_context(ca_pem)
        return cls(
            url,
            parts.scheme,
            host,
            port,
            dict(headers),
            head,
            connect,
            read,
            total,
            ca_pem,
            f"{parts.scheme}://{authority}".encode("latin-1"),
            context,
        )


class Response:
    """A response whose headers have arrived; read the body with `read()` or `chunks()`,
    then `release()` (returns a finished connection to the pool) or `close()`."""

    __slots__ = ("_conn", "_deadline", "_endpoint", "_pool", "headers", "status")

    def __init__(self, pool: Pool, conn: Conn, endpoint: Endpoint, deadline: float) -> None:
        self._pool = pool
        self._conn: Conn | None = conn
        self._endpoint = endpoint
        self._deadline = deadline
        self.status = conn.status
        assert conn.headers is not None
        self.headers = conn.headers

    async def read(self) -> bytes:
        """The whole body (usually already here: it came with the headers); BodyTooLarge
        beyond max_body_bytes (the connection is then closed)."""
        conn = self._conn
        limit = self._pool.settings.max_body_bytes
        if conn is not None and conn.complete:
            data = conn.take() if conn._buffer else b""
            if len(data) > limit:
                self._too_large()
            return data
        length = self.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._too_large()
        parts = []
        size = 0
        while chunk := await self.next_chunk():
            size += len(chunk)
            if size > limit:
                self._too_large()
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _too_large(self) -> None:
        self.close()
        limit = self._pool.settings.max_body_bytes
        raise BodyTooLarge(
            f"{self._endpoint.where} sent a body larger than {limit} bytes (max_body_bytes)"
        )

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
        """Back to the pool if the exchange ended cleanly (see the module docstring), else
        closed."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.reusable():
            self._pool._put(conn)
        else:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class Pool:
    """Keep-alive connections per Endpoint.key, at most `max_connections_per_host` open."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._hosts: dict[tuple[str, str, int, str], Host] = {}
        self._resolver = dial.Resolver(self.settings.dns_seconds)
        self._ssl = ssl_context
        """The system's trust store unless given (tests pass their own CA); an endpoint's own
        CA bundle comes first."""
        self._proxies = dial.Proxies(environ if self.settings.trust_env else {})
        """Read once, from `environ` (the process environment unless given)."""
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, endpoint: Endpoint, body: bytes) -> Response:
        """Send the request and wait for the final response's headers."""
        loop = self._loop
        if loop is None:  # the loop of the first request (asking each time is a getpid(2))
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + endpoint.total_timeout
        host = self._hosts.get(endpoint.key)
        if host is None:
            host = self._hosts[endpoint.key] = Host()
        conn = self._get(host, loop)
        if conn is None:
            conn = await self._open(endpoint, host, loop, deadline)
        return await self._exchange(conn, endpoint, body, deadline)

    async def _exchange(
        self, conn: Conn, endpoint: Endpoint, body: bytes, deadline: float
    ) -> Response:
        conn._reset()
        transport = conn.transport
        assert transport is not None
        head = endpoint.head
        if conn.absolute is not None:  # through a plain-http proxy
            head = b"POST %s%s%s" % (endpoint.origin, head[5:], conn.absolute)
        try:
            if len(body) <= _WRITE_PIECE:
                transport.write(b"%scontent-length: %d\r\n\r\n%s" % (head, len(body), body))
            else:
                await self._write_large(conn, endpoint, head, body, deadline)
            while conn.headers is None:
                await conn.wait(deadline, endpoint.read_timeout, endpoint.url)
        except BaseException:
            conn.close()
            raise
        return Response(self, conn, endpoint, deadline)

    async def _write_large(
        self, conn: Conn, endpoint: Endpoint, head: bytes, body: bytes, deadline: float
    ) -> None:
        """A body in pieces, each once the transport has room (pause_writing/resume_writing):
        a server that reads steadily never hits the read timeout, one that stops reading does.
        A server that answers before the whole body is in leaves the rest unsent, and the
        connection is then never reused."""
        transport = conn.transport
        assert transport is not None
        transport.write(b"%scontent-length: %d\r\n\r\n" % (head, len(body)))
        view = memoryview(body)
        for start in range(0, len(body), _WRITE_PIECE):
            while conn._write_paused and conn.headers is None:
                await conn.wait(deadline, endpoint.read_timeout, endpoint.url)
            if conn.headers is not None or conn.closed:
                conn.unsent = True
                return
            transport.write(view[start : start + _WRITE_PIECE])

    def _get(self, host: Host, loop: asyncio.AbstractEventLoop) -> Conn | None:
        """The most recently used idle connection that is still usable; stale ones closed."""
        idle = host.idle
        if not idle:
            return None
        oldest = loop.time() - self.settings.idle_seconds
        while idle:
            if idle[-1].idle_since < oldest:
                # The newest unused for idle_seconds, so every one under it too: all of them
                # leave the pool, closed a few per event-loop turn (`_retire`).
                self._retire(idle, len(idle))
                return None
            conn = idle.pop()
            conn.parked = False
            if not conn.stale():
                return conn
            conn.close()  # found unusable before anything was written: a new one instead
        return None

    RETIRE_BATCH = 16
    """Idle connections closed per event-loop turn when many age out together: after a burst,
    hundreds of connections parked within a second reach idle_seconds within a second, and
    closing them all in one callback stalled every stream in flight (and the upstream, which
    sees as many connections end at once) for milliseconds (docs/performance.md)."""

    def _retire(self, idle: list[Conn], count: int) -> None:
        """Take the `count` oldest connections off the `idle` list and close them, RETIRE_BATCH
        now and the rest in later loop turns."""
        old = idle[:count]
        del idle[:count]
        for conn in old:
            conn.parked = False
        self._close_some(old)

    def _close_some(self, conns: list[Conn]) -> None:
        batch = self.RETIRE_BATCH
        for conn in conns[:batch]:
            conn.close()
        if len(conns) > batch:
            asyncio.get_running_loop().call_soon(self._close_some, conns[batch:])

    def _put(self, conn: Conn) -> None:
        host = conn.host
        if self._closed:
            conn.close()
            return
        if host.waiters and host.hand_over(conn):
            return
        idle = host.idle
        if len(idle) >= self.settings.max_idle_per_host:
            conn.close()
            return
        now = conn.loop.time()
        oldest = now - self.settings.idle_seconds
        if idle and idle[0].idle_since < oldest:  # the oldest first: those unused too long
            aged = 1
            while aged < len(idle) and idle[aged].idle_since < oldest:
                aged += 1
            self._retire(idle, aged)
        conn.idle_since = now
        conn.parked = True
        idle.append(conn)

    async def _open(
        self, endpoint: Endpoint, host: Host, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> Conn:
        """A new connection, once the host has a free slot (or a released connection)."""
        limit = self.settings.max_connections_per_host
        if host.open >= limit:
            waiter: asyncio.Future[Conn | None] = loop.create_future()
            host.waiters.append(waiter)
            timeout = min(endpoint.connect_timeout, max(deadline - loop.time(), 0.0))
            try:
                async with asyncio.timeout(timeout):
                    handed = await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._give_back(host, waiter.result())  # handed over as we gave up
                else:
                    waiter.cancel()
                if isinstance(exc, TimeoutError):
                    raise PoolTimeout(
                        f"no free connection to {endpoint.where} within "
                        f"{endpoint.connect_timeout:g} s ({limit} open, the "
                        "max_connections_per_host limit)"
                    ) from None
                raise
            if handed is not None:
                if not handed.stale():
                    return handed
                handed.close()  # lost while handed over: wait again for a slot
                return await self._open(endpoint, host, loop, deadline)
        else:
            host.open += 1
        try:
            conn = await self._connect(endpoint, host, loop, deadline)
        except BaseException:
            self._give_back(host, None)
            raise
        if conn.closed:  # closed by the server before anything was written
            self._give_back(host, None)
            raise ConnectError(f"{endpoint.where} closed the new connection at once")
        conn.counted = True
        return conn

    def _give_back(self, host: Host, conn: Conn | None) -> None:
        """A connection or a slot this request holds but will not use."""
        if conn is not None:
            self._put(conn)
        elif not host.hand_over(None):
            host.open -= 1

    async def _connect(
        self, endpoint: Endpoint, host: Host, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> Conn:
        context = None
        if endpoint.scheme == "https":
            context = endpoint.ssl_context or self._ssl
            if context is None:
                context = self._ssl = ssl.create_default_context()
        proxy = self._proxies.for_target(endpoint.scheme, endpoint.host, endpoint.port)
        timeout = min(endpoint.connect_timeout, max(deadline - loop.time(), 0.0))
        where = endpoint.where
        via = f" through the proxy {proxy.where}" if proxy else ""
        target = (proxy.host, proxy.port) if proxy else (endpoint.host, endpoint.port)
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolver.addresses(*target, loop)
                last: OSError | None = None
                for address in addresses:
                    try:
                        return await self._dial(
                            endpoint, host, loop, address, proxy=proxy, context=context
                        )
                    except (ssl.SSLError, dial.ProxyRefused):
                        raise
                    except OSError as exc:  # refused or unreachable: the next address
                        last = exc
                assert last is not None
                raise last
        except TimeoutError:
            raise ConnectError(f"connecting to {where}{via} timed out", timed_out=True) from None
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS with {where}{via} failed: {exc.reason or exc}") from None
        except OSError as exc:
            self._resolver.forget(*target)
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(f"cannot connect to {where}{via}: {reason}") from None

    async def _dial(
        self,
        endpoint: Endpoint,
        host: Host,
        loop: asyncio.AbstractEventLoop,
        address: str,
        *,
        proxy: dial.Proxy | None,
        context: ssl.SSLContext | None,
    ) -> Conn:
        conn = Conn(loop, host, self.settings.max_header_bytes, endpoint.where)
        if proxy is not None and context is not None:  # https through a CONNECT tunnel
            raw = await dial.tunnel(loop, proxy, address, endpoint.host, endpoint.port)
            try:
                tls = await loop.start_tls(raw, conn, context, server_hostname=endpoint.host)
            except BaseException:
                raw.close()
                raise
            assert tls is not None
            conn.connection_made(tls)
            return conn
        await loop.create_connection(
            lambda: conn,
            address,
            proxy.port if proxy is not None else endpoint.port,
            ssl=context,
            server_hostname=endpoint.host if context else None,
        )
        if proxy is not None:  # plain http through a proxy: absolute-form request lines
            conn.absolute = proxy.authorization
        return conn

    def idle(self) -> int:
        """Connections kept open for reuse."""
        return sum(len(host.idle) for host in self._hosts.values())

    def open(self) -> int:
        """Connections open or opening."""
        return sum(host.open for host in self._hosts.values())

    async def close(self) -> None:
        self._closed = True
        for host in self._hosts.values():
            for conn in list(host.idle):
                conn.close()
