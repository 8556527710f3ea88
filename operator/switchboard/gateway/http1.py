"""HTTP/1.1 response parsing for the upstream client: one connection's state, and the errors.

`Conn` is an asyncio protocol that runs one exchange at a time over httptools (llhttp): it
drops interim 1xx responses, refuses 101, counts head bytes against the limit, closes on any
byte after the end of a response, and tracks write back-pressure; `Host` counts the
connections of one (scheme, host, port, CA) and queues requests over the limit. The rules and
the error tree are documented in gateway/upstream.py, which exports both; the errors are
defined here, beside the state machine that raises them.
"""

from __future__ import annotations

import asyncio
import collections
import select
from collections.abc import Callable

import httptools

from switchboard.errors import SwitchboardError

MAX_BUFFER = 1 << 20
"""Body bytes held for a slow consumer before the socket stops being read."""


class UpstreamError(SwitchboardError):
    """The exchange failed; `message` is safe to show (no credentials, no bodies)."""


class ConnectError(UpstreamError):
    """No connection could be opened (refused, unreachable, DNS, TLS, proxy, or timed out)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class PoolTimeout(ConnectError):
    """Every connection to the host was busy (max_connections_per_host) for the connect timeout."""

    def __init__(self, message: str) -> None:
        super().__init__(message, timed_out=True)


class Disconnected(UpstreamError):
    """The server closed or reset the connection before the end of the response."""


class ProtocolError(Disconnected):
    """The server's bytes are not an HTTP/1.1 response the client accepts; the connection is
    closed."""


class ResponseTooLarge(UpstreamError):
    """A limit of `Settings` was crossed; the connection is closed."""


class HeadersTooLarge(ResponseTooLarge):
    """The response head (interim responses and trailers included) exceeds max_header_bytes."""


class BodyTooLarge(ResponseTooLarge):
    """A body read whole (`Response.read`) exceeds max_body_bytes."""


class Host:
    """The connections of one Endpoint.key: idle ones, how many are open, who waits."""

    __slots__ = ("idle", "open", "waiters")

    def __init__(self) -> None:
        self.idle: list[Conn] = []
        self.open = 0
        """Open or opening (a slot a waiter was promised counts)."""
        self.waiters: collections.deque[asyncio.Future[Conn | None]] = collections.deque()

    def hand_over(self, conn: Conn | None) -> bool:
        """To the first waiter still waiting: a released connection, or (None) a free slot."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def lost(self, conn: Conn) -> None:
        if conn.parked:
            conn.parked = False
            self.idle.remove(conn)
        if not conn.counted:  # still being opened: the opener gives its slot back
            return
        conn.counted = False
        self.open -= 1
        if self.waiters and self.hand_over(None):
            self.open += 1  # the slot is the waiter's now


