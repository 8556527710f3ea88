"""A loopback TCP server for protocol tests: each connection runs `handler(reader, writer)`,
which writes exact bytes; the server and every connection end with the `listen()` block."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

from tests.upstreams.server import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def listen(
    handler: Handler, *, tls: ssl.SSLContext | None = None, rcvbuf: int = 0
) -> AsyncIterator[int]:
    """A server on a free loopback port, yielded. `tls`: serve TLS with this context.
    `rcvbuf`: a small receive window, so that the kernel's buffers do not hide the server's
    pace. A handler's ConnectionError or short read ends its connection quietly."""
    port = free_port()
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", port))
    server = await asyncio.start_server(run, sock=sock, ssl=tls, limit=1 << 21)
    try:
        yield port
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
