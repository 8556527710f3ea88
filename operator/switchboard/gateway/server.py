"""The HTTP servers of one gateway process: the API listener (with a cap on client
connections) and the metrics listener on its own port, run until SIGTERM/SIGINT.

aiohttp's `web.run_app` serves one application on one runner; the gateway needs two (the API
and /metrics, so that the client Service never exposes metrics) and a hook on every accepted
connection, so this module runs both runners itself, with run_app's shutdown sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from dataclasses import dataclass

import orjson
from aiohttp import base_protocol, tcp_helpers, web
from aiohttp.web_protocol import RequestHandler

BACKLOG = 4096
"""Listen queue for connection bursts (1,000 streams opening at once); Linux caps it at
net.core.somaxconn (4096 by default since 5.4)."""

log = logging.getLogger("switchboard.gateway")

_BUSY_BODY = orjson.dumps(
    {
        "error": {
            "message": "the gateway has too many open connections; retry shortly",
            "type": "overloaded_error",
        }
    }
)
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)
"""What a connection past the cap gets before it is closed (its request is never read)."""
_LINGER = 2.0
"""Seconds a refused connection stays half-closed so that the client reads the 503."""


@dataclass(frozen=True)
class Limits:
    max_connections: int = 10_000
    """Client connections open at once per process; one more is answered 503 and closed."""
    keepalive_timeout: float = 75.0
    """Seconds an idle keep-alive client connection is kept open."""


_aiohttp_nodelay = tcp_helpers.tcp_nodelay


def _nodelay(transport: asyncio.Transport, value: bool) -> None:
    """uvloop sets TCP_NODELAY on every TCP socket it accepts or connects; aiohttp sets it
    again per connection, through a socket object made for the purpose (a `getsockname` and a
    `setsockopt` each, for nothing: a burst of 1,000 new connections pays it 1,000 times).
    On asyncio's own loop (no uvloop) aiohttp still sets it: that loop leaves accepted sockets
    as they are."""
    if type(transport).__module__ != "uvloop.loop":
        _aiohttp_nodelay(transport, value)


base_protocol.tcp_nodelay = _nodelay  # type: ignore[attr-defined]


class _Runner(web.AppRunner):
    """AppRunner whose server refuses connections past `limits.max_connections`."""

    def __init__(self, app: web.Application, limits: Limits, on_refused: object) -> None:
        super().__init__(
            app,
            access_log=None,
            handle_signals=True,
            keepalive_timeout=limits.keepalive_timeout,
            # A client that disconnects cancels its handler (aiohttp's default since 3.8.6 is
            # not to), which closes the upstream exchange: the model server stops generating
            # for nobody (gateway/proxy.py, docs/gateway.md "Cancellation").
            handler_cancellation=True,
            # No SO_KEEPALIVE probes (aiohttp's default sets the option on every connection:
            # two system calls each). An idle client connection closes after
            # `keepalive_timeout`; a stream's client that stops reading is dropped after
            # Relay.WRITE_TIMEOUT; the kernel's probes would start only after two hours.
            tcp_keepalive=False,
        )
        self._limits = limits
        self._on_refused = on_refused

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        accept = server.connection_made
        limit = self._limits.max_connections
        refused = self._on_refused

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            accept(handler, transport)  # aiohttp's bookkeeping, undone by connection_lost
            if len(server._connections) > limit:
                # Never read the request; answer, half-close, and drop the connection a little
                # later (closing with unread bytes would send an RST that can overtake the 503).
                transport.pause_reading()
                transport.write(BUSY)
                if transport.can_write_eof():
                    transport.write_eof()
                server._loop.call_later(_LINGER, transport.abort)
                if callable(refused):
                    refused()

        server.connection_made = connection_made  # type: ignore[method-assign]
        return server


async def _main(
    app: web.Application,
    *,
    sock: socket.socket,
    metrics_app: web.Application | None,
    metrics_sock: socket.socket | None,
    limits: Limits,
    on_refused: object,
) -> None:
    runner = _Runner(app, limits, on_refused)
    metrics_runner = web.AppRunner(metrics_app, access_log=None) if metrics_app else None
    await runner.setup()
    try:
        await web.SockSite(runner, sock, backlog=BACKLOG).start()
        if metrics_runner is not None and metrics_sock is not None:
            await metrics_runner.setup()
            await web.SockSite(metrics_runner, metrics_sock).start()
        # What exists now (modules, the app, the first routing table) lives as long as the
        # process: out of the cyclic collector's way, so that a full collection during a burst
        # of streams does not walk it (it stopped the loop for 137 ms: docs/performance.md).
        gc.freeze()
        await asyncio.Event().wait()
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()


def run(
    app: web.Application,
    sock: socket.socket,
    *,
    metrics_app: web.Application | None,
    metrics_sock: socket.socket | None,
    limits: Limits,
    on_refused: object = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then close as `web.run_app` does."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(
        _main(
            app,
            sock=sock,
            metrics_app=metrics_app,
            metrics_sock=metrics_sock,
            limits=limits,
            on_refused=on_refused,
        )
    )
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def listen(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening socket shared by `--workers` processes (SO_REUSEPORT)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
