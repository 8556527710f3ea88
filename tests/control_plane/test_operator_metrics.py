"""The operator's GET /metrics on a real control plane (kube-apiserver + etcd), scraped over HTTP.

Covers:
- objects by kind and Ready, compile problems by kind and severity (a missing Secret is an
  error on the AccessKeyConfig, gone once the Secret exists), routing Secret writes, the last
  publish time and the config size, reconciles, budget rounds and `active` on a standalone
  operator;
- every label value comes from a bounded set (kinds, severities, results, calls): no object,
  namespace or Secret name and no Secret value appears in the exposition;
- with a limits store: `switchboard_operator_budget_store_up` 1, then 0 with store_error rounds
  while redis-server is stopped, then 1 again once it is back; absent without a store;
- kopf peering: a replica outranked by a second one restarts (peering.follow) and, waiting,
  runs no budget round (only `passive` ones, `switchboard_operator_active` 0) while the higher
  one runs them.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.control_plane.conftest import ROOT, Operator, wait_for
from tests.support.controlplane import ControlPlane
from tests.support.redis_server import RedisServer, free_port

KINDS = {"CustomProvider", "AccessKeyConfig", "Agent"}
BOUNDED = {
    "kind": KINDS,
    "ready": {"true", "false", "unknown"},
    "severity": {"error", "warning"},
    "reason": {"compile", "error"},
    "result": {"ok", "failed", "written", "unchanged", "skipped", "store_error", "passive"},
    "call": {
        "read_secret",
        "publish",
        "status",
        "event",
        "budget_status",
        "budget_event",
        "peering",
    },
}
SECRET = "sk-sb-demo"  # the client key's value in examples/quickstart/access.yaml


def scrape_text(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return body.decode()


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    """name and sorted labels -> value, or None while the endpoint does not answer."""
    text = scrape_text(url)
    if text is None:
        return None
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(url: str, name: str, **labels: str) -> float | None:
    found = samples(url)
    if found is None:
        return None
    return found.get((name, tuple(sorted(labels.items()))))


def at_least(url: str, minimum: float, name: str, **labels: str) -> bool:
    got = value(url, name, **labels)
    return got is not None and got >= minimum


def test_objects_problems_and_publishes(control_plane: ControlPlane, operator: Operator) -> None:
    cp, url = control_plane, operator.metrics_url
    ns = "opmetrics"
    started = time.time()
    wait_for(lambda: samples(url) is not None, timeout=60)
    errors_before = value(
        url, "switchboard_operator_compile_problems", kind="AccessKeyConfig", severity="error"
    )
    assert errors_before is not None
    written_before = value(url, "switchboard_operator_publishes_total", result="written") or 0
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/quickstart/provider.yaml"))
    access = (ROOT / "examples/quickstart/access.yaml").read_text().split("---\n")[1]
    cp.kubectl("apply", "-n", ns, "-f", "-", input=access)  # its Secret is missing: an error
    problem = "switchboard_operator_compile_problems"
    wait_for(
        lambda: at_least(url, errors_before + 1, problem, kind="AccessKeyConfig", severity="error")
    )
    wait_for(
        lambda: at_least(
            url, 1, "switchboard_operator_objects", kind="CustomProvider", ready="true"
        )
    )
    wait_for(
        lambda: at_least(
            url, 1, "switchboard_operator_objects", kind="AccessKeyConfig", ready="false"
        )
    )
    wait_for(
        lambda: at_least(
            url, written_before + 1, "switchboard_operator_publishes_total", result="written"
        )
    )
    assert at_least(url, started, "switchboard_operator_config_published_timestamp_seconds")
    assert at_least(url, 1, "switchboard_operator_config_bytes")
    assert at_least(url, 1, "switchboard_operator_reconciles_total", result="ok")
    assert at_least(url, 1, "switchboard_operator_reconcile_duration_seconds_count")
    assert value(url, "switchboard_operator_namespaces_not_published", reason="compile") == 0
    wait_for(lambda: at_least(url, 1, "switchboard_operator_budget_rounds_total", result="ok"))
    assert value(url, "switchboard_operator_active") == 1
    assert at_least(url, started - 60, "switchboard_operator_budget_last_success_timestamp_seconds")
    assert value(url, "switchboard_operator_budget_store_up") is None  # no store: unknown, not down
    # The Secret appears: the problem is gone and the AccessKeyConfig is Ready.
    cp.kubectl("apply", "-n", ns, "-f", str(ROOT / "examples/quickstart/access.yaml"))
    wait_for(lambda: value(url, problem, kind="AccessKeyConfig", severity="error") == errors_before)
    wait_for(
        lambda: at_least(
            url, 1, "switchboard_operator_objects", kind="AccessKeyConfig", ready="true"
        )
    )
    # Bounded labels only: no object, namespace or Secret name, no Secret value.
    text = scrape_text(url)
    assert text is not None and SECRET not in text
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("switchboard_operator_"), family.name
        for sample in family.samples:
            for label, got in sample.labels.items():
                if label == "le":
                    continue
                assert got in BOUNDED[label], (sample.name, label, got)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_budget_store_up_and_down(
    control_plane: ControlPlane, redis_server: RedisServer, tmp_path: Path
) -> None:
    cp = control_plane
    cp.kubectl("create", "namespace", "opmetrics-store")
    op = Operator(
        cp,
        tmp_path / "operator.log",
        "--namespace",
        "opmetrics-store",
        "--limits-redis-url",
        redis_server.url,
        "--budget-status-interval",
        "0.3",
    ).start()
    url = op.metrics_url
    try:
        wait_for(lambda: value(url, "switchboard_operator_budget_store_up") == 1, timeout=60)
        assert at_least(url, 1, "switchboard_operator_budget_rounds_total", result="ok")
        redis_server.stop()
        wait_for(lambda: value(url, "switchboard_operator_budget_store_up") == 0)
        wait_for(
            lambda: at_least(
                url, 1, "switchboard_operator_budget_rounds_total", result="store_error"
            )
        )
        redis_server.restart()
        wait_for(lambda: value(url, "switchboard_operator_budget_store_up") == 1)
    finally:
        op.stop()


def _peer(cp: ControlPlane, log: Path, priority: int, port: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "operator",
                "--peering",
                "sb-opmetrics",
                "--priority",
                str(priority),
                "--namespace",
                "opmetrics-peering",
                "--budget-status-interval",
                "0.3",
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(port),
            ],
            env=cp.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def test_outranked_replica_stops_budget_rounds(control_plane: ControlPlane, tmp_path: Path) -> None:
    cp = control_plane
    cp.kubectl(
        "apply",
        "--server-side",
        "-f",
        str(ROOT / "helm/switchboard/crds/kopfpeerings.kopf.dev.yaml"),
    )
    cp.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev")
    cp.kubectl("create", "namespace", "opmetrics-peering")
    cp.kubectl(
        "apply",
        "-f",
        "-",
        input=(
            "apiVersion: kopf.dev/v1\nkind: KopfPeering\n"
            "metadata: {name: sb-opmetrics, namespace: opmetrics-peering}\n"
        ),
    )
    low_port, high_port = free_port(), free_port()
    low_url = f"http://127.0.0.1:{low_port}/metrics"
    high_url = f"http://127.0.0.1:{high_port}/metrics"
    rounds = "switchboard_operator_budget_rounds_total"
    low = _peer(cp, tmp_path / "low.log", 10, low_port)
    high = None
    try:
        # Alone, the low-priority replica is active and runs the budget rounds.
        wait_for(lambda: at_least(low_url, 2, rounds, result="ok"), timeout=60)
        assert value(low_url, "switchboard_operator_active") == 1
        high = _peer(cp, tmp_path / "high.log", 20, high_port)
        wait_for(lambda: at_least(high_url, 2, rounds, result="ok"), timeout=60)
        assert value(high_url, "switchboard_operator_active") == 1
        # Outranked, the low one restarts; the new process waits (kopf pauses its watches, the
        # budget loop pauses itself): passive rounds only.
        wait_for(lambda: "another replica took over" in (tmp_path / "low.log").read_text())
        wait_for(
            lambda: (
                value(low_url, rounds, result="ok") == 0
                and at_least(low_url, 3, rounds, result="passive")
            ),
            timeout=60,
        )
        assert value(low_url, "switchboard_operator_active") == 0
        passive_then = value(low_url, rounds, result="passive") or 0
        wait_for(lambda: at_least(low_url, passive_then + 3, rounds, result="passive"))
        assert value(low_url, rounds, result="ok") == 0
    finally:
        for proc in (high, low):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)
