"""TRANSLATORS[(client, upstream)]: one lookup per request.

Four direct pairs translate between OpenAI Chat Completions and each other dialect (both ways);
the two pairs between Responses and Messages are compositions through the Chat wire shape (see
docs/translation.md for why and what that costs); same-dialect pairs pass through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from switchboard.dialects import (
    chat_to_messages,
    chat_to_responses,
    identity,
    messages_to_chat,
    responses_to_chat,
    sse,
)
from switchboard.dialects.types import Ctx, Dialect, Json, Usage


class Stream(Protocol):
    @property
    def usage(self) -> Usage: ...

    def feed(self, event: sse.Event) -> bytes: ...
    def finish(self) -> bytes: ...
    def error(self, message: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Pair:
    client: Dialect
    upstream: Dialect
    translate_request: Callable[[Json, Ctx], Json]
    translate_response: Callable[[Json, Ctx], tuple[Json, Usage]]
    stream: Callable[[Ctx], Stream]


def _identity(dialect: Dialect) -> Pair:
    def response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
        return body, identity.usage(dialect, body)

    streams: dict[Dialect, Callable[[Ctx], Stream]] = {
        Dialect.CHAT: identity.ChatStream,
        Dialect.MESSAGES: identity.MessagesStream,
        Dialect.RESPONSES: identity.ResponsesStream,
    }
    return Pair(dialect, dialect, partial(identity.request, dialect), response, streams[dialect])


class _Chained:
    """Upstream events -> Chat chunks -> client events."""

    def __init__(self, ctx: Ctx, first: Callable[[Ctx], Any], second: Callable[[Ctx], Any]):
        self._first = first(_with_usage(ctx))
        self._second = second(ctx)
        self._decoder = sse.Decoder()

    @property
    def usage(self) -> Usage:
        usage: Usage = self._first.usage
        return usage

    def _pipe(self, chat_bytes: bytes) -> bytes:
        return b"".join(self._second.feed(e) for e in self._decoder.feed(chat_bytes))

    def feed(self, event: sse.Event) -> bytes:
        return self._pipe(self._first.feed(event))

    def finish(self) -> bytes:
        out = self._pipe(self._first.finish())
        second_finish: bytes = self._second.finish()
        return out + second_finish

    def error(self, message: str) -> bytes:
        error: bytes = self._second.error(message)
        return error


def _with_usage(ctx: Ctx) -> Ctx:
    return Ctx(
        ctx.upstream_model,
        ctx.response_model,
        ctx.max_tokens,
        ctx.stream,
        True,
        ctx.request_id,
        ctx.created,
    )


def _chained(client_side: Any, upstream_side: Any, client: Dialect, upstream: Dialect) -> Pair:
    """client <-> chat pair `client_side`, chat <-> upstream pair `upstream_side`."""

    def request(body: Json, ctx: Ctx) -> Json:
        chat_request: Json = client_side.translate_request(body, ctx)
        out: Json = upstream_side.translate_request(chat_request, ctx)
        return out

    def response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
        chat, usage = upstream_side.translate_response(body, ctx)
        out, _ = client_side.translate_response(chat, ctx)
        return out, usage

    def stream(ctx: Ctx) -> Stream:
        return _Chained(ctx, upstream_side.StreamTranslator, client_side.StreamTranslator)

    return Pair(client, upstream, request, response, stream)


def _direct(module: Any, client: Dialect, upstream: Dialect) -> Pair:
    return Pair(
        client,
        upstream,
        module.translate_request,
        module.translate_response,
        module.StreamTranslator,
    )


TRANSLATORS: dict[tuple[Dialect, Dialect], Pair] = {
    (Dialect.CHAT, Dialect.CHAT): _identity(Dialect.CHAT),
    (Dialect.RESPONSES, Dialect.RESPONSES): _identity(Dialect.RESPONSES),
    (Dialect.MESSAGES, Dialect.MESSAGES): _identity(Dialect.MESSAGES),
    (Dialect.CHAT, Dialect.MESSAGES): _direct(chat_to_messages, Dialect.CHAT, Dialect.MESSAGES),
    (Dialect.MESSAGES, Dialect.CHAT): _direct(messages_to_chat, Dialect.MESSAGES, Dialect.CHAT),
    (Dialect.CHAT, Dialect.RESPONSES): _direct(chat_to_responses, Dialect.CHAT, Dialect.RESPONSES),
    (Dialect.RESPONSES, Dialect.CHAT): _direct(responses_to_chat, Dialect.RESPONSES, Dialect.CHAT),
    (Dialect.MESSAGES, Dialect.RESPONSES): _chained(
        messages_to_chat, chat_to_responses, Dialect.MESSAGES, Dialect.RESPONSES
    ),
    (Dialect.RESPONSES, Dialect.MESSAGES): _chained(
        responses_to_chat, chat_to_messages, Dialect.RESPONSES, Dialect.MESSAGES
    ),
}


def get(client: Dialect, upstream: Dialect) -> Pair:
    return TRANSLATORS[(client, upstream)]
