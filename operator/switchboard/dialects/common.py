"""Helpers shared by the pair translators: usage in each dialect, stop reasons, ids, images."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from switchboard.dialects.errors import MalformedPayload, UnsupportedFeature
from switchboard.dialects.types import Ctx, Json, Usage

# Chat finish_reason <-> Messages stop_reason
FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
}


def responses_stop(status: Any, details: Any, has_calls: bool) -> str:
    """A Responses status / incomplete_details as an Anthropic stop reason."""
    if has_calls:
        return "tool_use"
    if status == "incomplete":
        reason = details.get("reason") if isinstance(details, dict) else None
        return "refusal" if reason == "content_filter" else "max_tokens"
    return "end_turn"


def _int(value: Any) -> int:
    """A token count: a non-negative integer, else 0 (a bool, a float, a string, null, a
    negative number), so usage stays numeric for accounting.cost."""
    return value if type(value) is int and value >= 0 else 0


def _openai_usage(total: Any, details: Any, output: Any) -> Usage:
    """OpenAI counts cache reads and writes inside the prompt total."""
    cached = written = 0
    if isinstance(details, dict):
        cached = _int(details.get("cached_tokens"))
        written = _int(details.get("cache_write_tokens"))
    return Usage(max(_int(total) - cached - written, 0), _int(output), cached, written)


def usage_from_chat(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    return _openai_usage(
        u.get("prompt_tokens"), u.get("prompt_tokens_details"), u.get("completion_tokens")
    )


def usage_from_messages(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    return Usage(
        _int(u.get("input_tokens")),
        _int(u.get("output_tokens")),
        _int(u.get("cache_read_input_tokens")),
        _int(u.get("cache_creation_input_tokens")),
    )


def usage_from_responses(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    return _openai_usage(
        u.get("input_tokens"), u.get("input_tokens_details"), u.get("output_tokens")
    )


def update_from_message_delta(usage: Usage, u: Any) -> None:
    """Anthropic's `message_delta.usage` is cumulative: it replaces what it names (input and
    cache counts when not 0); a count that is not a non-negative integer is ignored, and the
    one `message_start` gave stays."""
    if not isinstance(u, dict):
        return
    output = u.get("output_tokens")
    if type(output) is int and output >= 0:
        usage.output_tokens = output
    if value := _int(u.get("input_tokens")):
        usage.input_tokens = value
    if value := _int(u.get("cache_read_input_tokens")):
        usage.cache_read_tokens = value
    if value := _int(u.get("cache_creation_input_tokens")):
        usage.cache_write_tokens = value


def chat_usage(u: Usage) -> Json:
    details: Json = {"cached_tokens": u.cache_read_tokens}
    if u.cache_write_tokens:
        details["cache_write_tokens"] = u.cache_write_tokens
    return {
        "prompt_tokens": u.prompt_total,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.prompt_total + u.output_tokens,
        "prompt_tokens_details": details,
    }


def messages_usage(u: Usage) -> Json:
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
    }


def responses_usage(u: Usage) -> Json:
    return {
        "input_tokens": u.prompt_total,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_total + u.output_tokens,
    }


def chat_tool_call(call_id: Any, name: Any, arguments: str) -> Json:
    """One entry of a Chat assistant message's `tool_calls`."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def loads_arguments(arguments: Any, where: str) -> Any:
    """Tool-call arguments (a JSON string in OpenAI shapes) as an object."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise MalformedPayload(f"{where} is not valid JSON", where) from None
    return value if isinstance(value, dict) else {"value": value}


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:  # e.g. an integer beyond 64 bits
        raise MalformedPayload(f"value cannot be serialised as JSON: {exc}") from None


def data_url_to_source(url: str) -> Json:
    """An image URL (data: or http) as an Anthropic image source."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0] or "image/png"
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def source_to_url(source: Any) -> str:
    if not isinstance(source, dict):
        raise MalformedPayload("image.source must be an object", "source")
    if source.get("type") == "base64":
        return f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    if source.get("type") == "url":
        return str(source.get("url", ""))
    raise MalformedPayload(f"image source type {source.get('type')!r} is not supported", "source")


