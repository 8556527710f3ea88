"""Config safety, on gateway processes: one bad part never takes the rest down.

Covers (#10 item 7 and the failures at its top):
- "one bad header value stops a namespace": a provider header beyond Latin-1 is dropped by the
  compiler (the rest renders and serves); in a routing file that bypassed the compiler, the
  table leaves that provider out, its model answers 503 naming it, everything else serves, and
  /readyz?verbose, the log (once per reload) and `switchboard_config_refused_providers` say so;
- "manifests mode loses keys on a typo": with `gateway --manifests`, a file that is not YAML,
  an invalid edit of a served provider and a file emptied mid-save each keep their last good
  version; every refusal is counted as a failed reload and named in /readyz?verbose;
- reload under load (acceptance): 32 concurrent clients while 20 valid edits and 3 invalid ones
  (bad YAML, an invalid object, a file written in place in two steps) land: 0 failed requests,
  each valid edit served (its agent description shows in /v1/models), each invalid one counted.
Waits are conditions with deadlines, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from switchboard.routing import config as rc
from tests.gateway.conftest import (
    KEY,
    Gateway,
    Upstreams,
    manifests,
    render_text,
    start,
    start_gateway,
)
from tests.support import wait
from tests.upstreams.server import free_port

pytestmark = pytest.mark.gateway
AUTH = {"authorization": f"Bearer {KEY}"}
HI = [{"role": "user", "content": "hi"}]


def _chat(url: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers=AUTH,
        json={"model": model, "messages": HI},
        timeout=30,
    )


def _verbose(url: str) -> dict[str, object]:
    detail: dict[str, object] = httpx.get(f"{url}/readyz?verbose").json()
    return detail


def _wait(predicate: Callable[[], bool], timeout: float = 20) -> None:
    wait.wait_for(predicate, timeout=timeout)


def _dashed_provider(port: int) -> str:
    return (
        "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
        f"metadata: {{name: dashed}}\nspec:\n  baseUrl: http://127.0.0.1:{port}/v1\n"
        "  headers: {X-Note: 'team \u2014 ml'}\n  models: [{id: m, cost: {}}]\n---\n"
    )


def test_compiler_drops_a_bad_header_provider(upstreams: Upstreams, tmp_path: Path) -> None:
    config = render_text(_dashed_provider(upstreams.chat) + manifests(upstreams), tmp_path)
    rendered = json.loads(config.read_text())
    assert "dashed" not in rendered["providers"] and "chat" in rendered["providers"]


def test_table_leaves_out_a_provider_it_cannot_render(upstreams: Upstreams, tmp_path: Path) -> None:
    """A routing file that bypassed the compiler (an older operator, a hand edit): the table
    leaves the provider out instead of refusing the whole table."""
    config = render_text(manifests(upstreams), tmp_path)
    good = rc.load(config.read_bytes())
    chat = good.providers["chat"]
    bad = chat.model_copy(update={"name": "dashed", "headers": {"X-Note": "team \u2014 ml"}})
    forged = rc.sealed(good.model_copy(update={"providers": {**good.providers, "dashed": bad}}))
    path = tmp_path / "forged.json"
    path.write_bytes(rc.to_json(forged))
    gw = start_gateway(path, tmp_path / "gw.log", "--no-access-log")
    try:
        assert httpx.get(f"{gw.url}/readyz").text == f"ok {forged.hash}"
        assert _chat(gw.url, "coder").status_code == 200
        assert _chat(gw.url, "chat:m").status_code == 200
        refused = _chat(gw.url, "dashed:m")
        assert refused.status_code == 503, refused.text
        assert "provider 'dashed' is not served" in refused.json()["error"]["message"]
        detail = _verbose(gw.url)
        reasons = detail["refused_providers"]
        assert isinstance(reasons, dict) and list(reasons) == ["dashed"]
        assert "U+2014" in reasons["dashed"]
        assert gw.metric("switchboard_config_refused_providers") == 1
        assert gw.log_text.count("provider dashed left out of the routing table") == 1
    finally:
        gw.process.stop()


def _split(text: str) -> dict[str, str]:
    """The fixture's manifests as three files: providers, agents, keys (with their Secrets)."""
    files = {"providers.yaml": "", "agents.yaml": "", "keys.yaml": ""}
    for doc in text.split("---\n"):
        if not doc.strip():
            continue
        if "kind: CustomProvider" in doc:
            files["providers.yaml"] += doc + "---\n"
        elif "kind: Agent" in doc:
            files["agents.yaml"] += doc + "---\n"
        else:
            files["keys.yaml"] += doc + "---\n"
    return files


