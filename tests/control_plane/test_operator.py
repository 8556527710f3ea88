"""The operator on a real control plane, as platform teams run it.

Covers:
- `kubectl apply` of every examples/ directory into its own namespace; each namespace's
  `switchboard-routing` Secret decodes to exactly `switchboard render -n NS examples/X`;
- `kubectl wait --for=condition=Ready` on all three kinds; printer columns filled;
- a missing Secret gives ResolvedRefs=False naming the Secret and key, an event, and recovers
  when the Secret appears; a deleted object recompiles the namespace;
- restart: the operator killed in the middle of a burst converges, once restarted, to the
  Secret that `render` gives for the final objects;
- config-sync writes the routing file, follows updates and keeps the last good file when the
  Secret is corrupted.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switchboard.routing import config as rc
from tests.control_plane.conftest import ROOT, Operator, wait_for
from tests.support.controlplane import ControlPlane

EXAMPLES = sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir())


def routing_secret(cp: ControlPlane, namespace: str) -> dict[str, object] | None:
    result = cp.kubectl(
        "get", "secret", "switchboard-routing", "-n", namespace, "-o", "json", check=False
    )
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout)["data"]["routing.json.gz"]
    loaded: dict[str, object] = json.loads(gzip.decompress(base64.b64decode(data)))
    return loaded


def render(namespace: str, *paths: Path) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "switchboard.cli",
            "render",
            "-n",
            namespace,
            *map(str, paths),
            "-o",
            "json",
            "--show-secrets",
        ],
        capture_output=True,
        check=True,
        cwd=ROOT,
    ).stdout
    loaded: dict[str, object] = json.loads(out)
    return loaded


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_secret_equals_render(
    control_plane: ControlPlane, operator: Operator, example: str
) -> None:
    namespace = f"ex-{example}"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / example))
    expected = render(namespace, ROOT / "examples" / example)
    wait_for(lambda: routing_secret(control_plane, namespace) == expected)
    for kind in ("customproviders", "agents", "accesskeyconfigs"):
        names = control_plane.kubectl("get", kind, "-n", namespace, "-o", "name").stdout.split()
        if names:
            control_plane.kubectl(
                "wait", "--for=condition=Ready", "-n", namespace, "--timeout=30s", *names
            )


def _condition(cp: ControlPlane, kind: str, name: str, ns: str, ctype: str) -> dict[str, str]:
    status = json.loads(cp.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout).get(
        "status", {}
    )
    for condition in status.get("conditions", []):
        if condition["type"] == ctype:
            return dict(condition)
    return {}


def test_missing_secret_reported_and_recovered(
    control_plane: ControlPlane, operator: Operator
) -> None:
    ns = "missing-secret"
    cp = control_plane
    cp.kubectl("create", "namespace", ns)
    access = (ROOT / "examples/quickstart/access.yaml").read_text().split("---\n")[1]
    cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/quickstart/provider.yaml"))
    cp.kubectl("apply", "-n", ns, "-f", "-", input=access)
    wait_for(
        lambda: (
            _condition(cp, "accesskeyconfig", "demo", ns, "ResolvedRefs").get("status") == "False"
        )
    )
    condition = _condition(cp, "accesskeyconfig", "demo", ns, "ResolvedRefs")
    assert condition["reason"] == "SecretNotFound"
    assert "'demo-client-key'" in condition["message"] and "'token'" in condition["message"]
    ready = _condition(cp, "accesskeyconfig", "demo", ns, "Ready")
    assert ready["status"] == "False" and ready["observedGeneration"] == 1
    events = cp.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    assert "SecretNotFound" in events
    cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/quickstart/access.yaml"))
    cp.kubectl("wait", "--for=condition=Ready", "accesskeyconfig/demo", "-n", ns, "--timeout=30s")
    assert _condition(cp, "accesskeyconfig", "demo", ns, "ResolvedRefs")["status"] == "True"
    assert "sk-sb-demo" not in events


def test_delete_recompiles(control_plane: ControlPlane, operator: Operator) -> None:
    ns = "delete-provider"
    cp = control_plane
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/quickstart"))
    wait_for(lambda: (routing_secret(cp, ns) or {}).get("providers") not in (None, {}))
    cp.kubectl("delete", "customprovider", "local", "-n", ns)
    wait_for(lambda: (routing_secret(cp, ns) or {}).get("providers") == {})
    wait_for(lambda: _condition(cp, "agent", "coder", ns, "Ready").get("status") == "False")
    assert _condition(cp, "agent", "coder", ns, "Ready")["reason"] == "ProviderNotFound"


def test_restart_mid_burst_converges(control_plane: ControlPlane, tmp_path: Path) -> None:
    ns = "burst"
    cp = control_plane
    cp.kubectl("create", "namespace", ns)
    docs = [
        "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
        f"metadata: {{name: p{i}}}\nspec:\n  baseUrl: http://p{i}.models.svc/v1\n"
        f"  models: [{{id: m, cost: {{}}}}]\n"
        for i in range(150)
    ]
    manifest = tmp_path / "burst.yaml"
    manifest.write_text("---\n".join(docs))
    op = Operator(cp, tmp_path / "op.log", "--namespace", ns).start()
    applying = subprocess.Popen(
        [str(cp.bin_dir / "kubectl"), "apply", "-n", ns, "-f", str(manifest)],  # type: ignore[operator]
        env=cp.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(
        lambda: cp.kubectl("get", "customproviders", "-n", ns, "-o", "name").stdout.count("\n") > 20
    )
    op.stop(kill=True)
    applying.wait(60)
    op.start()
    try:
        expected = render(ns, manifest)
        wait_for(lambda: routing_secret(cp, ns) == expected, timeout=60)
        live = json.loads(
            cp.kubectl("get", "secret", "switchboard-routing", "-n", ns, "-o", "json").stdout
        )
        assert live["metadata"]["annotations"]["switchboard.dev/config-hash"] == expected["hash"]
    finally:
        op.stop()


def test_config_sync(control_plane: ControlPlane, operator: Operator, tmp_path: Path) -> None:
    ns = "sync"
    cp = control_plane
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/quickstart"))
    wait_for(lambda: routing_secret(cp, ns) is not None)
    out = tmp_path / "config" / "routing.json"
    with (tmp_path / "sync.log").open("wb") as log:
        sync = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "config-sync",
                "--namespace",
                ns,
                "--out",
                str(out),
            ],
            env=cp.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        wait_for(
            lambda: (
                out.exists()
                and rc.load(out.read_bytes()).hash == (routing_secret(cp, ns) or {}).get("hash")
            )
        )
        cp.kubectl(
            "patch",
            "agent",
            "coder",
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"spec":{"description":"changed"}}',
        )
        wait_for(lambda: rc.load(out.read_bytes()).agents["coder"].description == "changed")
        good = out.read_bytes()
        operator.stop()  # so that it does not rewrite the Secret we corrupt
        cp.kubectl(
            "patch",
            "secret",
            "switchboard-routing",
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"data":{"routing.json.gz":"bm90IGpzb24="}}',
        )
        time.sleep(2)
        assert out.read_bytes() == good
        assert "keeping the last good file" in (tmp_path / "sync.log").read_text()
    finally:
        sync.terminate()
        sync.wait(10)
        operator.start()
