"""The gateway's server loop (gateway/server.py) and the cyclic garbage collector.

Covers: once the listeners are up, what exists (modules, the app, the first routing table) is
frozen out of the collector (`gc.freeze`), so that a full collection during a burst of
streams walks only what the traffic made (docs/performance.md, "1,000 streams, where the time
goes").
"""

from __future__ import annotations

import gc

from aiohttp import web

from tests.support.gateway_server import get_json, serving


async def _ok(_: web.Request) -> web.Response:
    return web.json_response("ok")


async def test_startup_objects_are_frozen_once_serving() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    app = web.Application()
    app.router.add_get("/", _ok)
    try:
        async with serving(app) as port:
            assert await get_json(port) == "ok"
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
