"""Fake model servers that speak the real wire shapes, with fault injection.

Shapes (`SHAPES`), each a real aiohttp server on a loopback port:

    openai, vllm, lmstudio, litellm, tgi, ollama, llamacpp
        OpenAI Chat Completions (`/v1/chat/completions`, `/v1/models`) with each server's quirks:
        TGI answers as model "tgi" with a `system_fingerprint`; Ollama sends usage only in its
        final chunk (whether asked or not) and each tool call whole in one chunk; vLLM reports
        `prompt_tokens_details.cached_tokens` only when prompt caching is on (`cached` > 0, its
        `--enable-prompt-tokens-details`); OpenAI and LiteLLM always do. vLLM also serves its
        tokenizer, `POST /tokenize` (a count of words, see `_tokenize`).
    responses
        OpenAI Responses (`/v1/responses`), non-stream and the full SSE event sequence.
    anthropic
        Anthropic Messages (`/v1/messages`): `max_tokens` required, SSE events as the API sends
        them, `tool_use`, usage with cache reads and writes.

Answers are deterministic: "You said: <last user text>"; a tool call (`{"city": "Paris"}`) when
tools are offered and the last user text mentions weather or `tool_choice` forces a tool; "Tool
said: <result>" when the last message is a tool result. Images are accepted and ignored. Usage:
input = a word count of the prompt, output = the words of the answer (5 for a tool call);
`cached` of the input is reported as cache reads and, for Anthropic, `cache_write` as cache
creation. `max_tokens` / `max_completion_tokens` / `max_output_tokens` cut the answer at that
many words with the shape's "length" stop reason.

Faults (`FAULTS`) come from three places, later ones winning: the server's own (`Upstream(fault=
...)`, `--fault`, `POST /_fault` with a JSON object, `DELETE /_fault`), the request header
`x-fault: status=429,retry_after=3`, and a suffix of the model id (`mymodel@fault=500` or
`mymodel@status=500`), since a gateway forwards the model id but never the client's headers.

    status=500|503|429|529   answer that status in the shape's error body (429 with
                             `retry-after`, `retry_after=N` to change it, default 1)
    context_length           the shape's own context-length error (vLLM, TGI, Ollama,
                             llama.cpp, LM Studio, LiteLLM, OpenAI, Anthropic phrasing)
    delay=SECONDS            wait before anything, headers included
    delay_first_token=S      send the headers, then wait before the first event (non-streaming:
                             wait before the answer)
    chunk_delay=SECONDS      pause between streamed events
    stall_after=N            stream N events, then hang with the connection open
    drop_after=N             stream N events, then close the connection
    unauthorized             401 in the shape's phrasing
    echo_key                 error bodies (status=, unauthorized, error_event_after=) quote
                             the request's credential header and 2,000 more characters, as
                             a careless server might: the gateway must scrub and cut it
    error_event_after=N      stream N events, then the shape's in-stream error and the end:
                             Anthropic `event: error` (overloaded_error), an OpenAI
                             `{"error": ...}` chunk, Responses `response.failed` (or the
                             `error` event with `error_event=error`)
    bad_shape                a 200 whose JSON is not the API's answer (`{"ok": true}`)
    bad_sse=N                stream N events, then a `data:` line that is not JSON, then end

Closes are recorded: a handler still running when the client (the gateway) closes the
connection is cancelled (handler_cancellation) and `GET /_closed` lists `{"request": index in
/_requests, "model", "at": time.monotonic()}`, so a test can tell when the upstream saw it.

"Connection refused" is a port with nobody listening: `free_port()`.

With `api_key` set the server checks it (Bearer for OpenAI shapes, `x-api-key` or Bearer for
Anthropic) and answers 401 in its phrasing; `strict_headers` makes the Anthropic shape require
`anthropic-version` and a key as the real API does. Every request is recorded as `{"path",
"headers", "body"}` (`Upstream.requests`, `GET /_requests`, cleared by `DELETE /_requests`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

OPENAI_SHAPES = ("openai", "vllm", "lmstudio", "litellm", "tgi", "ollama", "llamacpp")
SHAPES = (*OPENAI_SHAPES, "responses", "anthropic")
FAULTS = (
    "status",
    "retry_after",
    "context_length",
    "delay",
    "delay_first_token",
    "chunk_delay",
    "stall_after",
    "drop_after",
    "unauthorized",
    "echo_key",
    "error_event_after",
    "error_event",
    "bad_shape",
    "bad_sse",
)

_CONTEXT_OPENAI = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}

CONTEXT_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "openai": (400, _CONTEXT_OPENAI),
    "vllm": (
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. However, you "
            "requested 5000 tokens (4984 in the messages, 16 in the completion). Please reduce "
            "the length of the messages or completion.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ),
    "tgi": (
        422,
        {
            "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
            "4096. Given: 5000 `inputs` tokens and 16 `max_new_tokens`",
            "error_type": "validation",
        },
    ),
    "ollama": (
        400,
        {
            "error": {
                "message": "the input length exceeds the context length",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
    ),
    "llamacpp": (
        400,
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5000,
                "n_ctx": 4096,
            }
        },
    ),
    "lmstudio": (
        400,
        {
            "error": "Trying to keep the first 5000 tokens when context the overflows. However, "
            "the model is loaded with context length of only 4096 tokens, which is not enough. "
            "Try to load the model with a larger context length, or provide a shorter input"
        },
    ),
    "litellm": (
        400,
        {
            "error": {
                "message": "litellm.ContextWindowExceededError: litellm.BadRequestError: "
                "ContextWindowExceededError: OpenAIException - This model's maximum context "
                "length is 4096 tokens. However, you requested 5000 tokens.",
                "type": None,
                "param": None,
                "code": "400",
            }
        },
    ),
    "anthropic": (
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 210000 tokens > 200000 maximum",
            },
        },
    ),
    "responses": (
        400,
        {
            "error": {
                "message": "Your input exceeds the context window of this model. Please adjust "
                "your input and try again.",
                "type": "invalid_request_error",
                "param": "input",
                "code": "context_length_exceeded",
            }
        },
    ),
}

_OPENAI_STATUS = {
    429: ("Rate limit reached for requests. Please try again in 1s.", "requests"),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
    ),
    503: ("The engine is currently overloaded, please try again later.", "server_error"),
}
_ANTHROPIC_STATUS = {
    401: ("authentication_error", "invalid x-api-key"),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}
_TGI_STATUS = {
    429: ("Model is overloaded", "overloaded"),
    500: ("Request failed during generation: injected failure", "generation"),
    503: ("Model is overloaded", "overloaded"),
}
_FINGERPRINT = {"openai": "fp_fake", "tgi": "3.0.1-native", "ollama": "fp_ollama"}
_CHAT_ID = {"tgi": "", "ollama": "chatcmpl-123"}
_WITH_CACHE_DETAILS = ("openai", "litellm")


def free_port() -> int:
    """A loopback port with nobody listening now: "connection refused" until someone binds it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_fault(text: str) -> dict[str, str]:
    """`status=500,drop_after=3` (or `fault=500`, the same as `status=500`) -> a fault dict."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out["status" if key == "fault" else key] = value
    return out


def _echo(request: web.Request) -> str:
    """What a careless server says: the credential it was sent, and a lot more."""
    sent = request.headers.get("x-api-key") or request.headers.get("authorization", "")
    return f"invalid credential {sent!r}; " + "details " * 250


def status_error(
    shape: str, code: int, retry_after: str = "1", message: str | None = None
) -> web.Response:
    """The error answer of `shape` for HTTP status `code` (429 with `retry-after`); `message`
    replaces the shape's own text."""
    headers = {"retry-after": retry_after} if code == 429 else {}
    body: dict[str, Any]
    if message is not None:
        if shape == "anthropic":
            body = {"type": "error", "error": {"type": "authentication_error", "message": message}}
        else:
            body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
        return web.json_response(body, status=code, headers=headers)
    if shape == "anthropic":
        kind, text = _ANTHROPIC_STATUS.get(code, ("api_error", f"injected {code}"))
        body = {"type": "error", "error": {"type": kind, "message": text}}
    elif shape == "tgi":
        text, kind = _TGI_STATUS.get(code, (f"injected {code}", "generation"))
        body = {"error": text, "error_type": kind}
    elif shape == "vllm":
        text, _ = _OPENAI_STATUS.get(code, (f"injected {code}", "server_error"))
        body = {
            "object": "error",
            "message": text,
            "type": "ServiceUnavailableError" if code == 503 else "InternalServerError",
            "param": None,
            "code": code,
        }
    elif shape == "lmstudio":
        body = {"error": f"injected {code}"}
    else:
        text, kind = _OPENAI_STATUS.get(code, (f"injected {code}", "server_error"))
        code_field = "rate_limit_exceeded" if code == 429 else None
        body = {"error": {"message": text, "type": kind, "param": None, "code": code_field}}
    return web.json_response(body, status=code, headers=headers)


