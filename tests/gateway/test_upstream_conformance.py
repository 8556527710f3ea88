"""Conformance table of the gateway's HTTP/1.1 client (gateway/upstream.py, gateway/http1.py).

One row per case, each a raw-socket server writing exact bytes after it reads the first request:
interim 1xx responses before the final one (100, 102, 103 with headers, several, an unknown
1xx) and 101; bytes past Content-Length, after the last chunk and a pipelined second response;
trailers; close-delimited bodies (closed cleanly, or reset); resets and closes mid-body and
before any byte; a body without a status line; oversized heads (finished, unfinished, endless
1xx, trailers) and bodies (by Content-Length, chunked); `connection: close`; HTTP/1.0 with and
without keep-alive; invalid and overflowing chunk sizes; duplicate, conflicting and
chunked-plus Content-Length; 204 and an error status with a body.

Each row checks the first exchange's result (status and body, or the error class), then sends a
second request on the same pool and checks that it gets its own clean answer, on the same
connection only where the first one ended cleanly and kept alive, on a new one otherwise; the
server sees exactly two requests (nothing resent).

Beside the table: the cross-client case of issue #10 (a 103 before the 200 handed the first
client's answer to the next request on that connection), a stale pooled socket whose EOF the
event loop has not delivered yet (found with poll(2), replaced before anything is written), a
request never resent once written, the per-host connection limit and its queue, write
back-pressure of a large request body, a per-endpoint CA bundle, and HTTPS_PROXY/HTTP_PROXY/
NO_PROXY through a small CONNECT/absolute-form proxy written here.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from switchboard.gateway.upstream import (
    BodyTooLarge,
    Disconnected,
    Endpoint,
    HeadersTooLarge,
    Pool,
    PoolTimeout,
    ProtocolError,
    Settings,
    UpstreamError,
)
from tests.gateway.test_upstream_client import _read_request, endpoint
from tests.support.raw_server import listen

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n" + (
    b'{"ok":true}'
)
NEXT = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext"
CLOSE = b"<close>"
"""A clean close (FIN) by the server."""
RESET = b"<reset>"
"""A reset (RST, SO_LINGER 0) by the server."""
WAIT = b"<wait>"
"""The server takes 50 ms (a model generating) before the next bytes."""
SMALL = Settings(max_header_bytes=1024, max_body_bytes=1000)


@dataclass
class Case:
    id: str
    wire: list[bytes]
    expect: bytes | type[UpstreamError]
    """The first response's body, or the error class post() or read() raises."""
    status: int = 200
    reuse: bool = False
    """The connection may carry the next request."""
    settings: Settings = field(default_factory=Settings)


