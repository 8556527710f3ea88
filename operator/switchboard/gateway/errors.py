"""Errors the gateway answers with, rendered in the client's dialect by `response()`.

SwitchboardError
  * GatewayError            .status .message .param .headers: answered to the client
      - AuthError 401 · Forbidden 403 · RouteNotFound 404 · BadRequest 400
      - TooLarge 413 · UpstreamError 502 (or the upstream's 4xx/429) · UpstreamTimeout 504
  * AttemptFailed           one candidate failed before answering (.kind .retry); the
                            fallback loop tries the next one or turns it into a GatewayError
"""

from __future__ import annotations

from aiohttp import web

from switchboard.dialects import errors as derrors
from switchboard.dialects.types import Dialect


class GatewayError(Exception):
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


class UpstreamError(GatewayError):
    status = 502


class UpstreamTimeout(GatewayError):
    status = 504


class AttemptFailed(Exception):
    """One candidate failed before answering; the next one may be tried."""

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
