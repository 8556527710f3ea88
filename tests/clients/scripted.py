"""A scripted model server for the real-clients tier: a two-turn tool loop in any API.

It speaks OpenAI Chat Completions (`/v1/chat/completions`), OpenAI Responses (`/v1/responses`)
and Anthropic Messages (`/v1/messages`), streaming and not. The script:

1. When the last turn of the request is not a tool result and the request offers tools, answer
   with one call of the client's own tool, picked from the request's tool list:
   - a write-file tool (parameters `content` and `file_path` or `path`: Claude Code's `Write`,
     pi's `write`) writes `CONTENT` to the file named in the prompt;
   - else a shell tool (`Bash`, `bash`, `shell`, `exec_command`, `shell_command`: a `command`
     or `cmd` parameter, a string or an argv list) runs `printf` into that file;
   - else the first function tool, every required string parameter set to `WORD` (the tier's
     library clients define one such tool and check that it was called with `WORD`).
   The file is named in the prompt as `@file:PATH@`.
2. When the last turn is a tool result, answer with the final text `FINAL` (and the result's
   first line, so a test can see that the result came back).
3. With no tools offered but a JSON schema asked for (Chat `response_format`, Responses
   `text.format`, Messages `output_config.format` or `output_format`), answer a JSON object
   with every required string property set to `WORD`.
4. With neither (a client's side request: titles, quota checks), answer `FINAL`.

Every request is recorded with its path, headers and body (`GET /_requests`, cleared by
`DELETE /_requests`). `python -m tests.clients.scripted --port N` runs one.
"""

from __future__ import annotations

import argparse
import itertools
import re
from typing import Any

import orjson
from aiohttp import web

from tests.upstreams.server import _messages_events, _responses_events

CONTENT = "written-by-the-client-tool"
WORD = "switchboard"
FINAL = "SWITCHBOARD-FINAL-ANSWER"
_FILE = re.compile(r"@file:([^@\s\"\\]+)@")
_SHELL = ("bash", "shell", "exec_command", "shell_command", "local_shell")
_ids = itertools.count(1)
Json = dict[str, Any]


# --- what the request offers and where it stands ---------------------------------------------


def tools_of(api: str, body: Json) -> list[tuple[str, Json]]:
    """(name, JSON schema of its parameters) of every function tool, namespaces opened."""
    out: list[tuple[str, Json]] = []

    def add(tools: Any) -> None:
        for tool in tools if isinstance(tools, list) else []:
            if not isinstance(tool, dict):
                continue
            if isinstance(tool.get("tools"), list):  # a Responses namespace
                add(tool["tools"])
                continue
            spec = tool.get("function", tool) if api == "chat" else tool
            name = spec.get("name")
            schema = spec.get("input_schema" if api == "messages" else "parameters")
            kind = tool.get("type", "function")
            plain = kind in ("function", "custom") or (api == "messages" and "input_schema" in tool)
            if isinstance(name, str) and plain:
                out.append((name, schema if isinstance(schema, dict) else {}))

    add(body.get("tools"))
    return out


def tool_result(api: str, body: Json) -> str | None:
    """The text of the tool result that ends the request, or None when it ends otherwise."""
    if api == "chat":
        last = (body.get("messages") or [{}])[-1]
        return _text(last.get("content")) if last.get("role") == "tool" else None
    if api == "responses":
        items = body.get("input")
        if not isinstance(items, list) or not items:
            return None
        last = items[-1]
        if last.get("type") in ("function_call_output", "custom_tool_call_output"):
            return _text(last.get("output"))
        return None
    last = (body.get("messages") or [{}])[-1]
    content = last.get("content")
    if last.get("role") != "user" or not isinstance(content, list):
        return None
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            return _text(block.get("content"))
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(p.get("text", "")) for p in value if isinstance(p, dict))
    return ""


def plan(api: str, body: Json) -> Json:
    """{"text": ...} or {"tool": name, "arguments": {...}}: the script's next move."""
    result = tool_result(api, body)
    if result is not None:
        first = result.strip().splitlines()[0] if result.strip() else ""
        return {"text": f"{FINAL} (tool result: {first[:80]})"}
    tools = tools_of(api, body)
    if not tools:
        schema = json_schema(body)
        if schema is None:
            return {"text": FINAL}
        return {"text": orjson.dumps(_fill(schema)).decode()}
    found = _FILE.search(orjson.dumps(body).decode())
    path = found.group(1) if found else "switchboard-client-tier.txt"
    for name, schema in tools:
        props = schema.get("properties") or {}
        key = next((k for k in ("file_path", "path") if k in props), None)
        if "content" in props and key:
            return {"tool": name, "arguments": {key: path, "content": CONTENT}}
    for name, schema in tools:
        props = schema.get("properties") or {}
        key = next((k for k in ("command", "cmd") if k in props), None)
        if name.lower() in _SHELL and key:
            line = f"printf '%s' '{CONTENT}' > '{path}'"
            argv = props[key].get("type") == "array"
            return {"tool": name, "arguments": {key: ["bash", "-lc", line] if argv else line}}
    name, schema = tools[0]
    return {"tool": name, "arguments": _fill(schema)}


