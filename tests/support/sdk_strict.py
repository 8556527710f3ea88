"""Strict check of JSON against the official SDKs' types: unknown keys rejected, every nested
list walked.

Pydantic's TypeAdapter over the SDKs' request TypedDicts lets unknown keys through (a TypedDict
takes no `extra='forbid'` from outside) and validates `Iterable[...]` fields lazily, so a wrong
item in `messages[3].content` passes unless someone iterates it; the SDKs' response models
allow extra keys. This walker follows the type hints itself: TypedDicts (keys must be declared,
required ones present), pydantic models (keys must be fields or their aliases), unions (one
member must match), literals, lists / iterables / sequences (each item), dicts and scalars.

Where an SDK type lags behind its API, the field is allowed by name in `ALLOWED`, with why.

    strict(TypedDictOrModel, value)  # raises StrictError naming the path
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import types
import typing
from typing import Any

import typing_extensions
from pydantic import BaseModel

ALLOWED: dict[str, frozenset[str]] = {
    # anthropic 2.x left the sampling parameters out of its request type, yet the Messages
    # API still takes them (every model before Opus 4.7; clients such as LangChain send them).
    # `output_format` is the structured-outputs beta's field, which older Claude Code
    # versions still send; the current one is `output_config.format`.
    "MessageCreateParamsNonStreaming": frozenset(
        {"temperature", "top_p", "top_k", "output_format"}
    ),
    # OpenAI's API reference lists `name` on `response.function_call_arguments.done`; the
    # openai SDK's event type does not have it yet.
    "ResponseFunctionCallArgumentsDoneEvent": frozenset({"name"}),
    # Codex CLI sends `client_metadata` (its originator and session) on every request; the
    # openai SDK's request type does not name it. The gateway drops it on other upstreams.
    "ResponseCreateParamsNonStreaming": frozenset({"client_metadata"}),
}


class StrictError(ValueError):
    pass


_SCALARS: dict[type, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    bytes: (bytes,),
}


def strict(tp: Any, value: Any) -> None:
    """Check `value` against `tp`; raises StrictError with the path of the first mismatch."""
    _check(tp, value, "$")


@functools.cache
def _hints(tp: Any) -> dict[str, Any]:
    return typing.get_type_hints(tp, include_extras=True)


def _strip(tp: Any) -> Any:
    """Annotated / Required / NotRequired / ReadOnly wrappers off."""
    while True:
        origin = typing_extensions.get_origin(tp)
        if origin is typing_extensions.Annotated or origin in (
            typing_extensions.Required,
            typing_extensions.NotRequired,
            getattr(typing_extensions, "ReadOnly", None),
        ):
            tp = typing_extensions.get_args(tp)[0]
        else:
            return tp


_LISTS = (
    list,
    tuple,
    collections.abc.Iterable,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    typing.Iterable,
    typing.Sequence,
)


def _check(tp: Any, value: Any, path: str) -> None:
    tp = _strip(tp)
    if tp is Any or tp is object:
        return
    if tp is None or tp is type(None):
        if value is not None:
            raise StrictError(f"{path}: expected null, got {value!r:.80}")
        return
    origin = typing_extensions.get_origin(tp)
    args = typing_extensions.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        failures = []
        for member in args:
            try:
                _check(member, value, path)
            except StrictError as exc:
                failures.append(str(exc))
            else:
                return
        # Report the members whose `type` matched: the others failed for that alone.
        kind = f"{path}.type:"
        relevant = [f for f in failures if not f.startswith(kind)] or failures
        raise StrictError(" | ".join(sorted(set(relevant), key=len)[:3]))
    if origin is typing_extensions.Literal or origin is typing.Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise StrictError(f"{path}: {value!r:.80} is not one of {args}")
        return
    if typing_extensions.is_typeddict(tp):
        _typeddict(tp, value, path)
        return
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        _model(tp, value, path)
        return
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise StrictError(f"{path}: expected an object, got {type(value).__name__}")
        if len(args) == 2:
            for key, item in value.items():
                _check(args[1], item, f"{path}.{key}")
        return
    if origin in _LISTS or tp in (list, tuple) or _is_sequence_not_str(tp):
        if not isinstance(value, list):
            raise StrictError(f"{path}: expected a list, got {type(value).__name__}")
        item_tp = args[0] if args else Any
        for number, item in enumerate(value):
            _check(item_tp, item, f"{path}[{number}]")
        return
    if tp in _SCALARS:
        if not isinstance(value, _SCALARS[tp]) or (tp is not bool and isinstance(value, bool)):
            raise StrictError(f"{path}: expected {tp.__name__}, got {value!r:.80}")
        return
    if isinstance(tp, typing.TypeVar):
        return
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if value not in {member.value for member in tp}:
            raise StrictError(f"{path}: {value!r:.80} is not one of {tp.__name__}")
        return
    if isinstance(tp, type) and not isinstance(value, tp) and origin is None:
        raise StrictError(f"{path}: expected {tp.__name__}, got {type(value).__name__}")


def _is_sequence_not_str(tp: Any) -> bool:
    origin = typing_extensions.get_origin(tp) or tp
    return getattr(origin, "__name__", "") == "SequenceNotStr"


def _typeddict(tp: Any, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise StrictError(f"{path}: expected an object ({tp.__name__}), got {value!r:.80}")
    hints = _hints(tp)
    allowed = ALLOWED.get(tp.__name__, frozenset())
    unknown = [k for k in value if k not in hints and k not in allowed]
    if unknown:
        raise StrictError(f"{path}: unknown keys {unknown} for {tp.__name__}")
    missing = [k for k in getattr(tp, "__required_keys__", ()) if k not in value]
    if missing:
        raise StrictError(f"{path}: missing required keys {missing} for {tp.__name__}")
    for key, item in value.items():
        if key in hints:
            _check(hints[key], item, f"{path}.{key}")


def _model(tp: type[BaseModel], value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise StrictError(f"{path}: expected an object ({tp.__name__}), got {value!r:.80}")
    fields = {(f.alias or name): f for name, f in tp.model_fields.items()}
    allowed = ALLOWED.get(tp.__name__, frozenset())
    unknown = [k for k in value if k not in fields and k not in allowed]
    if unknown:
        raise StrictError(f"{path}: unknown keys {unknown} for {tp.__name__}")
    missing = [k for k, f in fields.items() if f.is_required() and k not in value]
    if missing:
        raise StrictError(f"{path}: missing required keys {missing} for {tp.__name__}")
    for key, item in value.items():
        if key in fields:
            _check(fields[key].annotation, item, f"{path}.{key}")
