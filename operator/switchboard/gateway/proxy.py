"""The request path: authenticate, resolve, pick a candidate, translate, call, fall back, answer.

Fallback moves to the next candidate on a connect error, a timeout (connect, first token,
total), a 5xx, a 429, an upstream context-length error, the provider refusing its own key
(401/403), an answer without its API's shape, or an error event in a stream's hold-back (before
its first content event: relay.HoldBack), and only while nothing has been sent to the client.
After that, a failure ends the stream with an error event in the client's dialect, is not
retried, and is logged as 502. A client that leaves cancels the handler (aiohttp's
handler_cancellation, set in server.py): the upstream connection is closed, not pooled, and the
request is logged as 499.

Beside it: auth.py (keys), relay.py (hold-back and relay), accounting.py (metrics and the access
log), routes.py (/v1/models, count_tokens), errors.py (the error tree, map_upstream(), Scrub).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from dataclasses import replace

import orjson
from aiohttp import HttpVersion11, web

from switchboard.dialects import errors as derrors
from switchboard.dialects import identity, inspect, registry, sse
from switchboard.dialects.types import Ctx, Dialect, Json
from switchboard.gateway import accounting, errors, resolve
from switchboard.gateway.accesslog import AccessLog
from switchboard.gateway.accounting import Outcome
from switchboard.gateway.auth import Keys
from switchboard.gateway.beta import HEADER, Betas
from switchboard.gateway.errors import AttemptFailed
from switchboard.gateway.limits import gate
from switchboard.gateway.limits import limiter as lim
from switchboard.gateway.metrics import Metrics
from switchboard.gateway.relay import ClientGone, HoldBack, Relay
from switchboard.gateway.responses import JSONResponse, SSEResponse
from switchboard.gateway.table import Access, Table, Target
from switchboard.gateway.tokens import Tokens
from switchboard.gateway.tracing import Tracing
from switchboard.gateway.upstream import Pool, Response

_SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}
_JSON = "application/json"
log = logging.getLogger("switchboard.gateway")


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
        chain_timeout: float = 600.0,
        limiter: lim.Limiter | None = None,
        hold_bytes: int = 64 * 1024,
        hold_seconds: float | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.pool = pool
        self.limiter = limiter
        self.metrics = metrics
        self.accounting = accounting.Accounting(metrics, access_log)
        self.keys = Keys()
        self.betas = Betas()
        self.tokens = Tokens(pool)
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.chain_timeout = chain_timeout
        """Seconds for a whole fallback chain: no new candidate is tried past it (each
        attempt is bounded by its provider's own timeouts)."""
        self.hold_bytes = hold_bytes
        """A stream is held back from the client until its first content event, or until
        this many upstream bytes came without one (relay.HoldBack)."""
        self.hold_seconds = hold_seconds
        """... or this long; None: the provider's first-token timeout."""
        self.tracing = tracing
        """None unless the OTEL_* environment turns traces on (gateway/tracing.py)."""
        self.table: Table | None = None
        """The routing table served; replaced (never mutated) by a reload."""
        self._ids = itertools.count(1)
        self._pid = f"{os.getpid():x}"

    async def read_body(self, request: web.Request) -> bytes:
        """The request body, within the size limit and the body timeout (slow clients).
        A body that came whole with the head (the common case) is taken without a timer."""
        try:
            if request.content.is_eof():
                return await request.read()
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

    def ready(self, request: web.Request) -> tuple[Table, Access]:
        """The table served and the request's Access, or the error to answer."""
        table = self.table
        if table is None:
            raise errors.Unavailable("no routing config loaded yet; retry shortly")
        return table, self.keys.access(request, table)

    async def handle(self, request: web.Request, surface: Dialect) -> web.StreamResponse:
        started = time.perf_counter()
        out = Outcome(surface)
        if self.tracing is not None:
            out.trace = self.tracing.begin(request)
        try:
            return await self._handle(request, surface, out, started)
        except errors.GatewayError as exc:
            out.status = exc.status
            out.error = exc.message
            return _error(surface, exc, out)
        except derrors.TranslationError as exc:
            out.status = 400
            out.error = exc.message
            return _error(surface, errors.BadRequest(exc.message, param=exc.param), out)
        except (ConnectionResetError, asyncio.CancelledError):
            out.status = 499  # the client went away; nothing to answer
            out.error = out.error or "client went away"
            raise
        except Exception as exc:  # a bug: answer in the client's shape, never a traceback
            if _too_deep(exc):
                exc400 = errors.BadRequest(
                    "request body is nested too deeply to translate or forward (the limit is "
                    "255 levels of objects and arrays); flatten it"
                )
                out.status = 400
                out.error = exc400.message
                return _error(surface, exc400, out)
            out.status = 500
            out.error = f"internal error ({type(exc).__name__})"
            log.error("internal error on %s", errors.clip(request.path), exc_info=exc)
            return _error(
                surface,
                errors.GatewayError(
                    "internal gateway error; it is logged, please report it", status=500
                ),
                out,
            )
        finally:
            if out.ticket is not None:
                assert self.limiter is not None
                gate.settle(self.limiter, self.metrics.stats.key_requests, out)
            self.accounting.record(out, time.perf_counter() - started)

    async def _handle(
        self, request: web.Request, surface: Dialect, out: Outcome, started: float
    ) -> web.StreamResponse:
        table = self.table
        if table is None:
            raise errors.Unavailable("no routing config loaded yet; retry shortly")
        access = self.keys.access(request, table)
        out.key = access.name
        raw = await self.read_body(request)
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
        route = table.route(model, surface)  # each candidate in the client's API if it has it
        if route is None:
            raise errors.RouteNotFound(
                f"model {errors.clip(model)!r} not found: use an agent name or 'provider:model' "
                "(GET /v1/models lists what this key may call)",
                param="model",
            )
        if not access.may_call(route, None if route.agent else route.chain[0]):
            what = "agent" if route.agent else "model"
            raise errors.Forbidden(
                f"key {access.name!r} may not call {what} {errors.clip(model)!r}; allow it in "
                "the key's AccessKeyConfig (allowedAgents, allowedProviders, allowedModels)",
                param="model",
            )
        stream = body.get("stream") is True
        if route.agent:
            body = resolve.with_defaults(surface, body, route)
        prompt = inspect.estimate_prompt_tokens(surface, body)
        if access.rules is not None and self.limiter is not None:
            ticket = gate.admit(self.limiter, access.rules, surface, body, route, prompt=prompt)
            if ticket is None:  # (within the leases: no coroutine) the store is asked
                est = gate.estimate(surface, body, route, prompt)
                ticket = await gate.reserve(self.limiter, access.rules, est)
            out.ticket = ticket
        counts = (
            await self.tokens.for_plan(route, surface, body, prompt) if route.tokenize else None
        )
        plan = resolve.plan(surface, body, route, counts, prompt)
        client_beta = request.headers.get(HEADER) if surface is Dialect.MESSAGES else None
        last: AttemptFailed | None = None
        deadline = started + self.chain_timeout
        for candidate, client_body, max_tokens in plan:
            if out.attempts and time.perf_counter() > deadline:
                raise errors.UpstreamTimeout(
                    f"no answer within the gateway's chain timeout of {self.chain_timeout:g} s "
                    f"after {out.attempts} attempts ({', '.join(out.fallbacks)})"
                )
            target = candidate
            out.attempts += 1
            out.target = target
            if out.trace is not None:
                out.trace.attempt(target, route, client_body)
            ctx = Ctx(
                upstream_model=target.model_id,
                response_model=target.ref,
                max_tokens=max_tokens,
                stream=stream,
                include_usage=resolve.include_usage(surface, client_body),
                request_id=f"{self._pid}{next(self._ids):x}",
                created=int(time.time()),
                reasoning=target.reasoning,
                hosted_tools=route.hosted_tools or target.hosted_tools,
            )
            pair = registry.get(surface, target.dialect)
            try:
                upstream_body = pair.translate_request(client_body, ctx)
            except (TypeError, AttributeError, KeyError, ValueError) as exc:
                raise errors.BadRequest(
                    f"the request does not match the {surface.value} API ({type(exc).__name__}); "
                    "check the shape of messages, tools and content parts"
                ) from None
            out.dropped = ctx.dropped
            if client_beta is not None and target.dialect is Dialect.MESSAGES:
                target = replace(target, endpoint=self.betas.endpoint(target.endpoint, client_beta))
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
            except AttemptFailed as failure:
                if out.trace is not None:
                    out.trace.failed(failure.kind)
                self.metrics.child(
                    self.metrics.upstream_errors, target.provider, failure.kind
                ).inc()
                last = failure
                if not failure.retry:
                    raise errors.GatewayError(failure.message, status=failure.status) from None
                out.fallbacks.append(f"{errors.clip(target.ref)}:{failure.kind}")
                self.metrics.child(
                    self.metrics.fallbacks, target.provider, target.label, failure.kind
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
        with errors.map_upstream(target, "first_token_timeout", "connect"):
            response = await self.pool.post(target.endpoint, orjson.dumps(body))
        status = response.status
        if status < 400:
            return response
        try:
            with errors.map_upstream(target, "timeout", "connect"):
                data = await response.read()
        except AttemptFailed:
            data = b""
        finally:
            response.release()
        if status in (401, 403):  # the provider's key, not the client's: the operator's fix
            raise AttemptFailed(
                "provider_auth",
                502,
                f"provider {target.provider!r} rejected its credentials (HTTP {status}); "
                "check the CustomProvider's apiKeySecretRef",
                retry=True,
            )
        info = derrors.parse_upstream_error(status, data)
        message = f"{target.ref}: {target.scrub(info.message)}"
        if info.context_length:
            raise AttemptFailed("context_length", 400, message, retry=True)
        if status == 429:
            raise AttemptFailed(
                "status_429",
                429,
                message,
                retry=True,
                retry_after=response.headers.get("retry-after"),
            )
        if status >= 500:
            raise AttemptFailed("status_5xx", 502, message, retry=True)
        raise AttemptFailed("status_4xx", status, message, retry=False)

    async def _once(
        self, target: Target, pair: registry.Pair, ctx: Ctx, body: Json, out: Outcome
    ) -> web.Response:
        response = await self._send(target, body)
        try:
            with errors.map_upstream(target, "timeout", "connect"):
                data = await response.read()
        finally:
            response.release()  # closes the connection unless the body ended cleanly
        try:
            upstream = orjson.loads(data)
            identity.check_answer(target.dialect, upstream)
            client_body, usage = pair.translate_response(upstream, ctx)
        except orjson.JSONDecodeError:
            raise AttemptFailed(
                "bad_answer", 502, f"{target.ref} answered with invalid JSON", retry=True
            ) from None
        except (TypeError, AttributeError, KeyError, ValueError, derrors.TranslationError) as exc:
            why = exc.message if isinstance(exc, derrors.TranslationError) else type(exc).__name__
            raise AttemptFailed(
                "bad_answer",
                502,
                f"{target.ref} answered in an unexpected shape ({target.scrub(why)})",
                retry=True,
            ) from None
        out.usage = usage
        out.cost = accounting.cost(target, usage)
        headers = accounting.served_headers(out)
        headers["x-switchboard-cost-usd"] = f"{out.cost:.8f}"
        # Same dialect on both sides: the upstream's bytes go out as they came.
        payload = data if client_body is upstream else orjson.dumps(client_body)
        answer = JSONResponse(body=payload, headers=headers, content_type=_JSON)
        if out.ticket is not None:
            answer.extra_head = out.ticket.head
        return answer

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
        hold = HoldBack(target, translator, decoder, self.hold_bytes, self.hold_seconds)
        try:
            with errors.map_upstream(target, "first_token_timeout", "stream"):
                held = await hold.run(response)
        except BaseException:
            response.close()  # never back to the pool: the server may still be sending
            raise
        client = SSEResponse(headers={**_SSE_HEADERS, **accounting.served_headers(out)})
        if out.ticket is not None:
            client.extra_head = out.ticket.head
        framed = request.version >= HttpVersion11
        if framed:
            client.enable_chunked_encoding()
        relay: Relay | None = None
        last = b""  # goes out with the end of the body (the zero-length chunk): one send
        try:
            try:
                await client.prepare(request)  # the head waits for the first bytes (SSEResponse)
                out.ttft = time.perf_counter() - started
                if hold.rest:  # after the first content, in the same read
                    held += b"".join([translator.feed(e) for e in hold.rest])
                    held = target.scrub.data(held) if translator.failed else held
                if hold.ended:  # the whole stream came within the hold-back
                    last = held
                else:
                    # Through aiohttp (the status line and headers with these bytes, in one
                    # send), then the rest of the body straight from the upstream connection's
                    # callback (Relay).
                    await client.write(held)
                    relay = Relay(
                        request, response, translator, decoder, framed=framed, scrub=target.scrub
                    )
                    with errors.map_upstream(target, "timeout", "stream"):
                        await response.pipe(relay.feed)
                    relay.check()
                    tail = b"".join(translator.feed(e) for e in decoder.close())
                    tail += translator.finish()
                    last = target.scrub.data(tail) if translator.failed else tail
            except (AttemptFailed, derrors.TranslationError) as exc:
                if relay is not None:
                    relay.check()
                kind = exc.kind if isinstance(exc, AttemptFailed) else "stream"
                self.metrics.child(self.metrics.upstream_errors, target.provider, kind).inc()
                out.error = f"{target.ref} failed mid-stream ({kind})"
                out.status = 502
                last = translator.error(f"upstream failed mid-stream: {out.error}")
        except (ClientGone, ConnectionResetError):
            out.status = 499
            out.error = "client went away"
            response.close()
        except BaseException:  # cancelled: the client left (aiohttp's handler_cancellation)
            response.close()
            raise
        finally:
            if relay is not None:
                relay.stop()
            response.release()
        if translator.failed is not None and out.status == 200:
            # The upstream's error event after the first content: the client got it in its
            # dialect; the request is a failure for the log and the metrics.
            self.metrics.child(self.metrics.upstream_errors, target.provider, "stream_error").inc()
            out.status = 502
            out.error = f"{target.ref} failed mid-stream: {target.scrub(translator.failed)}"
        out.usage = translator.usage
        out.cost = accounting.cost(target, translator.usage)
        if out.status != 499:
            try:
                await client.write_eof(last)
            except ConnectionResetError:
                out.status = 499
                out.error = "client went away"
        return client


_ORJSON_DEPTH = ("Recursion limit reached",)
"""orjson's error for a value over 255 levels (`orjson.JSONEncodeError` is TypeError itself)."""


def _too_deep(exc: Exception) -> bool:
    """The client's body was too deep: orjson parses 1,024 levels but writes 255, and a
    translator recursing that deep passes Python's limit. Any other TypeError is a bug (500)."""
    if isinstance(exc, RecursionError):
        return True
    return type(exc) is TypeError and exc.args == _ORJSON_DEPTH


def _error(surface: Dialect, exc: errors.GatewayError, out: Outcome) -> web.Response:
    if out.target is None:
        return errors.response(surface, exc)
    headers = accounting.served_headers(out)
    if out.ticket is not None:
        headers.update(out.ticket.headers)
    return errors.response(surface, exc, headers)
