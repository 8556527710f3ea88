"""Fast tier: the request path in-process (aiohttp test server, fake upstreams in the same loop).

Covers:
- auth by `Authorization: Bearer` and by `x-api-key` on every surface; 401/403/404 in each
  surface's error shape; a 403 names the key by name and never echoes the token;
- 400 for malformed JSON, a non-object body, a missing or non-string `model`, wrong types in
  `messages`, in each surface's shape; 413 over `max_body_bytes`; never a 500 with a traceback
  (an internal bug answers 500 in the client's shape and is logged);
- agent defaults (max_tokens, temperature, top_p) reach the upstream; the upstream headers come
  from the table (provider key, anthropic-version), never the client's credentials;
- an open provider (no models listed) routes any model id; `allowedModels` limits direct calls;
- context-length errors phrased as TGI and Ollama phrase them fall back to the next candidate;
- connect refused falls back, seen in headers, `switchboard_fallbacks_total` and the log line;
- a stall after the first streamed bytes ends the stream with the client's error event after the
  first-token timeout, not retried (one attempt, one upstream request), counted as a timeout;
- streaming cost when the client did not ask for usage: none reaches the client, the cost still
  lands in metrics and the log, equal to a hand-computed value with cache reads;
- a client that goes away mid-stream is recorded as 499, not as an upstream error, and logs
  no traceback; a body that does not arrive within
  the body timeout is 408;
- the official async SDKs in-process (openai Chat + Responses, anthropic Messages + models.list);
- no client token or provider key in any access-log line, log record, metric or error body.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import orjson
import pytest

from switchboard.dialects import registry
from switchboard.gateway import app as gateway_app
from tests.gateway import inproc
from tests.gateway.inproc import KEY, MODELS_KEY, NARROW_KEY, PROVIDER_KEY, Gw

HI = inproc.HI


def body_for(surface: str, model: str, **extra: Any) -> dict[str, Any]:
    if surface == "responses":
        return {"model": model, "input": "hello there", **extra}
    if surface == "messages":
        return {"model": model, "max_tokens": 50, "messages": HI, **extra}
    return {"model": model, "messages": HI, **extra}


def assert_shape(surface: str, data: dict[str, Any]) -> str:
    if surface == "messages":
        assert data["type"] == "error" and set(data["error"]) >= {"type", "message"}
    else:
        assert set(data["error"]) >= {"message", "type"}
    message: str = data["error"]["message"]
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize("surface", ["chat", "responses", "messages"])
async def test_auth_and_deny_by_default(gw: Gw, surface: str) -> None:
    ok = await gw.post(surface, body_for(surface, "chat:m"), key=None, **{"x-api-key": KEY})
    assert ok.status == 200
    assert ok.headers["x-switchboard-provider"] == "chat"
    ok.release()
    cases = [
        (None, "chat:m", 401, "Authorization"),
        ("sk-unknown", "chat:m", 401, "invalid API key"),
        (NARROW_KEY, "chat:m", 403, "'narrow/narrow' may not call model 'chat:m'"),
        (MODELS_KEY, "chat:m@context_length", 403, "'models/one'"),
        (KEY, "chat:nope", 404, "GET /v1/models"),
        (KEY, "no-such-agent", 404, "agent name or 'provider:model'"),
    ]
    for key, model, status, text in cases:
        response = await gw.post(surface, body_for(surface, model), key=key)
        assert response.status == status, (key, model)
        raw = await response.text()
        assert text in assert_shape(surface, orjson.loads(raw))
        for secret in (KEY, NARROW_KEY, MODELS_KEY, PROVIDER_KEY):
            assert secret not in raw


@pytest.mark.parametrize("surface", ["chat", "responses", "messages"])
async def test_bad_requests(gw: Gw, surface: str) -> None:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    path = inproc.PATHS[surface]
    for raw in (b"{nope", b"[1, 2]", b'"text"', b"{}", b'{"model": 5}', b'{"model": ""}'):
        response = await gw.client.post(path, data=raw, headers=headers)
        assert response.status == 400, raw
        assert_shape(surface, await response.json())
    wrong: list[dict[str, Any]] = [
        body_for(surface, "chat:m", stream="yes"),
        body_for(surface, "chat:m", temperature="hot"),
        {
            "chat": {"model": "chat:m", "messages": "not a list"},
            "responses": {"model": "chat:m", "input": 42},
            "messages": {"model": "chat:m", "max_tokens": "5", "messages": HI},
        }[surface],
    ]
    for body in wrong:
        response = await gw.post(surface, body)
        assert response.status == 400, body
        assert_shape(surface, await response.json())
    assert await gw.metric("switchboard_requests_total", status="500") == 0


async def test_body_limit(fakes: inproc.Fakes, tmp_path: Any) -> None:
    path = tmp_path / "routing.json"
    inproc.write(path, inproc.rc.to_json(inproc.config(fakes)))
    _, client, _ = await inproc.start(fakes, path, max_body_bytes=2000)
    try:
        big = {"model": "chat:m", "messages": [{"role": "user", "content": "x" * 5000}]}
        response = await client.post(
            "/v1/messages", json=big, headers={"authorization": f"Bearer {KEY}"}
        )
        assert response.status == 413
        assert "2000 bytes" in assert_shape("messages", await response.json())
    finally:
        await client.close()


@pytest.mark.parametrize("bug", [RuntimeError, TypeError, ValueError])
async def test_internal_error_is_rendered(
    gw: Gw, monkeypatch: pytest.MonkeyPatch, bug: type[Exception]
) -> None:
    """A bug is a 500 in the client's shape, whatever its type: a TypeError too (orjson's
    JSONEncodeError is TypeError itself; only its depth error is the client's 400)."""

    def broken(client: Any, upstream: Any) -> Any:
        raise bug("a bug with a secret-free message")

    monkeypatch.setattr(registry, "get", broken)
    response = await gw.post("messages", body_for("messages", "chat:m"))
    assert response.status == 500
    text = await response.text()
    assert "internal gateway error" in assert_shape("messages", orjson.loads(text))
    assert bug.__name__ not in text
    assert gw.access_lines()[-1]["status"] == 500


