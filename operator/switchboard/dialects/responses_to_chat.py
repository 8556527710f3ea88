"""Client: OpenAI Responses. Upstream: OpenAI Chat Completions (vLLM, Ollama, TGI, ...).

The gateway is stateless: `previous_response_id` and stored conversations cannot be honoured,
so they are refused; the client sends the whole conversation in `input`.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.dialects import common, sse
from switchboard.dialects.errors import MalformedPayload, UnsupportedFeature
from switchboard.dialects.types import Ctx, Json, Usage


def translate_request(body: Json, ctx: Ctx) -> Json:
    if body.get("previous_response_id") or body.get("conversation"):
        raise UnsupportedFeature(
            "previous_response_id and conversation need server-side state, which this upstream "
            "does not keep; send the whole conversation in input",
            "previous_response_id",
        )
    messages: list[Json] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": str(body["instructions"])})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        _items(items, messages)
    else:
        raise MalformedPayload("input must be a string or a list", "input")
    out: Json = {"model": ctx.upstream_model, "messages": messages}
    if ctx.max_tokens is not None:
        out["max_tokens"] = ctx.max_tokens
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(key) is not None:
            out[key] = body[key]
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(t) for t in tools]
        choice = body.get("tool_choice")
        if isinstance(choice, str):
            out["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") == "function":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
            out["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif fmt.get("type") == "json_object":
            out["response_format"] = {"type": "json_object"}
    if ctx.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _tool(tool: Any) -> Json:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise UnsupportedFeature(
            f"built-in tool {kind!r} is not available on this upstream", "tools"
        )
    function: Json = {"name": tool.get("name")}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _parts(content: Any) -> str | list[Json]:
    if isinstance(content, str):
        return content
    parts: list[Json] = []
    for part in content or ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            if not part.get("image_url"):
                raise UnsupportedFeature("input_image needs image_url (file_id is not supported)")
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "input_file":
            raise UnsupportedFeature("input_file is not supported by this upstream", "input")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _items(items: list[Any], messages: list[Json]) -> None:
    for item in items:
        if not isinstance(item, dict):
            raise MalformedPayload("each input item must be an object", "input")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise MalformedPayload(f"unknown role {role!r}", "input")
            role = "system" if role == "developer" else role
            messages.append({"role": role, "content": _parts(item.get("content"))})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if (
                last is not None
                and last["role"] == "assistant"
                and isinstance(last.get("content"), str | None)
            ):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": output if isinstance(output, str) else common.text_of(output),
                }
            )
        elif kind == "reasoning":
            continue
        else:
            raise UnsupportedFeature(f"input item type {kind!r} is not supported", "input")


def response_object(
    ctx: Ctx, *, response_id: str, model: str, output: list[Json], usage: Usage | None, status: str
) -> Json:
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": ctx.created,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": common.responses_usage(usage) if usage is not None else None,
        "metadata": {},
    }


def translate_response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
    usage = common.usage_from_chat(body.get("usage"))
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    output: list[Json] = []
    if message.get("content") or message.get("refusal"):
        part = (
            {"type": "output_text", "text": message["content"], "annotations": []}
            if message.get("content")
            else {"type": "refusal", "refusal": message["refusal"]}
        )
        output.append(
            {
                "type": "message",
                "id": f"msg_{ctx.request_id}",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{ctx.request_id}_{i}",
                "call_id": call.get("id") or f"call_{ctx.request_id}_{i}",
                "name": function.get("name", ""),
                "arguments": function.get("arguments") or "{}",
                "status": "completed",
            }
        )
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    model = body.get("model") or ctx.response_model
    response = response_object(
        ctx,
        response_id=f"resp_{ctx.request_id}",
        model=model,
        output=output,
        usage=usage,
        status=status,
    )
    return response, usage


class StreamTranslator:
    """Upstream Chat chunks -> Responses events. One per request."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.usage = Usage()
        self._seq = 0
        self._id = f"resp_{ctx.request_id}"
        self._model = ctx.response_model
        self._started = False
        self._finished = False
        self._output: list[Json] = []
        self._text: Json | None = None  # the open message item
        self._calls: dict[int, Json] = {}  # chat tool_call index -> function_call item
        self._status = "completed"

    def _event(self, data: Json) -> bytes:
        data["sequence_number"] = self._seq
        self._seq += 1
        return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _start(self) -> bytes:
        self._started = True
        response = response_object(
            self.ctx,
            response_id=self._id,
            model=self._model,
            output=[],
            usage=None,
            status="in_progress",
        )
        return self._event({"type": "response.created", "response": response}) + self._event(
            {"type": "response.in_progress", "response": response}
        )

    def _open_text(self) -> bytes:
        item = {
            "type": "message",
            "id": f"msg_{self.ctx.request_id}",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        self._text = item
        self._output.append(item)
        index = len(self._output) - 1
        part = {"type": "output_text", "text": "", "annotations": []}
        return self._event(
            {"type": "response.output_item.added", "output_index": index, "item": dict(item)}
        ) + self._event(
            {
                "type": "response.content_part.added",
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
                "part": part,
            }
        )

    def _close_text(self) -> bytes:
        item = self._text
        if item is None:
            return b""
        self._text = None
        index = self._output.index(item)
        text = "".join(item.pop("_chunks", []))
        part = {"type": "output_text", "text": text, "annotations": []}
        item["content"] = [part]
        item["status"] = "completed"
        return (
            self._event(
                {
                    "type": "response.output_text.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                }
            )
            + self._event(
                {
                    "type": "response.content_part.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": part,
                }
            )
            + self._event(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
        )

    def _call_delta(self, call: Json) -> bytes:
        out = b""
        index = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            out += self._close_text()
            item = {
                "type": "function_call",
                "id": f"fc_{self.ctx.request_id}_{index}",
                "call_id": call.get("id") or f"call_{self.ctx.request_id}_{index}",
                "name": function.get("name") or "",
                "arguments": "",
                "status": "in_progress",
            }
            self._calls[index] = item
            self._output.append(item)
            out += self._event(
                {
                    "type": "response.output_item.added",
                    "output_index": len(self._output) - 1,
                    "item": dict(item),
                }
            )
        delta = function.get("arguments")
        if delta:
            item["arguments"] += delta
            out += self._event(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": item["id"],
                    "output_index": self._output.index(item),
                    "delta": delta,
                }
            )
        return out

    def feed(self, event: sse.Event) -> bytes:
        if self._finished:
            return b""
        if event.data == b"[DONE]":
            return self.finish()
        chunk, failure = common.read_chat_chunk(event.data)
        if failure is not None:
            return self.error(failure)
        if chunk is None:
            return b""
        if not self._started:
            self._model = chunk.get("model") or self._model
        out = b"" if self._started else self._start()
        if isinstance(chunk.get("usage"), dict):
            self.usage = common.usage_from_chat(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._text is None:
                    out += self._open_text()
                assert self._text is not None
                self._text.setdefault("_chunks", []).append(text)
                out += self._event(
                    {
                        "type": "response.output_text.delta",
                        "item_id": self._text["id"],
                        "output_index": self._output.index(self._text),
                        "content_index": 0,
                        "delta": text,
                        "logprobs": [],
                    }
                )
            for call in delta.get("tool_calls") or ():
                out += self._call_delta(call)
            if choice.get("finish_reason") == "length":
                self._status = "incomplete"
        return out

    def finish(self) -> bytes:
        if self._finished:
            return b""
        out = b"" if self._started else self._start()
        self._finished = True
        out += self._close_text()
        for item in self._calls.values():
            item["status"] = "completed"
            index = self._output.index(item)
            out += self._event(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "name": item["name"],
                    "arguments": item["arguments"],
                }
            )
            out += self._event(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
        response = response_object(
            self.ctx,
            response_id=self._id,
            model=self._model,
            output=self._output,
            usage=self.usage,
            status=self._status,
        )
        kind = "response.completed" if self._status == "completed" else "response.incomplete"
        return out + self._event({"type": kind, "response": response})

    def error(self, message: str) -> bytes:
        self._finished = True
        return self._event(
            {"type": "error", "code": "upstream_error", "message": message, "param": None}
        )
