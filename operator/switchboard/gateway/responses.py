"""The gateway's responses to clients: aiohttp's, with the head buffered until the first body
bytes and header lines made ahead of time.

`extra_head` is a block of header lines (`name: value\\r\\n` each) already serialized: the
limits' remaining-quota headers, made once per plan, lease and second (limits/limiter.py), go
out without aiohttp building a multidict of them and checking them byte by byte on every
request. It is appended to the head aiohttp serialized, which aiohttp (3.12 and later) keeps in
the writer until the first body bytes. Only the gateway's own text goes there: never a value
from a client or an upstream.
"""

from __future__ import annotations

from aiohttp import web


class JSONResponse(web.Response):
    """A whole answer; `extra_head`: header lines to add."""

    extra_head = b""

    async def _write_headers(self) -> None:
        if self.extra_head:
            _check(self)
        await super()._write_headers()
        if self.extra_head:
            _append(self, self.extra_head)


class SSEResponse(web.StreamResponse):
    """A stream's response whose status line and headers wait for its first bytes and go out
    with them in one write (aiohttp's `web.Response` buffers its head the same way; a
    `StreamResponse` sends it alone at `prepare()`). `write()` always sends a buffered head,
    with no bytes too, so the Relay may write to the transport after the first `write()`.
    `extra_head`: header lines to add."""

    _send_headers_immediately = False
    extra_head = b""

    async def _write_headers(self) -> None:
        if self.extra_head:
            _check(self)
        await super()._write_headers()
        if self.extra_head:
            _append(self, self.extra_head)


_UNBUFFERED = "aiohttp does not buffer this response's head: its header lines cannot be added"


def _check(response: web.StreamResponse) -> None:
    """Before anything is sent: fail (a 500 answer) if aiohttp will not keep the head in the
    writer, rather than answer without the lines."""
    if response._send_headers_immediately or not hasattr(response._payload_writer, "_headers_buf"):
        raise RuntimeError(_UNBUFFERED)


def _append(response: web.StreamResponse, lines: bytes) -> None:
    writer = response._payload_writer
    head = getattr(writer, "_headers_buf", None)
    if not isinstance(head, bytes) or not head.endswith(b"\r\n\r\n"):
        raise RuntimeError(_UNBUFFERED)
    writer._headers_buf = head[:-2] + lines + b"\r\n"  # type: ignore[union-attr]
