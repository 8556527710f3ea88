"""Client input never causes a 500 nor grows memory or metrics without bound (issue #10, items
5 and 6). Fast tier (in-process gateway, fake upstreams on loopback) unless a real process or
raw socket is needed.

Covers:
- JSON nested deeper than the gateway can re-serialise (300 and 1,000 levels) -> 400 in the
  client's shape, on each surface; past orjson's parse limit -> 400 as invalid JSON;
- an API key that is not valid UTF-8 -> 401 on the API surfaces and on /v1/models (raw socket);
  /v1/models and /v1/models/{id} answer errors in the API shape;
- the key-digest cache holds only keys that were valid: 2,000 invalid tokens leave it empty;
  a valid key removed by a reload leaves it;
- model ids on a provider without a model list fold into one `model` label: 200 distinct ids
  add one series, not 200;
- a 1 MiB model name: the 404 and the access-log line carry at most a 200-character cut of it;
- /metrics is not served on the API port, only on --metrics-port (real process);
- --max-connections: the connection past the cap gets 503 and is closed, counted in
  switchboard_connections_refused_total; the ones below it are served (real process);
- the chain timeout: no candidate is tried past it (504 naming the timeout and the attempts);
- a 500 logs its exception type and traceback in the JSON line (the formatter).
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from switchboard.gateway import app as gateway_app
from switchboard.gateway.cli import JsonFormatter
from switchboard.gateway.table import OPEN_MODELS
from switchboard.routing import config as rc
from tests.gateway import inproc
from tests.gateway.conftest import Gateway, Upstreams, manifests, render_text, start_gateway
from tests.gateway.inproc import KEY, Gw
from tests.gateway.test_fast_requests import assert_shape, body_for


def _deep_body(surface: str, levels: int) -> bytes:
    """A valid request with a tool whose parameter schema is `levels` levels of JSON deep
    (every translator passes schemas through), written as text: a value that deep cannot be
    serialised by orjson or built without recursion."""
    deep = b'{"k":[' * (levels // 2) + b'"deep"' + b"]}" * (levels // 2)
    tool = {
        "chat": b'{"type":"function","function":{"name":"f","parameters":%s}}',
        "responses": b'{"type":"function","name":"f","parameters":%s}',
        "messages": b'{"name":"f","input_schema":%s}',
    }[surface]
    return orjson.dumps(body_for(surface, "chat:m"))[:-1] + b',"tools":[' + tool % deep + b"]}"


@pytest.mark.parametrize("surface", ["chat", "responses", "messages"])
async def test_deep_nesting_is_a_400(gw: Gw, surface: str) -> None:
    for levels in (300, 1000, 3000):
        response = await gw.client.post(
            inproc.PATHS[surface],
            data=_deep_body(surface, levels),
            headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
        )
        assert response.status == 400, await response.text()
        message = assert_shape(surface, await response.json())
        assert "nested too deeply" in message or "not valid JSON" in message, message
    assert [line["status"] for line in gw.access_lines()] == [400, 400, 400]


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks):
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
        return b"".join(chunks)


async def test_key_not_utf8_is_a_401(gw: Gw) -> None:
    body = orjson.dumps(body_for("chat", "chat:m"))
    for path, method, payload in (
        ("/v1/chat/completions", b"POST", body),
        ("/v1/models", b"GET", b""),
        ("/v1/models/chat:m", b"GET", b""),
    ):
        request = (
            method + b" " + path.encode() + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
            b"authorization: Bearer sk-\xff\xfe-bad\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        answer = await asyncio.to_thread(_raw, gw.url, request)
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401"), answer[:300]
        assert "not valid UTF-8" in assert_shape("chat", orjson.loads(rest))


async def test_models_errors_in_api_shape(gw: Gw) -> None:
    for path in ("/v1/models", "/v1/models/chat:m"):
        response = await gw.client.get(path)
        assert response.status == 401
        assert_shape("chat", await response.json())
    response = await gw.client.get(
        "/v1/models/" + "x" * 5000, headers={"authorization": f"Bearer {KEY}"}
    )
    assert response.status == 404
    message = assert_shape("chat", await response.json())
    assert len(message) < 400 and "(5000 chars)" in message


async def test_key_cache_holds_only_valid_keys(gw: Gw) -> None:
    keys = gw.app[gateway_app.PROXY].keys
    for n in range(2000):
        response = await gw.post("chat", body_for("chat", "chat:m"), key=f"sk-attacker-{n:05}")
        assert response.status == 401
        response.release()
    assert len(keys._digests) == 0
    ok = await gw.post("chat", body_for("chat", "chat:m"))
    assert ok.status == 200
    ok.release()
    assert list(keys._digests) == [KEY]
    # The key leaves the config: the next request is refused and the cache forgets it.
    reduced = inproc.config(gw.fakes)
    inproc.write(
        gw.config_path,
        rc.to_json(rc.sealed(reduced.model_copy(update={"keys": {}, "hash": ""}))),
    )
    deadline = asyncio.get_running_loop().time() + 30
    while gw.app[gateway_app.PROXY].table.hash == reduced.hash:  # type: ignore[union-attr]
        assert asyncio.get_running_loop().time() < deadline, "reload not seen"
        await asyncio.sleep(0.05)
    refused = await gw.post("chat", body_for("chat", "chat:m"))
    assert refused.status == 401
    refused.release()
    assert len(keys._digests) == 0


async def test_open_provider_models_fold_into_one_label(gw: Gw) -> None:
    for n in range(200):
        response = await gw.post("chat", body_for("chat", f"open:attacker-{n}"))
        assert response.status == 200
        response.release()
    text = gw.metrics_text()
    series = [
        line
        for line in text.splitlines()
        if line.startswith("switchboard_requests_total{") and 'provider="open"' in line
    ]
    assert len(series) == 1, series
    assert f'model="{OPEN_MODELS}"' in series[0]
    assert "attacker" not in text
    # The access log still names the model each request asked for.
    assert {line["model"] for line in gw.access_lines()} >= {"open:attacker-0", "open:attacker-199"}


async def test_huge_model_name_is_clipped(gw: Gw) -> None:
    name = "m" * (1 << 20)
    for surface in ("chat", "messages"):
        response = await gw.client.post(
            inproc.PATHS[surface],
            data=io.BytesIO(orjson.dumps(body_for(surface, name))),
            headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
        )
        assert response.status == 404
        message = assert_shape(surface, await response.json())
        assert len(message) < 1000 and f"({len(name)} chars)" in message
    for line in gw.access_lines():
        assert len(orjson.dumps(line)) < 2000


async def test_chain_timeout(fakes: inproc.Fakes, tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    base = inproc.config(fakes)
    # The first candidate answers after 2 s and fails on its 0.3 s first-token timeout; by then
    # the 0.05 s chain timeout has passed, so the second is never tried.
    agents = {
        **base.agents,
        "slow-chain": rc.Agent(name="slow-chain", chain=inproc.chain("stall:m@delay=2", "resp:m")),
    }
    grants = {
        d: g.model_copy(update={"agents": (*g.agents, "slow-chain")}) for d, g in base.keys.items()
    }
    update = {"agents": agents, "keys": grants, "hash": ""}
    inproc.write(path, rc.to_json(rc.sealed(base.model_copy(update=update))))
    app, client, log = await inproc.start(fakes, path, chain_timeout=0.05)
    gw = Gw(app, client, log, fakes, path)
    try:
        response = await gw.post("chat", body_for("chat", "slow-chain"))
        assert response.status == 504, await response.text()
        message = assert_shape("chat", await response.json())
        assert "chain timeout of 0.05 s after 1 attempts" in message
        assert len(fakes.responses.requests) == 0
    finally:
        await client.close()


def test_metrics_only_on_the_metrics_port(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/metrics").status_code == 404
    scraped = httpx.get(f"{gateway.metrics_url}/metrics")
    assert scraped.status_code == 200
    assert "switchboard_requests_total" in scraped.text
    assert httpx.get(f"{gateway.metrics_url}/v1/models").status_code == 404


def _healthz(host: str, port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection((host, port), timeout=30)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    return sock, sock.recv(4096)


def test_connection_cap(upstreams: Upstreams, tmp_path: Path) -> None:
    config = render_text(manifests(upstreams), tmp_path)
    gw = start_gateway(config, tmp_path / "gw.log", "--max-connections", "3")
    host, port = gw.url.removeprefix("http://").split(":")
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while len(held) < 3:  # connections of start()'s /readyz polls may still be counted
            sock, first = _healthz(host, int(port))
            if first.startswith(b"HTTP/1.1 200"):
                held.append(sock)
                continue
            sock.close()
            assert time.monotonic() < deadline, first
        extra, answer = _healthz(host, int(port))
        while chunk := extra.recv(4096):
            answer += chunk
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"too many open connections" in answer
        assert gw.metric("switchboard_connections_refused_total") >= 1
        held.pop().close()
        while True:  # a slot frees once the gateway sees the close
            sock, first = _healthz(host, int(port))
            sock.close()
            if first.startswith(b"HTTP/1.1 200"):
                break
            assert time.monotonic() < deadline, first
    finally:
        for sock in held:
            sock.close()
        gw.process.stop()


def test_500_log_line_has_type_and_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "switchboard.gateway",
            logging.ERROR,
            __file__,
            1,
            "internal error on %s",
            ("/v1/chat/completions",),
            sys.exc_info(),
        )
    line = orjson.loads(JsonFormatter().format(record))
    assert line["exc_type"] == "RuntimeError"
    assert "Traceback (most recent call last)" in line["traceback"]
    assert "RuntimeError: boom" in line["traceback"]
