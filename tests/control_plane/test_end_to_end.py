"""End to end on the control plane: operator, config-sync and gateway as processes.

Covers: applying a provider and a key makes an `openai` SDK call through the gateway succeed;
changing the provider is served after a hot reload; deleting the provider makes the same call
answer 404. (bench/ measures the apply-to-served latency.)
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.control_plane.conftest import Operator, wait_for
from tests.gateway.conftest import start
from tests.support.controlplane import ControlPlane
from tests.upstreams.server import free_port

KEY = "sk-e2e-client-0123456789abcdef"


def test_apply_serve_delete(
    control_plane: ControlPlane, operator: Operator, tmp_path: Path
) -> None:
    cp = control_plane
    ns = "e2e"
    cp.kubectl("create", "namespace", ns)
    upstream_port = free_port()
    upstream = start(
        ["-m", "tests.upstreams", "--shape", "ollama", "--port", str(upstream_port)],
        tmp_path / "up.log",
        f"http://127.0.0.1:{upstream_port}/_requests",
    )
    routing = tmp_path / "config" / "routing.json"
    sync = start(
        ["-m", "switchboard.cli", "config-sync", "--namespace", ns, "--out", str(routing)],
        tmp_path / "sync.log",
    )
    port = free_port()
    gateway = None
    try:
        cp.kubectl(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=f"""
apiVersion: v1
kind: Secret
metadata: {{name: keys, labels: {{switchboard.dev/secret: "true"}}}}
stringData: {{app: {KEY}}}
---
apiVersion: switchboard.dev/v1alpha1
kind: AccessKeyConfig
metadata: {{name: app}}
spec:
  keys: [{{name: app, secretRef: {{name: keys, key: app}}}}]
  allowedProviders: ["*"]
---
apiVersion: switchboard.dev/v1alpha1
kind: CustomProvider
metadata: {{name: ollama}}
spec:
  baseUrl: http://127.0.0.1:{upstream_port}/v1
  models: [{{id: "qwen2.5-coder:32b", cost: {{input: 1, output: 2}}}}]
""",
        )
        wait_for(routing.exists, timeout=30)
        gateway = start(
            [
                "-m",
                "switchboard.cli",
                "gateway",
                "--config",
                str(routing),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            tmp_path / "gw.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)

        def ask() -> str | None:
            answer = client.chat.completions.create(
                model="ollama:qwen2.5-coder:32b", messages=[{"role": "user", "content": "ping"}]
            )
            return answer.choices[0].message.content

        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").is_success)
        assert ask() == "You said: ping"
        cp.kubectl("delete", "customprovider", "ollama", "-n", ns)
        deadline = time.monotonic() + 30
        while True:
            try:
                ask()
            except openai.NotFoundError as exc:
                assert "not found" in str(exc)
                break
            assert time.monotonic() < deadline, "still served after the provider was deleted"
            time.sleep(0.1)
    finally:
        if gateway is not None:
            gateway.stop()
        sync.stop()
        upstream.stop()


@pytest.fixture(autouse=True)
def _environment(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes started by this module (with os.environ) talk to the test control plane."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
