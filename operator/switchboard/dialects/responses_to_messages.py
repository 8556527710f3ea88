"""Client: OpenAI Responses. Upstream: Anthropic Messages."""

from __future__ import annotations

from typing import Any

from switchboard.dialects import common, responses_writer, stream_readers
from switchboard.dialects.errors import MalformedPayload, UnsupportedFeature
from switchboard.dialects.types import Ctx, Json, Usage


def translate_request(body: Json, ctx: Ctx) -> Json:
    common.refuse_stateful(body)
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        raise common.no_json_object_on_messages("text.format")
    system: list[str] = []
    if body.get("instructions"):
        system.append(str(body["instructions"]))
    items = body.get("input")
    if isinstance(items, str):
        messages: list[Json] = [{"role": "user", "content": [{"type": "text", "text": items}]}]
    elif isinstance(items, list):
        messages = _messages(items, system)
    else:
        raise MalformedPayload("input must be a string or a list", "input")
    max_tokens = common.messages_max_tokens(ctx.max_tokens, body.get("max_output_tokens"))
    out: Json = {"model": ctx.upstream_model, "messages": messages, "max_tokens": max_tokens}
    if system:
        out["system"] = "\n\n".join(system)
    reasoning = body.get("reasoning")
    common.messages_sampling(
        body, out, reasoning.get("effort") if isinstance(reasoning, dict) else None
    )
    if kind == "json_schema" and isinstance(fmt, dict):
        out["output_config"] = common.messages_output_format(fmt.get("schema"), "text.format")
    tools = common.responses_client_tools(body.get("tools") or [], ctx)
    if tools:
        out["tools"] = [_tool(t) for t in tools]
        choice = body.get("tool_choice")
        forced = isinstance(choice, dict) and choice.get("type") == "function"
        name = choice.get("name") if isinstance(choice, dict) and forced else None
        common.messages_tool_choice(out, choice, name, body.get("parallel_tool_calls"))
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if ctx.stream:
        out["stream"] = True
    return out


def _tool(tool: Json) -> Json:
    return common.messages_tool(tool.get("name"), tool.get("description"), tool.get("parameters"))


def _blocks(content: Any) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[Json] = []
    for part in content or ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "refusal":
            blocks.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image":
            if not part.get("image_url"):
                raise UnsupportedFeature("input_image needs image_url (file_id is not supported)")
            source = common.data_url_to_source(str(part["image_url"]))
            blocks.append({"type": "image", "source": source})
        elif kind == "input_file":
            raise UnsupportedFeature("input_file is not supported by this upstream", "input")
    return blocks


def _messages(items: list[Any], system: list[str]) -> list[Json]:
    out: list[Json] = []

    for item in items:
        if not isinstance(item, dict):
            raise MalformedPayload("each input item must be an object", "input")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                system.append(common.text_of(item.get("content")))
            elif role in ("user", "assistant"):
                common.append_turn(out, role, _blocks(item.get("content")))
            else:
                raise MalformedPayload(f"unknown role {role!r}", "input")
        elif kind == "function_call":
            value = common.loads_arguments(item.get("arguments"), "arguments")
            call_id = common.messages_tool_id(item.get("call_id"))
            call = {"type": "tool_use", "id": call_id, "name": common.flat_call_name(item)}
            common.append_turn(out, "assistant", [{**call, "input": value}])
        elif kind == "function_call_output":
            output = item.get("output")
            content = output if isinstance(output, str) else _blocks(output)
            common.append_turn(
                out,
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": common.messages_tool_id(item.get("call_id")),
                        "content": content,
                    }
                ],
            )
        elif kind == "reasoning":
            continue
        else:
            raise UnsupportedFeature(f"input item type {kind!r} is not supported", "input")
    return out


def translate_response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
    usage = common.usage_from_messages(body.get("usage"))
    text: list[str] = []
    calls: list[Json] = []
    for block in body.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text.append(str(block.get("text", "")))
        elif kind == "tool_use":
            number = len(calls)
            calls.append(
                responses_writer.call_item(
                    f"fc_{ctx.request_id}_{number}",
                    block.get("id") or f"call_{ctx.request_id}_{number}",
                    block.get("name", ""),
                    common.dumps(block.get("input") or {}),
                    "completed",
                    names=ctx.tool_names,
                )
            )
    output: list[Json] = []
    if text:
        part = {"type": "output_text", "text": "".join(text), "annotations": []}
        output.append(responses_writer.message_item(ctx, [part]))
    output.extend(calls)
    stop = body.get("stop_reason") or "end_turn"
    return responses_writer.finished_response(ctx, body.get("model"), output, usage, stop), usage


class StreamTranslator(stream_readers.MessagesReader):
    """Upstream Anthropic Messages events -> Responses events. One per request."""

    __slots__ = ()

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(responses_writer.ResponsesWriter(ctx))
