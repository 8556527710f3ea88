"""The gateway's own server loop (gateway/server.py `_main`) around a small aiohttp app, in this
process: for tests of what the server does to every connection, not of the gateway's routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from switchboard.gateway import server
from tests.support.wait import until


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    """`app` served by `server._main` on a free loopback port (yielded), stopped after."""
    sock = server.listen("127.0.0.1", 0)
    task = asyncio.create_task(
        server._main(
            app,
            sock=sock,
            metrics_app=None,
            metrics_sock=None,
            limits=server.Limits(),
            on_refused=None,
        )
    )
    try:
        yield sock.getsockname()[1]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


async def get_json(port: int, path: str = "/") -> Any:
    """GET `path` once the server answers (connection errors retried until a deadline)."""
    async with aiohttp.ClientSession() as session:

        async def get() -> Any:
            async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                return await response.json()

        return await until(get, "the server answers", retry=(aiohttp.ClientError,))
