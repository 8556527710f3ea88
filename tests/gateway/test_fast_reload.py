"""Fast tier: the routing table, hot reload and the manifests source, in-process.

Covers:
- the table precomputes upstream headers (Bearer for OpenAI upstreams; x-api-key and a default
  anthropic-version for Anthropic ones, a static header overriding it; no key header without a
  key), aiohttp timeouts from the provider's, routes for `provider:model` with colons in the id;
- /readyz and every surface answer 503 until a valid file exists, then serve it;
- reload on an atomic rename, an in-place rewrite of the same size, a Kubernetes-style `..data`
  symlink swap and a gzip file; a bad file (not JSON, another schema version, an edited body
  whose hash no longer matches) is refused, counted, and the last good table keeps serving;
- a stream that started on the old table finishes on it after a swap that removes its route,
  while new requests see the new table;
- `--manifests`: several namespaces need a choice (error lists them), a chosen namespace is
  served, a file added to a watched directory is compiled in, and problems are logged one per
  line while the good objects keep serving.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
from pathlib import Path

import orjson
import pytest
from aiohttp import test_utils

from switchboard.gateway import app as gateway_app
from switchboard.gateway import table as gateway_table
from switchboard.routing import config as rc
from tests.gateway import inproc
from tests.gateway.inproc import KEY, PROVIDER_KEY, Fakes, Gw


def test_table_precomputes_headers_and_timeouts() -> None:
    anth = inproc.provider("anth", 1, "messages", headers={"Anthropic-Version": "2024-01-01"})
    plain = inproc.provider("plain", 2, "messages", api_key=None, first_token=7)
    chat = inproc.provider("chat", 3, "chat", headers={"X-Team": "blue"})
    config = rc.sealed(
        rc.RoutingConfig(namespace="t", providers={p.name: p for p in (anth, plain, chat)})
    )
    table = gateway_table.Table(config)
    a = table.route("anth:m")
    assert a is not None
    target = a.chain[0]
    assert target.endpoint.headers == {
        "content-type": "application/json",
        "anthropic-version": "2024-01-01",
        "x-api-key": PROVIDER_KEY,
    }
    p = table.route("plain:m")
    assert p is not None
    assert p.chain[0].endpoint.headers == {
        "content-type": "application/json",
        "anthropic-version": gateway_table.ANTHROPIC_VERSION,
    }
    e = p.chain[0].endpoint
    assert (e.connect_timeout, e.read_timeout, e.total_timeout) == (2, 7, 60)
    c = table.route("chat:m@context_length")
    assert c is not None and c.chain[0].model_id == "m@context_length"
    assert c.chain[0].endpoint.headers == {
        "content-type": "application/json",
        "x-team": "blue",
        "authorization": f"Bearer {PROVIDER_KEY}",
    }
    assert table.route("chat:unknown") is None and table.route("nothing") is None


async def _ready(client: test_utils.TestClient, want: str, timeout: float = 5) -> None:  # type: ignore[type-arg]
    deadline = asyncio.get_running_loop().time() + timeout
    text = ""
    while asyncio.get_running_loop().time() < deadline:
        text = await (await client.get("/readyz")).text()
        if text == want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"/readyz says {text!r}, expected {want!r}")


async def _failed_reloads(gw: Gw) -> float:
    return await gw.metric("switchboard_config_reloads_total", result="failed")


async def _refused(gw: Gw, before: float) -> None:
    for _ in range(250):
        if await _failed_reloads(gw) > before:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the bad file was not refused")


async def test_not_ready_until_a_valid_file(fakes: Fakes, tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    app, client, log = await inproc.start(fakes, path)
    try:
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await client.get("/healthz")).status == 200
        for surface, path_ in inproc.PATHS.items():
            response = await client.post(path_, json={"model": "chat:m"})
            assert response.status == 503
            data = await response.json()
            assert ("type" in data) == (surface == "messages")
        config = inproc.config(fakes)
        inproc.write(path, rc.to_json(config))
        await _ready(client, f"ok {config.hash}")
        gw = Gw(app, client, log, fakes, path)
        assert (await gw.post("chat", {"model": "coder", "messages": inproc.HI})).status == 200
    finally:
        await client.close()


async def test_reload_kinds_of_writes(gw: Gw, tmp_path: Path) -> None:
    v0 = inproc.config(gw.fakes, description="v0")
    v1 = inproc.config(gw.fakes, description="v1")
    v2 = inproc.config(gw.fakes, description="v2")
    await _ready(gw.client, f"ok {v0.hash}")
    # Atomic rename (what config-sync does).
    inproc.write(gw.config_path, rc.to_json(v1))
    await _ready(gw.client, f"ok {v1.hash}")
    # In-place rewrite, same size: only the mtime (ns) changes.
    data = rc.to_json(v2)
    assert len(data) == len(rc.to_json(v1))
    gw.config_path.write_bytes(data)
    await _ready(gw.client, f"ok {v2.hash}")
    # gzip, as stored in the routing Secret.
    inproc.write(gw.config_path, rc.to_secret_bytes(v0))
    await _ready(gw.client, f"ok {v0.hash}")
    assert await gw.metric("switchboard_config_reloads_total", result="ok") == 4
    assert await gw.metric("switchboard_config_info", hash=v0.hash) == 1
    assert await gw.metric("switchboard_config_info", hash=v2.hash) == 0

    bad = [
        b"{not json",
        rc.to_json(v1).replace(b'"schema_version":2', b'"schema_version":3'),
        rc.to_json(v1).replace(b'"description":"v1"', b'"description":"v9"'),
        rc.to_json(v1)[:100],
    ]
    for data in bad:
        before = await _failed_reloads(gw)
        inproc.write(gw.config_path, data)
        await _refused(gw, before)
        assert await (await gw.client.get("/readyz")).text() == f"ok {v0.hash}"
        assert (await gw.post("chat", {"model": "coder", "messages": inproc.HI})).status == 200
    assert await _failed_reloads(gw) == 4


async def test_kubernetes_symlink_swap(fakes: Fakes, tmp_path: Path) -> None:
    """A Secret volume: routing.json -> ..data/routing.json, ..data -> ..<timestamp>/."""
    mount = tmp_path / "mount"
    mount.mkdir()

    def publish(n: int, data: bytes) -> None:
        version = mount / f"..v{n}"
        version.mkdir()
        (version / "routing.json").write_bytes(data)
        link = mount / "..data_tmp"
        link.symlink_to(version.name)
        os.replace(link, mount / "..data")

    v0, v1 = inproc.config(fakes, description="v0"), inproc.config(fakes, description="v1")
    publish(0, rc.to_json(v0))
    (mount / "routing.json").symlink_to("..data/routing.json")
    _, client, _ = await inproc.start(fakes, mount / "routing.json")
    try:
        await _ready(client, f"ok {v0.hash}")
        publish(1, rc.to_json(v1))
        await _ready(client, f"ok {v1.hash}")
    finally:
        await client.close()


async def test_in_flight_stream_keeps_its_table(gw: Gw) -> None:
    slow = "chat:m@chunk_delay=0.1"
    async with gw.client.post(
        "/v1/chat/completions",
        json={"model": slow, "messages": inproc.HI, "stream": True},
        headers={"authorization": f"Bearer {KEY}"},
    ) as response:
        assert response.status == 200
        first = await response.content.readany()
        assert first
        # A new table in which `chat` no longer lists the model this stream is on.
        old = inproc.config(gw.fakes)
        chat = old.providers["chat"]
        models = {k: v for k, v in chat.models.items() if k != "m@chunk_delay=0.1"}
        providers = {**old.providers, "chat": chat.model_copy(update={"models": models})}
        new = rc.sealed(old.model_copy(update={"providers": providers, "hash": ""}))
        inproc.write(gw.config_path, rc.to_json(new))
        await _ready(gw.client, f"ok {new.hash}")
        rest = await response.read()
    text = (first + rest).decode()
    assert "You said: hello there" not in text  # the words come in separate chunks
    assert text.rstrip().endswith("data: [DONE]") and '"error"' not in text
    gone = await gw.post("chat", {"model": slow, "messages": inproc.HI})
    assert gone.status == 404


MANIFEST = """\
apiVersion: switchboard.dev/v1alpha1
kind: CustomProvider
metadata: {{name: local, namespace: {ns}}}
spec:
  baseUrl: http://127.0.0.1:{port}/v1
  models: [{{id: m}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: {ns}, labels: {{switchboard.dev/secret: "true"}}}}
