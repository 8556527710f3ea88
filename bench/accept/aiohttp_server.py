"""(1) The shared handler on aiohttp's web server, served exactly as the gateway serves:
`switchboard.gateway.server.run` (its runner: keep-alive 75 s, handler cancellation, no access
log, the connection cap hook, backlog 4096), uvloop, `client_max_size` 10 MiB.

    python bench/accept/aiohttp_server.py --port P --upstream http://127.0.0.1:U

A stream is relayed as the gateway's relay does: aiohttp sends the head, then each upstream
chunk is written from the upstream connection's callback (`Response.pipe`), chunk-framed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvloop
from aiohttp import HttpVersion11, web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accept.common import MAX_BODY, Upstream, wants_stream

from switchboard.gateway import server

UPSTREAM = web.AppKey("upstream", Upstream)


def build(upstream: Upstream) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[UPSTREAM] = upstream

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[UPSTREAM].close()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if not wants_stream(body):
            status, data = await upstream.answer(body)
            return web.Response(status=status, body=data, content_type="application/json")
        response = await upstream.stream(body)
        try:
            client = web.StreamResponse(
                status=response.status, headers={"content-type": "text/event-stream"}
            )
            framed = request.version >= HttpVersion11
            if framed:
                client.enable_chunked_encoding()
            await client.prepare(request)
            transport = request.transport
            assert transport is not None

            def sink(chunk: bytes) -> None:
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if framed else chunk)

            await response.pipe(sink)
            await client.write_eof()
            return client
        finally:
            response.release()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvloop.install()
    sock = server.listen("127.0.0.1", args.port)
    server.run(
        build(Upstream(args.upstream)),
        sock,
        metrics_app=None,
        metrics_sock=None,
        limits=server.Limits(),
    )


if __name__ == "__main__":
    main()
