"""Shared types of the translators: the dialect names, usage, and the per-request context."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


class Dialect(enum.StrEnum):
    CHAT = "chat"
    """OpenAI Chat Completions (`/v1/chat/completions`)."""
    RESPONSES = "responses"
    """OpenAI Responses (`/v1/responses`)."""
    MESSAGES = "messages"
    """Anthropic Messages (`/v1/messages`)."""


@dataclass(slots=True)
class Usage:
    """Token counts normalised for billing: `input_tokens` excludes cache reads and writes.

    OpenAI's `prompt_tokens` / `input_tokens` include cached tokens; Anthropic's `input_tokens`
    excludes both cache reads and cache writes. Each translator converts to this convention.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def prompt_total(self) -> int:
        """Every input token, cached or not (OpenAI's `prompt_tokens`)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(slots=True)
class Ctx:
    """What the gateway decided for one request, as the translators need it.

    The first fields are the gateway's; the last few (`dropped`, `stop`, `tool_names`) are
    written by `translate_request` for the response and stream translators and the gateway to
    read. One Ctx per attempt, so nothing leaks between candidates. They stay None (no
    allocation) on requests that do not need them."""

    upstream_model: str
    """Model id sent upstream."""
    response_model: str
    """Model name shown to the client where the upstream gave none."""
    max_tokens: int | None
    """Effective output limit, written in the upstream's field; None leaves it out."""
    stream: bool
    include_usage: bool = False
    """A Chat client asked for usage in its stream (`stream_options.include_usage`)."""
    request_id: str = "0"
    """Used to make ids where the target dialect needs one and the upstream gave none."""
    created: int = 0
    """Unix time for `created` / `created_at` fields (the translators read no clock)."""
    reasoning: bool = False
    """The model is declared `reasoning: true`: a Messages client's thinking / effort becomes
    the upstream's reasoning effort; otherwise it is dropped."""
    hosted_tools: str = "drop"
    """What to do with tools only the client's own API vendor runs (web search, file search,
    code interpreter, ...) on an upstream that cannot: "drop" (default) or "refuse" (400)."""
    dropped: list[str] | None = None
    """Set by the request translator: hosted tools it left out (the gateway names them in
    `x-switchboard-dropped-tools` and the access log)."""
    stop: tuple[str, ...] | None = None
    """Set by the request translator: stop sequences the gateway enforces itself (a Responses
    upstream has none)."""
    tool_names: dict[str, tuple[str, str]] | None = None
    """Set by the request translator: flattened tool name -> (namespace, name) for a
    Responses client's `namespace` tools."""
