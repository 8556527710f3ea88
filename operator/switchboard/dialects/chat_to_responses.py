"""Client: OpenAI Chat Completions. Upstream: OpenAI Responses."""

from __future__ import annotations

from typing import Any

from switchboard.dialects import chat_writer, common, stream_readers
from switchboard.dialects.errors import MalformedPayload, UnsupportedFeature
from switchboard.dialects.types import Ctx, Json, Usage


def translate_request(body: Json, ctx: Ctx) -> Json:
    if (body.get("n") or 1) != 1:
        raise UnsupportedFeature("n > 1 is not supported by an OpenAI Responses upstream", "n")
    ctx.stop = common.stop_list(body.get("stop"), "stop")
    instructions, items = _input(common.require_list(body, "messages"))
    out: Json = {"model": ctx.upstream_model, "input": items, "store": False}
    if instructions:
        out["instructions"] = instructions
    requested = body.get("max_completion_tokens", body.get("max_tokens"))
    limit = common.output_limit(ctx.max_tokens, requested)
    if limit is not None:
        out["max_output_tokens"] = limit
    common.copy_set(body, out, ("temperature", "top_p", "parallel_tool_calls", "user"))
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(t) for t in tools]
        choice = body.get("tool_choice")
        if isinstance(choice, str):
            out["tool_choice"] = choice
        elif isinstance(choice, dict):
            out["tool_choice"] = {
                "type": "function",
                "name": (choice.get("function") or {}).get("name"),
            }
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema") or {}
        out["text"] = {"format": {"type": "json_schema", **schema}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        out["text"] = {"format": {"type": "json_object"}}
    if body.get("reasoning_effort"):
        out["reasoning"] = {"effort": body["reasoning_effort"]}
    if ctx.stream:
        out["stream"] = True
    return out


def _tool(tool: Any) -> Json:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict):
        raise UnsupportedFeature("only function tools can be sent to this upstream", "tools")
    out: Json = {"type": "function", "name": function.get("name")}
    if function.get("description"):
        out["description"] = function["description"]
    out["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
    out["strict"] = bool(function.get("strict", False))
    return out


def _parts(content: Any, role: str) -> str | list[Json]:
    if isinstance(content, str):
        return content
    if role == "assistant":
        return common.text_of(content)
    text_type = "output_text" if role == "assistant" else "input_text"
    parts: list[Json] = []
    for part in content or ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": text_type, "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            detail = image.get("detail", "auto") if isinstance(image, dict) else "auto"
            parts.append({"type": "input_image", "image_url": url, "detail": detail})
        elif kind is not None:
            raise UnsupportedFeature(f"{kind} content is not supported by this upstream", "content")
    return parts


def _input(messages: list[Any]) -> tuple[str, list[Json]]:
    instructions: list[str] = []
    items: list[Json] = []
    for message in messages:
        if not isinstance(message, dict):
            raise MalformedPayload("each message must be an object", "messages")
        role = message.get("role")
        if role in ("system", "developer"):
            instructions.append(common.text_of(message.get("content")))
        elif role in ("user", "assistant"):
            content = message.get("content")
            if content:
                items.append({"role": role, "content": _parts(content, role)})
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": function.get("arguments") or "{}",
                    }
                )
        elif role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.get("tool_call_id"),
                    "output": common.text_of(message.get("content")),
                }
            )
        else:
            raise MalformedPayload(f"unknown message role {role!r}", "messages")
    return "\n\n".join(i for i in instructions if i), items


def translate_response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
    usage = common.usage_from_responses(body.get("usage"))
    text: list[str] = []
    refusal: list[str] = []
    calls: list[Json] = []
    for item in body.get("output") or ():
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(part.get("text", ""))
                elif part.get("type") == "refusal":
                    refusal.append(part.get("refusal", ""))
        elif item.get("type") == "function_call":
            calls.append(
                common.chat_tool_call(item.get("call_id"), item.get("name"), item.get("arguments"))
            )
    answer = "".join(text)
    matched: str | None = None
    if ctx.stop:  # the gateway's stop sequences: the answer ends at the first match
        answer, matched = common.cut_at_stop(answer, ctx.stop)
        if matched is not None:
            calls = []  # produced after the stop
    message: Json = {
        "role": "assistant",
        "content": answer or None,
        "refusal": "".join(refusal) or None,
    }
    if calls:
        message["tool_calls"] = calls
    stop = common.responses_stop(body.get("status"), body.get("incomplete_details"), bool(calls))
    finish = "stop" if matched is not None else common.STOP_TO_FINISH[stop]
    out = {
        "id": f"chatcmpl-{body.get('id') or ctx.request_id}",
        "object": "chat.completion",
        "created": body.get("created_at") or ctx.created,
        "model": body.get("model") or ctx.response_model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": common.chat_usage(usage),
    }
    return out, usage


class StreamTranslator(stream_readers.ResponsesReader):
    """Upstream Responses events -> Chat chunks. One per request."""

    __slots__ = ()

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(chat_writer.ChatWriter(ctx), ctx.stop)
