"""Helpers of the fast tier: a routing config built in Python, fake upstreams and the gateway
application in this process's event loop (aiohttp's test server on a loopback port)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import test_utils, web

from switchboard.gateway import app as gateway_app
from switchboard.routing import config as rc
from tests.upstreams import server

KEY = "sk-fast-full-0123456789abcdef"
NARROW_KEY = "sk-fast-narrow-0123456789abcdef"
MODELS_KEY = "sk-fast-models-0123456789abcdef"
PROVIDER_KEY = "sk-fast-provider-secret-9876543210"
PRICE = rc.Price(input=3, output=15, cache_read=0.3, cache_write=3.75)
PATHS = {
    "chat": "/v1/chat/completions",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
}
API = {
    "chat": "openai-completions",
    "responses": "openai-responses",
    "messages": "anthropic-messages",
}
HI = [{"role": "user", "content": "hello there"}]
MODELS = (
    "m",
    "m@context_length",
    "m@stall_after=3",
    "m@chunk_delay=0.1",
    "m@chunk_delay=0.2,stall_after=50",
)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def provider(
    name: str,
    port: int,
    dialect: str,
    *,
    models: tuple[str, ...] = MODELS,
    first_token: float = 30.0,
    headers: dict[str, str] | None = None,
    api_key: str | None = PROVIDER_KEY,
    context_window: int = 4096,
) -> rc.Provider:
    return rc.Provider(
        name=name,
        api=API[dialect],
        dialect=dialect,
        endpoint=f"http://127.0.0.1:{port}{PATHS[dialect]}",
        api_key=api_key,
        headers=headers or {},
        timeouts=rc.Timeouts(connect=2.0, first_token=first_token, total=60.0),
        models={
            m: rc.Model(id=m, name=m, context_window=context_window, max_tokens=512, price=PRICE)
            for m in models
        },
        open_models=not models,
    )


def chain(*refs: str) -> tuple[rc.Candidate, ...]:
    return tuple(rc.Candidate(provider=r.split(":", 1)[0], model=r.split(":", 1)[1]) for r in refs)


@dataclass
class Fakes:
    chat: server.Upstream
    tgi: server.Upstream
    ollama: server.Upstream
    responses: server.Upstream
    anthropic: server.Upstream
    dead: int

    def all(self) -> list[server.Upstream]:
        return [self.chat, self.tgi, self.ollama, self.responses, self.anthropic]


def config(f: Fakes, *, description: str = "v0") -> rc.RoutingConfig:
    providers = [
        provider("chat", f.chat.port, "chat"),
        provider("tgi", f.tgi.port, "chat"),
        provider("olla", f.ollama.port, "chat"),
        provider("resp", f.responses.port, "responses"),
        provider("anth", f.anthropic.port, "messages"),
        provider("dead", f.dead, "chat"),
        provider("stall", f.chat.port, "chat", first_token=0.3),
        provider("open", f.chat.port, "chat", models=()),
    ]
    agents = [
        rc.Agent(
            name="coder",
            description=description,
            chain=chain("chat:m"),
            defaults=rc.RequestDefaults(max_tokens=77, temperature=0.2, top_p=0.9),
        ),
        rc.Agent(
            name="ctx-phrasings",
            chain=chain("tgi:m@context_length", "olla:m@context_length", "anth:m"),
        ),
        rc.Agent(name="fb-stall", chain=chain("stall:m@stall_after=3", "chat:m")),
        rc.Agent(name="fb-connect", chain=chain("dead:m", "resp:m")),
    ]
    keys = {
        digest(KEY): rc.Grant(
            key="full/full",
            providers=tuple(p.name for p in providers),
            agents=tuple(a.name for a in agents),
        ),
        digest(NARROW_KEY): rc.Grant(key="narrow/narrow", providers=(), agents=("coder",)),
        digest(MODELS_KEY): rc.Grant(
            key="models/one", providers=("chat",), models=("chat:m",), agents=()
        ),
    }
    return rc.sealed(
        rc.RoutingConfig(
            namespace="fast",
            providers={p.name: p for p in providers},
            agents={a.name: a for a in agents},
            keys=keys,
        )
    )


def write(path: Path, data: bytes) -> None:
    """Atomically, as config-sync does: a temporary file renamed over the target."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass
class Gw:
    app: web.Application
    client: test_utils.TestClient[web.Request, web.Application]
    log: io.BytesIO
    fakes: Fakes
    config_path: Path

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    def access_lines(self) -> list[dict[str, Any]]:
        import orjson

        self.app[gateway_app.PROXY].accounting.access_log.flush()
        return [orjson.loads(line) for line in self.log.getvalue().splitlines()]

    def metrics_text(self) -> str:
        """What GET /metrics on the metrics port answers (`build_metrics_app`)."""
        from prometheus_client import generate_latest

        return generate_latest(self.app[gateway_app.METRICS].registry).decode()

    async def metric(self, name: str, **labels: str) -> float:
        text = self.metrics_text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def post(
        self, surface: str, body: dict[str, Any], key: str | None = KEY, **headers: str
    ) -> aiohttp.ClientResponse:
        if key is not None:
            headers.setdefault("authorization", f"Bearer {key}")
        return await self.client.post(PATHS[surface], json=body, headers=headers)


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    f = Fakes(
        chat=await server.Upstream(shape="vllm", cached=2).start(),
        tgi=await server.Upstream(shape="tgi").start(),
        ollama=await server.Upstream(shape="ollama").start(),
        responses=await server.Upstream(shape="responses", cached=2).start(),
        anthropic=await server.Upstream(shape="anthropic", cached=2, cache_write=1).start(),
        dead=server.free_port(),
    )
    yield f
    for upstream in f.all():
        # The fakes' `stall_after` handlers sleep for an hour and do not notice that the gateway
        # closed the connection; do not wait aiohttp's default 60 s for them at shutdown.
        if upstream._runner is not None:
            upstream._runner._shutdown_timeout = 0.2
        await upstream.stop()


async def start(
    fakes: Fakes, path: Path, **options: Any
) -> tuple[web.Application, test_utils.TestClient[web.Request, web.Application], io.BytesIO]:
    log = io.BytesIO()
    app = gateway_app.build_app(
        gateway_app.Source(config=path), poll_seconds=0.05, log_stream=log, **options
    )
    client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return app, client, log


@pytest.fixture
async def gw(fakes: Fakes, tmp_path: Path) -> AsyncIterator[Gw]:
    path = tmp_path / "routing.json"
    write(path, rc.to_json(config(fakes)))
    app, client, log = await start(fakes, path)
    yield Gw(app, client, log, fakes, path)
    await client.close()
