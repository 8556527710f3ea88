"""Client: Anthropic Messages. Upstream: OpenAI Chat Completions (vLLM, Ollama, TGI, ...)."""

from __future__ import annotations

from typing import Any

from switchboard.dialects import common, messages_writer, stream_readers
from switchboard.dialects.errors import MalformedPayload
from switchboard.dialects.types import Ctx, Json, Usage


def translate_request(body: Json, ctx: Ctx) -> Json:
    out: Json = {"model": ctx.upstream_model, "messages": _messages(body)}
    limit = common.output_limit(ctx.max_tokens, body.get("max_tokens"))
    if limit is not None:
        out["max_tokens"] = limit
    common.copy_set(body, out, ("temperature", "top_p"))
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    tools = common.messages_client_tools(body.get("tools") or [], ctx)
    if tools:
        out["tools"] = [_tool(*t) for t in tools]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif kind in common.MESSAGES_TO_OPENAI_CHOICE:
            out["tool_choice"] = common.MESSAGES_TO_OPENAI_CHOICE[kind]
        if choice.get("disable_parallel_tool_use") and tools:
            out["parallel_tool_calls"] = False
    effort = common.messages_effort(body, ctx.reasoning)
    if effort:
        out["reasoning_effort"] = effort
    schema = common.messages_output_schema(body)
    if schema is not None:
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema},
        }
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        out["user"] = str(metadata["user_id"])
    if ctx.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _tool(name: Any, description: Any, schema: Any) -> Json:
    function: Json = {"name": name}
    if description:
        function["description"] = description
    function["parameters"] = schema
    return {"type": "function", "function": function}


def _messages(body: Json) -> list[Json]:
    out: list[Json] = []
    system = body.get("system")
    if system:
        out.append({"role": "system", "content": common.text_of(system, "\n\n")})
    for role, content in common.messages_turns(body):
        if role == "system":  # a mid-conversation system turn, in place; empty ones dropped
            text = common.system_turn_text(content)
            if text:
                out.append({"role": "system", "content": text})
        elif isinstance(content, str):
            out.append({"role": role, "content": content})
        elif role == "assistant":
            out.append(_assistant(content))
        else:
            out.extend(_user(content))
    return out


def _assistant(blocks: list[Any]) -> Json:
    text: list[str] = []
    calls: list[Json] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(str(block.get("text", "")))
        elif kind == "tool_use":
            arguments = common.dumps(block.get("input") or {})
            calls.append(common.chat_tool_call(block.get("id"), block.get("name"), arguments))
    message: Json = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[Any]) -> list[Json]:
    """Tool results become `tool` messages (first, as Chat expects), the rest one user message."""
    tools: list[Json] = []
    parts: list[Json] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            url = common.source_to_url(block.get("source"))
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif kind == "tool_result":
            content = common.tool_result_text(block)
            tools.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": content}
            )
        elif kind == "document":
            raise MalformedPayload("document blocks are not supported by this upstream", "content")
    out = tools
    if parts:
        if all(p["type"] == "text" for p in parts):
            out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def translate_response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
    usage = common.usage_from_chat(body.get("usage"))
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[Json] = []
    text = message.get("content")
    if text:
        content.append({"type": "text", "text": text})
    elif message.get("refusal"):
        content.append({"type": "text", "text": message["refusal"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        value = common.loads_arguments(function.get("arguments"), "tool arguments")
        content.append(
            messages_writer.tool_use_block(
                ctx, call.get("id"), function.get("name"), len(content), value
            )
        )
    finish = choice.get("finish_reason") or "stop"
    stop = common.FINISH_TO_STOP.get(finish, "end_turn")
    if stop == "end_turn" and message.get("tool_calls"):
        stop = "tool_use"  # some servers (older Ollama) say "stop" after tool calls
    elif stop == "end_turn" and message.get("refusal") and not text:
        stop = "refusal"
    return messages_writer.finished_message(ctx, body, content, stop, usage), usage


class StreamTranslator(stream_readers.ChatReader):
    """Upstream Chat chunks -> Anthropic Messages events. One per request."""

    __slots__ = ()

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(messages_writer.MessagesWriter(ctx))
