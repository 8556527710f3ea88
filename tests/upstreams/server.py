"""Fake model servers that speak the real wire shapes, with fault injection.

Shapes: `vllm` (also `openai`, `lmstudio`, `litellm`), `tgi`, `ollama`, `llamacpp` (OpenAI Chat
Completions with each server's quirks and error phrasing), `responses` (OpenAI Responses) and
`anthropic` (Anthropic Messages). Each is a real aiohttp server on a loopback port.

Answers are deterministic: "You said: <last user text>", or a tool call `get_weather` when tools
are offered and the last user text mentions weather, or "Tool said: <result>" after a tool result.
Usage: input = words of the prompt, output = words of the answer; `cached` of the input is
reported as cache reads (and, for Anthropic, `cache_write` as cache creation).

Faults, set for the whole server (`Upstream.fault`, `POST /_fault`) or per request in the model
id (`mymodel@fault=500`), since a gateway never forwards client headers:
    status=500|503|429     answer that status (429 with retry-after: 1)
    context_length         the shape's own context-length error
    delay=SECONDS          wait before the first byte (headers included)
    stall_after=N          stream N chunks, then hang with the connection open
    drop_after=N           stream N chunks, then close the connection
    chunk_delay=SECONDS    pause between streamed chunks
Every request is recorded (`Upstream.requests`, `GET /_requests`).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

OPENAI_SHAPES = ("vllm", "openai", "lmstudio", "litellm", "tgi", "ollama", "llamacpp")
SHAPES = (*OPENAI_SHAPES, "responses", "anthropic")

CONTEXT_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
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
                "message": "input length exceeds the maximum context length",
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
                "message": "Your input exceeds the context window of this model.",
                "type": "invalid_request_error",
                "param": "input",
                "code": "context_length_exceeded",
            }
        },
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_fault(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out[key] = value
    return out


@dataclass
class Upstream:
    shape: str = "vllm"
    model: str = "fake-model"
    cached: int = 0
    cache_write: int = 0
    fault: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """OpenAI-style base (ends in /v1); for `anthropic` the root works as well."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> Upstream:
        app = web.Application()
        if self.shape in OPENAI_SHAPES:
            app.router.add_post("/v1/chat/completions", self._chat)
        elif self.shape == "responses":
            app.router.add_post("/v1/responses", self._responses)
        elif self.shape == "anthropic":
            app.router.add_post("/v1/messages", self._messages)
        else:
            raise ValueError(f"unknown shape {self.shape!r}; one of {', '.join(SHAPES)}")
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/_fault", self._set_fault)
        app.router.add_get("/_requests", self._get_requests)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self.port = port or free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- admin -------------------------------------------------------------------------------

    async def _set_fault(self, request: web.Request) -> web.Response:
        self.fault = {str(k): str(v) for k, v in (await request.json()).items()}
        return web.json_response({"fault": self.fault})

    async def _get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model"}]}
        )

    # --- shared ------------------------------------------------------------------------------

    async def _prelude(self, request: web.Request) -> tuple[dict[str, Any], dict[str, str]]:
        body = await request.json()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        fault = dict(self.fault)
        model = str(body.get("model", ""))
        if "@" in model:
            fault.update(parse_fault(model.split("@", 1)[1]))
        return body, fault

    def _fault_response(self, fault: dict[str, str]) -> web.Response | None:
        status = fault.get("status")
        if status:
            code = int(status)
            headers = {"retry-after": "1"} if code == 429 else {}
            if self.shape == "anthropic":
                kind = "rate_limit_error" if code == 429 else "api_error"
                body: dict[str, Any] = {
                    "type": "error",
                    "error": {"type": kind, "message": "injected"},
                }
            elif self.shape in ("tgi",):
                body = {"error": "injected failure", "error_type": "overloaded"}
            else:
                body = {
                    "error": {"message": f"injected {code}", "type": "server_error", "code": code}
                }
            return web.json_response(body, status=code, headers=headers)
        if "context_length" in fault:
            code, body = CONTEXT_ERRORS.get(self.shape, CONTEXT_ERRORS["vllm"])
            return web.json_response(body, status=code)
        return None

    async def _stream(
        self, request: web.Request, fault: dict[str, str], events: list[bytes]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        stall = int(fault.get("stall_after", "-1"))
        drop = int(fault.get("drop_after", "-1"))
        pause = float(fault.get("chunk_delay", "0"))
        for i, event in enumerate(events):
            if i == stall:
                await asyncio.sleep(3600)
            if i == drop:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(event)
            await asyncio.sleep(pause)
        await response.write_eof()
        return response

    # --- OpenAI Chat Completions -------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._prelude(request)
        if "delay" in fault:
            await asyncio.sleep(float(fault["delay"]))
        failure = self._fault_response(fault)
        if failure is not None:
            return failure
        answer = _answer(body.get("messages") or [], body.get("tools"), body.get("tool_choice"))
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        text, finish = _limit(answer.get("text"), limit)
        if answer.get("tool"):
            finish = "tool_calls"
        prompt = _words(body.get("messages"))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": _words(text) + (5 if answer.get("tool") else 0),
            "total_tokens": 0,
            "prompt_tokens_details": {"cached_tokens": min(self.cached, prompt)},
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
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
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            out: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                ],
                "usage": usage,
            }
            if self.shape == "tgi":
                out["system_fingerprint"] = "3.0.0-native"
            return web.json_response(out)
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            data = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
                ],
                **extra,
            }
            return b"data: " + orjson.dumps(data) + b"\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        for word in (text or "").split(" ") if text else []:
            events.append(chunk({"content": word if len(events) == 1 else " " + word}))
        if tool_calls:
            call = tool_calls[0]
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            args = call["function"]["arguments"]
            for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                events.append(
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                )
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if self.shape == "ollama":
            events.append(chunk({}, finish, usage=usage))
        else:
            events.append(chunk({}, finish))
            if wants_usage:
                events.append(
                    b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"
                )
        events.append(b"data: [DONE]\n\n")
        return await self._stream(request, fault, events)

    # --- OpenAI Responses ------------------------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._prelude(request)
        if "delay" in fault:
            await asyncio.sleep(float(fault["delay"]))
        failure = self._fault_response(fault)
        if failure is not None:
            return failure
        messages = _responses_as_messages(body)
        answer = _answer(messages, body.get("tools"), body.get("tool_choice"))
        text, finish = _limit(answer.get("text"), body.get("max_output_tokens"))
        prompt = _words(messages)
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": min(self.cached, prompt)},
            "output_tokens": _words(text) + (5 if answer.get("tool") else 0),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
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
            return web.json_response(response)
        seq = 0

        def event(data: dict[str, Any]) -> bytes:
            nonlocal seq
            data["sequence_number"] = seq
            seq += 1
            return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        start = {**response, "status": "in_progress", "output": [], "usage": None}
        events = [
            event({"type": "response.created", "response": start}),
            event({"type": "response.in_progress", "response": start}),
        ]
        for index, item in enumerate(output):
            if item["type"] == "message":
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
                            "item_id": "msg_1",
                            "output_index": index,
                            "content_index": 0,
                            "part": {"type": "output_text", "text": "", "annotations": []},
                        }
                    )
                )
                for i, word in enumerate(item["content"][0]["text"].split(" ")):
                    events.append(
                        event(
                            {
                                "type": "response.output_text.delta",
                                "item_id": "msg_1",
                                "output_index": index,
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
                            "item_id": "msg_1",
                            "output_index": index,
                            "content_index": 0,
                            "text": item["content"][0]["text"],
                            "logprobs": [],
                        }
                    )
                )
                events.append(
                    event(
                        {"type": "response.output_item.done", "output_index": index, "item": item}
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
                            "item_id": "fc_1",
                            "output_index": index,
                            "delta": item["arguments"],
                        }
                    )
                )
                events.append(
                    event(
                        {
                            "type": "response.function_call_arguments.done",
                            "item_id": "fc_1",
                            "output_index": index,
                            "arguments": item["arguments"],
                            "name": item["name"],
                        }
                    )
                )
                events.append(
                    event(
                        {"type": "response.output_item.done", "output_index": index, "item": item}
                    )
                )
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(event({"type": kind, "response": response}))
        return await self._stream(request, fault, events)

    # --- Anthropic Messages ------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, fault = await self._prelude(request)
        if "delay" in fault:
            await asyncio.sleep(float(fault["delay"]))
        if "max_tokens" not in body:
            return web.json_response(
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "max_tokens: Field required",
                    },
                },
                status=400,
            )
        failure = self._fault_response(fault)
        if failure is not None:
            return failure
        messages = _anthropic_as_messages(body)
        tools = [{"function": {"name": t.get("name")}} for t in body.get("tools") or []]
        forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
        answer = _answer(messages, tools or None, "required" if forced else None)
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
            return web.json_response(message)

        def event(name: str, data: dict[str, Any]) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events = [
            event("message_start", {"type": "message_start", "message": start}),
            event("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(content):
            if block["type"] == "text":
                events.append(
                    event(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": index,
                            "content_block": {"type": "text", "text": ""},
                        },
                    )
                )
                for i, word in enumerate(block["text"].split(" ")):
                    events.append(
                        event(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {
                                    "type": "text_delta",
                                    "text": word if i == 0 else " " + word,
                                },
                            },
                        )
                    )
            else:
                events.append(
                    event(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": index,
                            "content_block": {**block, "input": {}},
                        },
                    )
                )
                args = orjson.dumps(block["input"]).decode()
                events.append(
                    event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": args},
                        },
                    )
                )
            events.append(
                event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
        events.append(
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
        )
        events.append(event("message_stop", {"type": "message_stop"}))
        return await self._stream(request, fault, events)


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
        name = tools[0].get("function", tools[0]).get("name") or "get_weather"
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
