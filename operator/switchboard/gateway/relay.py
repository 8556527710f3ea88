"""A stream's two phases: `HoldBack` reads its start while nothing is sent to the client (so
that an upstream error event there moves to the next candidate), then `Relay` passes the rest
to the client inside the upstream connection's callback (decode the SSE, translate, write),
with flow control towards a slow client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
from aiohttp import web

from switchboard.dialects import errors as derrors
from switchboard.dialects import identity, registry, sse
from switchboard.dialects.types import Dialect
from switchboard.gateway.errors import AttemptFailed, Scrub
from switchboard.gateway.table import Target
from switchboard.gateway.upstream import Response

log = logging.getLogger("switchboard.gateway")


_CHAT_CONTENT = ("content", "tool_calls", "reasoning_content", "reasoning", "refusal")


def _chat_content(event: sse.Event) -> bool:
    data = event.data
    if b'"delta"' not in data:  # [DONE], errors, the usage chunk
        return False
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    for choice in choices if type(choices) is list else ():  # (a number: a pass-through's)
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and any(delta.get(k) for k in _CHAT_CONTENT):
            return True
    return False


def _messages_content(event: sse.Event) -> bool:
    return identity.kind(event) == "content_block_delta"  # the data's type, as the SDKs read it


def _responses_content(event: sse.Event) -> bool:
    return (identity.kind(event) or "").endswith(".delta")


CONTENT: dict[Dialect, Callable[[sse.Event], bool]] = {
    Dialect.CHAT: _chat_content,
    Dialect.MESSAGES: _messages_content,
    Dialect.RESPONSES: _responses_content,
}
"""Is this upstream event content (a text, tool-call, reasoning or refusal delta)? Asked only
while a stream is held back: a few events per request."""


class HoldBack:
    """The start of a stream, read and translated but not sent: until the first content event,
    `max_bytes` upstream bytes without one, or `seconds` (checked as chunks arrive). An error
    event before the first content (the stream translator's `failed`: the upstream's error,
    an undecodable event, an end before the answer) raises AttemptFailed, and the fallback
    loop tries the next candidate: the client has seen nothing. The order of events decides,
    not how they were cut into reads: events after the first content in the same read are
    left in `rest`, translated once the client's headers are out. `run()` returns the
    client's bytes so far; `ended` says the whole stream came within the hold-back."""

    __slots__ = ("decoder", "ended", "max_bytes", "rest", "seconds", "target", "translator")

    def __init__(
        self,
        target: Target,
        translator: registry.Stream,
        decoder: sse.Decoder,
        max_bytes: int,
        seconds: float | None,
    ) -> None:
        self.target = target
        self.translator = translator
        self.decoder = decoder
        self.max_bytes = max_bytes
        self.seconds = target.first_token if seconds is None else seconds
        self.ended = False
        self.rest: list[sse.Event] = []

    async def run(self, response: Response) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        translator, decoder = self.translator, self.decoder
        is_content = CONTENT[self.target.dialect]
        held: list[bytes] = []
        received = 0
        while True:
            chunk = await response.next_chunk()
            if not chunk:
                held.extend(translator.feed(e) for e in decoder.close())
                held.append(translator.finish())
                self.ended = True
                break
            received += len(chunk)
            events = decoder.feed(chunk)
            for i, event in enumerate(events):
                held.append(translator.feed(event))
                if translator.failed is None and is_content(event):
                    self.rest = events[i + 1 :]
                    return b"".join(held)
            if translator.failed is not None:
                break
            if received >= self.max_bytes or loop.time() >= deadline:
                break
        if translator.failed is not None:
            target = self.target
            raise AttemptFailed(
                "stream_error", 502, f"{target.ref}: {target.scrub(translator.failed)}", retry=True
            )
        return b"".join(held)


def chunk_translator(translator: registry.Stream, decoder: sse.Decoder) -> Callable[[bytes], bytes]:
    """Upstream bytes -> the client's bytes (events cut by a chunk border wait for the next).

    A translator with `pass_through` (every pair: same dialect, and the readers' text
    deltas, stream_readers) is offered each chunk that starts on an event border first, and
    gives the client's bytes for it from a scan (same dialect: the chunk itself) when nothing
    in it needs decoding; only the rest is decoded and fed event by event."""
    feed, decode = translator.feed, decoder.feed
    pass_through: Callable[[bytes], bytes | None] | None = getattr(translator, "pass_through", None)
    if pass_through is None:
        return lambda chunk: b"".join([feed(e) for e in decode(chunk)])

    def translate(chunk: bytes) -> bytes:
        if not decoder.buffered and (data := pass_through(chunk)) is not None:
            return data
        return b"".join([feed(e) for e in decode(chunk)])

    return translate


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
        "scrub",
        "stopped",
        "translate",
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
        *,
        framed: bool,
        scrub: Scrub,
    ) -> None:
        self.transport = request.transport
        self.scrub = scrub
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
        self.translate = chunk_translator(translator, decoder)

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
        if self.translator.failed is not None:  # the upstream's error event: no secret out
            data = self.scrub.data(data)
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
