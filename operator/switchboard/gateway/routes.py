"""The routes beside the three API surfaces: GET /v1/models, GET /v1/models/{id} and
POST /v1/messages/count_tokens, answered with the same keys and tables as the request path."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from switchboard.dialects import inspect
from switchboard.dialects.types import Dialect
from switchboard.gateway import errors
from switchboard.gateway.proxy import Proxy

_JSON = "application/json"
log = logging.getLogger("switchboard.gateway")
Handler = Callable[[Proxy, web.Request], Awaitable[web.Response]]


async def guarded(
    surface: Dialect, proxy: Proxy, request: web.Request, handler: Handler
) -> web.Response:
    """`handler` with the request path's last resort: a bug answers a JSON 500 in the API's
    shape and logs its type and traceback, never aiohttp's plain-text 500."""
    try:
        return await handler(proxy, request)
    except Exception as exc:
        log.error("internal error on %s", errors.clip(request.path), exc_info=exc)
        return errors.response(
            surface,
            errors.GatewayError("internal gateway error; it is logged, please report it"),
        )


async def models(proxy: Proxy, request: web.Request) -> web.Response:
    """GET /v1/models: what this key may call."""
    try:
        _, access = proxy.ready(request)
    except errors.GatewayError as exc:
        return errors.response(Dialect.CHAT, exc)
    return web.Response(body=access.models_json, content_type=_JSON)


async def model(proxy: Proxy, request: web.Request) -> web.Response:
    """GET /v1/models/{id}: one of them."""
    try:
        _, access = proxy.ready(request)
        entry = access.model_json.get(request.match_info["model"])
        if entry is None:
            raise errors.RouteNotFound(
                f"model {errors.clip(request.match_info['model'])!r} not found for this key; "
                "GET /v1/models lists what it may call"
            )
    except errors.GatewayError as exc:
        return errors.response(Dialect.CHAT, exc)
    return web.Response(body=entry, content_type=_JSON)


async def count_tokens(proxy: Proxy, request: web.Request) -> web.Response:
    """POST /v1/messages/count_tokens: the count of the first candidate's own tokenizer when
    its provider declares one (gateway/tokens.py), else the gateway's estimate (characters / 4,
    dialects/inspect.py); `x-switchboard-token-count: upstream|estimate` says which."""
    try:
        table, access = proxy.ready(request)
        try:
            body = orjson.loads(await proxy.read_body(request))
        except orjson.JSONDecodeError as exc:
            raise errors.BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise errors.BadRequest("'model' is required", param="model")
        route = table.route(body["model"])
        if route is None:
            raise errors.RouteNotFound(
                f"model {errors.clip(body['model'])!r} not found", param="model"
            )
        if not access.may_call(route, None if route.agent else route.chain[0]):
            raise errors.Forbidden(
                f"key {access.name!r} may not call {errors.clip(body['model'])!r}", param="model"
            )
        tokens = await proxy.tokens.count(route.chain[0], Dialect.MESSAGES, body)
        source = "upstream"
        if tokens is None:
            tokens = inspect.estimate_prompt_tokens(Dialect.MESSAGES, body)
            source = "estimate"
    except errors.GatewayError as exc:
        return errors.response(Dialect.MESSAGES, exc)
    return web.Response(
        body=orjson.dumps({"input_tokens": tokens}),
        content_type=_JSON,
        headers={"x-switchboard-token-count": source},
    )
