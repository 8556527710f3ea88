"""Fallback, access, context windows, images, cost and secrets, through the real process.

Covers:
- each fallback trigger moves to the next candidate and shows in `x-switchboard-attempts`,
  the served provider header and `switchboard_fallbacks`: connection refused, 500, 503, 429,
  first-token timeout, context-length errors (vLLM and Anthropic phrasing), on streams too;
- when every candidate fails the client gets the last failure's status in its own shape;
- a failure after the first streamed byte ends the stream with an error event, no retry;
- deny by default: 401 (no key, unknown key), 403 (not allowed), 404 (unknown model) in the
  OpenAI shape on Chat/Responses and the Anthropic shape on Messages; /v1/models per key;
- context window: move to a candidate that fits, truncate when allowed, else 400 with sizes;
- images go to the agent's imageModel; a text-only route answers 400;
- cost = usage x prices with cache read and write, in the header and the metrics, streaming too;
- no client token or provider key in any log line, metric or error body.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import KEY, NARROW_KEY, PRICES, PROVIDER_KEY, Gateway

CHAT = {"role": "user", "content": "hello fallback"}

pytestmark = pytest.mark.gateway


def post_chat(gw: Gateway, model: str, key: str = KEY, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [CHAT], **extra},
        timeout=30,
    )


@pytest.mark.parametrize(
    ("agent", "served", "reason"),
    [
        ("fb-connect", "chat", "connect"),
        ("fb-500", "chat", "status_5xx"),
        ("fb-503", "anth", "status_5xx"),
        ("fb-429", "resp", "status_429"),
        ("fb-timeout", "chat", "first_token_timeout"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_fallback_triggers(
    gateway: Gateway, agent: str, served: str, reason: str, stream: bool
) -> None:
    before = gateway.metric("switchboard_fallbacks_total", reason=reason)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model=agent,
            messages=[CHAT],
            stream=True,  # type: ignore[list-item]
        ) as response:
            headers = response.headers
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    else:
        raw = client.chat.completions.with_raw_response.create(model=agent, messages=[CHAT])  # type: ignore[list-item]
        headers, text = raw.headers, raw.parse().choices[0].message.content
    assert text == "You said: hello fallback"
    assert headers["x-switchboard-provider"] == served
    assert headers["x-switchboard-attempts"] == "2"
    assert gateway.metric("switchboard_fallbacks_total", reason=reason) == before + 1


def test_context_length_errors_fall_back(gateway: Gateway) -> None:
    """vLLM's and then Anthropic's context-length phrasing both move on, to the third."""
    response = post_chat(gateway, "fb-context")
    assert response.status_code == 200
    assert response.headers["x-switchboard-provider"] == "resp"
    assert response.headers["x-switchboard-attempts"] == "3"


def test_all_candidates_fail(gateway: Gateway) -> None:
    response = post_chat(gateway, "fb-all-fail")
    assert response.status_code == 502
    error = response.json()["error"]
    assert "every candidate failed" in error["message"]
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model="fb-all-fail", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 502
    assert info.value.body["type"] == "error"  # type: ignore[index]


def test_failure_after_first_byte_is_not_retried(gateway: Gateway) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "midstream", "messages": [CHAT], "stream": True},
        timeout=30,
    ) as response:
        body = response.read().decode()
    assert response.headers["x-switchboard-attempts"] == "1"
    assert response.headers["x-switchboard-provider"] == "chat"
    assert '"error"' in body and "mid-stream" in body
    assert "[DONE]" not in body
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model="midstream", max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        "".join(stream.text_stream)


def test_deny_by_default(gateway: Gateway) -> None:
    assert post_chat(gateway, "coder", key="sk-nobody").status_code == 401
    no_key = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "coder"})
    assert no_key.status_code == 401 and "Authorization" in no_key.json()["error"]["message"]
    forbidden = post_chat(gateway, "chat:m", key=NARROW_KEY)
    assert forbidden.status_code == 403
    assert "narrow/narrow" in forbidden.json()["error"]["message"]
    assert post_chat(gateway, "coder", key=NARROW_KEY).status_code == 200
    assert post_chat(gateway, "fb-500", key=NARROW_KEY).status_code == 403
    missing = post_chat(gateway, "chat:nope")
    assert missing.status_code == 404 and "/v1/models" in missing.json()["error"]["message"]
    assert post_chat(gateway, "ghost-agent").status_code == 404
    client = anthropic.Anthropic(base_url=gateway.url, api_key=NARROW_KEY, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        client.messages.create(
            model="chat:m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.url, api_key="bad", max_retries=0).messages.create(
            model="coder", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0).responses.create(
            model="chat:nope", input="x"
        )
    narrow_models = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=NARROW_KEY).models.list()
    assert [m.id for m in narrow_models.data] == ["coder"]
    full = [m.id for m in openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY).models.list()]
    assert "chat:m" in full and "fb-500" in full


def test_bad_requests_are_400_in_the_surface_shape(gateway: Gateway) -> None:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    for path in ("/v1/chat/completions", "/v1/responses"):
        response = httpx.post(f"{gateway.url}{path}", headers=headers, content=b"{not json")
        assert response.status_code == 400 and "error" in response.json()
    response = httpx.post(f"{gateway.url}/v1/messages", headers=headers, content=b"[1]")
    assert response.status_code == 400 and response.json()["type"] == "error"
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        headers=headers,
        json={"model": "chat:m", "messages": "nope", "max_tokens": 5},
    )
    assert response.status_code == 400
    big = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers=headers,
        content=b'{"model":"coder","x":"' + b"a" * (11 * 1024 * 1024) + b'"}',
    )
    assert big.status_code == 413


def test_context_window_move_truncate_reject(gateway: Gateway) -> None:
    long_history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 40} for i in range(6)
    ] + [{"role": "user", "content": "last question"}]
    moved = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "ctx-move", "messages": long_history},
    )
    assert moved.status_code == 200
    assert moved.headers["x-switchboard-provider"] == "chat"
    assert moved.headers["x-switchboard-attempts"] == "1"
    truncated = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "ctx-truncate", "messages": long_history},
    )
    assert truncated.status_code == 200
    assert truncated.json()["choices"][0]["message"]["content"] == "You said: last question"
    rejected = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "ctx-reject", "messages": long_history},
    )
    assert rejected.status_code == 400
    message = rejected.json()["error"]["message"]
    assert "tiny:tiny holds 60" in message and "allowTruncation" in message


def test_max_tokens_clamped(gateway: Gateway, upstreams: Any) -> None:
    post_chat(gateway, "chat:m", max_tokens=100_000)
    sent = httpx.get(f"http://127.0.0.1:{upstreams.chat}/_requests").json()[-1]["body"]
    assert sent["max_tokens"] == 512


def test_images_go_to_the_image_model(gateway: Gateway) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content = [{"type": "text", "text": "what is this"}, image]
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "vision", "messages": [{"role": "user", "content": content}]},
    )
    assert response.status_code == 200
    assert response.headers["x-switchboard-model"] == "eyes"
    refused = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "text-only", "messages": [{"role": "user", "content": content}]},
    )
    assert refused.status_code == 400 and "imageModel" in refused.json()["error"]["message"]


def _cost(usage: dict[str, int]) -> float:
    return (
        usage["input_tokens"] * PRICES["input"]
        + usage["output_tokens"] * PRICES["output"]
        + usage["cache_read_input_tokens"] * PRICES["cacheRead"]
        + usage["cache_creation_input_tokens"] * PRICES["cacheWrite"]
    ) / 1_000_000


def test_cost_with_cache_tokens(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    prompt = [{"role": "user", "content": "one two three four five six seven eight"}]
    raw = client.messages.with_raw_response.create(model="anth:m", max_tokens=100, messages=prompt)  # type: ignore[arg-type]
    usage = raw.parse().usage
    # The fake reports 8 uncached input, 2 cache-read and 1 cache-written tokens, 10 output.
    assert (usage.input_tokens, usage.output_tokens) == (8, 10)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (2, 1)
    expected = _cost(usage.model_dump())
    assert expected == pytest.approx((8 * 3 + 10 * 15 + 2 * 0.3 + 1 * 3.75) / 1e6)
    assert float(raw.headers["x-switchboard-cost-usd"]) == pytest.approx(expected, abs=1e-8)

    before = gateway.metric("switchboard_cost_usd_total", provider="anth")
    with client.messages.stream(model="anth:m", max_tokens=100, messages=prompt) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    streamed = _cost(final.usage.model_dump())
    assert streamed == pytest.approx(expected)
    after = gateway.metric("switchboard_cost_usd_total", provider="anth")
    assert after - before == pytest.approx(streamed, abs=1e-9)
    # OpenAI upstream: cached tokens are part of prompt_tokens and billed at the cache price.
    chat = post_chat(gateway, "chat:m")
    u = chat.json()["usage"]
    cached = u["prompt_tokens_details"]["cached_tokens"]
    want = ((u["prompt_tokens"] - cached) * 3 + u["completion_tokens"] * 15 + cached * 0.3) / 1e6
    assert float(chat.headers["x-switchboard-cost-usd"]) == pytest.approx(want, abs=1e-8)


def test_no_secret_anywhere(gateway: Gateway) -> None:
    post_chat(gateway, "coder")
    post_chat(gateway, "fb-all-fail")
    bodies = [
        post_chat(gateway, "chat:m", key=NARROW_KEY).text,
        post_chat(gateway, "coder", key=KEY + "x").text,
        post_chat(gateway, "fb-all-fail").text,
    ]
    metrics = httpx.get(f"{gateway.metrics_url}/metrics").text
    log = gateway.log_text
    assert '"key":"full/full"' in log
    for secret in (KEY, NARROW_KEY, PROVIDER_KEY):
        for text in (*bodies, metrics, log):
            assert secret not in text


def test_model_retrieve_count_tokens_and_unknown_routes(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    assert client.models.retrieve("chat:m").id == "chat:m"
    assert client.models.retrieve("coder").owned_by == "switchboard-agent"
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(
            base_url=f"{gateway.url}/v1", api_key=NARROW_KEY, max_retries=0
        ).models.retrieve("chat:m")
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    counted = claude.messages.count_tokens(
        model="anth:m", messages=[{"role": "user", "content": "word " * 400}]
    )
    assert 450 <= counted.input_tokens <= 560
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic.Anthropic(
            base_url=gateway.url, api_key=NARROW_KEY, max_retries=0
        ).messages.count_tokens(model="chat:m", messages=[{"role": "user", "content": "x"}])
    missing = httpx.post(f"{gateway.url}/v1/embeddings", headers={"authorization": f"Bearer {KEY}"})
    assert (
        missing.status_code == 404 and "/v1/chat/completions" in missing.json()["error"]["message"]
    )
    assert httpx.get(f"{gateway.url}/v1/messages/batches").json()["type"] == "error"


def test_429_passes_retry_after(gateway: Gateway) -> None:
    response = post_chat(gateway, "chat:m@status=429")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_exceeded"