def text_of(content: Any, sep: str = "") -> str:
    """Plain text of a content value that is a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return sep.join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text")
        )
    return ""


def require_list(body: Json, key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise MalformedPayload(f"{key} must be a list", key)
    return value


SYSTEM_ROLE_REFUSAL = (
    'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
    'parameter, not "system" as an input message role.'
)
"""Anthropic's own wording for a system turn it cannot take: Claude Code recognises it and
retries without its mid-conversation system turns."""


def messages_turns(body: Json) -> Iterator[tuple[str, str | list[Any]]]:
    """An Anthropic Messages request's `messages` as (role, content), each checked: an object,
    role user, assistant or system (a mid-conversation system turn, beta
    `mid-conversation-system-2026-04-07`), content a string or a list of blocks."""
    for message in require_list(body, "messages"):
        if not isinstance(message, dict):
            raise MalformedPayload("each message must be an object", "messages")
        role = message.get("role")
        content = message.get("content")
        if role not in ("user", "assistant", "system"):
            raise MalformedPayload(
                f'messages: Unexpected role {role!r}: use "user", "assistant" or "system"',
                "role",
            )
        if not isinstance(content, str | list):
            raise MalformedPayload("message content must be a string or a list", "content")
        yield role, content


def system_turn_text(content: str | list[Any]) -> str:
    """The text of a mid-conversation system turn (a string or text blocks, whose
    `cache_control` has no equivalent upstream); a non-text block cannot be said as a system
    message, and is refused in Anthropic's words."""
    if isinstance(content, str):
        return content
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "text":
            raise UnsupportedFeature(SYSTEM_ROLE_REFUSAL, "messages")
    return text_of(content, "\n\n")


def read_chat_chunk(data: bytes) -> tuple[Json | None, str | None]:
    """An upstream Chat stream event: (chunk, None), (None, error message) or (None, None)."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(chunk, dict):
        return None, None
    if "error" in chunk and "choices" not in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        return None, str(message or "upstream error")
    if chunk.get("object") == "error":  # vLLM: {"object": "error", "message": ...}
        return None, str(chunk.get("message") or "upstream error")
    return chunk, None


# Pieces of requests that more than one pair writes or checks.

DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires `max_tokens`; used only when neither the gateway nor the client set one."""

# Messages tool_choice type <-> the OpenAI tool_choice string (Chat and Responses agree).
MESSAGES_TO_OPENAI_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
OPENAI_TO_MESSAGES_CHOICE = {"auto": "auto", "required": "any", "none": "none"}

# Reasoning effort (OpenAI) <-> thinking budget (Anthropic, at least 1024 tokens).
EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}


def copy_set(body: Json, out: Json, keys: tuple[str, ...]) -> None:
    """Fields both dialects spell and mean alike, copied when the client set them."""
    for key in keys:
        if body.get(key) is not None:
            out[key] = body[key]


def output_limit(ctx_max: int | None, requested: Any) -> Any:
    """The gateway's output limit, else whatever the client asked for (None: leave it out)."""
    return ctx_max if ctx_max is not None else requested


