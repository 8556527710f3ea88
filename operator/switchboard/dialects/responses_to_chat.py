"""Client: OpenAI Responses. Upstream: OpenAI Chat Completions (vLLM, Ollama, TGI, ...).

The gateway is stateless: `previous_response_id` and stored conversations cannot be honoured,
so they are refused; the client sends the whole conversation in `input`.
"""

from __future__ import annotations

from typing import Any

from switchboard.dialects import common, responses_writer, stream_readers
from switchboard.dialects.errors import MalformedPayload, UnsupportedFeature
from switchboard.dialects.types import Ctx, Json, Usage


def translate_request(body: Json, ctx: Ctx) -> Json:
    common.refuse_stateful(body)
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
    limit = common.output_limit(ctx.max_tokens, body.get("max_output_tokens"))
    if limit is not None:
        out["max_tokens"] = limit
    common.copy_set(body, out, ("temperature", "top_p", "parallel_tool_calls", "user"))
    tools = common.responses_client_tools(body.get("tools") or [], ctx)
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
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        out["reasoning_effort"] = reasoning["effort"]
    if ctx.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _tool(tool: Json) -> Json:
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
            arguments = item.get("arguments", "")
            call = common.chat_tool_call(
                item.get("call_id"), common.flat_call_name(item), arguments
            )
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
        output.append(responses_writer.message_item(ctx, [part]))
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        output.append(
            responses_writer.call_item(
                f"fc_{ctx.request_id}_{i}",
                call.get("id") or f"call_{ctx.request_id}_{i}",
                function.get("name", ""),
                function.get("arguments") or "{}",
                "completed",
                names=ctx.tool_names,
            )
        )
    stop = common.FINISH_TO_STOP.get(choice.get("finish_reason") or "stop", "end_turn")
    return responses_writer.finished_response(ctx, body.get("model"), output, usage, stop), usage


class StreamTranslator(stream_readers.ChatReader):
    """Upstream Chat chunks -> Responses events. One per request."""

    __slots__ = ()

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(responses_writer.ResponsesWriter(ctx))
