"""The request path: authenticate, resolve, pick a candidate, translate, call, fall back, answer.

Fallback moves to the next candidate on a connect error, a timeout (connect, first token,
total), a 5xx, a 429 or an upstream context-length error, and only while nothing has been sent
to the client. Once the first byte of a stream is out, a failure ends the stream with an error
event in the client's dialect and is not retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import HttpVersion11, web

from switchboard.dialects import errors as derrors
from switchboard.dialects import inspect, registry, sse
from switchboard.dialects.types import Ctx, Dialect, Json, Usage
from switchboard.gateway import errors, resolve
from switchboard.gateway.accesslog import AccessLog
from switchboard.gateway.metrics import Metrics
from switchboard.gateway.table import Access, Table, Target
from switchboard.gateway.upstream import ConnectError, Pool, Response, UpstreamError

_SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}
_JSON = "application/json"
log = logging.getLogger("switchboard.gateway")


@dataclass
class Outcome:
    """What one request did, for the log line, the metrics and the response headers."""

    surface: Dialect
    asked: str = ""
    key: str = ""
    target: Target | None = None
    attempts: int = 0
    status: int = 200
    usage: Usage | None = None
    cost: float = 0.0
    ttft: float | None = None
    fallbacks: list[str] = field(default_factory=list)
    error: str | None = None


class _Failed(Exception):
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


class _ClientGone(Exception):
    """The client closed its connection while its stream was being written."""


class _Relay:
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
        "response",
        "stopped",
        "translator",
        "transport",
    )

    HIGH_WATER = 1 << 20
    LOW_WATER = 1 << 18

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
        if transport.get_write_buffer_size() > self.LOW_WATER:
            self.loop.call_later(0.01, self._drain)
            return
        self.paused = False
        self.response.resume()

    def check(self) -> None:
        if self.gone:
            raise _ClientGone
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.stopped = True


class Proxy:
    """The request path of one process. Created on startup (after a `--workers` fork), so
    request ids carry this process's pid and nothing is shared between processes."""

    def __init__(
        self,
        pool: Pool,
        metrics: Metrics,
        access_log: AccessLog,
        *,
        max_body_bytes: int = 10 * 1024 * 1024,
        body_timeout: float = 60.0,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.access_log = access_log
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.table: Table | None = None
        """The routing table served; replaced (never mutated) by a reload."""
        self._digests: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._pid = f"{os.getpid():x}"

    # --- helpers ---------------------------------------------------------------------------

    def _digest(self, token: str) -> str:
        digest = self._digests.get(token)
        if digest is None:
            digest = hashlib.sha256(token.encode()).hexdigest()
            if len(self._digests) > 10_000:
                self._digests.clear()
            self._digests[token] = digest
        return digest

    def _access(self, request: web.Request, table: Table) -> Access:
        auth = request.headers.get("authorization")
        token = None
        if auth and auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        if not token:
            token = request.headers.get("x-api-key", "").strip() or None
        if token is None:
            raise errors.AuthError(
                "no API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        access = table.keys.get(self._digest(token))
        if access is None:
            raise errors.AuthError("invalid API key: it is not in any AccessKeyConfig")
        return access

    async def _read(self, request: web.Request) -> bytes:
        """The request body, within the size limit and the body timeout (slow clients)."""
        try:
            async with asyncio.timeout(self.body_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise errors.TooLarge(
                f"request body is larger than the gateway's limit of {self.max_body_bytes} bytes"
            ) from None
        except TimeoutError:
            raise errors.GatewayError(
                f"request body not received within {self.body_timeout:g} s", status=408
            ) from None

    def _ready_access(self, request: web.Request) -> tuple[Table, Access]:
        table = self.table
        if table is None:
            raise errors.UpstreamError("no routing config loaded yet; retry shortly", status=503)
        return table, self._access(request, table)

    def models(self, request: web.Request) -> web.Response:
        """GET /v1/models: what this key may call."""
        try:
            _, access = self._ready_access(request)
        except errors.GatewayError as exc:
            return _error_response(Dialect.CHAT, exc)
        return web.Response(body=access.models_json, content_type=_JSON)

    def model(self, request: web.Request) -> web.Response:
        """GET /v1/models/{id}: one of them."""
        try:
            _, access = self._ready_access(request)
            entry = access.model_json.get(request.match_info["model"])
            if entry is None:
                raise errors.RouteNotFound(
                    f"model {request.match_info['model']!r} not found for this key; "
                    "GET /v1/models lists what it may call"
                )
        except errors.GatewayError as exc:
            return _error_response(Dialect.CHAT, exc)
        return web.Response(body=entry, content_type=_JSON)

    async def count_tokens(self, request: web.Request) -> web.Response:
        """POST /v1/messages/count_tokens: the gateway's estimate (characters / 4, see
        dialects/inspect.py), the same one it uses to pick a candidate that fits."""
        try:
            table, access = self._ready_access(request)
            try:
                body = orjson.loads(await self._read(request))
            except orjson.JSONDecodeError as exc:
                raise errors.BadRequest(f"request body is not valid JSON: {exc}") from None
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                raise errors.BadRequest("'model' is required", param="model")
            route = table.route(body["model"])
            if route is None:
                raise errors.RouteNotFound(f"model {body['model']!r} not found", param="model")
            if not access.may_call(route, None if route.agent else route.chain[0]):
                raise errors.Forbidden(
                    f"key {access.name!r} may not call {body['model']!r}", param="model"
                )
            tokens = inspect.estimate_prompt_tokens(Dialect.MESSAGES, body)
        except errors.GatewayError as exc:
            return _error_response(Dialect.MESSAGES, exc)
        return web.Response(body=orjson.dumps({"input_tokens": tokens}), content_type=_JSON)

    # --- the request path --------------------------------------------------------------------

    async def handle(self, request: web.Request, surface: Dialect) -> web.StreamResponse:
        started = time.perf_counter()
        out = Outcome(surface)
        try:
            return await self._handle(request, surface, out, started)
        except errors.GatewayError as exc:
            out.status = exc.status
            out.error = exc.message
            return _error_response(surface, exc, out)
        except derrors.TranslationError as exc:
            out.status = 400
            out.error = exc.message
            return _error_response(surface, errors.BadRequest(exc.message, param=exc.param), out)
        except (ConnectionResetError, asyncio.CancelledError):
            out.status = 499  # the client went away; nothing to answer
            out.error = out.error or "client went away"
            raise
        except Exception as exc:  # a bug: answer in the client's shape, never a traceback
            out.status = 500
            out.error = f"internal error ({type(exc).__name__})"
            log.error("internal error on %s", request.path, exc_info=exc)
            return _error_response(
                surface,
                errors.GatewayError(
                    "internal gateway error; it is logged, please report it", status=500
                ),
                out,
            )
        finally:
            self._record(out, time.perf_counter() - started)

    async def _handle(
        self, request: web.Request, surface: Dialect, out: Outcome, started: float
    ) -> web.StreamResponse:
        table = self.table
        if table is None:
            raise errors.UpstreamError("no routing config loaded yet; retry shortly", status=503)
        access = self._access(request, table)
        out.key = access.name
        raw = await self._read(request)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise errors.BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise errors.BadRequest("request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise errors.BadRequest(
                "'model' is required: an agent name or 'provider:model'", param="model"
            )
        out.asked = model
        resolve.check_types(surface, body)
        route = table.route(model)
        if route is None:
            raise errors.RouteNotFound(
                f"model {model!r} not found: use an agent name or 'provider:model' "
                "(GET /v1/models lists what this key may call)",
                param="model",
            )
        if not access.may_call(route, None if route.agent else route.chain[0]):
            what = "agent" if route.agent else "model"
            raise errors.Forbidden(
                f"key {access.name!r} may not call {what} {model!r}; allow it in the key's "
                "AccessKeyConfig (allowedAgents, allowedProviders, allowedModels)",
                param="model",
            )
        stream = body.get("stream") is True
        if route.agent:
            body = resolve.with_defaults(surface, body, route)
        plan = resolve.plan(surface, body, route)
        last: _Failed | None = None
        for target, client_body, max_tokens in plan:
            out.attempts += 1
            out.target = target
            ctx = Ctx(
                upstream_model=target.model_id,
                response_model=target.ref,
                max_tokens=max_tokens,
                stream=stream,
                include_usage=resolve.include_usage(surface, client_body),
                request_id=f"{self._pid}{next(self._ids):x}",
                created=int(time.time()),
            )
            pair = registry.get(surface, target.dialect)
            try:
                upstream_body = pair.translate_request(client_body, ctx)
            except (TypeError, AttributeError, KeyError, ValueError) as exc:
                raise errors.BadRequest(
                    f"the request does not match the {surface.value} API ({type(exc).__name__}); "
                    "check the shape of messages, tools and content parts"
                ) from None
            try:
                if stream:
                    return await self._stream(
                        request,
                        target=target,
                        pair=pair,
                        ctx=ctx,
                        body=upstream_body,
                        out=out,
                        started=started,
                    )
                return await self._once(target, pair, ctx, upstream_body, out)
            except _Failed as failure:
                self.metrics.child(
                    self.metrics.upstream_errors, target.provider, failure.kind
                ).inc()
                last = failure
                if not failure.retry:
                    raise errors.GatewayError(failure.message, status=failure.status) from None
                out.fallbacks.append(f"{target.ref}:{failure.kind}")
                self.metrics.child(
                    self.metrics.fallbacks, target.provider, target.model_id, failure.kind
                ).inc()
        assert last is not None
        raise errors.GatewayError(
            f"every candidate failed ({', '.join(out.fallbacks)}); last: {last.message}",
            status=last.status,
            headers={"retry-after": last.retry_after} if last.retry_after else None,
        )

    async def _send(self, target: Target, body: Json) -> Response:
        # The endpoint's timeouts: connect, read (the first byte, so the first token of a
        # stream, and any later gap), total (the whole exchange). See gateway/upstream.py.
        try:
            response = await self.pool.post(target.endpoint, orjson.dumps(body))
        except ConnectError as exc:
            raise _Failed("connect", 502, f"{target.provider}: {exc}", retry=True) from None
        except TimeoutError:
            raise _Failed(
                "first_token_timeout",
                504,
                f"{target.ref} did not answer within {target.first_token:g} s",
                retry=True,
            ) from None
        except UpstreamError as exc:
            raise _Failed("connect", 502, f"{target.provider} failed: {exc}", retry=True) from None
        if response.status < 400:
            return response
        try:
            data = await response.read()
        except (UpstreamError, TimeoutError):
            data = b""
        finally:
            response.release()
        info = derrors.parse_upstream_error(response.status, data)
        message = f"{target.ref}: {info.message}"
        if info.context_length:
            raise _Failed("context_length", 400, message, retry=True)
        if response.status == 429:
            raise _Failed(
                "status_429",
                429,
                message,
                retry=True,
                retry_after=response.headers.get("retry-after"),
            )
        if response.status >= 500:
            raise _Failed("status_5xx", 502, message, retry=True)
        raise _Failed("status_4xx", response.status, message, retry=False)

    async def _once(
        self, target: Target, pair: registry.Pair, ctx: Ctx, body: Json, out: Outcome
    ) -> web.Response:
        response = await self._send(target, body)
        try:
            data = await response.read()
        except TimeoutError:
            raise _Failed("timeout", 504, f"{target.ref} timed out", retry=True) from None
        except UpstreamError as exc:
            raise _Failed("connect", 502, f"{target.ref} failed: {exc}", retry=True) from None
        finally:
            response.release()
        try:
            upstream = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _Failed(
                "status_5xx", 502, f"{target.ref} answered with invalid JSON", retry=True
            ) from None
        try:
            client_body, usage = pair.translate_response(upstream, ctx)
        except (TypeError, AttributeError, KeyError, ValueError, derrors.TranslationError):
            raise _Failed(
                "status_5xx", 502, f"{target.ref} answered in an unexpected shape", retry=True
            ) from None
        out.usage = usage
        out.cost = _cost(target, usage)
        headers = _served_headers(out)
        headers["x-switchboard-cost-usd"] = f"{out.cost:.8f}"
        # Same dialect on both sides: the upstream's bytes go out as they came.
        payload = data if client_body is upstream else orjson.dumps(client_body)
        return web.Response(body=payload, headers=headers, content_type=_JSON)

    async def _stream(
        self,
        request: web.Request,
        *,
        target: Target,
        pair: registry.Pair,
        ctx: Ctx,
        body: Json,
        out: Outcome,
        started: float,
    ) -> web.StreamResponse:
        response = await self._send(target, body)
        translator = pair.stream(ctx)
        decoder = sse.Decoder()
        try:
            first = await response.next_chunk()
        except (TimeoutError, UpstreamError) as exc:
            response.close()
            kind = "first_token_timeout" if isinstance(exc, TimeoutError) else "stream"
            raise _Failed(
                kind,
                504 if kind != "stream" else 502,
                f"{target.ref} sent no first token",
                retry=True,
            ) from None
        if not first:
            response.release()
            raise _Failed("stream", 502, f"{target.ref} sent an empty stream", retry=True)
        client = web.StreamResponse(headers={**_SSE_HEADERS, **_served_headers(out)})
        framed = request.version >= HttpVersion11
        if framed:
            client.enable_chunked_encoding()
        await client.prepare(request)
        out.ttft = time.perf_counter() - started
        relay = _Relay(request, response, translator, decoder, framed)
        try:
            try:
                # Through aiohttp (it sends the status line and headers), then the rest of the
                # body straight from the upstream connection's callback (_Relay).
                await client.write(relay.translate(first))
                await response.pipe(relay.feed)
                relay.check()
                tail = b"".join(translator.feed(e) for e in decoder.close())
                await client.write(tail + translator.finish())
            except (TimeoutError, UpstreamError, derrors.TranslationError) as exc:
                relay.check()
                kind = "timeout" if isinstance(exc, TimeoutError) else "stream"
                self.metrics.child(self.metrics.upstream_errors, target.provider, kind).inc()
                out.error = f"{target.ref} failed mid-stream ({kind})"
                out.status = 502
                await client.write(translator.error(f"upstream failed mid-stream: {out.error}"))
        except (_ClientGone, ConnectionResetError):
            out.status = 499
            out.error = "client went away"
            response.close()
        except asyncio.CancelledError:
            response.close()
            raise
        finally:
            relay.stop()
            response.release()
        out.usage = translator.usage
        out.cost = _cost(target, translator.usage)
        if out.status != 499:
            await client.write_eof()
        return client

    # --- accounting --------------------------------------------------------------------------

    def _record(self, out: Outcome, seconds: float) -> None:
        m = self.metrics
        provider = out.target.provider if out.target else ""
        model = out.target.model_id if out.target else ""
        surface = out.surface.value
        stats = m.stats
        stats.request(surface, provider, model, out.status)
        stats.observe(stats.latency, surface, seconds)
        if out.ttft is not None:
            stats.observe(stats.ttft, surface, out.ttft)
        usage = out.usage
        if usage is not None:
            for kind, value in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cache_read", usage.cache_read_tokens),
                ("cache_write", usage.cache_write_tokens),
            ):
                if value:
                    stats.add_tokens(provider, model, kind, value)
            if out.cost:
                stats.add_cost(provider, model, out.cost)
        if self.access_log.enabled:
            line: dict[str, Any] = {
                "surface": surface,
                "key": out.key,
                "model": out.asked,
                "provider": provider or None,
                "served_model": model or None,
                "attempts": out.attempts,
                "fallbacks": out.fallbacks,
                "status": out.status,
                "latency_ms": round(seconds * 1000, 3),
                "ttft_ms": round(out.ttft * 1000, 3) if out.ttft is not None else None,
                "cost_usd": round(out.cost, 8),
            }
            if usage is not None:
                line["tokens"] = {
                    "input": usage.input_tokens,
                    "output": usage.output_tokens,
                    "cache_read": usage.cache_read_tokens,
                    "cache_write": usage.cache_write_tokens,
                }
            if out.error:
                line["error"] = out.error
            self.access_log.write(line)


def _cost(target: Target, usage: Usage) -> float:
    meta = target.meta
    if meta is None:
        return 0.0
    p = meta.price
    return (
        usage.input_tokens * p.input
        + usage.output_tokens * p.output
        + usage.cache_read_tokens * p.cache_read
        + usage.cache_write_tokens * p.cache_write
    ) / 1_000_000


def _served_headers(out: Outcome) -> dict[str, str]:
    target = out.target
    assert target is not None
    return {
        "x-switchboard-provider": target.provider,
        "x-switchboard-model": target.model_id,
        "x-switchboard-attempts": str(out.attempts),
    }


def _error_response(
    surface: Dialect, exc: errors.GatewayError, out: Outcome | None = None
) -> web.Response:
    headers = dict(exc.headers)
    if out is not None and out.target is not None:
        headers.update(_served_headers(out))
    return web.Response(
        status=exc.status,
        body=derrors.render_error(surface, exc.status, exc.message, exc.param),
        content_type=_JSON,
        headers=headers,
    )
