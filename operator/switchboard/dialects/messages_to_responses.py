"""Client: Anthropic Messages. Upstream: OpenAI Responses."""

from __future__ import annotations

from typing import Any

from switchboard.dialects import common, messages_writer, stream_readers
from switchboard.dialects.errors import UnsupportedFeature
from switchboard.dialects.types import Ctx, Json, Usage


def translate_request(body: Json, ctx: Ctx) -> Json:
    ctx.stop = common.stop_list(body.get("stop_sequences"), "stop_sequences")
    out: Json = {"model": ctx.upstream_model, "input": _input(body), "store": False}
    system = body.get("system")
    if system:
        out["instructions"] = common.text_of(system, "\n\n")
    limit = common.output_limit(ctx.max_tokens, body.get("max_tokens"))
    if limit is not None:
        out["max_output_tokens"] = limit
    common.copy_set(body, out, ("temperature", "top_p"))
    tools = common.messages_client_tools(body.get("tools") or [], ctx)
    if tools:
        out["tools"] = [_tool(*t) for t in tools]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "name": choice.get("name")}
        elif kind in common.MESSAGES_TO_OPENAI_CHOICE:
            out["tool_choice"] = common.MESSAGES_TO_OPENAI_CHOICE[kind]
        if choice.get("disable_parallel_tool_use") and tools:
            out["parallel_tool_calls"] = False
    effort = common.messages_effort(body, ctx.reasoning)
    if effort:
        out["reasoning"] = {"effort": effort}
    schema = common.messages_output_schema(body)
    if schema is not None:
        out["text"] = {"format": {"type": "json_schema", "name": "output", "schema": schema}}
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        out["user"] = str(metadata["user_id"])
    if ctx.stream:
        out["stream"] = True
    return out


def _tool(name: Any, description: Any, schema: Any) -> Json:
    return {
        "type": "function",
        "name": name,
        "description": description or "",
        "parameters": schema,
        "strict": False,
    }


def _input(body: Json) -> list[Json]:
    items: list[Json] = []
    for role, content in common.messages_turns(body):
        if role == "system":  # a mid-conversation system turn, in place; empty ones dropped
            text = common.system_turn_text(content)
            if text:
                items.append({"role": "developer", "content": text})
        elif isinstance(content, str):
            items.append({"role": role, "content": content})
        elif role == "assistant":
            _assistant(content, items)
        else:
            _user(content, items)
    return items


def _assistant(blocks: list[Any], items: list[Json]) -> None:
    text: list[str] = []
    calls: list[Json] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(
                {
                    "type": "function_call",
                    "call_id": block.get("id"),
                    "name": block.get("name"),
                    "arguments": common.dumps(block.get("input") or {}),
                }
            )
    if text:
        items.append({"role": "assistant", "content": "".join(text)})
    items.extend(calls)


def _image(block: Json) -> Json:
    return {"type": "input_image", "image_url": common.source_to_url(block.get("source"))}


def _user(blocks: list[Any], items: list[Json]) -> None:
    """Tool results become function_call_output items (first), the rest one user message."""
    parts: list[Json] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append({**_image(block), "detail": "auto"})
        elif kind == "tool_result":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": block.get("tool_use_id"),
                    "output": _tool_output(block),
                }
            )
        elif kind == "document":
            raise UnsupportedFeature(
                "document blocks are not supported by this upstream", "content"
            )
    if parts:
        items.append({"role": "user", "content": parts})


def _tool_output(block: Json) -> str | list[Json]:
    """Text, or input_text / input_image parts when the result carries images."""
    content = block.get("content")
    if not isinstance(content, list) or not any(
        isinstance(p, dict) and p.get("type") == "image" for p in content
    ):
        return common.tool_result_text(block)
    parts: list[Json] = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image":
            parts.append({**_image(part), "detail": "auto"})
        elif isinstance(part, dict) and part.get("type") == "text":
            parts.append({"type": "input_text", "text": str(part.get("text", ""))})
    return parts


def translate_response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
    usage = common.usage_from_responses(body.get("usage"))
    content: list[Json] = []
    refused = False
    for item in body.get("output") or ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text" and part.get("text"):
                    content.append({"type": "text", "text": part["text"]})
                elif part.get("type") == "refusal":
                    refused = True
                    content.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "function_call":
            value = common.loads_arguments(item.get("arguments"), "tool arguments")
            content.append(
                messages_writer.tool_use_block(
                    ctx, item.get("call_id"), item.get("name"), len(content), value
                )
            )
    matched: str | None = None
    if ctx.stop:
        content, matched = _cut(content, ctx.stop)
    calls = any(block["type"] == "tool_use" for block in content)
    stop = common.responses_stop(body.get("status"), body.get("incomplete_details"), calls)
    if matched is not None:
        stop = "stop_sequence"
    elif refused and stop == "end_turn":
        stop = "refusal"
    message = messages_writer.finished_message(ctx, body, content, stop, usage)
    message["stop_sequence"] = matched
    return message, usage


def _cut(content: list[Json], stops: tuple[str, ...]) -> tuple[list[Json], str | None]:
    """The gateway's stop sequences on an upstream without them: the answer ends at the first
    match; what the model produced after it (text or calls) is left out."""
    for number, block in enumerate(content):
        if block["type"] != "text":
            continue
        text, matched = common.cut_at_stop(block["text"], stops)
        if matched is not None:
            kept = content[:number]
            if text:
                kept.append({"type": "text", "text": text})
            return kept, matched
    return content, None


class StreamTranslator(stream_readers.ResponsesReader):
    """Upstream Responses events -> Anthropic Messages events. One per request."""

    __slots__ = ()

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(messages_writer.MessagesWriter(ctx), ctx.stop)
