"""TRANSLATORS[(client, upstream)]: one lookup per request.

Six direct pairs, one module each (`<client>_to_<upstream>.py`); same-dialect pairs pass
through (`identity.py`). docs/translation.md says why there is no intermediate type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from switchboard.dialects import (
    chat_to_messages,
    chat_to_responses,
    errors,
    identity,
    messages_to_chat,
    messages_to_responses,
    responses_to_chat,
    responses_to_messages,
    sse,
)
from switchboard.dialects.types import Ctx, Dialect, Json, Usage


class Stream(Protocol):
    @property
    def usage(self) -> Usage: ...

    failed: str | None
    """Set when the stream ended in an error event (the upstream's, an undecodable event, a
    cut-off): the gateway falls back while it holds the stream back, and counts a failure."""

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


_SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError)


def _guard_request(fn: Callable[[Json, Ctx], Json]) -> Callable[[Json, Ctx], Json]:
    """A body of the wrong shape somewhere deep (a number where a list belongs) is the
    client's 400, not the gateway's 500: translators check the shapes they rely on, and this
    catches the rest. Costs nothing when nothing is raised."""

    def request(body: Json, ctx: Ctx) -> Json:
        try:
            return fn(body, ctx)
        except _SHAPE_ERRORS as exc:
            raise errors.MalformedPayload(f"the request does not match its API: {exc}") from exc

    return request


def _guard_response(
    fn: Callable[[Json, Ctx], tuple[Json, Usage]],
) -> Callable[[Json, Ctx], tuple[Json, Usage]]:
    def response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
        try:
            return fn(body, ctx)
        except _SHAPE_ERRORS as exc:
            raise errors.MalformedPayload(f"the upstream's response is malformed: {exc}") from exc

    return response


def _identity(dialect: Dialect) -> Pair:
    def response(body: Json, ctx: Ctx) -> tuple[Json, Usage]:
        return body, identity.usage(dialect, body)

    streams: dict[Dialect, Callable[[Ctx], Stream]] = {
        Dialect.CHAT: identity.ChatStream,
        Dialect.MESSAGES: identity.MessagesStream,
        Dialect.RESPONSES: identity.ResponsesStream,
    }
    request = _guard_request(partial(identity.request, dialect))
    return Pair(dialect, dialect, request, response, streams[dialect])


def _direct(module: Any, client: Dialect, upstream: Dialect) -> Pair:
    return Pair(
        client,
        upstream,
        _guard_request(module.translate_request),
        _guard_response(module.translate_response),
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
    (Dialect.MESSAGES, Dialect.RESPONSES): _direct(
        messages_to_responses, Dialect.MESSAGES, Dialect.RESPONSES
    ),
    (Dialect.RESPONSES, Dialect.MESSAGES): _direct(
        responses_to_messages, Dialect.RESPONSES, Dialect.MESSAGES
    ),
}


def get(client: Dialect, upstream: Dialect) -> Pair:
    return TRANSLATORS[(client, upstream)]
