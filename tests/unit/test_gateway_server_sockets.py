"""The options of the gateway's client connections (gateway/server.py).

Covers: a connection accepted by the API listener has TCP_NODELAY, on uvloop (which sets it
itself: the gateway no longer lets aiohttp set it a second time, two system calls per
connection) and on asyncio's own loop (which does not: aiohttp still sets it there), and no
SO_KEEPALIVE (`tcp_keepalive=False`: idle connections end on the keep-alive timeout, stalled
stream clients on the relay's write timeout).
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop
from aiohttp import web

from tests.support.gateway_server import get_json, serving


async def _options(request: web.Request) -> web.Response:
    assert request.transport is not None
    sock = request.transport.get_extra_info("socket")
    nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    keepalive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    return web.json_response({"nodelay": nodelay, "keepalive": keepalive})


async def _serve_and_ask() -> dict[str, int]:
    app = web.Application()
    app.router.add_get("/", _options)
    async with serving(app) as port:
        got: dict[str, int] = await get_json(port)
        return got


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_client_connections_have_nodelay_and_no_keepalive_probes(loop: str) -> None:
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop if loop == "uvloop" else None)
    with runner:
        got = runner.run(_serve_and_ask())
    assert got["nodelay"] != 0
    assert got["keepalive"] == 0
