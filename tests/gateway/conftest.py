"""Fixtures of both gateway tiers.

Process tier (modules marked `gateway`): the gateway as users meet it, a real process on a
loopback port, fake upstreams as real servers (tests/upstreams), and the official SDKs unchanged
but for base URL and key. Fast tier (`test_fast_*.py`): the application and the fakes in the
test's own event loop, see `inproc.py`, whose `fakes` and `gw` fixtures are re-exported here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.gateway.inproc import fakes, gw  # noqa: F401  (fixtures of the fast tier)
from tests.upstreams.server import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-full-access-0123456789abcdef"
NARROW_KEY = "sk-test-agent-only-0123456789abcdef"
PROVIDER_KEY = "sk-provider-secret-key-9876543210"
SECRET_LABEL = "{switchboard.dev/secret: 'true'}"
"""The opt-in label every Secret Switchboard reads carries (YAML flow mapping)."""
PRICES = {"input": 3, "output": 15, "cacheRead": 0.3, "cacheWrite": 3.75}


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until `url` answers below 500; RuntimeError when the process exits or the deadline
    passes (a deadline for a hang: a busy machine starts processes slowly)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.1)


def start(
    args: list[str],
    log: Path,
    ready_url: str | None = None,
    env: dict[str, str] | None = None,
    *,
    python: bool = True,
) -> Process:
    """`python ARGS` (or the program ARGS[0] with `python=False`), output to `log`; once
    `ready_url` answers below 500 when given. `env` is added to this process's environment."""
    handle = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, *args] if python else args,
        cwd=ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    handle.close()
    process = Process(proc, log)
    if ready_url:
        try:
            _wait_http(ready_url, proc)
        except RuntimeError as exc:
            process.stop()
            raise RuntimeError(f"{args} failed to start ({exc}):\n{log.read_text()}") from None
    return process


@dataclass
class Upstreams:
    chat: int
    responses: int
    anthropic: int
    dead: int


@pytest.fixture(scope="session")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    logs = tmp_path_factory.mktemp("upstreams")
    ports = Upstreams(free_port(), free_port(), free_port(), free_port())
    procs = [
        start(
            [
                "-m",
                "tests.upstreams",
                "--shape",
                "vllm",
                "--port",
                str(ports.chat),
                "--cached",
                "2",
            ],
            logs / "chat.log",
            f"http://127.0.0.1:{ports.chat}/_requests",
        ),
        start(
            [
                "-m",
                "tests.upstreams",
                "--shape",
                "responses",
                "--port",
                str(ports.responses),
                "--cached",
                "2",
            ],
            logs / "responses.log",
            f"http://127.0.0.1:{ports.responses}/_requests",
        ),
        start(
            [
                "-m",
                "tests.upstreams",
                "--shape",
                "anthropic",
                "--port",
                str(ports.anthropic),
                "--cached",
                "2",
                "--cache-write",
                "1",
            ],
            logs / "anthropic.log",
            f"http://127.0.0.1:{ports.anthropic}/_requests",
        ),
    ]
    yield ports
    for p in procs:
        p.stop()


def manifests(u: Upstreams) -> str:
    """Providers on each fake, agents for every fallback trigger, two keys."""

    def provider(name: str, port: int, api: str, models: list[str], extra: str = "") -> str:
        base = f"http://127.0.0.1:{port}" + ("" if api == "anthropic-messages" else "/v1")
        lines = "".join(
            f"    - {{id: '{m}', contextWindow: 4096, maxTokens: 512, cost: {PRICES}}}\n".replace(
                "'", '"'
            )
            for m in models
        )
        return (
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
            f"metadata: {{name: {name}}}\nspec:\n  baseUrl: {base}\n  api: {api}\n"
            f"  apiKeySecretRef: {{name: provider-key, key: key}}\n{extra}  models:\n{lines}---\n"
        )

    def agent(name: str, model: str, *fallbacks: str, extra: str = "") -> str:
        return (
            "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\n"
            f"metadata: {{name: {name}}}\nspec:\n  model: '{model}'\n"
            f"  fallbacks: {list(fallbacks)}\n{extra}---\n"
        )

    faults = [
        "m@status=500",
        "m@status=503",
        "m@status=429",
        "m@context_length",
        "m@drop_after=3,chunk_delay=0.05",
        "m@stall_after=3",
    ]
    tiny = (
        "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
        f"metadata: {{name: tiny}}\nspec:\n  baseUrl: http://127.0.0.1:{u.chat}/v1\n  models:\n"
        "    - {id: tiny, contextWindow: 60, maxTokens: 10, cost: {}}\n"
        "    - {id: eyes, contextWindow: 4096, maxTokens: 100, input: [text, image], cost: {}}\n"
        "---\n"
    )
    return (
        provider("chat", u.chat, "openai-completions", ["m", *faults])
        + provider("resp", u.responses, "openai-responses", ["m", "m@context_length"])
        + provider("anth", u.anthropic, "anthropic-messages", ["m", "m@context_length"])
        + provider("dead", u.dead, "openai-completions", ["m"])
        + provider(
            "slow", u.chat, "openai-completions", ["m@delay=5"], "  timeouts: {firstToken: 500ms}\n"
        )
        + tiny
        + agent("coder", "chat:m")
        + agent("fb-connect", "dead:m", "chat:m")
        + agent("fb-500", "chat:m@status=500", "chat:m")
        + agent("fb-503", "chat:m@status=503", "anth:m")
        + agent("fb-429", "chat:m@status=429", "resp:m")
        + agent("fb-timeout", "slow:m@delay=5", "chat:m")
        + agent("fb-context", "chat:m@context_length", "anth:m@context_length", "resp:m")
        + agent("fb-all-fail", "chat:m@status=500", "dead:m")
        + agent("midstream", "chat:m@drop_after=3,chunk_delay=0.05", "anth:m")
        + agent("ctx-move", "tiny:tiny", "chat:m")
        + agent("ctx-truncate", "tiny:tiny", extra="  allowTruncation: true\n")
        + agent("ctx-reject", "tiny:tiny")
        + agent("vision", "tiny:tiny", extra="  imageModel: tiny:eyes\n")
        + agent("text-only", "chat:m")
        + "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: provider-key, labels: {SECRET_LABEL}}}\n"
        f"stringData: {{key: {PROVIDER_KEY}}}\n---\n"
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: keys, labels: {SECRET_LABEL}}}\n"
        f"stringData: {{full: {KEY}, narrow: {NARROW_KEY}}}\n---\n"
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\nmetadata: {name: full}\n"
        "spec:\n  keys: [{name: full, secretRef: {name: keys, key: full}}]\n"
        "  allowedProviders: ['*']\n  allowedAgents: ['*']\n---\n"
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\nmetadata: {name: narrow}\n"
        "spec:\n  keys: [{name: narrow, secretRef: {name: keys, key: narrow}}]\n"
        "  allowedAgents: [coder]\n"
    )