def json_schema(body: Json) -> Json | None:
    """The JSON schema a structured-output request asks the answer to follow, if any."""
    fmt = (
        body.get("response_format")
        or (body.get("text") or {}).get("format")
        or (body.get("output_config") or {}).get("format")
        or body.get("output_format")
    )
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else {}


def _fill(schema: Json) -> Json:
    required = schema.get("required") or list((schema.get("properties") or {}).keys())
    return dict.fromkeys(required, WORD)


# --- answers in each API -----------------------------------------------------------------------


def _chat(body: Json, move: Json) -> tuple[Json, list[bytes]]:
    call_id = f"call_{next(_ids)}"
    base = {"id": f"chatcmpl-{call_id}", "created": 1, "model": body.get("model")}
    message: Json = {"role": "assistant", "content": move.get("text")}
    finish = "stop"
    if "tool" in move:
        args = orjson.dumps(move["arguments"]).decode()
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": move["tool"], "arguments": args},
            }
        ]
        finish = "tool_calls"
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    whole = {
        **base,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }

    def chunk(delta: Json, reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        data = {**base, "object": "chat.completion.chunk", "choices": [choice]}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    if move.get("text"):
        words = move["text"].split(" ")
        events += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
    for call in message.get("tool_calls") or []:
        head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        events.append(chunk({"tool_calls": [{"index": 0, **head}]}))
        args = call["function"]["arguments"]
        for part in (args[: len(args) // 2], args[len(args) // 2 :]):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
    events.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        tail = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        events.append(b"data: " + orjson.dumps(tail) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return whole, events


def _responses(body: Json, move: Json) -> tuple[Json, list[bytes]]:
    n = next(_ids)
    output: list[Json] = []
    if move.get("text"):
        output.append(
            {
                "type": "message",
                "id": f"msg_{n}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": move["text"], "annotations": []}],
            }
        )
    if "tool" in move:
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{n}",
                "call_id": f"call_{n}",
                "name": move["tool"],
                "status": "completed",
                "arguments": orjson.dumps(move["arguments"]).decode(),
            }
        )
    response = {
        "id": f"resp_{n}",
        "object": "response",
        "created_at": 1,
        "model": body.get("model"),
        "status": "completed",
        "output": output,
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        },
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
    }
    return response, _responses_events(response)


def _messages(body: Json, move: Json) -> tuple[Json, list[bytes]]:
    n = next(_ids)
    content: list[Json] = []
    if move.get("text"):
        content.append({"type": "text", "text": move["text"]})
    if "tool" in move:
        content.append(
            {
                "type": "tool_use",
                "id": f"toolu_{n}",
                "name": move["tool"],
                "input": move["arguments"],
            }
        )
    message = {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": "tool_use" if "tool" in move else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    }
    return message, _messages_events(message)


_ANSWER = {"chat": _chat, "responses": _responses, "messages": _messages}


# --- the server ----------------------------------------------------------------------------------


def app() -> web.Application:
    requests: list[Json] = []

    def handler(api: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
            move = plan(api, body)
            requests.append(
                {
                    "api": api,
                    "path": request.path,
                    "headers": {str(k).lower(): v for k, v in request.headers.items()},
                    "body": body,
                }
            )
            whole, events = _ANSWER[api](body, move)
            if not body.get("stream"):
                return web.Response(body=orjson.dumps(whole), content_type="application/json")
            out = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await out.prepare(request)
            for event in events:
                await out.write(event)
            await out.write_eof()
            return out

        return handle

    async def listed(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(requests), content_type="application/json")

    async def clear(_: web.Request) -> web.Response:
        requests.clear()
        return web.Response(status=204)

    async def models(_: web.Request) -> web.Response:
        listing = {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
        return web.json_response(listing)

    application = web.Application(client_max_size=64 * 1024 * 1024)
    application.router.add_post("/v1/chat/completions", handler("chat"))
    application.router.add_post("/v1/responses", handler("responses"))
    application.router.add_post("/v1/messages", handler("messages"))
    application.router.add_get("/v1/models", models)
    application.router.add_get("/_requests", listed)
    application.router.add_delete("/_requests", clear)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(app(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
