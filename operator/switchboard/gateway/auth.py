"""Client authentication: the API key of a request -> the Access it was granted.

Keys arrive as `Authorization: Bearer <key>` or `x-api-key: <key>`; the routing table holds
only their SHA-256 digests (docs/gateway.md, "Keys").
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from switchboard.gateway import errors
from switchboard.gateway.table import Access, Table


class Keys:
    """Key -> digest, cached for keys that were valid (a digest per request is most of the
    lookup's cost). Only tokens some table accepted enter the cache, so its size follows the
    config (at most MAX_CACHED entries), never what clients send."""

    MAX_CACHED = 10_000
    MAX_TOKEN = 1024
    """Characters: longer tokens are not cached (no configured key is that long in practice)."""

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}

    def access(self, request: web.Request, table: Table) -> Access:
        auth = request.headers.get("authorization")
        token = None
        if auth and auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        if not token:
            token = request.headers.get("x-api-key", "").strip() or None
        if token is None:
            raise errors.AuthError(
                "no API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        digests = self._digests
        digest = digests.get(token)
        if digest is None:
            try:
                raw = token.encode()
            except UnicodeEncodeError:  # aiohttp keeps undecodable header bytes as surrogates
                raise errors.AuthError("invalid API key: it is not valid UTF-8") from None
            digest = hashlib.sha256(raw).hexdigest()
            access = table.keys.get(digest)
            if access is None:
                raise errors.AuthError("invalid API key: it is not in any AccessKeyConfig")
            if len(token) <= self.MAX_TOKEN:
                if len(digests) >= self.MAX_CACHED:
                    digests.clear()
                digests[token] = digest
            return access
        access = table.keys.get(digest)
        if access is None:  # valid once, since removed from the config
            del digests[token]
            raise errors.AuthError("invalid API key: it is not in any AccessKeyConfig")
        return access
