"""Header names and values a CustomProvider may set: what HTTP/1.1 carries, and who owns what.

Pure. The compiler reports a bad header on its CustomProvider; the CRD's CEL rules refuse the same
(api/provider.py); the gateway's table uses the same checks to say why it cannot render a provider.

- names are RFC 9110 tokens (`!#$%&'*+-.^_`|~`, digits and letters);
- values are visible ASCII or Latin-1 (obs-text), spaces and tabs: no CR, LF, NUL or other
  control character, and nothing beyond U+00FF (the request head is Latin-1 bytes);
- headers the gateway sets itself (framing, host, content type, credentials) are refused.
"""

from __future__ import annotations

import re

from switchboard.api import provider as api_provider

# The CRD's patterns without their anchors, for fullmatch (Python's `$` also matches before a
# final newline, RE2's does not).
NAME = re.compile(api_provider.HEADER_NAME_PATTERN.removeprefix("^").removesuffix("$"))
_VALUE = re.compile(api_provider.HEADER_VALUE_PATTERN.removeprefix("^").removesuffix("$"))
CREDENTIALS = api_provider.FORBIDDEN_HEADERS
GATEWAY_OWNED = api_provider.GATEWAY_HEADERS


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a provider header, with the fix; None when it can."""
    if not NAME.fullmatch(name):
        bad = next((c for c in name if not NAME.fullmatch(c)), "")
        return (
            f"header name {name!r} has {_describe(bad)}, which an HTTP header name cannot "
            "contain; use letters, digits and !#$%&'*+-.^_`|~ only (for example X-Team)"
        )
    lower = name.lower()
    if lower in CREDENTIALS:
        return (
            f"header {name!r} carries credentials; put the key in a Secret, label it "
            "switchboard.dev/secret=true and reference it with apiKeySecretRef"
        )
    if lower in GATEWAY_OWNED:
        return (
            f"header {name!r} is set by the gateway itself (from baseUrl, the request body and its "
            "own framing); remove it from spec.headers"
        )
    return None


def value_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be sent as header `name`, naming the first bad character; or None."""
    if _VALUE.fullmatch(value):
        return None
    index, bad = next((i, c) for i, c in enumerate(value) if not _VALUE.fullmatch(c))
    return (
        f"the value of header {name!r} has {_describe(bad)} at position {index}, which an "
        "HTTP header cannot carry (values are visible ASCII or Latin-1 text, spaces and tabs: "
        "no CR, LF, NUL, other ASCII control character or character beyond U+00FF); replace "
        "it with plain ASCII text"
    )


def _describe(char: str) -> str:
    if not char:
        return "no characters"
    if char.isprintable() and not char.isspace():
        return f"{char!r} (U+{ord(char):04X})"
    return f"the control or space character U+{ord(char):04X}"