def unauthorized(shape: str) -> web.Response:
    if shape == "anthropic":
        return status_error(shape, 401)
    if shape == "vllm":
        return web.json_response({"error": "Unauthorized"}, status=401)
    if shape == "tgi":
        return web.json_response(
            {"error": "Authorization header is invalid", "error_type": "authentication"},
            status=401,
        )
    return web.json_response(
        {
            "error": {
                "message": "Incorrect API key provided: sk-***. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        },
        status=401,
    )


@dataclass
class Upstream:
    """One fake model server. `await Upstream(shape="tgi").start()` or `async with Upstream()`."""

    shape: str = "vllm"
    """One of SHAPES."""
    model: str = "fake-model"
    """The id `/v1/models` lists (answers echo the model of the request)."""
    cached: int = 0
    """Input tokens reported as cache reads (at most the prompt)."""
    cache_write: int = 0
    """Input tokens reported as cache writes (Anthropic)."""
    fault: dict[str, str] = field(default_factory=dict)
    """Faults for every request (see the module docstring); changed by `POST /_fault`."""
    api_key: str | None = None
    """When set, requests must carry this key (Bearer, or x-api-key for Anthropic)."""
    strict_headers: bool = False
    """Anthropic: require `anthropic-version` and a key, as the real API does."""
    host: str = "127.0.0.1"
    requests: list[dict[str, Any]] = field(default_factory=list)
    """What the server received: `{"path", "headers", "body"}` per request, oldest first."""
    closed: list[dict[str, Any]] = field(default_factory=list)
    """Requests whose connection closed while their handler ran (see the docstring)."""
    _running: dict[int, dict[str, Any]] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        """OpenAI-style base (ends in /v1); for `anthropic` the root works as well."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, port: int = 0) -> Upstream:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; one of {', '.join(SHAPES)}")
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._track_close])
        if self.shape in OPENAI_SHAPES:
            app.router.add_post("/v1/chat/completions", self._chat)
        if self.shape == "vllm":
            app.router.add_post("/tokenize", self._tokenize)
        elif self.shape == "responses":
            app.router.add_post("/v1/responses", self._responses)
        else:
            app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_fault", self._get_fault)
        app.router.add_post("/_fault", self._set_fault)
        app.router.add_delete("/_fault", self._set_fault)
        app.router.add_get("/_requests", self._get_requests)
        app.router.add_delete("/_requests", self._clear_requests)
        app.router.add_get("/_closed", self._get_closed)
        self._stopping = asyncio.Event()
        # A short shutdown timeout: a stalled handler is released by `_stopping` anyway.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=0.5,
            handler_cancellation=True,  # a closed connection ends its handler: /_closed
        )
        await self._runner.setup()
        self.port = port or free_port()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Upstream:
        return await self.start(self.port)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def set_fault(self, **fault: Any) -> None:
        """`set_fault(status=500)`; `set_fault()` clears. Values as in `x-fault`."""
        self.fault = {k: "" if v is True else str(v) for k, v in fault.items()}

    def clear(self) -> None:
        self.requests.clear()

    # --- admin -------------------------------------------------------------------------------

    async def _get_fault(self, request: web.Request) -> web.Response:
        return web.json_response({"fault": self.fault})

    async def _set_fault(self, request: web.Request) -> web.Response:
        data = await request.json() if request.method == "POST" and request.can_read_body else {}
        if not isinstance(data, dict):
            return web.json_response({"error": "a JSON object of faults"}, status=400)
        unknown = sorted(set(data) - set(FAULTS))
        if unknown:
            return web.json_response(
                {"error": f"unknown faults {unknown}; known: {list(FAULTS)}"}, status=400
            )
        self.set_fault(**data)
        return web.json_response({"fault": self.fault})

    async def _get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def _get_closed(self, request: web.Request) -> web.Response:
        return web.json_response(self.closed)

    @web.middleware
    async def _track_close(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except (asyncio.CancelledError, ConnectionResetError):
            self._record_close(request)
            raise
        finally:
            self._running.pop(id(request), None)

    def _record_close(self, request: web.Request) -> None:
        running = self._running.pop(id(request), None)
        if running is not None:
            self.closed.append(
                {"request": running["request"], "model": running["model"], "at": time.monotonic()}
            )

    async def _clear_requests(self, request: web.Request) -> web.Response:
        self.clear()
        return web.json_response([])

    async def _models(self, request: web.Request) -> web.Response:
        if self.shape == "anthropic":
            item = {
                "type": "model",
                "id": self.model,
                "display_name": self.model,
                "created_at": "2025-01-01T00:00:00Z",
            }
            return web.json_response(
                {"data": [item], "has_more": False, "first_id": self.model, "last_id": self.model}
            )
        owner = {"vllm": "vllm", "ollama": "library", "tgi": "tgi"}.get(self.shape, "organization")
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "created": 1, "owned_by": owner}],
            }
        )

    # --- shared ------------------------------------------------------------------------------

    async def _prelude(
        self, request: web.Request
    ) -> tuple[dict[str, Any], dict[str, str], web.Response | None]:
        """Record the request; return its body, its faults and an early answer (or None)."""
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            body = None
        self._running[id(request)] = {
            "request": len(self.requests),
            "model": body.get("model") if isinstance(body, dict) else None,
            "stream": isinstance(body, dict) and body.get("stream") is True,
        }
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if not isinstance(body, dict):
            return {}, {}, self._bad_request("We could not parse the JSON body of your request.")
        fault = dict(self.fault)
        if "x-fault" in request.headers:
            fault.update(parse_fault(request.headers["x-fault"]))
        model = str(body.get("model", ""))
        if "@" in model:
            fault.update(parse_fault(model.split("@", 1)[1]))
        if "delay" in fault:
            await asyncio.sleep(float(fault["delay"]))
        early = self._check_auth(request, fault) or self._fault_response(fault, request)
        if "delay_first_token" in fault and (early is not None or not body.get("stream")):
            await asyncio.sleep(float(fault["delay_first_token"]))
        return body, fault, early

    def _bad_request(self, message: str) -> web.Response:
        if self.shape == "anthropic":
            body: dict[str, Any] = {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": message},
            }
        elif self.shape == "tgi":
            body = {"error": message, "error_type": "validation"}
            return web.json_response(body, status=422)
        else:
            body = {"error": {"message": message, "type": "invalid_request_error"}}
        return web.json_response(body, status=400)

    def _check_auth(self, request: web.Request, fault: dict[str, str]) -> web.Response | None:
        if "unauthorized" in fault:
            if "echo_key" in fault:
                return status_error(self.shape, 401, message=_echo(request))
            return unauthorized(self.shape)
        bearer = request.headers.get("authorization", "")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if self.shape == "anthropic":
            token = request.headers.get("x-api-key", token)
            if self.strict_headers and "anthropic-version" not in request.headers:
                return self._bad_request("anthropic-version: header is required")
            if self.strict_headers and token is None:
                return web.json_response(
                    {
                        "type": "error",
                        "error": {
                            "type": "authentication_error",
                            "message": "x-api-key header is required",
                        },
                    },
                    status=401,
                )
        if self.api_key is not None and token != self.api_key:
            return unauthorized(self.shape)
        return None

    def _fault_response(self, fault: dict[str, str], request: web.Request) -> web.Response | None:
        if fault.get("status"):
            message = _echo(request) if "echo_key" in fault else None
            return status_error(
                self.shape, int(fault["status"]), fault.get("retry_after", "1"), message=message
            )
        if "bad_shape" in fault and not self._running.get(id(request), {}).get("stream"):
            return web.json_response({"ok": True})
        if "context_length" in fault:
            code, body = CONTEXT_ERRORS.get(self.shape, CONTEXT_ERRORS["openai"])
            return web.json_response(body, status=code)
        return None

    async def _stream(
        self, request: web.Request, fault: dict[str, str], events: list[bytes]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        if "delay_first_token" in fault:
            await asyncio.sleep(float(fault["delay_first_token"]))
        stall = int(fault.get("stall_after", "-1"))
        drop = int(fault.get("drop_after", "-1"))
        pause = float(fault.get("chunk_delay", "0"))
        if "error_event_after" in fault:
            cut = int(fault["error_event_after"])
            message = _echo(request) if "echo_key" in fault else "Overloaded"
            events = [*events[:cut], self._error_event(fault, message)]
        if "bad_sse" in fault:
            events = [*events[: int(fault["bad_sse"] or 0)], b"data: <html>Bad Gateway</html>\n\n"]
        for i, event in enumerate(events):
            if i == stall:
                await self._hang(request)
                return response
            if i == drop:
                assert request.transport is not None
                request.transport.close()
                return response
            if i and pause:
                await asyncio.sleep(pause)
            await response.write(event)
        await response.write_eof()
        return response

    def _error_event(self, fault: dict[str, str], message: str) -> bytes:
        """The shape's in-stream error, as each API sends it after its HTTP 200."""
        data: dict[str, object]
        if self.shape == "anthropic":
            data = {"type": "error", "error": {"type": "overloaded_error", "message": message}}
            return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"
        if self.shape == "responses":
            if fault.get("error_event") == "error":
                data = {"type": "error", "code": "server_error", "message": message, "param": None}
                return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"
            data = {
                "type": "response.failed",
                "response": {
                    "id": "resp_fake",
                    "object": "response",
                    "status": "failed",
                    "error": {"code": "server_error", "message": message},
                    "output": [],
                },
            }
            return b"event: response.failed\ndata: " + orjson.dumps(data) + b"\n\n"
        data = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    async def _hang(self, request: web.Request) -> None:
        """Keep the connection open, sending nothing, until the peer leaves or the server stops."""
        while not self._stopping.is_set():
            if request.transport is None or request.transport.is_closing():
                self._record_close(request)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.1)
        if request.transport is not None:
            request.transport.close()

    # --- vLLM's /tokenize --------------------------------------------------------------------

    async def _tokenize(self, request: web.Request) -> web.Response:
        """vLLM's tokenizer: `{"model", "prompt"}` or `{"model", "messages", "tools"?}` ->
        `{"count", "max_model_len", "tokens"}`. The count is the prompt's words plus 3 per
        message and 10 per tool (a stand-in for a chat template), never the gateway's estimate.
        The faults apply (`status=500` and the rest, in the model id or the server's)."""
        body, _, early = await self._prelude(request)
        if early is not None:
            return early
        if isinstance(body.get("prompt"), str):
            count = _words(body["prompt"])
        elif isinstance(body.get("messages"), list):
            messages = body["messages"]
            count = sum(_words(_text(m.get("content"))) + 3 for m in messages)
            count += 10 * len(body.get("tools") or [])
        else:
            return self._bad_request("prompt or messages is required")
        out = {"count": count, "max_model_len": 4096, "tokens": list(range(count))}
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    # --- OpenAI Chat Completions -------------------------------------------------------------

    def _chat_usage(self, body: dict[str, Any], text: str, tool: bool) -> dict[str, Any]:
        prompt = _words(body.get("messages"))
        completion = _words(text) + (5 if tool else 0)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.shape in _WITH_CACHE_DETAILS or (self.shape == "vllm" and self.cached):
            usage["prompt_tokens_details"] = {"cached_tokens": min(self.cached, prompt)}
        if self.shape in _WITH_CACHE_DETAILS:
            usage["prompt_tokens_details"]["audio_tokens"] = 0
            usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
        return usage

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, fault, early = await self._prelude(request)
        if early is not None:
            return early
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._bad_request("messages: a non-empty list is required")
        answer = _answer(body["messages"], body.get("tools"), body.get("tool_choice"))
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        text, finish = _limit(answer.get("text"), limit)
        if answer.get("tool"):
            finish = "tool_calls"
        usage = self._chat_usage(body, text, bool(answer.get("tool")))
        model = "tgi" if self.shape == "tgi" else str(body.get("model"))
        tool_calls = None
        if answer.get("tool"):
            tool_calls = [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": answer["tool"],
                        "arguments": orjson.dumps(answer["arguments"]).decode(),
                    },
                }
            ]
        base: dict[str, Any] = {
            "id": _CHAT_ID.get(self.shape, "chatcmpl-fake"),
            "object": "chat.completion",
            "created": 1,
            "model": model,
        }
        if self.shape in _FINGERPRINT:
            base["system_fingerprint"] = _FINGERPRINT[self.shape]
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            out = {
                **base,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                ],
                "usage": usage,
            }
            return web.Response(body=orjson.dumps(out), content_type="application/json")
        base["object"] = "chat.completion.chunk"
        if self.shape == "tgi":
            base["usage"] = None
        return await self._stream(
            request,
            fault,
            self._chat_events(
                body, base=base, text=text, finish=finish, tool_calls=tool_calls, usage=usage
            ),
        )

    def _chat_events(
        self,
        body: dict[str, Any],
        *,
        base: dict[str, Any],
        text: str,
        finish: str,
        tool_calls: list[dict[str, Any]] | None,
        usage: dict[str, Any],
    ) -> list[bytes]:
        ollama = self.shape == "ollama"

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            if ollama:  # Ollama repeats the role in every delta
                delta = {"role": "assistant", "content": "", **delta}
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return b"data: " + orjson.dumps({**base, "choices": [choice], **extra}) + b"\n\n"

        events = [] if ollama else [chunk({"role": "assistant", "content": ""})]
        for i, word in enumerate(text.split(" ") if text else []):
            events.append(chunk({"content": word if i == 0 else " " + word}))
        if tool_calls:
            call = tool_calls[0]
            args = call["function"]["arguments"]
            if ollama:  # the whole call in one chunk
                events.append(chunk({"tool_calls": [{"index": 0, **call}]}))
            else:
                head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
                events.append(chunk({"tool_calls": [{"index": 0, **head}]}))
                for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                    events.append(
                        chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                    )
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if ollama:
            events.append(chunk({}, finish, usage=usage))
        else:
            events.append(chunk({}, finish))
            if wants_usage:
                tail = {**base, "choices": [], "usage": usage}
                events.append(b"data: " + orjson.dumps(tail) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return events

    # --- OpenAI Responses --------------------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, fault, early = await self._prelude(request)
        if early is not None:
            return early
        if body.get("input") in (None, "", []):
            return self._bad_request("Missing required parameter: 'input'.")
        messages = _responses_as_messages(body)
        answer = _answer(messages, body.get("tools"), body.get("tool_choice"))
        text, finish = _limit(answer.get("text"), body.get("max_output_tokens"))
        prompt = _words(messages)
        output_tokens = _words(text) + (5 if answer.get("tool") else 0)
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": min(self.cached, prompt)},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + output_tokens,
        }
        output: list[dict[str, Any]] = []
        if text:
            output.append(
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            )
        if answer.get("tool"):
            output.append(
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": answer["tool"],
                    "status": "completed",
                    "arguments": orjson.dumps(answer["arguments"]).decode(),
                }
            )
        status = "incomplete" if finish == "length" else "completed"
        response = {
            "id": "resp_fake",
            "object": "response",
            "created_at": 1,
            "model": body.get("model"),
            "status": status,
            "output": output,
            "usage": usage,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
        }
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(response), content_type="application/json")
        return await self._stream(request, fault, _responses_events(response))

    # --- Anthropic Messages ------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, fault, early = await self._prelude(request)
        if early is not None:
            return early
        if "max_tokens" not in body:
            return self._bad_request("max_tokens: Field required")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._bad_request("messages: at least one message is required")
        messages = _anthropic_as_messages(body)
        tools = [{"function": {"name": t.get("name")}} for t in body.get("tools") or []]
        choice = body.get("tool_choice") or {}
        forced: Any = {"any": "required", "tool": {"name": choice.get("name")}}
        answer = _answer(messages, tools or None, forced.get(choice.get("type")))
        text, finish = _limit(answer.get("text"), body.get("max_tokens"))
        stop = {"stop": "end_turn", "length": "max_tokens"}[finish]
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        if answer.get("tool"):
            content.append(
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": answer["tool"],
                    "input": answer["arguments"],
                }
            )
            stop = "tool_use"
        prompt = _words(messages)
        cached = min(self.cached, prompt)
        write = min(self.cache_write, prompt - cached)
        usage = {
            "input_tokens": prompt - cached - write,
            "output_tokens": _words(text) + (5 if answer.get("tool") else 0),
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": write,
        }
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(message), content_type="application/json")
        return await self._stream(request, fault, _messages_events(message))


