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

from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter


def _buffers_head() -> bool:
    """Whether this aiohttp keeps a response's serialized head in the writer (`_headers_buf`)
    until the first body bytes, as 3.12 and later do: checked once, at import."""
    init = getattr(StreamWriter.__init__, "__code__", None)
    return init is not None and "_headers_buf" in init.co_names


_BUFFERS_HEAD = _buffers_head()
_UNBUFFERED = "aiohttp does not buffer this response's head: its header lines cannot be added"


class _HeadLines(web.StreamResponse):
    """`extra_head`: header lines to add to the head aiohttp serializes."""

    extra_head = b""

    async def _write_headers(self) -> None:
        lines = self.extra_head
        if not lines:
            return await super()._write_headers()
        if not _BUFFERS_HEAD or self._send_headers_immediately:
            raise RuntimeError(_UNBUFFERED)  # before anything is sent: a 500, never a 200
        await super()._write_headers()  # without the lines
        writer: Any = self._payload_writer
        writer._headers_buf = writer._headers_buf[:-2] + lines + b"\r\n"


class JSONResponse(_HeadLines, web.Response):
    """A whole answer."""


class SSEResponse(_HeadLines):
    """A stream's response whose status line and headers wait for its first bytes and go out
    with them in one write (aiohttp's `web.Response` buffers its head the same way; a
    `StreamResponse` sends it alone at `prepare()`). `write()` always sends a buffered head,
    with no bytes too, so the Relay may write to the transport after the first `write()`.
    """

    _send_headers_immediately = False