class Conn(asyncio.Protocol):
    """One connection; parses one exchange at a time (no pipelining).

    States: `complete` True while no exchange is in progress (fresh, or the response ended);
    `_reset()` starts an exchange. Bytes that arrive while `complete` close the connection."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_deadline",
        "_head_bytes",
        "_interim",
        "_last",
        "_max_head",
        "_names",
        "_paused",
        "_poll",
        "_read_timeout",
        "_sink",
        "_timer",
        "_waiter",
        "_write_paused",
        "absolute",
        "closed",
        "complete",
        "counted",
        "error",
        "headers",
        "host",
        "idle_since",
        "keep_alive",
        "loop",
        "parked",
        "parser",
        "status",
        "transport",
        "unsent",
        "where",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, host: Host, max_head: int, where: str
    ) -> None:
        self.loop = loop
        self.host = host
        self.where = where
        self._max_head = max_head
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.parked = False
        """In the host's idle list (a close by the server takes it off)."""
        self.counted = False
        """Holds one of the host's slots (set once opened; released when lost)."""
        self.absolute: bytes | None = None
        """Through a plain-http proxy: requests in absolute form, plus this proxy-authorization."""
        self._poll: select.poll | None = None
        self._write_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], None] | None = None
        self._last = self._deadline = self._read_timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reset()
        self.complete = True  # no exchange yet

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] | None = None
        self._names: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._interim = False
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self.complete = False
        self.unsent = False
        """Part of the request body was never written (the server answered first)."""
        self.keep_alive = False
        self.error: Exception | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        if self.complete:  # nobody asked: bytes after the end of a response, or unsolicited
            self.close()
            return
        if self.headers is None:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self.complete:
                self._fail(ProtocolError(f"{self.where} sent an invalid HTTP/1.1 response ({exc})"))
            self.close()  # when complete: bytes after the end (on_message_begin stopped them)
            return
        if self.headers is None and self._head_bytes > self._max_head:
            self._fail(self._head_too_large())
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:  # never connected (a TLS handshake in a tunnel failed)
            return
        self.closed = True
        self.host.lost(self)
        if self.complete:
            return
        if exc is None and self.headers is not None and self._close_delimited():
            self.complete = True  # a body without a length ends with a clean close
            self._wake()
        elif exc is not None:
            self._fail(Disconnected(f"{self.where} reset the connection"))
        else:
            self._fail(Disconnected(f"{self.where} closed the connection"))

    def pause_writing(self) -> None:  # a request body bigger than the socket buffer
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()  # progress: a waiting exchange restarts its read timeout

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second response in the bytes of the first: stop parsing
            raise ProtocolError("bytes after the end of the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers is not None:  # a trailer after a chunked body: counted, not kept
            self._head_bytes += len(name) + len(value) + 4
            if self._head_bytes > self._max_head:
                too_large = self._head_too_large()
                self._fail(too_large)
                raise too_large  # stops the parser
            return
        self._names.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        names = self._names
        self._names = []
        if status < 200:  # interim (RFC 9110 §15.2): dropped; the final response follows
            self._interim = True
            if status == 101:
                self._fail(
                    ProtocolError(
                        f"{self.where} answered 101 Switching Protocols; the gateway does not "
                        "switch protocols"
                    )
                )
            return
        if self._head_bytes > self._max_head and self._exact_head(names) > self._max_head:
            too_large = self._head_too_large()
            self._fail(too_large)
            raise too_large  # stops the parser
        self._head_bytes = 0  # trailers, if any, count from here
        self.status = status
        self.headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in names}
        self._wake()

    def on_body(self, body: bytes) -> None:
        sink = self._sink
        if sink is not None:
            self._last = self.loop.time()
            sink(body)
            return
        self._buffer.append(body)
        self._buffered += len(body)
        if self._buffered > MAX_BUFFER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # not after `connection: close`
        self._wake()

    # --- helpers ------------------------------------------------------------------------------

    def _exact_head(self, names: list[tuple[bytes, bytes]]) -> int:
        """The final head's field bytes; counted only when the raw count (which may include
        body bytes that came in the same read) is over the limit."""
        return sum(len(n) + len(v) + 4 for n, v in names)

    def _head_too_large(self) -> HeadersTooLarge:
        return HeadersTooLarge(
            f"{self.where} sent a response head larger than {self._max_head} bytes "
            "(max_header_bytes)"
        )

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

    def stale(self) -> bool:
        """Unusable for a new request: closed, or readable while idle (an EOF or stray bytes
        the event loop has not delivered yet)."""
        if self.closed:
            return True
        poll = self._poll
        return poll is not None and bool(poll.poll(0))

    def reusable(self) -> bool:
        transport = self.transport
        return (
            self.complete
            and self.keep_alive
            and not self.closed
            and not self._buffer
            and not self.unsent
            and transport is not None
            and not transport.get_write_buffer_size()
        )

    def close(self) -> None:
        self.closed = True
        timer = self._timer
        if timer is not None and self._waiter is None:  # a pending wait keeps its timer
            self._timer = None
            timer.cancel()
        if self.transport is not None:
            self.transport.close()

    async def wait(self, deadline: float, read_timeout: float, what: str) -> None:
        """Until the parser has moved on (headers, a body chunk or the end).

        One read timer per connection, re-armed lazily: a wait moves `_last` and arms the
        timer only when none is pending or the pending one is due later than this wait's own
        due time; `_check` then waits on for whatever is left. A request pays no timer of its
        own in the common case (one call_at per read timeout, not two per request)."""
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
        due = deadline if deadline < now + read_timeout else now + read_timeout
        timer = self._timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(due, self._check)
        try:
            await waiter
        finally:
            self._waiter = None

    def _check(self) -> None:
        """The read timer: fail the wait, or wait on (chunks came meanwhile, or this timer
        was armed by an earlier wait), or rest while nobody waits (the next wait re-arms)."""
        self._timer = None
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
