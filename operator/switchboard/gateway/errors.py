"""Errors the gateway answers with, rendered in the client's dialect by the route handler.

SwitchboardError
  * GatewayError            .status .message .param
      - AuthError 401 · Forbidden 403 · RouteNotFound 404 · BadRequest 400
      - TooLarge 413 · UpstreamError 502 (or the upstream's 4xx/429) · UpstreamTimeout 504
"""

from __future__ import annotations


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
