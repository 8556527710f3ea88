"""Limits and budgets through a real gateway process, fake upstreams and the official SDKs.

Covers (one AccessKeyConfig with a USD budget per day in Europe/Berlin on `anth:m` and a
tokens-per-minute limit on `chat:m`, four keys of scope `key`):
- budget, Anthropic SDK, stream and not: the request whose cost crosses the budget is the last
  to pass; the next gets 429 `rate_limit_error` naming the key and the budget, with
  retry-after, x-should-retry: false and the window's reset (next midnight in Berlin);
- tokens per minute, OpenAI SDK, stream and not: the same with the tokens of each answer, and
  `x-ratelimit-*-tokens` headers on the answers and on the 429;
- the in-process counters survive a gateway restart (`--limits-file`), and `switchboard usage`
  prints each key's spend and reset from that file;
- a key without limits gets no x-ratelimit headers.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import (
    KEY,
    PRICES,
    PROVIDER_KEY,
    Gateway,
    Upstreams,
    render_text,
    start_gateway,
)
from tests.support import wait

LABEL = "{switchboard.dev/secret: 'true'}"  # Switchboard reads only opted-in Secrets
pytestmark = pytest.mark.gateway

BUDGET = 0.0002
TPM = 150
KEYS = {
    "budget-plain": "sk-limits-budget-plain-0123456789",
    "budget-stream": "sk-limits-budget-stream-0123456789",
    "tpm-plain": "sk-limits-tpm-plain-0123456789abc",
    "tpm-stream": "sk-limits-tpm-stream-0123456789ab",
}


def limits_manifests(u: Upstreams) -> str:
    cost = str(PRICES).replace("'", "")

    def provider(name: str, port: int, api: str, root: bool) -> str:
        base = f"http://127.0.0.1:{port}" + ("" if root else "/v1")
        return (
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
            f"metadata: {{name: {name}}}\nspec:\n  baseUrl: {base}\n  api: {api}\n"
            "  apiKeySecretRef: {name: provider-key, key: key}\n"
            f"  models:\n    - {{id: m, contextWindow: 4096, maxTokens: 512, cost: {cost}}}\n---\n"
        )

    keys = "".join(f"    - {{name: {n}, secretRef: {{name: keys, key: {n}}}}}\n" for n in KEYS)
    data = ", ".join(f"{n}: {t}" for n, t in KEYS.items())
    return (
        provider("chat", u.chat, "openai-completions", False)
        + provider("anth", u.anthropic, "anthropic-messages", True)
        + "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: provider-key, labels: {LABEL}}}\n"
        f"stringData: {{key: {PROVIDER_KEY}}}\n---\n"
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: keys, labels: {LABEL}}}\n"
        f"stringData: {{{data}}}\n---\n"
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: free, labels: {LABEL}}}\n"
        f"stringData: {{k: {KEY}}}\n---\n"
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\nmetadata: {name: team}\n"
        f"spec:\n  keys:\n{keys}  allowedProviders: ['*']\n"
        f"  limits: [{{tokensPerMinute: {TPM}, models: ['chat:m']}}]\n"
        f"  budgets: [{{usd: {BUDGET}, window: day, timeZone: Europe/Berlin,"
        " models: ['anth:m']}]\n"
        "---\n"
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\nmetadata: {name: free}\n"
        "spec:\n  keys: [{name: free, secretRef: {name: free, key: k}}]\n"
        "  allowedProviders: ['*']\n"
    )


CLIENTS: list[anthropic.Anthropic | openai.OpenAI] = []


def _ant(url: str, key: str) -> anthropic.Anthropic:
    CLIENTS.append(anthropic.Anthropic(base_url=url, api_key=key, max_retries=0))
    return CLIENTS[-1]  # type: ignore[return-value]


def _oai(url: str, key: str) -> openai.OpenAI:
    CLIENTS.append(openai.OpenAI(base_url=url, api_key=key, max_retries=0))
    return CLIENTS[-1]  # type: ignore[return-value]


@dataclass
class Served:
    gateway: Gateway
    work: Path

    def restart(self) -> None:
        self.gateway.process.stop()
        self.gateway = _start(self.gateway.config, self.work)


def _start(config: Path, work: Path) -> Gateway:
    return start_gateway(
        config, work / f"gateway-{time.monotonic_ns()}.log", "--limits-file", str(work / "c.json")
    )


@pytest.fixture(scope="module")
def served(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("limits")
    s = Served(_start(render_text(limits_manifests(upstreams), work), work), work)
    yield s
    for client in CLIENTS:
        client.close()
    s.gateway.process.stop()


def wait_for(check: object, timeout: float = 10) -> None:
    assert callable(check)
    wait.wait_for(check, timeout=timeout, step=0.02)


def settled(gw: Gateway, key: str, requests: int) -> float:
    """The key's spend once the gateway has settled `requests` requests of it."""
    wait_for(lambda: gw.metric("switchboard_key_requests_total", key=key) >= requests)
    return gw.metric("switchboard_key_cost_usd_total", key=key)


