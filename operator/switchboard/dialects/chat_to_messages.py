"""Client: OpenAI Chat Completions. Upstream: Anthropic Messages."""

from __future__ import annotations

from typing import Any

from switchboard.dialects import chat_writer, common, stream_readers
from switchboard.dialects.errors import MalformedPayload, UnsupportedFeature
from switchboard.dialects.types import Ctx, Json, Usage


def translate_request(body: Json, ctx: Ctx) -> Json:
    if (body.get("n") or 1) != 1:
        raise UnsupportedFeature("n > 1 is not supported by an Anthropic Messages upstream", "n")
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        raise common.no_json_object_on_messages("response_format")
    system, messages = _messages(common.require_list(body, "messages"))
    requested = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = common.messages_max_tokens(ctx.max_tokens, requested)
    out: Json = {"model": ctx.upstream_model, "messages": messages, "max_tokens": max_tokens}
    if system:
        out["system"] = system
    common.messages_sampling(body, out, body.get("reasoning_effort"))
    if kind == "json_schema" and isinstance(fmt, dict):
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        out["output_config"] = common.messages_output_format(schema, "response_format")
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(t) for t in tools]
        choice = body.get("tool_choice")
        name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        common.messages_tool_choice(out, choice, name, body.get("parallel_tool_calls"))
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if ctx.stream:
        out["stream"] = True
    return out


def _tool(tool: Any) -> Json:
    function = tool.get("function") if isinstance(tool, dict) else None
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise UnsupportedFeature("only function tools can be sent to this upstream", "tools")
    return common.messages_tool(
        function.get("name"), function.get("description"), function.get("parameters")
    )


def _content(content: Any) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[Json] = []
    for part in content or ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append({"type": "image", "source": common.data_url_to_source(str(url))})
        elif kind in ("input_audio", "file"):
            raise UnsupportedFeature(f"{kind} content is not supported by this upstream", "content")
    return blocks


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") == "image_url" for p in content
    )


def _messages(items: list[Any]) -> tuple[str, list[Json]]:
    system: list[str] = []
    out: list[Json] = []

    for message in items:
        if not isinstance(message, dict):
            raise MalformedPayload("each message must be an object", "messages")
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(common.text_of(message.get("content")))
        elif role == "user":
            common.append_turn(out, "user", _content(message.get("content")))
        elif role == "assistant":
            blocks = _content(message.get("content"))
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": common.messages_tool_id(call.get("id")),
                        "name": function.get("name"),
                        "input": common.loads_arguments(function.get("arguments"), "arguments"),
                    }
                )
            common.append_turn(out, "assistant", blocks)
        elif role == "tool":
            content = message.get("content")
            result = {
                "type": "tool_result",
                "tool_use_id": common.messages_tool_id(message.get("tool_call_id")),
                # text, or text and image blocks when the result carries images
                "content": _content(content) if _has_image(content) else common.text_of(content),
            }
            common.append_turn(out, "user", [result])
        else:
            raise MalformedPayload(f"unknown message role {role!r}", "messages")
    return "\n\n".join(s for s in system if s), out


def translate_response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
    usage = common.usage_from_messages(body.get("usage"))
    text: list[str] = []
    calls: list[Json] = []
    for block in body.get("content") or ():
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            arguments = common.dumps(block.get("input") or {})
            calls.append(common.chat_tool_call(block.get("id"), block.get("name"), arguments))
    message: Json = {"role": "assistant", "content": "".join(text) or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    finish = common.STOP_TO_FINISH.get(body.get("stop_reason") or "end_turn", "stop")
    out = {
        "id": f"chatcmpl-{body.get('id') or ctx.request_id}",
        "object": "chat.completion",
        "created": ctx.created,
        "model": body.get("model") or ctx.response_model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": common.chat_usage(usage),
    }
    return out, usage


class StreamTranslator(stream_readers.MessagesReader):
    """Upstream Anthropic Messages events -> Chat chunks. One per request."""

    __slots__ = ()

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(chat_writer.ChatWriter(ctx))