stringData: {{k: {key}}}
---
apiVersion: switchboard.dev/v1alpha1
kind: AccessKeyConfig
metadata: {{name: team, namespace: {ns}}}
spec:
  keys: [{{name: dev, secretRef: {{name: keys, key: k}}}}]
  allowedProviders: ['*']
  allowedAgents: ['*']
"""

AGENT = """\
apiVersion: switchboard.dev/v1alpha1
kind: Agent
metadata: {{name: {name}, namespace: {ns}}}
spec:
  model: {model}
"""


def test_manifests_need_a_namespace_choice(tmp_path: Path) -> None:
    for ns in ("alpha", "beta"):
        (tmp_path / f"{ns}.yaml").write_text(MANIFEST.format(ns=ns, port=1, key=KEY))
    source = gateway_app.Source(manifests=(tmp_path,))
    with pytest.raises(rc.ConfigError, match="2 namespaces \\(alpha, beta\\); choose one"):
        source.load()
    chosen = gateway_app.Source(manifests=(tmp_path,), namespace="beta").load()
    assert chosen.namespace == "beta" and set(chosen.providers) == {"local"}
    with pytest.raises(rc.ConfigError, match="no routing config for namespace 'gamma'"):
        gateway_app.Source(manifests=(tmp_path,), namespace="gamma").load()


async def test_manifests_are_watched(
    fakes: Fakes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "switchboard.gateway")
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "base.yaml").write_text(MANIFEST.format(ns="team", port=fakes.chat.port, key=KEY))
    app = gateway_app.build_app(gateway_app.Source(manifests=(directory,)), poll_seconds=0.05)
    client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        headers = {"authorization": f"Bearer {KEY}"}

        async def models() -> list[str]:
            data = orjson.loads(await (await client.get("/v1/models", headers=headers)).read())
            return [m["id"] for m in data["data"]]

        assert await models() == ["local:m"]
        (directory / "agents.yaml").write_text(
            AGENT.format(name="helper", ns="team", model="local:m")
            + "---\n"
            + AGENT.format(name="broken", ns="team", model="nowhere:m")
        )
        for _ in range(250):
            if "helper" in await models():
                break
            await asyncio.sleep(0.02)
        assert await models() == ["helper", "local:m"]
        problems = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
        assert problems and all("\n" not in p for p in problems)
        answer = await client.post(
            "/v1/chat/completions",
            json={"model": "helper", "messages": inproc.HI},
            headers=headers,
        )
        assert answer.status == 200
    finally:
        await client.close()


def test_gzip_and_plain_load_the_same(tmp_path: Path) -> None:
    config = rc.sealed(rc.RoutingConfig(namespace="x"))
    plain, packed = tmp_path / "a.json", tmp_path / "b.json.gz"
    plain.write_bytes(rc.to_json(config))
    packed.write_bytes(gzip.compress(rc.to_json(config)))
    a = gateway_app.Source(config=plain).load()
    b = gateway_app.Source(config=packed).load()
    assert a.hash == b.hash == config.hash