def next_berlin_midnight() -> str:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    tomorrow = dt.datetime.now(berlin).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0), tzinfo=berlin).isoformat()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_budget_crossing_request_is_last(served: Served, stream: bool) -> None:
    name = f"budget-{'stream' if stream else 'plain'}"
    gw = served.gateway
    client = _ant(gw.url, KEYS[name])
    key = f"team/{name}"
    spent: list[float] = [0.0]
    for i in range(1, 50):
        args = {
            "model": "anth:m",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
        }
        try:
            if stream:
                with client.messages.stream(**args) as s:  # type: ignore[arg-type]
                    s.get_final_message()
            else:
                client.messages.create(**args)  # type: ignore[arg-type]
        except anthropic.RateLimitError as exc:
            refused = exc
            break
        spent.append(settled(gw, key, i))
    else:
        pytest.fail("the budget never refused")
    assert len(spent) >= 3, spent
    # The last request that passed started below the budget and ended at or over it.
    assert spent[-2] < BUDGET <= spent[-1], spent
    body = refused.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    message = body["error"]["message"]
    assert f"key '{key}'" in message and "budget of $0.00 per day" in message
    assert "AccessKeyConfig default/team spec.budgets[0]" in message
    reset = next_berlin_midnight()
    assert refused.response.headers["x-switchboard-budget-reset"] == reset
    assert reset in message
    assert refused.response.headers["x-should-retry"] == "false"
    assert int(refused.response.headers["retry-after"]) > 0
    # Still refused, and nothing more was spent.
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(
            model="anth:m", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert gw.metric("switchboard_key_cost_usd_total", key=key) == spent[-1]
    assert gw.metric("switchboard_limit_rejections_total", key=key, limit="budget") == 2


def _tokens(usage: openai.types.CompletionUsage) -> int:
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    return usage.prompt_tokens - (cached or 0) + usage.completion_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_tokens_per_minute_crossing_request_is_last(served: Served, stream: bool) -> None:
    name = f"tpm-{'stream' if stream else 'plain'}"
    # All requests must fall in one calendar minute: start early in one.
    wait_for(lambda: time.time() % 60 < 40, timeout=30)
    client = _oai(f"{served.gateway.url}/v1", KEYS[name])
    used = [0]
    headers: list[httpx.Headers] = []
    messages = [{"role": "user", "content": "count to ten please"}]
    for _ in range(60):
        try:
            if stream:
                raw = client.chat.completions.with_raw_response.create(
                    model="chat:m",
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                )
                usage = [c.usage for c in raw.parse() if c.usage][-1]
            else:
                raw = client.chat.completions.with_raw_response.create(
                    model="chat:m",
                    messages=messages,  # type: ignore[arg-type]
                )
                usage = raw.parse().usage
        except openai.RateLimitError as exc:
            refused = exc
            break
        assert usage is not None
        headers.append(raw.headers)
        used.append(used[-1] + _tokens(usage))
    else:
        pytest.fail("the tokens-per-minute limit never refused")
    assert len(used) >= 3, used
    assert used[-2] < TPM <= used[-1], used
    assert headers[0]["x-ratelimit-limit-tokens"] == str(TPM)
    assert int(headers[-1]["x-ratelimit-remaining-tokens"]) < TPM
    body = refused.body
    assert isinstance(body, dict)
    assert body["type"] == "rate_limit_exceeded"  # the SDK hands over the inner "error" object
    assert f"key 'team/{name}'" in body["message"]
    assert f"{TPM} tokens per minute" in body["message"]
    h = refused.response.headers
    assert h["x-ratelimit-remaining-tokens"] == "0"
    assert h["x-ratelimit-limit-tokens"] == str(TPM)
    assert 1 <= int(h["retry-after"]) <= 60


def test_key_without_limits_gets_no_limit_headers(served: Served) -> None:
    client = _oai(f"{served.gateway.url}/v1", KEY)
    raw = client.chat.completions.with_raw_response.create(
        model="anth:m", messages=[{"role": "user", "content": "hi"}]
    )
    assert not [h for h in raw.headers if h.startswith("x-ratelimit")]
    assert "x-switchboard-budget-reset" not in raw.headers


def test_counts_survive_a_gateway_restart(served: Served) -> None:
    # budget-plain spent its budget above; the restarted process still refuses it.
    client = _ant(served.gateway.url, KEYS["budget-plain"])
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(
            model="anth:m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    served.restart()
    # The stopped process saved its counters: `switchboard usage` reads them from the file.
    usage = subprocess.run(
        [
            sys.executable,
            "-m",
            "switchboard.cli",
            "usage",
            "--config",
            str(served.gateway.config),
            "--limits-file",
            str(served.work / "c.json"),
            "-o",
            "json",
        ],
        capture_output=True,
        check=True,
    )
    rows = {r["key"]: r for r in json.loads(usage.stdout)}
    assert set(rows) == set(KEYS)
    assert rows["budget-plain"]["spent_usd"] >= BUDGET
    assert rows["budget-plain"]["resets"] == next_berlin_midnight()
    assert rows["tpm-plain"]["spent_usd"] == 0
    command = [sys.executable, "-m", "switchboard.cli", "usage", "--config"]
    table = subprocess.run(
        [*command, str(served.gateway.config), "--limits-file", str(served.work / "c.json")],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert table.splitlines()[0].split() == [
        "CONFIG",
        "KEY",
        "BUDGET",
        "WINDOW",
        "SPENT",
        "OF",
        "RESETS",
    ]
    client = _ant(served.gateway.url, KEYS["budget-plain"])
    with pytest.raises(anthropic.RateLimitError, match="has spent its budget"):
        client.messages.create(
            model="anth:m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
