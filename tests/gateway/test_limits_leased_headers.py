"""A gateway on a real redis-server admitting from its leases (limits far from reached): the
answers carry the remaining-quota headers, each once, on the wire, non-streaming and streaming,
through the official openai SDK (gateway/responses.py writes them as prebuilt header lines).

Covers: after the first request (a script call), the next ones are admitted from the replica's
leases (far fewer script calls than requests, read from Redis's INFO commandstats); every
answer has the nine x-ratelimit-*/budget headers exactly once, with values that parse and never
show more left than the limit; a key without limits on the same gateway gets none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import redis

from tests.gateway.conftest import PRICES, Gateway, Upstreams, render_text, start_gateway
from tests.support.redis_server import RedisServer

LABEL = "{switchboard.dev/secret: 'true'}"
pytestmark = pytest.mark.gateway

LIMITED = "sk-leased-limited-0123456789abcdef"
PLAIN = "sk-leased-plain-0123456789abcdef"
RPM, TPM, USD = 1_000_000, 1_000_000_000, 100_000
NAMES = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-switchboard-budget-limit-usd",
    "x-switchboard-budget-remaining-usd",
    "x-switchboard-budget-reset",
)


def manifests(u: Upstreams) -> str:
    cost = str(PRICES).replace("'", "")
    return (
        "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\nmetadata: {name: chat}\n"
        f"spec:\n  baseUrl: http://127.0.0.1:{u.chat}/v1\n"
        f"  models:\n    - {{id: m, contextWindow: 4096, maxTokens: 64, cost: {cost}}}\n---\n"
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: keys, labels: {LABEL}}}\n"
        f"stringData: {{l: {LIMITED}, p: {PLAIN}}}\n---\n"
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\n"
        "metadata: {name: team}\nspec:\n  keys: [{name: l, secretRef: {name: keys, key: l}}]\n"
        "  allowedProviders: ['*']\n"
        f"  limits: [{{requestsPerMinute: {RPM}, tokensPerMinute: {TPM}, maxInFlight: 1000}}]\n"
        f"  budgets: [{{scope: shared, usd: {USD}, window: day}}]\n---\n"
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\n"
        "metadata: {name: plain}\nspec:\n  keys: [{name: p, secretRef: {name: keys, key: p}}]\n"
        "  allowedProviders: ['*']\n"
    )


@pytest.fixture(scope="module")
def leased(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RedisServer, Gateway]]:
    work = tmp_path_factory.mktemp("leased")
    server = RedisServer(work)
    server.start()
    config = render_text(manifests(upstreams), work)
    gateway = start_gateway(config, work / "gw.log", "--limits-redis-url", server.url)
    yield server, gateway
    gateway.process.stop()
    server.stop()


def _script_calls(server: RedisServer) -> int:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(
        int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
    )


def _check(headers: Any) -> None:  # (httpx.Headers: the SDK may vendor its own httpx)
    for name in NAMES:
        assert len(headers.get_list(name)) == 1, (name, headers.get_list(name))
    assert headers["x-ratelimit-limit-requests"] == str(RPM)
    assert 0 <= int(headers["x-ratelimit-remaining-requests"]) < RPM
    assert headers["x-ratelimit-limit-tokens"] == str(TPM)
    assert 0 <= int(headers["x-ratelimit-remaining-tokens"]) < TPM
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert float(headers["x-switchboard-budget-limit-usd"]) == USD
    assert 0 <= float(headers["x-switchboard-budget-remaining-usd"]) < USD
    assert (
        headers["x-switchboard-budget-reset"].endswith("Z")
        or "+" in headers["x-switchboard-budget-reset"]
    )


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_leased_answers_carry_each_header_once(
    leased: tuple[RedisServer, Gateway], stream: bool
) -> None:
    server, gateway = leased
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=LIMITED, max_retries=0)
    messages = [{"role": "user", "content": "hello there"}]
    before = _script_calls(server)
    requests = 40
    for _ in range(requests):
        if stream:
            raw = client.chat.completions.with_raw_response.create(
                model="chat:m",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
            )
            chunks = list(raw.parse())
            assert chunks
        else:
            raw = client.chat.completions.with_raw_response.create(
                model="chat:m",
                messages=messages,  # type: ignore[arg-type]
            )
            assert raw.parse().choices
        _check(raw.headers)
    calls = _script_calls(server) - before
    assert calls * 4 < requests, calls  # admitted from the leases, not one script call each


def test_a_key_without_limits_gets_no_quota_headers(leased: tuple[RedisServer, Gateway]) -> None:
    _, gateway = leased
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=PLAIN, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="chat:m",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert not [name for name in NAMES if name in raw.headers]
