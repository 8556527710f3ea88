"""Fixtures of the real-clients tier: the scripted model server, the gateway in front of it, and
how to run a client as a subprocess with nothing but loopback to talk to.

One scripted server (`scripted.py`) answers all three APIs; the gateway (`switchboard gateway
--manifests DIR`, a process) serves it as three providers, one per upstream API, and one Agent
per provider so that every client can name its upstream with a plain model name:

    scripted-chat       -> provider up-chat (openai-completions)
    scripted-responses  -> provider up-responses (openai-responses)
    scripted-messages   -> provider up-messages (anthropic-messages)

The clients come from `tests/clients/package.json` (node_modules, `npm ci`) and
`tests/clients/requirements.txt` (`.venv-clients`), both installed by `make test`; a test whose
client is not installed fails and names the make target that installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from anthropic.types import message_create_params
from openai.types.chat import completion_create_params
from openai.types.responses import response_create_params
from pydantic import TypeAdapter, ValidationError

from tests.gateway.conftest import ROOT, Process, start
from tests.support.sdk_strict import StrictError, strict
from tests.upstreams.server import free_port

HERE = Path(__file__).resolve().parent
NODE_BIN = HERE / "node_modules" / ".bin"
CLIENTS_PY = ROOT / ".venv-clients" / "bin" / "python"
KEY = "sk-clients-tier-0123456789abcdef"
MODES = ("chat", "responses", "messages")
_API = {
    "chat": "openai-completions",
    "responses": "openai-responses",
    "messages": "anthropic-messages",
}


def manifests(port: int) -> str:
    docs = []
    for mode in MODES:
        base = f"http://127.0.0.1:{port}" + ("" if mode == "messages" else "/v1")
        docs.append(
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
            f"metadata: {{name: up-{mode}}}\nspec:\n  baseUrl: {base}\n  api: {_API[mode]}\n"
            "  apiKeySecretRef: {name: upstream-key, key: key}\n"
            "  models:\n    - {id: scripted, contextWindow: 200000, maxTokens: 32000,"
            " input: [text, image], cost: {}}\n"
        )
        docs.append(
            "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\n"
            f"metadata: {{name: scripted-{mode}}}\nspec:\n  model: 'up-{mode}:scripted'\n"
        )
    docs.append(
        "apiVersion: v1\nkind: Secret\n"
        "metadata: {name: upstream-key, labels: {switchboard.dev/secret: 'true'}}\n"
        "stringData: {key: sk-upstream-0123456789}\n"
    )
    docs.append(
        "apiVersion: v1\nkind: Secret\n"
        "metadata: {name: keys, labels: {switchboard.dev/secret: 'true'}}\n"
        f"stringData: {{key: {KEY}}}\n"
    )
    docs.append(
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\nmetadata: {name: tier}\n"
        "spec:\n  keys: [{name: tier, secretRef: {name: keys, key: key}}]\n"
        "  allowedProviders: ['*']\n  allowedAgents: ['*']\n"
    )
    return "---\n".join(docs)


class Sink:
    """The clients' HTTP(S) proxy for everything but loopback: it records the first line of
    each connection (`CONNECT host:443 HTTP/1.1`) and closes it. A client that tries to reach
    anything outside (telemetry, update checks, catalogs) shows up in `seen`."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.seen.append(conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1"))
                except OSError as exc:
                    self.seen.append(f"(unreadable: {exc})")

    def close(self) -> None:
        self.server.close()


@dataclass
class Tier:
    gateway: str
    upstream: str
    gateway_log: Path
    sink: Sink

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.upstream}/_requests", timeout=10).json())

    def clear(self) -> None:
        """Forget what the upstream and the sink saw (before each client run)."""
        httpx.delete(f"{self.upstream}/_requests", timeout=10)
        self.sink.seen.clear()


