"""The gateway's server loop (gateway/server.py) and the cyclic garbage collector.

Covers: once the listeners are up, what exists (modules, the app, the first routing table) is
frozen out of the collector (`gc.freeze`), so that a full collection during a burst of
streams walks only what the traffic made (docs/performance.md, "1,000 streams, where the time
goes").
"""

from __future__ import annotations

import asyncio
import gc

import aiohttp
from aiohttp import web

from switchboard.gateway import server


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_startup_objects_are_frozen_once_serving() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    app = web.Application()
    app.router.add_get("/", _ok)
    sock = server.listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    serving = asyncio.create_task(
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
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(30):
                while True:  # until it answers
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/") as response:
                            assert await response.text() == "ok"
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        gc.unfreeze()
        sock.close()
