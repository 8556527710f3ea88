"""Translation errors, upstream error parsing and error rendering in each client's shape.

TranslationError              .message .param; the gateway answers 400 (a client's body) or
                              counts an upstream failure (an upstream's answer)
  - UnsupportedFeature        the upstream dialect cannot express it, and dropping it
                              would change the answer
  - MalformedPayload          the body does not match its dialect

(Under SwitchboardError, switchboard/errors.py. `UpstreamErrorInfo` is data, not an
exception: what an upstream's error body says.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from switchboard.dialects.types import Dialect
from switchboard.errors import SwitchboardError


class TranslationError(SwitchboardError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class UnsupportedFeature(TranslationError):
    pass


class MalformedPayload(TranslationError):
    pass


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "upstream_error",
    504: "timeout",
}


def render_error(
    client: Dialect,
    status: int,
    message: str,
    param: str | None = None,
    *,
    type_: str | None = None,
) -> bytes:
    """An error body in the shape the client's SDK parses. The error type follows the status
    (Anthropic's list for Messages); an OpenAI-shaped `type_` may be given for Chat/Responses."""
    if client is Dialect.MESSAGES:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    default = "server_error" if status >= 500 else "invalid_request_error"
    kind = type_ or _OPENAI_TYPES.get(status, default)
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": kind}})


def stream_error(client: Dialect, message: str, sequence_number: int = 0) -> bytes:
    """An error event that ends a client's stream after its first byte."""
    if client is Dialect.MESSAGES:
        data = orjson.dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return b"event: error\ndata: " + data + b"\n\n"
    if client is Dialect.RESPONSES:
        data = orjson.dumps(
            {
                "type": "error",
                "code": "upstream_error",
                "message": message,
                "param": None,
                "sequence_number": sequence_number,
            }
        )
        return b"event: error\ndata: " + data + b"\n\n"
    data = orjson.dumps({"error": {"message": message, "type": "upstream_error", "code": None}})
    return b"data: " + data + b"\n\n"


_CONTEXT_PATTERNS = re.compile(
    r"maximum context length|context length|context window|context_length_exceeded"
    r"|prompt is too long|too many tokens|exceeds the available context size"
    r"|input is too long|`inputs` tokens \+ `max_new_tokens` must be"
    r"|`inputs` must have less than \d+ tokens|maximum model length"
    r"|exceeds? (the )?(model'?s? )?(max(imum)?|context)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class UpstreamErrorInfo:
    """What an upstream's error body says (data, not an exception: the gateway's
    map_upstream() and AttemptFailed raise; see gateway/errors.py)."""

    status: int
    message: str
    context_length: bool
    """A prompt too long for the model's window: the gateway tries the next candidate."""
    type: str = ""
    """The upstream's own error type or code where it gave one (`rate_limit_error`, ...)."""


def parse_upstream_error(status: int, body: bytes) -> UpstreamErrorInfo:
    """Understand an upstream's error body, whatever server phrased it."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
        message = body[:500].decode("utf-8", "replace").strip()
    else:
        message = _message_of(data)
    message = message or f"upstream answered HTTP {status}"
    code = kind = ""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        code = str(data["error"].get("code") or "")
        kind = str(data["error"].get("type") or "")
    elif isinstance(data, dict):  # vLLM: {"object": "error", "type": ...}; TGI: error_type
        found = data.get("type") if data.get("type") != "error" else None
        kind = str(found or data.get("error_type") or "")
    context = status in (400, 413, 422) and (
        bool(_CONTEXT_PATTERNS.search(message))
        or code == "context_length_exceeded"
        or kind == "exceed_context_size_error"
    )
    return UpstreamErrorInfo(status, message[:1000], context, kind or code)


def _message_of(data: Any) -> str:
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error.get("type") or "")
        if isinstance(error, str):  # TGI, Ollama
            return error
        for key in ("message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return ""