@pytest.fixture(scope="session")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    sink = Sink()
    work = tmp_path_factory.mktemp("clients")
    port = free_port()
    upstream: Process = start(
        ["-m", "tests.clients.scripted", "--port", str(port)],
        work / "scripted.log",
        f"http://127.0.0.1:{port}/_requests",
    )
    try:
        (work / "manifests").mkdir()
        (work / "manifests" / "all.yaml").write_text(manifests(port))
        gateway_port = free_port()
        gateway = start(
            [
                "-m",
                "switchboard.cli",
                "gateway",
                "--manifests",
                str(work / "manifests"),
                "--host",
                "127.0.0.1",
                "--port",
                str(gateway_port),
            ],
            work / "gateway.log",
            f"http://127.0.0.1:{gateway_port}/readyz",
        )
        yield Tier(
            f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{port}", gateway.log, sink
        )
        gateway.stop()
    finally:  # the upstream and the sink stop even when the gateway did not start
        upstream.stop()
        sink.close()


# What the scripted server received, checked against the official SDKs' request types.
_REQUEST_TYPES: dict[tuple[str, bool], TypeAdapter[Any]] = {
    ("chat", False): TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming),
    ("chat", True): TypeAdapter(completion_create_params.CompletionCreateParamsStreaming),
    ("responses", False): TypeAdapter(response_create_params.ResponseCreateParamsNonStreaming),
    ("responses", True): TypeAdapter(response_create_params.ResponseCreateParamsStreaming),
    ("messages", False): TypeAdapter(message_create_params.MessageCreateParamsNonStreaming),
    ("messages", True): TypeAdapter(message_create_params.MessageCreateParamsStreaming),
}


_STRICT_TYPES: dict[str, Any] = {
    "chat": completion_create_params.CompletionCreateParamsNonStreaming,
    "responses": response_create_params.ResponseCreateParamsNonStreaming,
    "messages": message_create_params.MessageCreateParamsNonStreaming,
}


def check_upstream(
    tier: Tier,
    mode: str,
    client_api: str,
    *,
    received: list[dict[str, Any]] | None = None,
    turns: int = 2,
) -> list[dict[str, Any]]:
    """The requests the upstream received since `tier.clear()` (or those given): at least the
    `turns` of the tool loop, all in the upstream's API, each a valid request of the official
    SDK's type. Where the gateway translated (`client_api` is not `mode`) the check is strict
    (tests/support/sdk_strict.py: unknown keys rejected, nested lists walked): what the gateway
    wrote must be the API's own; a same-API request passes the client's own fields through."""
    received = tier.requests() if received is None else received
    assert len(received) >= turns, f"the upstream saw {len(received)} request(s): {received}"
    for seen in received:
        assert seen["api"] == mode, f"a {seen['api']} request reached the {mode} upstream"
        body = seen["body"]
        try:
            _REQUEST_TYPES[(mode, bool(body.get("stream")))].validate_python(body)
            if client_api != mode:
                assert isinstance(body.get("stream", False), bool)
                rest = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
                strict(_STRICT_TYPES[mode], rest)
        except (ValidationError, StrictError) as exc:
            raise AssertionError(f"malformed {mode} request upstream: {exc}\n{body}") from None
    return received


def quiet_env(home: Path, proxy: str, **extra: str) -> dict[str, str]:
    """A client's environment: its own HOME, no credentials of the machine, no telemetry, no
    update checks, and `proxy` (a Sink's URL) for anything but loopback."""
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "SYSTEMROOT", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "NO_COLOR": "1",
            "CI": "1",
            "HTTP_PROXY": proxy,
            "HTTPS_PROXY": proxy,
            "ALL_PROXY": proxy,
            "http_proxy": proxy,
            "https_proxy": proxy,
            "NODE_USE_ENV_PROXY": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "DO_NOT_TRACK": "1",
        }
    )
    env.update(extra)
    return env


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        out, err = self.stdout[-4000:], self.stderr[-4000:]
        return f"exit {self.code}\n--- stdout\n{out}\n--- stderr\n{err}"


def run_client(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> Run:
    """Run a client to its end (its own exit); a client that hangs past `timeout` is killed and
    the test fails with what it printed."""
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed; `make clients` installs the tier's clients")
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def node_bin(name: str) -> str:
    return str(NODE_BIN / name)