def _start_manifests(directory: Path, log: Path) -> Gateway:
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["-m", "switchboard.cli", "gateway", "--manifests", str(directory)]
    args += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    args += ["--metrics-port", str(metrics_port)]
    process = start(args, log, f"{url}/readyz")
    return Gateway(url, process, directory, f"http://127.0.0.1:{metrics_port}")


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_manifests_mode_keeps_last_good_versions(upstreams: Upstreams, tmp_path: Path) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    files = _split(manifests(upstreams))
    for name, text in files.items():
        (directory / name).write_text(text)
    gw = _start_manifests(directory, tmp_path / "gw.log")
    try:
        served = httpx.get(f"{gw.url}/readyz").text

        def refusal(write: Callable[[], None]) -> list[str]:
            before = gw.metric("switchboard_config_reloads_total", result="failed")
            write()
            _wait(lambda: gw.metric("switchboard_config_reloads_total", result="failed") > before)
            assert httpx.get(f"{gw.url}/readyz").text == served
            assert _chat(gw.url, "coder").status_code == 200
            assert _chat(gw.url, "chat:m").status_code == 200
            last = _verbose(gw.url)["last_reload"]
            assert isinstance(last, dict) and last["result"] == "partial"
            problems: list[str] = last["problems"]
            return problems

        keys = directory / "keys.yaml"
        (problem,) = refusal(lambda: _atomic(keys, files["keys.yaml"] + "kind: [oops\n"))
        assert problem.startswith(f"{keys}: line ") and "invalid YAML" in problem
        assert "keeping its last good version" in problem

        _atomic(keys, files["keys.yaml"])
        providers = directory / "providers.yaml"
        typo = files["providers.yaml"].replace("  api: openai-completions\n", "  api: openai\n", 1)
        assert typo != files["providers.yaml"]
        problems = refusal(lambda: _atomic(providers, typo))
        assert any("CustomProvider/default/chat: spec.api" in p for p in problems), problems
        assert all("keeping its last good version" in p for p in problems)

        _atomic(providers, files["providers.yaml"])
        (problem,) = refusal(lambda: keys.write_text(""))
        assert problem.startswith(f"{keys}: the file is empty")
    finally:
        gw.process.stop()


async def _clients(url: str, stop: asyncio.Event, failures: list[str], count: list[int]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            response = await client.post(
                f"{url}/v1/chat/completions", headers=AUTH, json={"model": "coder", "messages": HI}
            )
            count[0] += 1
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")


async def test_manifests_reload_under_load(upstreams: Upstreams, tmp_path: Path) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    files = _split(manifests(upstreams))
    for name, text in files.items():
        (directory / name).write_text(text)
    agents = directory / "agents.yaml"
    providers = directory / "providers.yaml"
    marker = "metadata: {name: coder}\nspec:\n"
    assert marker in files["agents.yaml"]

    def described(n: int) -> str:
        return files["agents.yaml"].replace(marker, f"{marker}  description: v{n}\n")

    gw = _start_manifests(directory, tmp_path / "gw.log")
    stop = asyncio.Event()
    failures: list[str] = []
    count = [0]
    clients = [asyncio.create_task(_clients(gw.url, stop, failures, count)) for _ in range(32)]
    try:
        async with httpx.AsyncClient(timeout=30) as probe:

            async def until(check: Callable[[], Awaitable[bool]]) -> None:
                await wait.until(check, timeout=20)

            async def description() -> str:
                models = (await probe.get(f"{gw.url}/v1/models", headers=AUTH)).json()["data"]
                return str(next(m["display_name"] for m in models if m["id"] == "coder"))

            async def failed() -> float:
                for line in (await probe.get(f"{gw.metrics_url}/metrics")).text.splitlines():
                    if line.startswith('switchboard_config_reloads_total{result="failed"}'):
                        return float(line.split()[-1])
                return 0.0

            async def refused(write: Callable[[], None]) -> None:
                before, served = await failed(), (await probe.get(f"{gw.url}/readyz")).text
                write()

                async def counted() -> bool:
                    return await failed() > before

                await until(counted)
                assert (await probe.get(f"{gw.url}/readyz")).text == served

            async def valid(n: int) -> None:
                _atomic(agents, described(n))

                async def shown() -> bool:
                    return await description() == f"v{n}"

                await until(shown)

            half = described(100)
            # cut inside the quoted model of the agent after `coder`: an unterminated scalar
            cut = half.index("model: '", half.index("description: v100")) + len("model: '") + 2
            for n in range(20):
                await valid(n)
                if n == 5:  # bad YAML
                    await refused(lambda: _atomic(agents, described(n) + "kind: [oops\n"))  # noqa: B023
                if n == 10:  # an invalid edit of a served object
                    typo = files["providers.yaml"].replace("api: openai-completions", "api: x", 1)
                    await refused(lambda: _atomic(providers, typo))  # noqa: B023
                    _atomic(providers, files["providers.yaml"])
                if n == 15:  # written in place in two steps: the first half is never served
                    with agents.open("w") as handle:
                        handle.write(half[:cut])
                        handle.flush()
                        await refused(lambda: None)
                        handle.write(half[cut:])

                    async def completed() -> bool:
                        return await description() == "v100"

                    await until(completed)
        stop.set()
        await asyncio.gather(*clients)
    finally:
        stop.set()
        gw.process.stop()
    assert failures == []
    assert count[0] > 100
