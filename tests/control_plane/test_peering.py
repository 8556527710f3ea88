"""Two operator replicas never both write: kopf peering, as the chart runs it with replicas > 1.

Covers: with the peering CRDs and a ClusterKopfPeering, two operators (priorities 10 and 20)
run at once; only the higher one writes the routing Secret and statuses; when it stops, the
other takes over and serves the next change.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.control_plane.conftest import ROOT, wait_for
from tests.control_plane.test_operator import routing_secret
from tests.support.controlplane import ControlPlane


def _operator(cp: ControlPlane, log: Path, priority: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "operator",
                "--peering",
                "sb-test",
                "--priority",
                str(priority),
                "--debounce",
                "0.2",
                "--namespace",
                "peering",
            ],
            env=cp.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def test_only_the_leader_writes(control_plane: ControlPlane, tmp_path: Path) -> None:
    cp = control_plane
    cp.kubectl(
        "apply",
        "--server-side",
        "-f",
        str(ROOT / "helm/switchboard/crds/kopfpeerings.kopf.dev.yaml"),
    )
    cp.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev")
    cp.kubectl("create", "namespace", "peering")
    cp.kubectl(
        "apply",
        "-f",
        "-",
        input=(
            "apiVersion: kopf.dev/v1\nkind: KopfPeering\n"
            "metadata: {name: sb-test, namespace: peering}\n"
        ),
    )
    low = _operator(cp, tmp_path / "low.log", 10)
    high = _operator(cp, tmp_path / "high.log", 20)
    try:
        cp.kubectl("apply", "-n", "peering", "-f", str(ROOT / "examples/quickstart"))
        wait_for(lambda: routing_secret(cp, "peering") is not None, timeout=60)
        cp.kubectl(
            "wait",
            "--for=condition=Ready",
            "-n",
            "peering",
            "customprovider/local",
            "--timeout=30s",
        )
        assert "routing config" in (tmp_path / "high.log").read_text()
        assert "routing config" not in (tmp_path / "low.log").read_text()
        high.terminate()
        high.wait(20)
        cp.kubectl(
            "patch",
            "agent",
            "coder",
            "-n",
            "peering",
            "--type=merge",
            "-p",
            '{"spec":{"description":"after failover"}}',
        )
        wait_for(
            lambda: (
                (routing_secret(cp, "peering") or {})
                .get("agents", {})  # type: ignore[union-attr]
                .get("coder", {})
                .get("description")
                == "after failover"
            ),
            timeout=90,
        )
        assert "routing config" in (tmp_path / "low.log").read_text()
    finally:
        for proc in (low, high):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)
