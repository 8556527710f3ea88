"""The upstream's own tokenizer (CustomProvider `tokenizer: vllm`), gateway and fake as processes.

Covers: POST /v1/messages/count_tokens answers vLLM's `/tokenize` count with
`x-switchboard-token-count: upstream`, asks it once per request shape (cached), and answers the
estimate with `x-switchboard-token-count: estimate` for a provider without a tokenizer or whose
tokenizer fails; the context-window check admits a prompt the estimate would refuse when the
upstream counts it small, and does not ask the tokenizer for a prompt far below the window.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import Gateway, Process, render_text, start, start_gateway
from tests.upstreams.server import free_port

pytestmark = pytest.mark.gateway

KEY = "sk-tokenizer-tier-0123456789abcdef"
AUTH = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


def _provider(name: str, port: int, tokenizer: bool, window: int = 4096) -> str:
    return (
        "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
        f"metadata: {{name: {name}}}\nspec:\n  baseUrl: http://127.0.0.1:{port}/v1\n"
        + ("  tokenizer: vllm\n" if tokenizer else "")
        + f"  models:\n    - {{id: m, contextWindow: {window}, maxTokens: 10, cost: {{}}}}\n---\n"
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    work = tmp_path_factory.mktemp("tokenizer")
    vllm, tgi = free_port(), free_port()
    fakes: list[Process] = [
        start(
            ["-m", "tests.upstreams", "--shape", shape, "--port", str(port)],
            work / f"{shape}.log",
            f"http://127.0.0.1:{port}/_requests",
        )
        for shape, port in (("vllm", vllm), ("tgi", tgi))
    ]
    text = (
        _provider("vllm", vllm, tokenizer=True)
        + _provider("plain", vllm, tokenizer=False)
        + _provider("broken", tgi, tokenizer=True)  # TGI serves no /tokenize: 404
        + _provider("tight", vllm, tokenizer=True, window=200)
        + _provider("tight-plain", vllm, tokenizer=False, window=200)
        + "apiVersion: v1\nkind: Secret\n"
        "metadata: {name: keys, labels: {switchboard.dev/secret: 'true'}}\n"
        f"stringData: {{k: {KEY}}}\n"
        "---\napiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\n"
        "metadata: {name: all}\nspec:\n  keys: [{name: all, secretRef: {name: keys, key: k}}]\n"
        "  allowedProviders: ['*']\n"
    )
    try:
        gateway = start_gateway(render_text(text, work), work / "gateway.log")
        yield gateway, f"http://127.0.0.1:{vllm}"
        gateway.process.stop()
    finally:  # the fakes stop even when the gateway did not start
        for fake in fakes:
            fake.stop()


def _tokenize_calls(upstream: str) -> list[dict[str, Any]]:
    seen = httpx.get(f"{upstream}/_requests").json()
    return [r["body"] for r in seen if r["path"] == "/tokenize"]


def _count(gateway: Gateway, model: str, text: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{gateway.url}/v1/messages/count_tokens", json=body, headers=AUTH)


def test_count_tokens_asks_the_upstream_tokenizer_once_per_shape(
    served: tuple[Gateway, str],
) -> None:
    gateway, upstream = served
    before = len(_tokenize_calls(upstream))
    first = _count(gateway, "vllm:m", "one two three four")
    assert first.status_code == 200, first.text
    assert first.headers["x-switchboard-token-count"] == "upstream"
    assert first.json() == {"input_tokens": 4 + 3}  # the fake: words + 3 per message
    calls = _tokenize_calls(upstream)
    assert len(calls) == before + 1
    assert calls[-1] == {
        "model": "m",
        "messages": [{"role": "user", "content": "one two three four"}],
    }
    again = _count(gateway, "vllm:m", "one two three four")
    assert again.json() == first.json()
    assert again.headers["x-switchboard-token-count"] == "upstream"
    assert len(_tokenize_calls(upstream)) == before + 1  # cached
    other = _count(gateway, "vllm:m", "five six")
    assert other.json() == {"input_tokens": 2 + 3}
    assert len(_tokenize_calls(upstream)) == before + 2


def test_count_tokens_without_or_with_a_broken_tokenizer_is_the_estimate(
    served: tuple[Gateway, str],
) -> None:
    gateway, upstream = served
    before = len(_tokenize_calls(upstream))
    plain = _count(gateway, "plain:m", "x" * 400)
    assert plain.status_code == 200, plain.text
    assert plain.headers["x-switchboard-token-count"] == "estimate"
    assert plain.json()["input_tokens"] >= 100  # characters / 4
    broken = _count(gateway, "broken:m", "x" * 400)
    assert broken.status_code == 200, broken.text
    assert broken.headers["x-switchboard-token-count"] == "estimate"
    assert broken.json() == plain.json()
    assert len(_tokenize_calls(upstream)) == before
    assert "tokenizer http://127.0.0.1:" in gateway.log_text  # the failure is logged


def _chat(gateway: Gateway, model: str, text: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 5}
    headers = {"authorization": f"Bearer {KEY}"}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers)


def test_context_check_uses_the_upstream_count(served: tuple[Gateway, str]) -> None:
    """One 2,000-character word: the estimate says 500 tokens, more than the 200-token
    window; the upstream counts 4 (1 word + 3), so the request fits and is served."""
    gateway, upstream = served
    word = "y" * 2000
    refused = _chat(gateway, "tight-plain:m", word)
    assert refused.status_code == 400, refused.text
    assert "context window" in refused.text
    served_ok = _chat(gateway, "tight:m", word)
    assert served_ok.status_code == 200, served_ok.text
    assert _tokenize_calls(upstream)[-1]["messages"] == [{"role": "user", "content": word}]


def test_small_prompts_pay_no_tokenizer_call(served: tuple[Gateway, str]) -> None:
    gateway, upstream = served
    before = len(_tokenize_calls(upstream))
    answer = _chat(gateway, "vllm:m", "hello there")
    assert answer.status_code == 200, answer.text
    assert len(_tokenize_calls(upstream)) == before


def test_render_carries_the_tokenize_url(tmp_path: Path) -> None:
    config = render_text(_provider("v", 8000, tokenizer=True), tmp_path)
    assert '"tokenize_url":"http://127.0.0.1:8000/tokenize"' in config.read_text().replace(" ", "")
