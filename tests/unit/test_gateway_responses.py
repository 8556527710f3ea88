"""The gateway's responses (gateway/responses.py) on the wire, read with a strict HTTP/1.1
parser (h11) from a raw socket: the pre-serialized header lines go out once, inside the head,
beside aiohttp's own headers, for a whole answer and for a stream, with and without them;
HTTP/1.0 clients too (no chunked framing); and a head that aiohttp no longer buffers is a
loud error, never an answer without the lines."""

from __future__ import annotations

import asyncio

import h11
import pytest
from aiohttp import web

from switchboard.gateway import responses
from tests.support.gateway_server import serving

LINES = b"x-ratelimit-limit-requests: 100\r\nx-switchboard-budget-reset: 2026-12-03T00:00:00Z\r\n"


def _app() -> web.Application:
    async def whole(request: web.Request) -> web.StreamResponse:
        answer = responses.JSONResponse(
            body=b'{"ok":true}',
            headers={"x-switchboard-provider": "p"},
            content_type="application/json",
        )
        if request.query.get("lines"):
            answer.extra_head = LINES
        return answer

    async def stream(request: web.Request) -> web.StreamResponse:
        answer = responses.SSEResponse(headers={"content-type": "text/event-stream"})
        if request.query.get("lines"):
            answer.extra_head = LINES
        if request.version >= (1, 1):
            answer.enable_chunked_encoding()
        await answer.prepare(request)
        await answer.write(b"data: 1\n\n")
        await answer.write_eof(b"data: [DONE]\n\n")
        return answer

    app = web.Application()
    app.router.add_get("/whole", whole)
    app.router.add_get("/stream", stream)
    return app


async def _exchange(port: int, target: str, version: bytes = b"1.1") -> tuple[h11.Response, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET %s HTTP/%s\r\nHost: t\r\nConnection: close\r\n\r\n" % (target.encode(), version)
    )
    await writer.drain()
    raw = await reader.read()  # until the server closes
    writer.close()
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target=target, headers=[("host", "t")]))
    conn.receive_data(raw)
    conn.receive_data(b"")
    head = conn.next_event()
    assert isinstance(head, h11.Response), head
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:
            raise AssertionError(event)
    assert conn.next_event() in (h11.PAUSED, h11.NEED_DATA, h11.ConnectionClosed())
    return head, body


def _names(head: h11.Response) -> list[bytes]:
    return [name for name, _ in head.headers]


@pytest.mark.parametrize("path", ["/whole", "/stream"])
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
async def test_header_lines_go_out_once_inside_the_head(path: str, version: bytes) -> None:
    async with serving(_app()) as port:
        head, body = await _exchange(port, f"{path}?lines=1", version)
        plain, plain_body = await _exchange(port, path, version)
    assert head.status_code == 200
    names = _names(head)
    assert names.count(b"x-ratelimit-limit-requests") == 1
    assert names.count(b"x-switchboard-budget-reset") == 1
    values = dict(head.headers)
    assert values[b"x-ratelimit-limit-requests"] == b"100"
    assert values[b"x-switchboard-budget-reset"] == b"2026-12-03T00:00:00Z"
    # aiohttp's own headers are all still there, and nothing else changed.
    assert sorted(
        set(names) - {b"x-ratelimit-limit-requests", b"x-switchboard-budget-reset"}
    ) == sorted(_names(plain))
    assert body == plain_body
    assert body == (b'{"ok":true}' if path == "/whole" else b"data: 1\n\ndata: [DONE]\n\n")


async def test_a_head_that_aiohttp_does_not_buffer_is_an_error() -> None:
    class Sent(responses.JSONResponse):
        _send_headers_immediately = True  # the head goes out at once: too late to add lines

    async def handler(request: web.Request) -> web.StreamResponse:
        answer = Sent(body=b"{}", content_type="application/json")
        answer.extra_head = LINES
        return answer

    app = web.Application()
    app.router.add_get("/whole", handler)
    async with serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /whole HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        await writer.drain()
        raw = await reader.read()
        writer.close()
    assert b"x-ratelimit" not in raw  # never an answer that lacks them silently ...
    assert not raw.startswith(b"HTTP/1.1 200")  # ... and never a 200 without them
