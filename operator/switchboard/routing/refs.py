"""Model references and durations: small pure parsers shared by the compiler and the gateway."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def split_ref(value: str) -> tuple[str, str] | None:
    """`provider:model` split at the FIRST colon; None for a value without one (an agent name).

    >>> split_ref("ollama:qwen2.5-coder:32b")
    ('ollama', 'qwen2.5-coder:32b')
    """
    provider, sep, model = value.partition(":")
    if not sep:
        return None
    return provider, model


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `500ms`, `10s`, `2m`, `1h30m`. Raises ValueError."""
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 10s, 2m or 1h30m")
    return total
