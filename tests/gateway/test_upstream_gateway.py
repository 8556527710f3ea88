"""The upstream client's rules as clients of the gateway see them (fast tier: the application in
this event loop, the upstream a raw-socket server writing exact bytes).

Covered: issue #10's cross-client answer (an upstream that sends `103 Early Hints` before its
200: each of two keys gets its own completion, never the other's), and each upstream limit
crossed (`--upstream-max-header-bytes`, `--upstream-max-body-bytes`) answered as a 502 that
names the provider and the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from aiohttp import test_utils

from switchboard.gateway import app as gateway_app
from switchboard.gateway.upstream import Settings
from switchboard.routing import config as rc
from tests.gateway.inproc import digest, provider, write
from tests.gateway.test_upstream_client import _read_request, serve

KEYS = {"sk-upstream-a-0123456789abcdef": "a/a", "sk-upstream-b-0123456789abcdef": "b/b"}


def completion(text: str) -> bytes:
    body = orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request by its model: `hints` sends a 103 first, `big-head` and
    `big-body` cross the limits below; the completion repeats the user's message."""
    while True:
        _, raw = await _read_request(reader)
        request = orjson.loads(raw)
        said = request["messages"][-1]["content"]
        model = request["model"]
        if model == "hints":
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)  # the model generates: the server's pace
        if model == "big-head":
            writer.write(b"HTTP/1.1 200 OK\r\nx-pad: " + b"p" * 4096 + b"\r\n\r\n")
            continue
        writer.write(completion(("x" * 4096 + said) if model == "big-body" else said))
        await writer.drain()


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[test_utils.TestClient]:  # type: ignore[type-arg]
    async with serve(upstream) as port:
        raw = provider("raw", port, "chat", models=(), api_key=None)
        keys = {digest(k): rc.Grant(key=n, providers=("raw",), agents=()) for k, n in KEYS.items()}
        config = rc.sealed(rc.RoutingConfig(namespace="t", providers={"raw": raw}, keys=keys))
        path = tmp_path / "routing.json"
        write(path, rc.to_json(config))
        app = gateway_app.build_app(
            gateway_app.Source(config=path),
            access_log=False,
            upstream=Settings(max_header_bytes=2048, max_body_bytes=2048),
        )
        client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()


async def ask(client: test_utils.TestClient, key: str, model: str, text: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    response = await client.post(
        "/v1/chat/completions",
        json={"model": f"raw:{model}", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {key}"},
    )
    return response.status, await response.json()


async def test_an_early_hints_upstream_never_mixes_two_keys_answers(tmp_path: Path) -> None:
    key_a, key_b = KEYS
    async with gateway(tmp_path) as client:
        for i in range(3):
            status_a, a = await ask(client, key_a, "hints", f"from A {i}")
            status_b, b = await ask(client, key_b, "m", f"from B {i}")
            assert (status_a, a["choices"][0]["message"]["content"]) == (200, f"from A {i}")
            assert (status_b, b["choices"][0]["message"]["content"]) == (200, f"from B {i}")


async def test_each_upstream_limit_is_a_502_naming_it(tmp_path: Path) -> None:
    key = next(iter(KEYS))
    async with gateway(tmp_path) as client:
        status, body = await ask(client, key, "big-head", "hi")
        assert status == 502
        assert "max_header_bytes" in body["error"]["message"]
        status, body = await ask(client, key, "big-body", "hi")
        assert status == 502
        assert "max_body_bytes" in body["error"]["message"]
        status, body = await ask(client, key, "m", "still fine")
        assert (status, body["choices"][0]["message"]["content"]) == (200, "still fine")
