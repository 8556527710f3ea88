"""A client that leaves closes the upstream exchange: the model server stops generating.

Covers (issue #10 item 3), against a real gateway process and fake upstreams that record when
their connection was closed (`GET /_closed`): Chat, Responses and Messages clients, each
non-stream, stream before its first token (held back: nothing sent yet) and stream after it.
The upstream's answer would take 30 s (a delay, or a stream that stalls after its first token);
the test closes the client's socket and waits, with a 10 s deadline, for the upstream to record
the close: before the change it only saw it at the provider's timeout. The access log says 499
and `switchboard_requests_total{status="499"}` counts it, apart from 5xx. The measured
latency (client close -> upstream close, both `time.monotonic()` on this machine) is printed
(`pytest -s`) and quoted in docs/gateway.md.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import (
    KEY,
    Gateway,
    Upstreams,
    render_text,
    start_gateway,
)
from tests.gateway.test_stream_faults import (
    access_lines,
    body,
    keys_manifest,
    next_line,
    wait_metric,
)
from tests.support import wait

pytestmark = pytest.mark.gateway

SLOW = "m@delay_first_token=30"
"""Non-stream: the answer after 30 s; stream: the headers, then 30 s before the first event."""
STALL = {"chat": "m@stall_after=2", "resp": "m@stall_after=5", "anth": "m@stall_after=4"}
"""Up to the first text delta, then nothing for as long as the connection stays open."""
UPSTREAM = {"chat": "chat", "responses": "resp", "messages": "anth"}
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}


def manifests(u: Upstreams) -> str:
    ports = {"chat": u.chat, "resp": u.responses, "anth": u.anthropic}
    apis = {"chat": "openai-completions", "resp": "openai-responses", "anth": "anthropic-messages"}
    out = ""
    for name, port in ports.items():
        base = f"http://127.0.0.1:{port}" + ("" if name == "anth" else "/v1")
        models = "".join(f'    - {{id: "{m}", maxTokens: 512}}\n' for m in (SLOW, STALL[name]))
        out += (
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
            f"metadata: {{name: {name}}}\nspec:\n  baseUrl: {base}\n  api: {apis[name]}\n"
            "  apiKeySecretRef: {name: provider-key, key: key}\n"
            "  timeouts: {firstToken: 60s, total: 120s}\n"
            f"  models:\n{models}---\n"
        )
    return out + keys_manifest()


@pytest.fixture(scope="module")
def gw(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("cancellation")
    served = start_gateway(render_text(manifests(upstreams), work), work / "gateway.log")
    yield served
    served.process.stop()


def upstream_url(u: Upstreams, name: str) -> str:
    port = {"chat": u.chat, "resp": u.responses, "anth": u.anthropic}[name]
    return f"http://127.0.0.1:{port}"


def wait_for(what: str, probe: Any, deadline: float = 10.0) -> Any:
    """`probe()` until it returns something, for at most `deadline` seconds."""
    return wait.wait_for(probe, what, deadline, 0.02)


@pytest.mark.parametrize("mode", ["non-stream", "before-first-token", "after-first-token"])
@pytest.mark.parametrize("client", ["chat", "responses", "messages"])
def test_client_leaving_closes_the_upstream(
    gw: Gateway, upstreams: Upstreams, client: str, mode: str
) -> None:
    up = UPSTREAM[client]
    base = upstream_url(upstreams, up)
    model = f"{up}:{STALL[up] if mode == 'after-first-token' else SLOW}"
    index = len(httpx.get(f"{base}/_requests").json())
    seen = len(access_lines(gw, model))
    gone = gw.metric("switchboard_requests_total", status="499")
    payload = json.dumps(body(client, model, stream=mode != "non-stream")).encode()
    host, port = gw.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"POST {PATHS[client]} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    wait_for(
        "the upstream got the request",
        lambda: True if len(httpx.get(f"{base}/_requests").json()) > index else None,
    )
    received = b""
    if mode == "after-first-token":
        while b"You" not in received:  # the first token reached the client
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    closed_at = time.monotonic()
    sock.close()

    def closed() -> dict[str, Any] | None:
        for entry in httpx.get(f"{base}/_closed").json():
            if entry["request"] == index:
                return dict(entry)
        return None

    entry = wait_for("the upstream saw its connection closed", closed)
    latency = entry["at"] - closed_at
    print(f"\ncancel {client} {mode}: upstream closed {latency * 1000:.1f} ms after the client")
    if mode != "after-first-token":
        assert received == b""  # nothing was sent: headers held back, or not yet answered
    line = next_line(gw, model, seen)
    assert line["status"] == 499 and line["error"] == "client went away"
    wait_metric(gw, "switchboard_requests_total", gone + 1, status="499")
