"""Errors the gateway answers with, rendered in the client's dialect by `response()`; upstream
failures mapped into them in one place, `map_upstream()`; upstream text made safe by `Scrub`.

SwitchboardError              routing/problems.py: the root of every error raised on purpose
  * GatewayError              .status .message .param .headers: answered to the client
      - BadRequest 400 · AuthError 401 · Forbidden 403 · RouteNotFound 404 · TooLarge 413
      - BadGateway 502        every candidate failed (or the upstream's own 4xx/429 passed on)
      - Unavailable 503       no routing table loaded yet
      - UpstreamTimeout 504
  * AttemptFailed             one candidate failed before answering (.kind .status .retry);
                              the fallback loop tries the next one or turns it into a
                              GatewayError. Raised by map_upstream() and the answer checks.

The other layers' trees: TranslationError (dialects/errors.py), CompileError
(routing/problems.py), and the upstream client's UpstreamError (gateway/upstream.py:
ConnectError, Disconnected, ...; with TimeoutError). The client's errors never leave
`map_upstream()`: each becomes an AttemptFailed there, so the request path catches one type.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from aiohttp import web

from switchboard.dialects import errors as derrors
from switchboard.dialects.types import Dialect
from switchboard.errors import SwitchboardError
from switchboard.gateway import upstream

if TYPE_CHECKING:
    from switchboard.gateway.table import Target


class GatewayError(SwitchboardError):
    status = 500

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}
        if status is not None:
            self.status = status


class AuthError(GatewayError):
    status = 401


class Forbidden(GatewayError):
    status = 403


class RouteNotFound(GatewayError):
    status = 404


class BadRequest(GatewayError):
    status = 400


class TooLarge(GatewayError):
    status = 413


class BadGateway(GatewayError):
    status = 502


class Unavailable(GatewayError):
    status = 503


class UpstreamTimeout(GatewayError):
    status = 504


class AttemptFailed(SwitchboardError):
    """One candidate failed before answering; the next one may be tried. `kind` is the
    metric label (connect, first_token_timeout, timeout, status_5xx, status_429, status_4xx,
    provider_auth, context_length, stream, stream_error, bad_answer)."""

    def __init__(
        self, kind: str, status: int, message: str, *, retry: bool, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message
        self.retry = retry
        self.retry_after = retry_after


def clip(value: str, limit: int = 200) -> str:
    """A client-chosen value as it may appear in an error or a log line: at most `limit`
    characters, marked when cut, so a 1 MiB model name is never echoed whole."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}...({len(value)} chars)"


class map_upstream:  # a context manager, named like httpx's map_exceptions
    """`with map_upstream(target, timeout_kind, broken_kind):` turns the upstream client's
    errors into AttemptFailed, chained, retryable (nothing reached the client yet, or the
    caller turns it into an error event):

        ConnectError          -> `connect` 502, naming the provider
        TimeoutError          -> `timeout_kind` 504 (`first_token_timeout` for the response
                                 head and the first event, `timeout` later)
        other UpstreamError   -> `broken_kind` 502 (closed, not HTTP, over a limit)

    A class rather than @contextmanager: it is entered on every request (no generator)."""

    __slots__ = ("broken_kind", "target", "timeout_kind")

    def __init__(self, target: Target, timeout_kind: str, broken_kind: str) -> None:
        self.target = target
        self.timeout_kind = timeout_kind
        self.broken_kind = broken_kind

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        target = self.target
        if isinstance(exc, upstream.ConnectError):
            raise AttemptFailed("connect", 502, f"{target.provider}: {exc}", retry=True) from exc
        if isinstance(exc, TimeoutError):
            if self.timeout_kind == "first_token_timeout":
                message = f"{target.ref} did not answer within {target.first_token:g} s"
            else:
                message = f"{target.ref} timed out"
            raise AttemptFailed(self.timeout_kind, 504, message, retry=True) from exc
        if isinstance(exc, upstream.UpstreamError):
            raise AttemptFailed(
                self.broken_kind, 502, f"{target.ref} failed: {exc}", retry=True
            ) from exc


class Scrub:
    """Upstream text made safe to show to a client or write to a log: each secret of the
    provider (its key, and the values of its auth headers: an echoed `Authorization` value)
    replaced, then cut to `LIMIT` characters. Built once per provider per reload
    (gateway/table.py); applied only to error text, never to answers."""

    __slots__ = ("_bytes", "secrets")

    LIMIT = 512
    MARK = "[redacted]"

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so that `Bearer KEY` goes whole before `KEY`; short values (a
        # header like `x-api-key: 1`) would redact ordinary words.
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True))
        self._bytes = tuple(s.encode() for s in self.secrets)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, self.MARK)
        return text if len(text) <= self.LIMIT else text[: self.LIMIT] + "..."

    def data(self, data: bytes) -> bytes:
        """Bytes going to the client (an upstream's error event passed through)."""
        for secret in self._bytes:
            if secret in data:
                data = data.replace(secret, self.MARK.encode())
        return data


NO_SCRUB = Scrub()


def response(
    surface: Dialect, exc: GatewayError, headers: dict[str, str] | None = None
) -> web.Response:
    """`exc` as an HTTP response in the error shape of the API the client called."""
    merged = dict(exc.headers)
    if headers:
        merged.update(headers)
    return web.Response(
        status=exc.status,
        body=derrors.render_error(surface, exc.status, exc.message, exc.param),
        content_type="application/json",
        headers=merged,
    )
