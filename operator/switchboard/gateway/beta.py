"""The client's `anthropic-beta` header on a Messages-to-Messages call.

Claude Code turns features on with `anthropic-beta` (`context_management`, `output_config`,
adaptive thinking, mid-conversation system turns); an Anthropic upstream refuses those fields
without it. The client's value is merged with the provider's own `anthropic-beta` (the
provider's first, duplicates removed) into a copy of the endpoint whose request head carries
it. Only requests that send the header pay for this, and the copies are cached per (endpoint,
value): an agent sends the same value on every request.
"""

from __future__ import annotations

import dataclasses
import re

from switchboard.gateway.upstream import Endpoint

HEADER = "anthropic-beta"
_TOKEN = re.compile(r"^[A-Za-z0-9._-]+$")
_CACHE_LIMIT = 256


def merged(own: str | None, client: str) -> str:
    """The provider's beta names, then the client's new ones; names that are not plain tokens
    (letters, digits, `._-`) are left out, so no header can be smuggled in."""
    names: dict[str, None] = {}
    for value in (own or "", client):
        for part in value.split(","):
            name = part.strip()
            if name and _TOKEN.match(name):
                names[name] = None
    return ",".join(names)


class Betas:
    """Endpoints with a client's `anthropic-beta` merged in, cached per (request head, value):
    one per process (the Proxy's), at most _CACHE_LIMIT entries."""

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, str], Endpoint] = {}

    def endpoint(self, endpoint: Endpoint, client: str) -> Endpoint:
        key = (endpoint.head, client)
        found = self._cache.get(key)
        if found is not None:
            return found
        result = with_client_beta(endpoint, client)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result


def with_client_beta(endpoint: Endpoint, client: str) -> Endpoint:
    """`endpoint` with the client's `anthropic-beta` merged into its request head."""
    own = endpoint.headers.get(HEADER)
    value = merged(own, client)
    if not value or value == own:
        result = endpoint
    else:
        line = f"{HEADER}: {value}\r\n".encode("latin-1")
        head = endpoint.head
        if own is not None:
            head = head.replace(f"{HEADER}: {own}\r\n".encode("latin-1"), line)
        else:
            head += line
        result = dataclasses.replace(
            endpoint, head=head, headers={**endpoint.headers, HEADER: value}
        )
    return result