def chunked(*parts: bytes, trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n%s0\r\n%s\r\n" % (body, trailers)


BODY = b'{"ok":true}'
CASES = [
    Case("100-continue", [b"HTTP/1.1 100 Continue\r\n\r\n", OK], BODY, reuse=True),
    Case(
        "103-with-headers",
        [b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n", WAIT, OK],
        BODY,
        reuse=True,
    ),
    Case(
        "several-1xx",
        [
            b"HTTP/1.1 100 Continue\r\n\r\n",
            WAIT,
            b"HTTP/1.1 102 Processing\r\nx-step: 1\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
            b"link: </a>\r\nlink: </b>\r\n\r\n",
            WAIT,
            OK,
        ],
        BODY,
        reuse=True,
    ),
    Case("unknown-1xx", [b"HTTP/1.1 199 Whatever\r\nx-a: b\r\n\r\n", OK], BODY, reuse=True),
    Case(
        "101-refused",
        [b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"],
        ProtocolError,
    ),
    Case("bytes-past-content-length", [OK + b"EXTRA"], BODY),
    Case(
        "pipelined-second-response",
        [OK + b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale"],
        BODY,
    ),
    Case("pipelined-garbage", [OK, b"SSH-2.0-OpenSSH_9.6\r\n"], BODY),
    Case(
        "trailers-after-chunked",
        [chunked(b"ab", b"cd", trailers=b"x-t: 1\r\n")],
        b"abcd",
        reuse=True,
    ),
    Case("bytes-after-last-chunk", [chunked(b"ab") + b"junk"], b"ab"),
    Case("close-delimited", [b'HTTP/1.1 200 OK\r\n\r\n{"a":', WAIT, b"1}", CLOSE], b'{"a":1}'),
    Case("close-delimited-http10", [b"HTTP/1.0 200 OK\r\n\r\nabc", CLOSE], b"abc"),
    Case("close-delimited-reset", [b"HTTP/1.1 200 OK\r\n\r\nabc", WAIT, RESET], Disconnected),
    Case(
        "reset-mid-body",
        [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart", WAIT, RESET],
        Disconnected,
    ),
    Case(
        "closed-mid-body",
        [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart", WAIT, CLOSE],
        Disconnected,
    ),
    Case(
        "closed-mid-chunk",
        [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\npart", CLOSE],
        Disconnected,
    ),
    Case("closed-before-any-byte", [CLOSE], Disconnected),
    Case("closed-mid-head", [b"HTTP/1.1 200 OK\r\ncontent-le", CLOSE], Disconnected),
    Case("no-status-line", [b'{"choices":[]}\r\n\r\n'], ProtocolError),
    Case(
        "oversized-head",
        [b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 2000 + b"\r\ncontent-length: 2\r\n\r\nok"],
        HeadersTooLarge,
        settings=SMALL,
    ),
    Case(
        "unfinished-head",
        [b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 600, WAIT, b"a" * 600],
        HeadersTooLarge,
        settings=SMALL,
    ),
    Case(
        "endless-1xx",
        [b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" * 60],
        HeadersTooLarge,
        settings=SMALL,
    ),
    Case(
        "oversized-trailers",
        [chunked(b"ab", trailers=b"x-t: " + b"t" * 2000 + b"\r\n")],
        HeadersTooLarge,
        settings=SMALL,
    ),
    Case(
        "head-under-the-cap-with-body-in-one-read",
        [b"HTTP/1.1 200 OK\r\ncontent-length: 900\r\n\r\n" + b"b" * 900],
        b"b" * 900,
        reuse=True,
        settings=SMALL,
    ),
    Case(
        "oversized-body-content-length",
        [b"HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n" + b"b" * 2000],
        BodyTooLarge,
        settings=SMALL,
    ),
    Case("oversized-body-chunked", [chunked(*[b"b" * 500] * 3)], BodyTooLarge, settings=SMALL),
    Case(
        "oversized-body-close-delimited",
        [b"HTTP/1.1 200 OK\r\n\r\n" + b"b" * 600, WAIT, b"b" * 600],
        BodyTooLarge,
        settings=SMALL,
    ),
    Case("connection-close", [OK.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)], BODY),
    Case("http10", [b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"], b"ok"),
    Case(
        "http10-keep-alive",
        [b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"],
        b"ok",
        reuse=True,
    ),
    Case(
        "invalid-chunk-size",
        [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"],
        ProtocolError,
    ),
    Case(
        "chunk-size-overflow",
        [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffffff\r\n"],
        ProtocolError,
    ),
    Case(
        "duplicate-content-length",
        [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok"],
        ProtocolError,
    ),
    Case(
        "conflicting-content-length",
        [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 5\r\n\r\nok"],
        ProtocolError,
    ),
    Case(
        "content-length-list", [b"HTTP/1.1 200 OK\r\ncontent-length: 2, 5\r\n\r\nok"], ProtocolError
    ),
    Case(
        "content-length-and-chunked",
        [
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n"
        ],
        ProtocolError,
    ),
    Case("204-no-body", [b"HTTP/1.1 204 No Content\r\n\r\n"], b"", status=204, reuse=True),
    Case(
        "error-status-with-body",
        [b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops"],
        b"oops",
        status=500,
        reuse=True,
    ),
]


@dataclass
class Server:
    port: int
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


@contextlib.asynccontextmanager
async def scripted(wire: list[bytes]) -> AsyncIterator[Server]:
    """The first request on the first connection gets `wire`; every other request gets NEXT."""
    server = Server(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        first = server.connections == 1
        try:
            while True:
                _, body = await _read_request(reader)
                server.requests.append(body)
                if not first:
                    writer.write(NEXT)
                    await writer.drain()
                    continue
                first = False
                for part in wire:
                    if part == WAIT:
                        await asyncio.sleep(0.05)  # the server's own pace, not a sync point
                    elif part == CLOSE:
                        writer.close()
                        return
                    elif part == RESET:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        writer.transport.abort()
                        return
                    else:
                        writer.write(part)
                        await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async with listen(handle) as port:
        server.port = port
        yield server


async def exchange(pool: Pool, ep: Endpoint, body: bytes) -> tuple[int, bytes] | UpstreamError:
    try:
        response = await pool.post(ep, body)
    except UpstreamError as exc:
        return exc
    try:
        data = await response.read()
    except UpstreamError as exc:
        response.close()
        return exc
    response.release()
    return response.status, data


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_conformance(case: Case) -> None:
    async with scripted(case.wire) as server:
        pool = Pool(case.settings)
        ep = endpoint(server.port)
        first = await exchange(pool, ep, b"first")
        if isinstance(case.expect, bytes):
            assert first == (case.status, case.expect)
        else:
            assert type(first) is case.expect, first
            assert str(first).startswith(f"127.0.0.1:{server.port} "), str(first)
        second = await exchange(pool, ep, b"second")
        assert second == (200, b"next")
        assert server.requests == [b"first", b"second"]  # nothing resent
        assert server.connections == (1 if case.reuse else 2)
        await pool.close()


async def test_a_103_never_hands_one_clients_answer_to_the_next_request() -> None:
    """Issue #10: the 103 was taken as the final response and the connection pooled while the
    200 was on its way; the next request on it (another client's) got the first answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)  # the model generates; the server's pace, not a sync point
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nanswer-for-A")
        await writer.drain()
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nanswer-for-B")
        await writer.drain()
        await reader.read()

    async with listen(handler) as port:
        pool = Pool()
        try:
            first = await exchange(pool, endpoint(port), b"A")
            second = await exchange(pool, endpoint(port), b"B")
        finally:
            await pool.close()
    assert first == (200, b"answer-for-A")
    assert second == (200, b"answer-for-B")


async def _until(condition: object, what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.01)


async def test_a_stale_pooled_socket_is_found_before_the_request_is_written() -> None:
    closing = asyncio.Event()
    server = Server(0)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        _, body = await _read_request(reader)
        server.requests.append(body)
        writer.write(NEXT)
        await writer.drain()
        if server.connections == 1:
            await closing.wait()
            writer.close()  # an idle close; no connection: close was announced
            return
        await reader.read()

    async with listen(handler) as port:
        pool = Pool()
        try:
            assert await exchange(pool, endpoint(port), b"first") == (200, b"next")
            (conn,) = next(iter(pool._hosts.values())).idle
            assert conn.transport is not None
            # The event loop must not see the EOF before the next request (as when the FIN lands
            # between two loop iterations): stop reading, then let the server close.
            conn.transport.pause_reading()
            fd = conn.transport.get_extra_info("socket").fileno()
            closing.set()
            await _until(lambda: select.select([fd], [], [], 0)[0], "the client socket readable")
            assert pool.idle() == 1  # still parked: only poll(2) can tell
            assert await exchange(pool, endpoint(port), b"second") == (200, b"next")
        finally:
            await pool.close()
    assert server.requests == [b"first", b"second"]
    assert server.connections == 2


async def test_a_request_is_never_resent_once_written() -> None:
    server = Server(0)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        _, body = await _read_request(reader)
        server.requests.append(body)
        writer.write(NEXT)
        await writer.drain()
        _, body = await _read_request(reader)
        server.requests.append(body)
        writer.close()  # read the request, then died: it may have been acted on

    async with listen(handler) as port:
        pool = Pool()
        try:
            assert await exchange(pool, endpoint(port), b"first") == (200, b"next")
            failed = await exchange(pool, endpoint(port), b"second")
        finally:
            await pool.close()
    assert type(failed) is Disconnected
    assert server.requests == [b"first", b"second"]
    assert server.connections == 1


async def test_the_per_host_limit_queues_requests_and_times_them_out() -> None:
    release = asyncio.Event()
    server = Server(0)
    in_flight = 0
    most = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, most
        server.connections += 1
        while True:
            try:
                _, body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            server.requests.append(body)
            in_flight += 1
            most = max(most, in_flight)
            await release.wait()
            in_flight -= 1
            writer.write(NEXT)
            await writer.drain()

    async with listen(handler) as port:
        pool = Pool(Settings(max_connections_per_host=2))
        try:
            tasks = [
                asyncio.ensure_future(exchange(pool, endpoint(port), b"%d" % i)) for i in range(6)
            ]
            await _until(lambda: len(server.requests) == 2, "two requests at the server")
            assert pool.open() == 2
            release.set()
            assert await asyncio.gather(*tasks) == [(200, b"next")] * 6
            assert most == 2
            assert server.connections == 2  # the queued requests took the released connections
            release.clear()
            held = [
                asyncio.ensure_future(exchange(pool, endpoint(port), b"held")) for _ in range(2)
            ]
            await _until(lambda: len(server.requests) == 8, "two more requests at the server")
            short = Endpoint.build(f"http://127.0.0.1:{port}/v1", {}, connect=0.2, read=5, total=30)
            waited = await exchange(pool, short, b"queued")
            assert type(waited) is PoolTimeout
            assert "max_connections_per_host" in str(waited)
            release.set()
            assert await asyncio.gather(*held) == [(200, b"next")] * 2
            assert await exchange(pool, endpoint(port), b"after") == (200, b"next")
        finally:
            await pool.close()


async def test_a_large_request_body_is_written_under_back_pressure() -> None:
    """A server that reads a 32 MiB body steadily but slowly (longer in all than the read
    timeout) gets all of it; one that stops reading times out; one that answers before reading
    the body gets its answer seen, and the connection (half a request on it) is not reused."""
    size = 32 * 1024 * 1024
    got: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        if b"/stall" in head:
            await reader.read()
            return
        if b"/early" in head:
            writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig")
            await writer.drain()
            await reader.read()
            return
        done = 0
        while done < length:
            before = done
            done += len(await reader.read(1 << 20))
            if done >> 20 != before >> 20:
                await asyncio.sleep(0.1)  # a slow reader: 100 ms per MiB, 3.2 s in all
        got.append(done)
        writer.write(NEXT)
        await writer.drain()
        await reader.read()

    async with listen(handler, rcvbuf=64 * 1024) as port:
        pool = Pool()

        def at(path: str) -> Endpoint:
            return Endpoint.build(f"http://127.0.0.1:{port}{path}", {}, connect=2, read=2, total=60)

        try:
            assert await exchange(pool, at("/steady"), b"x" * size) == (200, b"next")
            assert got == [size]
            assert pool.idle() == 1
            with pytest.raises(TimeoutError):
                await pool.post(at("/stall"), b"x" * size)
            assert await exchange(pool, at("/early"), b"x" * size) == (413, b"big")
            assert pool.idle() == 0  # /stall's was closed at its timeout, /early's at release
        finally:
            await pool.close()
