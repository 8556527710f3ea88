"""Prompt token counts from the upstream's own tokenizer, for count_tokens and the context check.

A provider with `tokenizer: vllm` is asked `POST /tokenize` with the request in Chat form
(`{"model", "messages", "tools"?}`, vLLM's TokenizeChatRequest, which applies the model's chat
template) and answers `{"count": N, ...}`. Counts are cached per request shape (the exact
bytes sent, with the model and the tokenizer's URL) in a bounded LRU. When the tokenizer fails
(not reachable, an error status, an unexpected body, slower than table.TOKENIZE_TIMEOUT), the
caller falls back to the gateway's estimate and the tokenizer is not asked again for
`COOL_DOWN` seconds, so a broken tokenizer costs one failed call per interval, not one per
request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict

import orjson

from switchboard.dialects import registry
from switchboard.dialects.types import Ctx, Dialect, Json
from switchboard.gateway.table import Route, Target
from switchboard.gateway.upstream import Endpoint, Pool, UpstreamError

CACHE_SIZE = 4096
COOL_DOWN = 30.0
log = logging.getLogger("switchboard.gateway.tokens")


class Tokens:
    """The upstream counts of one gateway process."""

    def __init__(self, pool: Pool, cache_size: int = CACHE_SIZE) -> None:
        self.pool = pool
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        self._failed_until: dict[str, float] = {}

    async def count(self, target: Target, surface: Dialect, body: Json) -> int | None:
        """The prompt tokens of `body` (in the `surface` API) as `target`'s upstream counts
        them; None when the provider has no tokenizer or it failed (use the estimate)."""
        endpoint = target.tokenize
        if endpoint is None or time.monotonic() < self._failed_until.get(endpoint.url, 0.0):
            return None
        payload = _payload(target, surface, body)
        if payload is None:
            return None
        key = hashlib.sha256(endpoint.url.encode() + b"\0" + payload).digest()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        tokens = await self._ask(endpoint, payload)
        if tokens is None:
            self._failed_until[endpoint.url] = time.monotonic() + COOL_DOWN
            return None
        self._cache[key] = tokens
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return tokens

    async def for_plan(
        self, route: Route, surface: Dialect, body: Json, estimate: int
    ) -> dict[str, int]:
        """Upstream counts by provider for the context-window check: asked only of candidates
        whose tokenizer is set and for whom the estimate is at least half the context window
        (below that the estimate's error cannot matter, and the request pays no extra call).
        `estimate`: the body's inspect.estimate_prompt_tokens (computed once per request)."""
        if not route.tokenize:  # no candidate has a tokenizer (the proxy skips the call)
            return {}
        counts: dict[str, int] = {}
        for target in route.chain:
            if target.tokenize is None or target.provider in counts:
                continue
            if target.meta is not None and estimate * 2 < target.meta.context_window:
                continue
            tokens = await self.count(target, surface, body)
            if tokens is not None:
                counts[target.provider] = tokens
        return counts

    async def _ask(self, endpoint: Endpoint, payload: bytes) -> int | None:
        try:
            response = await self.pool.post(endpoint, payload)
            try:
                data = await response.read()
            finally:
                response.release()
        except (UpstreamError, TimeoutError, OSError) as exc:
            log.warning("tokenizer %s failed (%s); using the estimate", endpoint.url, exc)
            return None
        if response.status != 200:
            log.warning(
                "tokenizer %s answered %d; using the estimate", endpoint.url, response.status
            )
            return None
        try:
            count = orjson.loads(data).get("count")
        except (orjson.JSONDecodeError, AttributeError):
            count = None
        if type(count) is not int or count < 0:
            log.warning("tokenizer %s answered without a count; using the estimate", endpoint.url)
            return None
        return count


def _payload(target: Target, surface: Dialect, body: Json) -> bytes | None:
    """vLLM's TokenizeChatRequest for the request, or None if it has no Chat form."""
    ctx = Ctx(upstream_model=target.model_id, response_model=target.ref, max_tokens=None,
              stream=False)  # fmt: skip
    try:
        chat = registry.get(surface, Dialect.CHAT).translate_request(body, ctx)
    except Exception:  # a request the translators refuse is refused later, with its reason
        return None
    request: Json = {"model": target.model_id, "messages": chat.get("messages", [])}
    if chat.get("tools"):
        request["tools"] = chat["tools"]
    return orjson.dumps(request)