@dataclass
class Gateway:
    url: str
    process: Process
    config: Path
    metrics_url: str
    """Where GET /metrics answers: the gateway's own metrics port."""

    @property
    def log_text(self) -> str:
        return self.process.log.read_text()

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in httpx.get(f"{self.metrics_url}/metrics").text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


def render(manifest_dir: Path, out: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "switchboard.cli",
            "render",
            str(manifest_dir),
            "-o",
            "json",
            "--show-secrets",
        ],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(result.stdout)
    tmp.replace(out)


def render_text(text: str, work: Path) -> Path:
    """Manifests as text -> `work/manifests/all.yaml` -> the rendered `work/routing.json`."""
    (work / "manifests").mkdir()
    (work / "manifests" / "all.yaml").write_text(text)
    config = work / "routing.json"
    render(work / "manifests", config)
    return config


def start_gateway(
    config: Path, log: Path, *extra: str, env: dict[str, str] | None = None
) -> Gateway:
    """`switchboard gateway --config CONFIG` on a free loopback port, once /readyz answers;
    `env` added to its environment (e.g. the OTEL_* variables)."""
    port, metrics_port = free_port(), free_port()
    process = start(
        [
            "-m",
            "switchboard.cli",
            "gateway",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            *extra,
        ],
        log,
        f"http://127.0.0.1:{port}/readyz",
        env,
    )
    return Gateway(f"http://127.0.0.1:{port}", process, config, f"http://127.0.0.1:{metrics_port}")


@pytest.fixture(scope="session")
def gateway(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("gateway")
    served = start_gateway(render_text(manifests(upstreams), work), work / "gateway.log")
    yield served
    served.process.stop()


@contextmanager
def scripted_gateway(
    module: str, work: Path, providers: list[tuple[str, str, str, list[str]]]
) -> Iterator[Gateway]:
    """A gateway in front of `module`'s own upstream process (`python -m MODULE PORT`: its
    `main(port)` writes exact bytes per model, answering GET /ready), with one CustomProvider
    per (name, path, api, models) on it and the key KEY allowed everything."""
    port = free_port()
    upstream = start(
        ["-m", module, str(port)], work / "upstream.log", f"http://127.0.0.1:{port}/ready"
    )
    manifests = ""
    for name, path, api, models in providers:
        listed = "".join(
            f'    - {{id: "{m}", contextWindow: 4096, maxTokens: 512, cost: {{}}}}\n'
            for m in models
        )
        manifests += (
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
            f"metadata: {{name: {name}}}\nspec:\n  baseUrl: http://127.0.0.1:{port}{path}\n"
            f"  api: {api}\n  apiKeySecretRef: {{name: provider-key, key: key}}\n"
            f"  models:\n{listed}---\n"
        )
    manifests += (
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: provider-key, labels: {SECRET_LABEL}}}\n"
        "stringData: {key: sk-upstream}\n---\n"
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: keys, labels: {SECRET_LABEL}}}\nstringData: {{full: {KEY}}}\n---\n"
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\nmetadata: {name: full}\n"
        "spec:\n  keys: [{name: full, secretRef: {name: keys, key: full}}]\n"
        "  allowedProviders: ['*']\n  allowedAgents: ['*']\n"
    )
    try:
        served = start_gateway(render_text(manifests, work), work / "gateway.log")
    except BaseException:
        upstream.stop()
        raise
    try:
        yield served
    finally:
        served.process.stop()
        upstream.stop()