async def test_defaults_and_upstream_headers(gw: Gw) -> None:
    response = await gw.post(
        "chat", body_for("chat", "coder"), **{"x-api-key": "client-extra", "cookie": "c=1"}
    )
    assert response.status == 200
    sent = gw.fakes.chat.requests[-1]
    assert sent["body"]["max_tokens"] == 77
    assert sent["body"]["temperature"] == 0.2 and sent["body"]["top_p"] == 0.9
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert "x-api-key" not in headers and "cookie" not in headers
    explicit = await gw.post("chat", body_for("chat", "coder", temperature=1.0, max_tokens=5))
    assert explicit.status == 200
    sent = gw.fakes.chat.requests[-1]["body"]
    assert (sent["temperature"], sent["max_tokens"]) == (1.0, 5)
    await gw.post("chat", body_for("chat", "anth:m"))
    headers = {k.lower(): v for k, v in gw.fakes.anthropic.requests[-1]["headers"].items()}
    assert headers["x-api-key"] == PROVIDER_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers


async def test_open_provider_and_allowed_models(gw: Gw) -> None:
    response = await gw.post("chat", body_for("chat", "open:any:model:with:colons"))
    assert response.status == 200
    assert response.headers["x-switchboard-model"] == "any:model:with:colons"
    assert gw.fakes.chat.requests[-1]["body"]["model"] == "any:model:with:colons"
    assert (await gw.post("chat", body_for("chat", "chat:m"), key=MODELS_KEY)).status == 200
    models = await (await gw.client.get("/v1/models", headers={"x-api-key": MODELS_KEY})).json()
    assert [m["id"] for m in models["data"]] == ["chat:m"]


async def test_context_length_phrasings_fall_back(gw: Gw) -> None:
    response = await gw.post("chat", body_for("chat", "ctx-phrasings"))
    assert response.status == 200
    assert response.headers["x-switchboard-provider"] == "anth"
    assert response.headers["x-switchboard-attempts"] == "3"
    assert await gw.metric("switchboard_fallbacks_total", reason="context_length") == 2
    line = gw.access_lines()[-1]
    assert line["attempts"] == 3 and line["provider"] == "anth"
    assert line["fallbacks"] == [
        "tgi:m@context_length:context_length",
        "olla:m@context_length:context_length",
    ]


async def test_connect_refused_falls_back(gw: Gw) -> None:
    response = await gw.post("messages", body_for("messages", "fb-connect", stream=True))
    assert response.status == 200
    text = await response.text()
    assert "event: message_stop" in text
    assert response.headers["x-switchboard-provider"] == "resp"
    assert response.headers["x-switchboard-attempts"] == "2"
    assert (
        await gw.metric("switchboard_upstream_errors_total", provider="dead", kind="connect") == 1
    )


async def test_stall_after_first_byte_is_an_error_event(gw: Gw) -> None:
    before = len(gw.fakes.chat.requests)
    response = await gw.post("messages", body_for("messages", "fb-stall", stream=True))
    assert response.status == 200
    assert response.headers["x-switchboard-attempts"] == "1"
    text = await response.text()
    assert "event: error" in text and "mid-stream" in text
    assert "message_stop" not in text
    assert len(gw.fakes.chat.requests) == before + 1  # not retried on chat:m
    assert await gw.metric("switchboard_upstream_errors_total", kind="timeout") == 1
    assert await gw.metric("switchboard_fallbacks_total") == 0


def hand_cost(prompt: int, cached: int, output: int) -> float:
    return ((prompt - cached) * 3 + output * 15 + cached * 0.3) / 1e6


