"""The gateway's upstream HTTP/1.1 client (gateway/upstream.py) against real loopback servers.

Each server here writes exact bytes, so that each case is the wire behaviour a model server
really shows: keep-alive reuse, Content-Length, chunked and close-delimited bodies, an idle
connection closed by the server (uvicorn does it after 5 s), silence before the first byte, a
gap mid-stream, a slow consumer, garbage instead of HTTP, refused connections and TLS.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from switchboard.gateway.upstream import ConnectError, Disconnected, Endpoint, Pool, Settings
from tests.support.raw_server import listen as serve
from tests.support.wait import until
from tests.upstreams.server import free_port

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def endpoint(
    port: int, *, read: float = 5, total: float = 30, scheme: str = "http", host: str = "127.0.0.1"
) -> Endpoint:
    return Endpoint.build(
        f"{scheme}://{host}:{port}/v1/chat/completions?x=1",
        {"content-type": "application/json", "authorization": "Bearer k"},
        connect=2,
        read=read,
        total=total,
    )


async def test_keep_alive_reuses_one_connection_and_sends_the_rendered_head() -> None:
    connections = 0
    heads: list[bytes] = []
    bodies: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head, body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            heads.append(head)
            bodies.append(body)
            writer.write(OK)
            await writer.drain()
        writer.close()

    async with serve(handler) as port:
        pool = Pool()
        for i in range(5):
            response = await pool.post(endpoint(port), b'{"n":%d}' % i)
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.read() == b'{"ok":true}'
            response.release()
        await pool.close()
    assert connections == 1
    assert bodies == [b'{"n":%d}' % i for i in range(5)]
    assert heads[0] == (
        b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n"
        b"content-type: application/json\r\nauthorization: Bearer k\r\n"
        b"content-length: 7\r\n\r\n" % port
    )


async def test_chunked_stream_arrives_in_pieces_and_the_connection_is_reused() -> None:
    connections = 0
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for _ in range(2):
            await _read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            writer.write(b"d\r\ndata: first\n\n\r\n")
            await writer.drain()
            await release.wait()
            writer.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
            await writer.drain()
            release.clear()

    async with serve(handler) as port:
        pool = Pool()
        for _ in range(2):
            response = await pool.post(endpoint(port), b"{}")
            chunks = response.chunks()
            assert await anext(chunks) == b"data: first\n\n"  # before the rest is sent
            release.set()
            assert [c async for c in chunks] == [b"data: second\n\n"]
            response.release()
        assert pool.idle() == 1
        await pool.close()
    assert connections == 1


async def test_close_delimited_body_ends_with_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"1}")
        writer.close()

    async with serve(handler) as port:
        pool = Pool()
        response = await pool.post(endpoint(port), b"{}")
        assert await response.read() == b'{"a":1}'
        response.release()
        assert pool.idle() == 0  # never reused
        await pool.close()


async def test_an_idle_connection_closed_by_the_server_is_replaced_once() -> None:
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await _read_request(reader)
        served += 1
        writer.write(OK)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # like a keep-alive timeout: no Connection: close was announced

    async with serve(handler) as port:
        pool = Pool()
        first = await pool.post(endpoint(port), b"{}")
        await first.read()
        first.release()
        await asyncio.sleep(0.2)
        second = await pool.post(endpoint(port), b"{}")
        assert await second.read() == b'{"ok":true}'
        second.release()
        await pool.close()
    assert served == 2


async def test_connection_close_is_honoured_and_closed_idle_connections_leave_the_pool() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head, _ = await _read_request(reader)
        if b"close-me" in head:
            writer.write(OK.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1))
            await writer.drain()
            await asyncio.sleep(1)  # the client must not wait for the close to stop reusing
            return
        writer.write(OK)
        await writer.drain()
        await asyncio.sleep(0.1)  # then an idle timeout, as uvicorn does

    async with serve(handler) as port:
        pool = Pool()
        closing = Endpoint.build(
            f"http://127.0.0.1:{port}/v1", {"x-case": "close-me"}, connect=2, read=5, total=30
        )
        response = await pool.post(closing, b"{}")
        assert await response.read() == b'{"ok":true}'
        response.release()
        assert pool.idle() == 0
        response = await pool.post(endpoint(port), b"{}")
        await response.read()
        response.release()
        assert pool.idle() == 1
        await asyncio.sleep(0.3)
        assert pool.idle() == 0  # the server closed it: off the list, not handed out later
        await pool.close()
    assert connections == 2


async def test_a_connection_the_server_closes_after_reading_the_request_fails() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async with serve(handler) as port:
        pool = Pool()
        response = await pool.post(endpoint(port), b"{}")
        with pytest.raises(Disconnected, match="closed the connection"):
            await response.read()
        response.close()
        await pool.close()


async def test_silence_before_the_first_byte_is_a_timeout() -> None:
    never = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await never.wait()  # silent until the test ends: only the read timer can end the wait

    async with serve(handler) as port:
        pool = Pool()
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(60):  # a deadline for a hang, not a bound on the timer
            with pytest.raises(TimeoutError):
                await pool.post(endpoint(port, read=0.2), b"{}")
        assert loop.time() - started >= 0.19
        assert pool.idle() == 0
        await pool.close()


async def test_a_reused_connection_times_out_on_the_shorter_timeout_of_its_new_exchange() -> None:
    """The read timer is one per connection, re-armed lazily (http1.Conn.wait): an exchange
    with a 120 s read timeout leaves it pending; the next exchange on the same connection, for
    an endpoint of the same host with a 0.2 s timeout, must still end after 0.2 s."""
    never = asyncio.Event()
    answered = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        await _read_request(reader)
        answered += 1
        writer.write(OK)
        await writer.drain()
        await _read_request(reader)
        await never.wait()

    async with serve(handler) as port:
        pool = Pool()
        response = await pool.post(endpoint(port, read=120, total=300), b"{}")
        assert await response.read() == b'{"ok":true}'
        response.release()
        assert pool.idle() == 1
        async with asyncio.timeout(60):  # far below 120 s: the long timer must not be waited
            with pytest.raises(TimeoutError):
                await pool.post(endpoint(port, read=0.2, total=300), b"{}")
        assert answered == 1
        await pool.close()


async def test_a_gap_mid_stream_and_the_total_are_timeouts() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with serve(handler) as port:
        pool = Pool()
        for ep in (endpoint(port, read=0.2), endpoint(port, read=10, total=0.3)):
            response = await pool.post(ep, b"{}")
            chunks = response.chunks()
            assert await anext(chunks) == b"abc"
            with pytest.raises(TimeoutError):
                await anext(chunks)
            response.close()
        await pool.close()


async def test_a_slow_consumer_pauses_the_socket_and_loses_nothing() -> None:
    size = 8 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        block = bytes(range(256)) * 256
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()

    async with serve(handler) as port:
        pool = Pool()
        response = await pool.post(endpoint(port), b"{}")
        got = 0
        async for chunk in response.chunks():
            got += len(chunk)
            assert len(chunk) <= 2 * 1024 * 1024  # the socket was paused near 1 MiB buffered
            await asyncio.sleep(0.001)
        assert got == size
        response.release()
        await pool.close()


async def test_garbage_instead_of_http_is_a_disconnect() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with serve(handler) as port:
        pool = Pool()
        with pytest.raises(Disconnected, match=r"invalid HTTP/1\.1 response"):
            await pool.post(endpoint(port), b"{}")
        await pool.close()


async def test_refused_connection_names_the_address() -> None:
    port = free_port()
    pool = Pool()
    with pytest.raises(ConnectError, match=f"cannot connect to 127.0.0.1:{port}") as caught:
        await pool.post(endpoint(port), b"{}")
    assert not caught.value.timed_out
    await pool.close()


def test_endpoint_refuses_line_breaks_and_renders_default_ports() -> None:
    with pytest.raises(ValueError, match="x-team"):
        Endpoint.build("http://a.svc/v1", {"x-team": "a\r\nx-evil: 1"}, connect=1, read=1, total=1)
    with pytest.raises(ValueError, match="not an http"):
        Endpoint.build("ftp://a.svc/v1", {}, connect=1, read=1, total=1)
    https = Endpoint.build("https://api.openai.com/v1/responses", {}, connect=1, read=1, total=1)
    assert https.head == b"POST /v1/responses HTTP/1.1\r\nhost: api.openai.com\r\n"
    assert https.key == ("https", "api.openai.com", 443, "")
    plain = Endpoint.build("http://[::1]:8000/v1/messages", {}, connect=1, read=1, total=1)
    assert plain.head == b"POST /v1/messages HTTP/1.1\r\nhost: [::1]:8000\r\n"


def _tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_tls_with_a_trusted_ca_and_refused_without(tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls(tmp_path)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK)
        await writer.drain()

    async with serve(handler, tls=server_ctx) as port:
        pool = Pool(ssl_context=client_ctx)
        response = await pool.post(endpoint(port, scheme="https", host="localhost"), b"{}")
        assert await response.read() == b'{"ok":true}'
        response.release()
        await pool.close()
        untrusting = Pool()  # the system trust store does not know this CA
        with pytest.raises(ConnectError, match="TLS with localhost"):
            await untrusting.post(endpoint(port, scheme="https", host="localhost"), b"{}")
        await untrusting.close()


async def test_pipe_hands_chunks_to_a_sink_and_a_paused_consumer_is_not_a_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(5):
            writer.write(b"2\r\n%02d\r\n" % i)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await _read_request(reader)  # the next request: headers and one chunk, then silence
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxx\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with serve(handler) as port:
        pool = Pool()
        loop = asyncio.get_running_loop()
        # A read timeout far above the server's 50 ms gaps (a loaded machine stretches them),
        # and a pause of twice that timeout.
        response = await pool.post(endpoint(port, read=1.0), b"{}")
        got: list[bytes] = []

        def sink(chunk: bytes) -> None:
            got.append(chunk)
            if len(got) == 1:  # the consumer is slow: 2 s paused, beyond the read timeout
                response.pause()
                loop.call_later(0.8, response.touch)
                loop.call_later(1.6, response.touch)
                loop.call_later(2.0, response.resume)

        await response.pipe(sink)
        assert b"".join(got) == b"0001020304"
        response.release()
        assert pool.idle() == 1

        silent = await pool.post(endpoint(port, read=0.2), b"{}")
        with pytest.raises(TimeoutError):
            await silent.pipe(got.append)
        assert got[-1] == b"xx"
        silent.close()
        await pool.close()


async def test_a_host_name_is_resolved_once_and_a_bad_one_named() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(OK)
            await writer.drain()

    async with serve(handler) as port:
        pool = Pool(Settings(max_idle_per_host=0))  # every request opens a new connection
        for _ in range(3):
            response = await pool.post(endpoint(port, host="localhost"), b"{}")
            assert await response.read() == b'{"ok":true}'
            response.release()
        assert pool._resolver.cached() == [("localhost", port)]
        await pool.close()
    pool = Pool()
    # "cannot connect to …" where the resolver answers; "… timed out" where it cannot be reached
    with pytest.raises(ConnectError, match=r"no-such-host\.invalid:80"):
        await pool.post(
            Endpoint.build("http://no-such-host.invalid/v1", {}, connect=5, read=1, total=5), b"{}"
        )
    await pool.close()


async def test_connections_that_age_out_together_are_closed_a_few_per_loop_turn() -> None:
    """After a burst, the idle connections reach idle_seconds together: the request that finds
    them aged gets a new connection at once, and the aged ones close RETIRE_BATCH per event
    loop turn (closing hundreds in one callback stalled every stream in flight)."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(OK)
            await writer.drain()
        writer.close()

    n = 3 * Pool.RETIRE_BATCH + 5
    async with serve(handler) as port:
        pool = Pool(Settings(idle_seconds=0.2))
        loop = asyncio.get_running_loop()
        responses = await asyncio.gather(*(pool.post(endpoint(port), b"{}") for _ in range(n)))
        for response in responses:
            assert await response.read() == b'{"ok":true}'
            response.release()
        assert pool.idle() == n
        parked = list(next(iter(pool._hosts.values())).idle)
        aged = loop.time() + 0.2
        await until(lambda: _true(loop.time() > aged), "the idle connections pass idle_seconds")
        host = next(iter(pool._hosts.values()))
        assert pool._get(host, loop) is None  # what a request asks first: none to reuse
        assert host.idle == []
        assert sum(1 for conn in parked if conn.closed) == Pool.RETIRE_BATCH  # in this turn
        await until(
            lambda: _true(all(conn.closed for conn in parked)), "every aged connection closes"
        )
        response = await pool.post(endpoint(port), b"{}")  # a new connection
        assert await response.read() == b'{"ok":true}'
        response.release()
        assert pool.idle() == 1
        await pool.close()
    assert connections == n + 1


async def _true(value: bool) -> bool:
    return value