def append_turn(turns: list[Json], role: str, blocks: list[Json]) -> None:
    """A Messages turn; consecutive turns of one role merge, as Anthropic prefers. A turn with
    no content is left out: Anthropic refuses empty turns, and it carried nothing."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def messages_sampling(body: Json, out: Json, effort: Any) -> None:
    """Anthropic `thinking` for an OpenAI reasoning effort, or else temperature (capped at 1,
    Anthropic's maximum) and top_p: Anthropic refuses them together with thinking.

    Thinking is left out where Anthropic would refuse it: with a forced tool (`tool_choice`
    "required" or a named function), and in the middle of a tool loop (the last turn carries
    tool results), where Anthropic wants the previous turn's thinking blocks back, which an
    OpenAI client never kept."""
    thinking = thinking_for(effort, out["max_tokens"])
    choice = body.get("tool_choice")
    forced = choice == "required" or isinstance(choice, dict)
    if thinking and not forced and not _answers_tools(out["messages"]):
        out["thinking"] = thinking
        return
    if body.get("temperature") is not None:
        out["temperature"] = min(float(body["temperature"]), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]


def _answers_tools(turns: list[Json]) -> bool:
    last = turns[-1] if turns else None
    return last is not None and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"]
    )


def messages_tool_choice(out: Json, choice: Any, name: Any, parallel: Any) -> None:
    """Anthropic `tool_choice` for an OpenAI one: a string, or the name of a forced function;
    `parallel_tool_calls: false` becomes `disable_parallel_tool_use`."""
    if name is not None:
        out["tool_choice"] = {"type": "tool", "name": name}
    elif isinstance(choice, str) and choice in OPENAI_TO_MESSAGES_CHOICE:
        out["tool_choice"] = {"type": OPENAI_TO_MESSAGES_CHOICE[choice]}
    if parallel is False:
        out.setdefault("tool_choice", {"type": "auto"})["disable_parallel_tool_use"] = True


def messages_max_tokens(ctx_max: int | None, requested: Any) -> int:
    if ctx_max is not None:
        return ctx_max
    if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
        return requested
    return DEFAULT_MAX_TOKENS


def thinking_for(effort: Any, max_tokens: int) -> Json | None:
    """Anthropic `thinking` for an OpenAI reasoning effort; None when it cannot fit."""
    budget = EFFORT_BUDGET.get(effort) if isinstance(effort, str) else None
    if budget is None:
        return None
    budget = min(budget, max_tokens - 1)
    return {"type": "enabled", "budget_tokens": budget} if budget >= 1024 else None


def effort_for(thinking: Any) -> str | None:
    """OpenAI reasoning effort for an Anthropic `thinking` setting."""
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = _int(thinking.get("budget_tokens"))
    return "low" if budget <= 4096 else "medium" if budget <= 16384 else "high"


_TOOL_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def messages_tool_id(value: Any) -> Any:
    """A tool call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`). Some servers write ids
    such as `functions.get_weather:0`; the same id always maps to the same safe one, so a call
    and its result still match."""
    if not isinstance(value, str) or not value:
        return value
    if all(c in _TOOL_ID_OK for c in value):
        return value
    return "".join(c if c in _TOOL_ID_OK else "_" for c in value)


HOSTED_TOOLS = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "image_generation",
        "computer",
        "computer_use",
        "computer_use_preview",
        "mcp",
        "local_shell",
        "shell",
        "tool_search",
    }
)
"""Responses tools that OpenAI runs (or that need its own item types): an upstream speaking
another API cannot run them."""


def hosted_tool(ctx: Ctx, kind: object) -> None:
    """A tool only the client's own API vendor runs, on an upstream that cannot: left out and
    noted in `ctx.dropped` (the gateway lists it in a header and the access log), or refused
    when the Agent or provider says `hostedTools: refuse`."""
    if ctx.hosted_tools == "refuse":
        raise UnsupportedFeature(
            f"built-in tool {kind!r} is not available on this upstream (hostedTools: refuse); "
            "remove it from tools or set hostedTools: drop on the Agent or provider",
            "tools",
        )
    if ctx.dropped is None:
        ctx.dropped = []
    ctx.dropped.append(str(kind))


def messages_client_tools(tools: list[Any], ctx: Ctx) -> list[tuple[Any, Any, Any]]:
    """Name, description and schema of each of a Messages client's own tools; server tools
    (web search, bash, code execution, ...) run at Anthropic only, so they follow
    `ctx.hosted_tools` (left out by default)."""
    out: list[tuple[Any, Any, Any]] = []
    for tool in tools:
        if not isinstance(tool, dict):
            raise MalformedPayload("each tool must be an object", "tools")
        if tool.get("type", "custom") != "custom":
            hosted_tool(ctx, tool.get("type"))
            continue
        if "name" not in tool:
            raise MalformedPayload("each tool needs a name", "tools")
        schema = tool.get("input_schema") or {"type": "object", "properties": {}}
        out.append((tool["name"], tool.get("description"), schema))
    return out


NAMESPACE_SEP = "__"


def responses_client_tools(tools: list[Any], ctx: Ctx) -> list[Json]:
    """A Responses client's function tools, flat: `namespace` tools (Codex's
    `multi_agent_v1`) give their functions as `<namespace>__<name>`, remembered in
    `ctx.tool_names` so calls go back under the names the client knows; hosted tools follow
    `ctx.hosted_tools`. Each entry is a Responses function tool."""
    out: list[Json] = []
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else tool
        if kind == "function":
            out.append(tool)
        elif kind == "namespace":
            space = tool.get("name")
            for inner in tool.get("tools") or ():
                if not isinstance(inner, dict) or inner.get("type") != "function":
                    raise UnsupportedFeature(
                        f"tool type {inner.get('type') if isinstance(inner, dict) else inner!r} "
                        f"in namespace {space!r} is not available on this upstream",
                        "tools",
                    )
                flat = f"{space}{NAMESPACE_SEP}{inner.get('name')}"
                if ctx.tool_names is None:
                    ctx.tool_names = {}
                ctx.tool_names[flat] = (str(space), str(inner.get("name")))
                out.append({**inner, "name": flat})
        elif kind in HOSTED_TOOLS:
            hosted_tool(ctx, kind)
        else:
            raise UnsupportedFeature(
                f"built-in tool {kind!r} is not available on this upstream", "tools"
            )
    return out


def flat_call_name(item: Json) -> Any:
    """A Responses function_call item's name as the upstream knows it: a namespaced call
    (`namespace` set) under its flattened name."""
    space = item.get("namespace")
    return f"{space}{NAMESPACE_SEP}{item.get('name')}" if space else item.get("name")


def messages_tool(name: Any, description: Any, parameters: Any) -> Json:
    out: Json = {"name": name}
    if description:
        out["description"] = description
    out["input_schema"] = parameters or {"type": "object", "properties": {}}
    return out


def no_json_object_on_messages(param: str) -> UnsupportedFeature:
    return UnsupportedFeature(
        "json_object output is not supported by an Anthropic Messages upstream; use "
        "json_schema (sent as output_config.format) or a tool with an input_schema",
        param,
    )


def messages_output_format(schema: Any, param: str) -> Json:
    """Anthropic's structured output (`output_config.format`) for a JSON schema."""
    if not isinstance(schema, dict):
        raise MalformedPayload(f"{param} needs a JSON schema object", param)
    return {"format": {"type": "json_schema", "schema": schema}}


def messages_output_schema(body: Json) -> Any:
    """A Messages client's structured-output schema: `output_config.format` (GA) or the beta
    `output_format`; None when it asked for none."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        fmt = body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return fmt.get("schema") or {"type": "object"}
    return None


# Anthropic effort (output_config.effort) -> OpenAI reasoning effort.
_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def messages_effort(body: Json, reasoning: bool) -> str | None:
    """OpenAI reasoning effort for a Messages client's thinking settings: `output_config.effort`
    first, else `thinking` enabled (by its budget) or adaptive (medium). Only for a model
    declared `reasoning: true`; None leaves it out (disabled thinking included)."""
    if not reasoning:
        return None
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        return None
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    if isinstance(effort, str) and effort in _EFFORT:
        return _EFFORT[effort]
    if kind == "adaptive":
        return "medium"
    return effort_for(thinking)


def stop_list(value: Any, param: str) -> tuple[str, ...] | None:
    """Stop sequences as a tuple of non-empty strings (None when there are none)."""
    if not value:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise MalformedPayload(f"{param} must be a string or a list of strings", param)
    found = tuple(s for s in items if s)
    return found or None


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """The text up to the earliest stop sequence, and the sequence (None: no match)."""
    best = -1
    match: str | None = None
    for stop in stops:
        at = text.find(stop)
        if at >= 0 and (best < 0 or at < best):
            best, match = at, stop
    return (text[:best], match) if match is not None else (text, None)


def stop_hold(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of a streamed text may begin a stop sequence and must be
    held back until the next delta: the longest suffix that is a proper prefix of a stop
    sequence (so at most len(longest) - 1)."""
    longest = min(max(len(s) for s in stops) - 1, len(text))
    for size in range(longest, 0, -1):
        tail = text[-size:]
        if any(s.startswith(tail) for s in stops):
            return size
    return 0


def refuse_stateful(body: Json) -> None:
    """The gateway keeps no conversations: a Responses client must send the whole history."""
    if body.get("previous_response_id") or body.get("conversation"):
        raise UnsupportedFeature(
            "previous_response_id and conversation need server-side state, which this upstream "
            "does not keep; send the whole conversation in input",
            "previous_response_id",
        )


def tool_result_text(block: Json) -> str:
    """A Messages tool_result's content as text; `is_error` prefixes "Error: "."""
    content = text_of(block.get("content"))
    return f"Error: {content}" if block.get("is_error") else content