async def test_stream_cost_without_client_usage(gw: Gw) -> None:
    response = await gw.post("chat", body_for("chat", "chat:m", stream=True))
    text = await response.text()
    assert '"usage"' not in text and text.rstrip().endswith("data: [DONE]")
    sent = gw.fakes.chat.requests[-1]["body"]
    assert sent["stream_options"] == {"include_usage": True}
    line = gw.access_lines()[-1]
    tokens = line["tokens"]
    # The fake counts the JSON of `messages` as 4 prompt tokens, 2 of them cached (so 2
    # uncached), and "You said: hello there" as 4 output tokens.
    assert tokens == {"input": 2, "output": 4, "cache_read": 2, "cache_write": 0}
    want = hand_cost(4, 2, 4)
    assert want == pytest.approx((2 * 3 + 4 * 15 + 2 * 0.3) / 1e6)
    assert line["cost_usd"] == pytest.approx(want, abs=1e-8)
    assert await gw.metric("switchboard_cost_usd_total", provider="chat") == pytest.approx(want)
    assert await gw.metric("switchboard_tokens_total", kind="output") == 4


async def test_client_going_away_is_recorded(gw: Gw, caplog: pytest.LogCaptureFixture) -> None:
    response = await gw.post(
        "chat", body_for("chat", "chat:m@chunk_delay=0.2,stall_after=50", stream=True)
    )
    assert response.status == 200
    await response.content.readany()
    response.close()
    for _ in range(50):
        if await gw.metric("switchboard_requests_total", status="499") == 1:
            break
        await asyncio.sleep(0.05)
    assert await gw.metric("switchboard_requests_total", status="499") == 1
    assert await gw.metric("switchboard_upstream_errors_total") == 0  # not the upstream's fault
    assert "Error handling request" not in caplog.text and "Traceback" not in caplog.text


async def test_official_sdks_in_process(gw: Gw) -> None:
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0) as oai:
        chat = await oai.chat.completions.create(model="anth:m", messages=HI)  # type: ignore[arg-type]
        assert chat.choices[0].message.content == "You said: hello there"
        stream = await oai.responses.create(model="chat:m", input="hi you", stream=True)
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        assert "".join(deltas) == "You said: hi you"
        listed = [m.id async for m in oai.models.list()]
        assert "coder" in listed and "anth:m" in listed
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=KEY, max_retries=0) as ant:
        async with ant.messages.stream(
            model="resp:m",
            max_tokens=50,
            messages=HI,  # type: ignore[arg-type]
        ) as s:
            final = await s.get_final_message()
        assert final.content[0].type == "text" and final.content[0].text == "You said: hello there"
        assert final.usage.cache_read_input_tokens == 2
        ids = [m.id async for m in ant.models.list()]
        assert "coder" in ids


async def test_no_secret_in_logs_metrics_or_errors(
    gw: Gw, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = []
    for key in (KEY, NARROW_KEY, KEY + "x", MODELS_KEY):
        for model in ("coder", "chat:m", "fb-connect", "dead:m"):
            for surface in ("chat", "messages"):
                bodies.append(
                    await (await gw.post(surface, body_for(surface, model), key=key)).text()
                )
    metrics = gw.metrics_text()
    gw.access_lines()  # flushes the buffered access log
    log = gw.log.getvalue().decode()
    assert '"key":"full/full"' in log
    for secret in (KEY, NARROW_KEY, MODELS_KEY, PROVIDER_KEY):
        for text in (*bodies, metrics, log, caplog.text):
            assert secret not in text


async def test_slow_body_is_408(gw: Gw) -> None:
    gw.app[gateway_app.PROXY].body_timeout = 0.2
    port = gw.client.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            + f"x-api-key: {KEY}\r\ncontent-length: 100\r\n\r\n".encode()
            + b'{"model": "chat:m"'
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 408")
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_slow_client_gets_a_long_stream_whole(gw: Gw) -> None:
    # ~40,000 events, several MB: more than the socket buffers hold while the client sleeps, so
    # the gateway's write buffer passes its high-water mark and the upstream is paused, then
    # resumed as the client reads. Nothing may be lost, duplicated or reordered.
    prompt = " ".join(f"w{i}" for i in range(40_000))
    body = {"model": "open:m", "messages": [{"role": "user", "content": prompt}], "stream": True}
    response = await gw.post("chat", body)
    assert response.status == 200
    await asyncio.sleep(1.0)
    text = await response.text()
    assert text.rstrip().endswith("data: [DONE]")
    content = "".join(
        choice["delta"].get("content") or ""
        for line in text.splitlines()
        if line.startswith("data: {")
        for choice in orjson.loads(line[6:])["choices"]
    )
    assert content == f"You said: {prompt}"
    assert gw.access_lines()[-1]["status"] == 200
