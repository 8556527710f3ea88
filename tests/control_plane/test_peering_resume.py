"""An outranked replica never serves from the cache it held while waiting (kopf peering).

Covers: a replica (priority 10) active, then outranked by a second one (priority 20); an
AccessKeyConfig deleted while the second one is active (its key leaves the routing config);
the second one stops, the first takes over and compiles the namespace again (an Agent edit):
the deleted object's key stays out. kopf resumes a paused replica with a fresh listing that
says nothing of deletions, so a replica that kept its cache published the key again; it now
restarts itself once outranked (`controller/peering.py`, `follow`) and the log says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.control_plane.conftest import ROOT, Operator, wait_for
from tests.control_plane.test_operator import routing_secret
from tests.support.controlplane import ControlPlane

NS = "peering-resume"
RESTARTING = "another replica took over: restarting"


def _replica(cp: ControlPlane, log: Path, priority: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "operator",
                "--peering",
                "sb-resume",
                "--priority",
                str(priority),
                "--debounce",
                "0.2",
                "--namespace",
                NS,
                "--metrics-port",
                "0",
            ],
            env=cp.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _keys(cp: ControlPlane) -> object:
    return (routing_secret(cp, NS) or {}).get("keys")


def _description(cp: ControlPlane) -> object:
    agents = (routing_secret(cp, NS) or {}).get("agents") or {}
    assert isinstance(agents, dict)
    return (agents.get("coder") or {}).get("description")


def test_resumed_replica_does_not_bring_back_deleted_objects(
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
    cp.kubectl("create", "namespace", NS)
    cp.kubectl(
        "apply",
        "-f",
        "-",
        input=(
            "apiVersion: kopf.dev/v1\nkind: KopfPeering\n"
            f"metadata: {{name: sb-resume, namespace: {NS}}}\n"
        ),
    )
    low_log, high_log = tmp_path / "low.log", tmp_path / "high.log"
    low = _replica(cp, low_log, 10)
    high = None
    try:
        cp.kubectl("apply", "-n", NS, "-f", str(ROOT / "examples/quickstart"))
        wait_for(lambda: _keys(cp), timeout=60)
        high = _replica(cp, high_log, 20)
        wait_for(lambda: RESTARTING in low_log.read_text(), timeout=60)
        cp.kubectl("delete", "accesskeyconfig", "demo", "-n", NS)
        wait_for(lambda: routing_secret(cp, NS) is not None and not _keys(cp), timeout=60)
        high.terminate()
        high.wait(20)
        patch = json.dumps({"spec": {"description": "after takeover"}})
        cp.kubectl("patch", "agent", "coder", "-n", NS, "--type=merge", "-p", patch)
        wait_for(lambda: _description(cp) == "after takeover", timeout=120)
        assert not _keys(cp)
        assert low_log.read_text().count(RESTARTING) == 1  # once outranked, not on takeover
    finally:
        for proc in (high, low):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        operator.start()
