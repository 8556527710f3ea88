"""Two operator replicas never both write: kopf peering, as the chart runs it with replicas > 1.

Covers: with the peering CRDs and a KopfPeering, a second operator (priority 10) started while a
first one (priority 20) is active stays passive: changes are written by the first only; when the
first stops, the second takes over and serves the next change.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.control_plane.conftest import ROOT, Operator, wait_for
from tests.control_plane.test_operator import routing_secret
from tests.support.controlplane import ControlPlane

WRITTEN = "routing config"  # the operator logs this line only when it writes the Secret


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
                "--metrics-port",
                "0",
            ],
            env=cp.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _description(cp: ControlPlane) -> object:
    config = routing_secret(cp, "peering") or {}
    agents = config.get("agents") or {}
    assert isinstance(agents, dict)
    return (agents.get("coder") or {}).get("description")


def _patch(cp: ControlPlane, text: str) -> None:
    cp.kubectl(
        "patch",
        "agent",
        "coder",
        "-n",
        "peering",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"description": text}}),
    )


def test_only_the_leader_writes(
    control_plane: ControlPlane, operator: Operator, tmp_path: Path
) -> None:
    cp = control_plane
    operator.stop()  # the session's standalone operator would write here too
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
    high = _operator(cp, tmp_path / "high.log", 20)
    low = None
    try:
        cp.kubectl("apply", "-n", "peering", "-f", str(ROOT / "examples/quickstart"))
        wait_for(lambda: routing_secret(cp, "peering") is not None, timeout=60)
        low = _operator(cp, tmp_path / "low.log", 10)
        time.sleep(3)  # up, watching, and paused in favour of the higher priority
        _patch(cp, "while both run")
        wait_for(lambda: _description(cp) == "while both run", timeout=60)
        assert WRITTEN in (tmp_path / "high.log").read_text()
        assert WRITTEN not in (tmp_path / "low.log").read_text()
        high.terminate()
        high.wait(20)
        _patch(cp, "after failover")
        wait_for(lambda: _description(cp) == "after failover", timeout=90)
        assert WRITTEN in (tmp_path / "low.log").read_text()
    finally:
        for proc in (low, high):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        operator.start()
