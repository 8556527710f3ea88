"""The stream relay: upstream body chunks to the client inside the upstream connection's
callback (decode the SSE, translate, write), with flow control towards a slow client."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from switchboard.dialects import errors as derrors
from switchboard.dialects import registry, sse
from switchboard.gateway.upstream import Response

log = logging.getLogger("switchboard.gateway")


class ClientGone(Exception):
    """The client closed its connection while its stream was being written."""


class Relay:
    """Upstream body chunks to the client, inside the upstream connection's callback: decode
    the SSE, translate, write, with no task switch per chunk (at 1,000 streams the task
    switches were most of the relay's cost: docs/performance.md).

    The client's write buffer is watched: above 1 MiB the upstream socket is paused, and
    polled every 10 ms until it drains below 256 KiB (the read timeout does not run meanwhile:
    the client, not the upstream, is slow). A client that went away, or a translation error,
    closes the upstream connection; `check()` raises it after `pipe()` returns.
    """

    __slots__ = (
        "decoder",
        "error",
        "framed",
        "gone",
        "loop",
        "paused",
        "paused_at",
        "pending",
        "response",
        "stopped",
        "translator",
        "transport",
    )

    HIGH_WATER = 1 << 20
    LOW_WATER = 1 << 18
    WRITE_TIMEOUT = 60.0
    """Seconds a client may leave its buffer above LOW_WATER before it counts as gone (a
    client that stops reading would otherwise hold the stream and its upstream forever)."""

    def __init__(
        self,
        request: web.Request,
        response: Response,
        translator: registry.Stream,
        decoder: sse.Decoder,
        framed: bool,
    ) -> None:
        self.transport = request.transport
        self.response = response
        self.translator = translator
        self.decoder = decoder
        self.framed = framed
        self.loop = asyncio.get_running_loop()
        self.gone = False
        self.paused = False
        self.paused_at = 0.0
        self.pending = 0
        self.stopped = False
        self.error: derrors.TranslationError | None = None

    def translate(self, chunk: bytes) -> bytes:
        """Upstream bytes -> the client's bytes (events cut by a chunk border wait for the next)."""
        feed = self.translator.feed
        return b"".join([feed(e) for e in self.decoder.feed(chunk)])

    def feed(self, chunk: bytes) -> None:
        if self.gone or self.error is not None:
            return
        try:
            data = self.translate(chunk)
        except Exception as exc:  # a translator bug must not look like an upstream failure
            log.error("stream translation failed", exc_info=exc)
            self.error = derrors.TranslationError("the upstream's stream could not be translated")
            self.response.close()
            return
        if not data:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            self.gone = True
            self.response.close()
            return
        transport.write(b"%x\r\n%s\r\n" % (len(data), data) if self.framed else data)
        if not self.paused and transport.get_write_buffer_size() > self.HIGH_WATER:
            self.paused = True
            self.paused_at = self.loop.time()
            self.pending = transport.get_write_buffer_size()
            self.response.pause()
            self.loop.call_later(0.01, self._drain)

    def _drain(self) -> None:
        if self.stopped or not self.paused:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            self.gone = True
            self.response.close()
            return
        self.response.touch()
        pending = transport.get_write_buffer_size()
        if pending > self.LOW_WATER:
            if pending < self.pending:  # the client reads, however slowly
                self.pending = pending
                self.paused_at = self.loop.time()
            elif self.loop.time() - self.paused_at > self.WRITE_TIMEOUT:
                self.gone = True  # the client stopped reading: end its stream and upstream
                self.response.close()
                transport.abort()
                return
            self.loop.call_later(0.01, self._drain)
            return
        self.paused = False
        self.response.resume()

    def check(self) -> None:
        if self.gone:
            raise ClientGone
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.stopped = True
