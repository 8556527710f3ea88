"""Client: Anthropic Messages. Upstream: OpenAI Responses."""

from __future__ import annotations

from typing import Any

from switchboard.dialects import common, messages_writer, stream_readers
from switchboard.dialects.errors import UnsupportedFeature
from switchboard.dialects.types import Ctx, Json, Usage


def translate_request(body: Json, ctx: Ctx) -> Json:
    if body.get("stop_sequences"):
        raise common.no_stop_on_responses("stop_sequences")
    out: Json = {"model": ctx.upstream_model, "input": _input(body), "store": False}
    system = body.get("system")
    if system:
        out["instructions"] = common.text_of(system, "\n\n")
    limit = common.output_limit(ctx.max_tokens, body.get("max_tokens"))
    if limit is not None:
        out["max_output_tokens"] = limit
    common.copy_set(body, out, ("temperature", "top_p"))
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(t) for t in tools]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "name": choice.get("name")}
        elif kind in common.MESSAGES_TO_OPENAI_CHOICE:
            out["tool_choice"] = common.MESSAGES_TO_OPENAI_CHOICE[kind]
        if choice.get("disable_parallel_tool_use") and tools:
            out["parallel_tool_calls"] = False
    effort = common.effort_for(body.get("thinking"))
    if effort:
        out["reasoning"] = {"effort": effort}
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        out["user"] = str(metadata["user_id"])
    if ctx.stream:
        out["stream"] = True
    return out


def _tool(tool: Any) -> Json:
    name, description, schema = common.messages_client_tool(tool)
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
        if isinstance(content, str):
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
    calls = any(block["type"] == "tool_use" for block in content)
    stop = common.responses_stop(body.get("status"), body.get("incomplete_details"), calls)
    if refused and stop == "end_turn":
        stop = "refusal"
    return messages_writer.finished_message(ctx, body, content, stop, usage), usage


class StreamTranslator(stream_readers.ResponsesReader):
    """Upstream Responses events -> Anthropic Messages events. One per request."""

    __slots__ = ()

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(messages_writer.MessagesWriter(ctx))
