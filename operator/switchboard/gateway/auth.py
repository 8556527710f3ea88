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
    """Key -> digest, cached (a digest per request is most of the lookup's cost)."""

    MAX_CACHED = 10_000

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}

    def digest(self, token: str) -> str:
        digest = self._digests.get(token)
        if digest is None:
            digest = hashlib.sha256(token.encode()).hexdigest()
            if len(self._digests) > self.MAX_CACHED:
                self._digests.clear()
            self._digests[token] = digest
        return digest

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
        access = table.keys.get(self.digest(token))
        if access is None:
            raise errors.AuthError("invalid API key: it is not in any AccessKeyConfig")
        return access
