"""The one proxy handler the three servers of bench/accept/ share: a Chat body in, forwarded to
the bench upstream through the gateway's own `switchboard.gateway.upstream.Pool`, its JSON (or
its SSE stream, passed through as bytes) out. Everything here is the same for every server, so
that what differs between them is the accept path: the HTTP parsing, the request and response
objects, the task per request, the writes.
"""

from __future__ import annotations

import orjson

from switchboard.gateway.upstream import Endpoint, Pool, Response

MAX_BODY = 10 * 1024 * 1024
"""The gateway's default request body limit (`--max-body-bytes`, aiohttp's client_max_size)."""
MAX_HEAD = 8190
"""Longest request line or header field, aiohttp's default (max_line_size, max_field_size)."""
KEEPALIVE = 75.0
"""Seconds an idle client connection is kept, the gateway's default (server.Limits)."""


class Upstream:
    """The bench upstream's /v1/chat/completions, through one keep-alive Pool."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self._pool: Pool | None = None
        self.endpoint = Endpoint.build(
            self.base + "/v1/chat/completions",
            {"content-type": "application/json"},
            connect=5.0,
            read=60.0,
            total=600.0,
        )

    @property
    def pool(self) -> Pool:
        # Made on first use, inside the serving process and its loop (granian forks workers).
        if self._pool is None:
            self._pool = Pool()
        return self._pool

    async def answer(self, body: bytes) -> tuple[int, bytes]:
        """A non-stream exchange: the upstream's status and JSON body."""
        response = await self.pool.post(self.endpoint, body)
        try:
            return response.status, await response.read()
        finally:
            response.release()

    async def stream(self, body: bytes) -> Response:
        """A stream's upstream response, headers in; the caller reads it and releases it."""
        return await self.pool.post(self.endpoint, body)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def wants_stream(body: bytes) -> bool:
    """`"stream": true` in a JSON object (the body is parsed, as the gateway does)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True


ERROR_400 = b'{"error":{"message":"bad request","type":"invalid_request_error"}}'