# --- event sequences -----------------------------------------------------------------------------


def _responses_events(response: dict[str, Any]) -> list[bytes]:
    seq = 0

    def event(data: dict[str, Any]) -> bytes:
        nonlocal seq
        data["sequence_number"] = seq
        seq += 1
        return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    start = {**response, "status": "in_progress", "output": [], "usage": None}
    events = [
        event({"type": "response.created", "response": start}),
        event({"type": "response.in_progress", "response": start}),
    ]
    for index, item in enumerate(response["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                event(
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": {**item, "content": [], "status": "in_progress"},
                    }
                )
            )
            events.append(
                event(
                    {
                        "type": "response.content_part.added",
                        **where,
                        "content_index": 0,
                        "part": part,
                    }
                )
            )
            for i, word in enumerate(text.split(" ")):
                events.append(
                    event(
                        {
                            "type": "response.output_text.delta",
                            **where,
                            "content_index": 0,
                            "delta": word if i == 0 else " " + word,
                            "logprobs": [],
                        }
                    )
                )
            events.append(
                event(
                    {
                        "type": "response.output_text.done",
                        **where,
                        "content_index": 0,
                        "text": text,
                        "logprobs": [],
                    }
                )
            )
            events.append(
                event(
                    {
                        "type": "response.content_part.done",
                        **where,
                        "content_index": 0,
                        "part": {**part, "text": text},
                    }
                )
            )
        else:
            events.append(
                event(
                    {
                        "type": "response.output_item.added",
                        "output_index": index,
                        "item": {**item, "arguments": "", "status": "in_progress"},
                    }
                )
            )
            events.append(
                event(
                    {
                        "type": "response.function_call_arguments.delta",
                        **where,
                        "delta": item["arguments"],
                    }
                )
            )
            events.append(
                event(
                    {
                        "type": "response.function_call_arguments.done",
                        **where,
                        "arguments": item["arguments"],
                        "name": item["name"],
                    }
                )
            )
        events.append(
            event({"type": "response.output_item.done", "output_index": index, "item": item})
        )
    kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
    events.append(event({"type": kind, "response": response}))
    return events


