"""The client's `anthropic-beta` merged into an Anthropic endpoint's request head.

Covers: the provider's names first, the client's new ones after, duplicates once; names that
are not plain tokens are left out (no header smuggling); an endpoint without its own
`anthropic-beta` gets the line added; the same value gives the same cached endpoint.
"""

from __future__ import annotations

from switchboard.gateway import beta
from switchboard.gateway.upstream import Endpoint


def _endpoint(headers: dict[str, str]) -> Endpoint:
    return Endpoint.build("http://127.0.0.1:9/v1/messages", headers, connect=1, read=1, total=1)


def test_merged_keeps_order_and_drops_duplicates_and_junk() -> None:
    assert beta.merged("a-1,b-2", "b-2, c-3") == "a-1,b-2,c-3"
    assert beta.merged(None, "x\r\nevil: 1,ok-1") == "ok-1"


def test_head_carries_the_merged_value() -> None:
    own = _endpoint({"anthropic-beta": "p-1", "x-api-key": "k"})
    merged = beta.with_client_beta(own, "c-1")
    assert b"anthropic-beta: p-1,c-1\r\n" in merged.head
    assert b"anthropic-beta: p-1\r\n" not in merged.head
    assert merged.key == own.key  # the same connection pool
    bare = _endpoint({"x-api-key": "k"})
    assert beta.with_client_beta(bare, "c-1").head.endswith(b"anthropic-beta: c-1\r\n")
    betas = beta.Betas()
    assert betas.endpoint(bare, "c-1") is betas.endpoint(bare, "c-1")
    assert beta.with_client_beta(own, "p-1") is own
