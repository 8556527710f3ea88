"""What the gateway asks of a request before routing it: output limit, images, size, truncation.

The prompt estimate is deliberately cheap (it runs on every request): UTF-8 bytes / 4 over the
text (messages, tool arguments and results, system / instructions) and over the tools' JSON,
plus 4 tokens per message and 800 per image. It is an estimate, used to pick a
candidate whose window fits before calling it; the upstream's own context-length error still
triggers a fallback when the estimate was too low.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard.dialects.types import Dialect, Json

PER_MESSAGE = 4
PER_IMAGE = 800
_IMAGE_TYPES = frozenset(("image_url", "image", "input_image"))


def requested_max_tokens(dialect: Dialect, body: Json) -> int | None:
    if dialect is Dialect.CHAT:
        value = body.get("max_completion_tokens", body.get("max_tokens"))
    elif dialect is Dialect.RESPONSES:
        value = body.get("max_output_tokens")
    else:
        value = body.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def wants_stream(body: Json) -> bool:
    """The client asked for a stream (`stream: true`, the same field in every dialect)."""
    return body.get("stream") is True


def _turns(dialect: Dialect, body: Json) -> list[Any]:
    key = "input" if dialect is Dialect.RESPONSES else "messages"
    value = body.get(key)
    return value if isinstance(value, list) else []


def _parts(content: Any) -> list[Any]:
    return content if isinstance(content, list) else []


def has_images(dialect: Dialect, body: Json) -> bool:
    for turn in _turns(dialect, body):
        if isinstance(turn, dict):
            for part in _parts(turn.get("content")):
                if isinstance(part, dict) and part.get("type") in _IMAGE_TYPES:
                    return True
    return False


def _utf8_len(text: str) -> int:
    """Bytes of text in UTF-8 (ASCII text is not encoded to find out). Scripts with more bytes
    per character also take more tokens per character, so bytes / 4 tracks them better than
    characters / 4."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _size(value: Any) -> int:
    """Characters of text and images in a content value, as tokens."""
    if isinstance(value, str):
        return _utf8_len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, dict):
                if part.get("type") in _IMAGE_TYPES:
                    total += PER_IMAGE * 4
                else:
                    for key in ("text", "content", "arguments", "output", "input"):
                        if key in part:
                            total += _size(part[key])
            else:
                total += _size(part)
        return total
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    return 0


def _json_size(value: Any) -> int:
    """Length of a value as JSON (tool definitions count as the schema text they are)."""
    try:
        return len(orjson.dumps(value))
    except TypeError:  # not JSON at all: the translators refuse it later
        return len(str(value))


def _turn_tokens(turn: Any) -> int:
    if not isinstance(turn, dict):
        return PER_MESSAGE
    chars = _size(turn.get("content"))
    for key in ("tool_calls", "arguments", "output"):
        if key in turn:
            chars += _size(turn[key])
    return PER_MESSAGE + chars // 4


def estimate_prompt_tokens(dialect: Dialect, body: Json) -> int:
    total = sum(_turn_tokens(t) for t in _turns(dialect, body))
    for key in ("system", "instructions"):
        if key in body:
            total += _size(body[key]) // 4
    if "tools" in body:
        total += _json_size(body["tools"]) // 4
    if dialect is Dialect.RESPONSES and isinstance(body.get("input"), str):
        total += _utf8_len(body["input"]) // 4
    return total


def _is_system(turn: Any) -> bool:
    return isinstance(turn, dict) and turn.get("role") in ("system", "developer")


def _is_tool_result(turn: Any) -> bool:
    if not isinstance(turn, dict):
        return False
    if turn.get("role") == "tool" or turn.get("type") == "function_call_output":
        return True
    return any(
        isinstance(p, dict) and p.get("type") == "tool_result" for p in _parts(turn.get("content"))
    )


def truncate_oldest(dialect: Dialect, body: Json, max_prompt_tokens: int) -> Json | None:
    """Drop the oldest non-system turns until the estimate fits; None if it cannot.

    The last turn always stays, and a turn that answers a tool call is never left first (its
    call would be gone), so tool calls and their results leave together.
    """
    key = "input" if dialect is Dialect.RESPONSES else "messages"
    turns = _turns(dialect, body)
    if not turns:
        return None
    fixed = estimate_prompt_tokens(dialect, {**body, key: []})
    system = [t for t in turns if _is_system(t)]
    rest = [t for t in turns if not _is_system(t)]
    budget = max_prompt_tokens - fixed - sum(_turn_tokens(t) for t in system)
    costs = [_turn_tokens(t) for t in rest]
    total = sum(costs)
    start = 0
    while total > budget and start < len(rest) - 1:
        total -= costs[start]
        start += 1
        while start < len(rest) - 1 and _is_tool_result(rest[start]):
            total -= costs[start]
            start += 1
    if dialect is Dialect.MESSAGES:
        # Anthropic wants the user's turn first, and not one answering a call that is gone.
        while start < len(rest) - 1 and (
            not isinstance(rest[start], dict)
            or rest[start].get("role") != "user"
            or _is_tool_result(rest[start])
        ):
            total -= costs[start]
            start += 1
    if total > budget or (start > 0 and _is_tool_result(rest[start])):
        return None  # too long even alone, or only a tool result without its call is left
    if dialect is Dialect.MESSAGES and system:
        # Mid-conversation system turns (Claude Code's) may not open a Messages conversation.
        return {**body, key: [rest[start], *system, *rest[start + 1 :]]}
    return {**body, key: system + rest[start:]}