def _messages_events(message: dict[str, Any]) -> list[bytes]:
    def event(data: dict[str, Any]) -> bytes:
        return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [event({"type": "message_start", "message": start}), event({"type": "ping"})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(
                event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
            )
            for i, word in enumerate(block["text"].split(" ")):
                delta = {"type": "text_delta", "text": word if i == 0 else " " + word}
                events.append(
                    event({"type": "content_block_delta", "index": index, "delta": delta})
                )
        else:
            events.append(
                event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {**block, "input": {}},
                    }
                )
            )
            args = orjson.dumps(block["input"]).decode()
            for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": part}
                events.append(
                    event({"type": "content_block_delta", "index": index, "delta": delta})
                )
        events.append(event({"type": "content_block_stop", "index": index}))
    events.append(
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            }
        )
    )
    events.append(event({"type": "message_stop"}))
    return events


# --- deterministic answers ---------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text")
        )
    return ""


def _words(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.split())
    return len(orjson.dumps(value).split(b" ")) + len(orjson.dumps(value)) // 20


def _answer(messages: list[Any], tools: Any, tool_choice: Any) -> dict[str, Any]:
    last = messages[-1] if messages else {}
    if isinstance(last, dict) and last.get("role") == "tool":
        return {"text": f"Tool said: {_text(last.get('content'))}"}
    said = _text(last.get("content")) if isinstance(last, dict) else ""
    forced = tool_choice == "required" or isinstance(tool_choice, dict)
    if tools and ("weather" in said.lower() or forced):
        first: dict[str, Any] = tools[0]
        name = first.get("function", first).get("name") or "get_weather"
        if isinstance(tool_choice, dict):  # a named tool: Chat {"function": {"name"}} or {"name"}
            name = tool_choice.get("function", tool_choice).get("name") or name
        return {"tool": name, "arguments": {"city": "Paris"}}
    return {"text": f"You said: {said}"}


def _limit(text: str | None, limit: Any) -> tuple[str, str]:
    if not text:
        return "", "stop"
    words = text.split(" ")
    if isinstance(limit, int) and len(words) > limit:
        return " ".join(words[:limit]), "length"
    return text, "stop"


def _responses_as_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("input")
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[dict[str, Any]] = []
    for item in items or []:
        if item.get("type") == "function_call_output":
            out.append({"role": "tool", "content": item.get("output", "")})
        elif item.get("type") == "function_call":
            out.append({"role": "assistant", "content": ""})
        else:
            out.append({"role": item.get("role"), "content": item.get("content")})
    return out


def _anthropic_as_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list) and any(b.get("type") == "tool_result" for b in content):
            result = next(b for b in content if b.get("type") == "tool_result")
            out.append({"role": "tool", "content": _text(result.get("content"))})
        else:
            out.append({"role": message.get("role"), "content": content})
    return out
