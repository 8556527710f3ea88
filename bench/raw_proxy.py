"""The Python ceiling: a minimal pass-through proxy, aiohttp server + one aiohttp ClientSession.

python bench/raw_proxy.py --port 19001 --upstream http://127.0.0.1:19000
"""

from __future__ import annotations

import argparse

import aiohttp
import uvloop
from aiohttp import web


def build(upstream: str) -> web.Application:
    app = web.Application()

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app["session"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with app["session"].post(
            upstream + request.path, data=body, headers={"content-type": "application/json"}
        ) as r:
            if r.headers.get("content-type", "").startswith("text/event-stream"):
                out = web.StreamResponse(headers={"content-type": "text/event-stream"})
                await out.prepare(request)
                async for chunk in r.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
            return web.Response(
                body=await r.read(), status=r.status, content_type="application/json"
            )

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", proxy)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=19001)
    parser.add_argument("--upstream", default="http://127.0.0.1:19000")
    args = parser.parse_args()
    uvloop.install()
    # The same listen backlog as the gateway and the upstream: aiohttp's default of 128 makes
    # a burst of 1,000 connections wait for SYN retransmits (1 s, 3 s), which measures the
    # kernel, not the proxy.
    web.run_app(
        build(args.upstream),
        host="127.0.0.1",
        port=args.port,
        backlog=4096,
        access_log=None,
        print=None,
    )
