"""Hot reload under load, and the no-cluster mode users try first.

Covers:
- 20 config swaps (valid and invalid, written atomically) during a bounded load of 64
  concurrent clients: zero failed requests; the served hash (/readyz and the info metric)
  follows the valid files only; failed reloads are counted;
- `switchboard gateway --manifests examples/quickstart` with a fake upstream on the quickstart's
  port answers an `openai` SDK call and an `anthropic` SDK call;
- manifests that cannot be served as given (several namespaces and no `-n`, an unknown
  namespace, a missing path) stop the command with exit code 2 and a message.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import KEY, Upstreams, manifests, render, start, start_gateway
from tests.upstreams.server import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.gateway


async def _load(url: str, stop: asyncio.Event, failures: list[str], counts: list[int]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            response = await client.post(
                f"{url}/v1/chat/completions",
                headers={"authorization": f"Bearer {KEY}"},
                json={"model": "coder", "messages": [{"role": "user", "content": "hi"}]},
            )
            counts[0] += 1
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


async def test_hot_reload_under_load(upstreams: Upstreams, tmp_path: Path) -> None:
    valid: list[bytes] = []
    for n in range(2):
        directory = tmp_path / f"v{n}"
        directory.mkdir()
        text = manifests(upstreams).replace(
            "metadata: {name: coder}\nspec:\n",
            f"metadata: {{name: coder}}\nspec:\n  description: v{n}\n",
        )
        (directory / "all.yaml").write_text(text)
        render(directory, tmp_path / f"v{n}.json")
        valid.append((tmp_path / f"v{n}.json").read_bytes())
    hashes = [json.loads(v)["hash"] for v in valid]
    assert hashes[0] != hashes[1]
    invalid = [
        b"{not json",
        valid[0].replace(b'"schema_version":2', b'"schema_version":9'),
        valid[1][: len(valid[1]) // 2],
    ]

    config = tmp_path / "routing.json"
    _write(config, valid[0])
    gw = start_gateway(config, tmp_path / "gw.log", "--no-access-log")
    process, url, metrics_url = gw.process, gw.url, gw.metrics_url
    try:
        stop = asyncio.Event()
        failures: list[str] = []
        counts = [0]
        clients = [asyncio.create_task(_load(url, stop, failures, counts)) for _ in range(64)]
        served = hashes[0]
        async with httpx.AsyncClient() as probe:

            async def refused() -> float:
                text = (await probe.get(f"{metrics_url}/metrics")).text
                for line in text.splitlines():
                    if line.startswith('switchboard_config_reloads_total{result="failed"}'):
                        return float(line.split()[-1])
                return 0.0

            for swap in range(20):
                before = await refused()
                bad = swap % 3 == 2
                if bad:
                    _write(config, invalid[swap % len(invalid)])
                else:
                    served = hashes[swap % 2]
                    _write(config, valid[swap % 2])
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                    if bad and await refused() > before:
                        break
                    if not bad and (await probe.get(f"{url}/readyz")).text == f"ok {served}":
                        break
                assert (await probe.get(f"{url}/readyz")).text == f"ok {served}", f"swap {swap}"
                if bad:
                    assert await refused() == before + 1, f"swap {swap} was not refused"
            stop.set()
            await asyncio.gather(*clients)
            metrics = (await probe.get(f"{metrics_url}/metrics")).text
        assert failures == []
        assert counts[0] > 200
        assert f'hash="{served}"' in metrics
    finally:
        process.stop()


def test_manifests_mode_quickstart(tmp_path: Path) -> None:
    upstream = start(
        ["-m", "tests.upstreams", "--shape", "vllm", "--port", "18000"],
        tmp_path / "up.log",
        "http://127.0.0.1:18000/_requests",
    )
    port = free_port()
    gateway = start(
        [
            "-m",
            "switchboard.cli",
            "gateway",
            "--manifests",
            "examples/quickstart",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        tmp_path / "gw.log",
        f"http://127.0.0.1:{port}/readyz",
    )
    key = "sk-sb-demo-7f3c9a1e5b2d4c6f8a0e"
    try:
        chat = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key).chat
        answer = chat.completions.create(
            model="coder", messages=[{"role": "user", "content": "hello from openai"}]
        )
        assert answer.choices[0].message.content == "You said: hello from openai"
        message = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=key).messages
        reply = message.create(
            model="local:qwen2.5-coder:7b",
            max_tokens=64,
            messages=[{"role": "user", "content": "hello from anthropic"}],
        )
        assert reply.content[0].type == "text"
        assert reply.content[0].text == "You said: hello from anthropic"
    finally:
        gateway.stop()
        upstream.stop()


def test_manifests_mode_usage_errors(tmp_path: Path) -> None:
    """Several namespaces without --namespace, an unknown namespace or a missing path: exit 2."""
    for ns in ("alpha", "beta"):
        text = (ROOT / "examples/quickstart/provider.yaml").read_text()
        (tmp_path / f"{ns}.yaml").write_text(
            text.replace("metadata:", f"metadata:\n  namespace: {ns}", 1)
        )
    cases = [
        ([str(tmp_path)], "2 namespaces (alpha, beta); choose one with --namespace"),
        ([str(tmp_path), "-n", "gamma"], "no routing config for namespace 'gamma'"),
        ([str(tmp_path / "missing")], "no such file or directory"),
    ]
    for extra, message in cases:
        result = subprocess.run(
            [sys.executable, "-m", "switchboard.cli", "gateway", "--manifests", *extra],
            capture_output=True,
            check=False,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stdout
