"""config-sync, the gateway's sidecar, against the real apiserver.

Covers: `switchboard config-sync --kubeconfig ...` (no $KUBECONFIG) writes the routing file
from the namespace's routing Secret, follows updates (an Agent's description changed) and logs
the hash change; a corrupted Secret keeps the last good file (and says so); an unreachable API
at start keeps an existing good file, retries with backoff and never truncates it; no
temporary files are left beside the routing file; RBAC: a Role with get/list/watch on the one
name (as in docs/operator.md) allows the field-selected list and forbids everything else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from switchboard.routing import config as rc
from tests.control_plane import test_operator as helpers
from tests.control_plane.conftest import ROOT, Operator, wait_for
from tests.support.controlplane import ControlPlane


@contextmanager
def config_sync(
    kubeconfig: Path, namespace: str, out: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "config-sync",
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                namespace,
                "--out",
                str(out),
                "--max-backoff",
                "1",
            ],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_config_sync_follows_and_keeps_last_good(
    control_plane: ControlPlane, operator: Operator, tmp_path: Path
) -> None:
    ns = "sync"
    cp = control_plane
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/quickstart"))
    wait_for(lambda: helpers.routing_secret(cp, ns) is not None)
    out = tmp_path / "config" / "routing.json"
    log = tmp_path / "sync.log"
    with config_sync(cp.kubeconfig, ns, out, log):
        wait_for(
            lambda: (
                out.exists()
                and rc.load(out.read_bytes()).hash
                == (helpers.routing_secret(cp, ns) or {}).get("hash")
            )
        )
        first = rc.load(out.read_bytes()).hash
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
        second = rc.load(out.read_bytes()).hash
        wait_for(lambda: f"{first[:12]} -> {second[:12]}" in log.read_text())
        good = out.read_bytes()
        operator.stop()  # so that it does not repair the Secret we corrupt
        try:
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
            wait_for(lambda: "keeping the last good file" in log.read_text())
            assert out.read_bytes() == good
        finally:
            operator.start()
        # Restarted, the operator repairs the Secret; the file stays (same hash, no rewrite).
        wait_for(lambda: helpers.routing_secret(cp, ns) is not None)
        wait_for(lambda: (helpers.routing_secret(cp, ns) or {}).get("hash") == second)
        time.sleep(0.5)
        assert out.read_bytes() == good
    assert [p.name for p in out.parent.iterdir()] == ["routing.json"]


def test_config_sync_keeps_file_when_api_unreachable(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    text = control_plane.kubeconfig.read_text()
    server = next(line.split()[-1] for line in text.splitlines() if "server:" in line)
    kubeconfig.write_text(text.replace(server, "https://127.0.0.1:9"))  # nothing listens there
    out = tmp_path / "routing.json"
    good = rc.to_json(rc.sealed(rc.RoutingConfig(namespace="offline")))
    out.write_bytes(good)
    log = tmp_path / "sync.log"
    with config_sync(kubeconfig, "offline", out, log) as proc:
        wait_for(lambda: log.read_text().count("retrying in") >= 2, timeout=30)
        assert proc.poll() is None
        assert out.read_bytes() == good


def test_config_sync_rbac_one_secret_is_enough(
    control_plane: ControlPlane, operator: Operator
) -> None:
    """A Role with get/list/watch on the one name lets config-sync's list (field selector) run,
    and nothing else: other Secrets and an unselected list are forbidden."""
    ns = "sync-rbac"
    cp = control_plane
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/quickstart"))
    wait_for(lambda: helpers.routing_secret(cp, ns) is not None)
    cp.kubectl("create", "serviceaccount", "gateway", "-n", ns)
    cp.kubectl(
        "create", "role", "config-sync", "-n", ns, "--verb=get,list,watch",
        "--resource=secrets", "--resource-name=switchboard-routing",
    )  # fmt: skip
    cp.kubectl(
        "create", "rolebinding", "config-sync", "-n", ns, "--role=config-sync",
        f"--serviceaccount={ns}:gateway",
    )  # fmt: skip
    user = f"--as=system:serviceaccount:{ns}:gateway"
    selected = cp.kubectl(
        "get", "secrets", "-n", ns, user, "--field-selector=metadata.name=switchboard-routing",
        "-o", "name",
    )  # fmt: skip
    assert selected.stdout.split() == ["secret/switchboard-routing"]
    for forbidden in (("get", "secret", "demo-client-key"), ("get", "secrets")):
        result = cp.kubectl(*forbidden, "-n", ns, user, check=False)
        assert result.returncode != 0 and "forbidden" in result.stderr
