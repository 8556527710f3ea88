"""The test control plane: one real etcd + kube-apiserver per session (tests/support).

Every test in this directory gets the `controlplane` marker (`pytest -m "not controlplane"`
deselects them). The binaries are built once per machine by tools/controlplane/build.sh (a
cold build takes about half an hour on 2 cores; `make controlplane` prints its progress) and
are required: when they cannot be built the tests fail. Locally, SWITCHBOARD_SKIP_CONTROLPLANE=1
skips this tier; with CI=true that variable is ignored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait
from tests.support.controlplane import ControlPlane, ControlPlaneError, build_binaries
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.controlplane)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1", "yes"}


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver for the session, with the product CRDs applied and Established."""
    if os.environ.get("SWITCHBOARD_SKIP_CONTROLPLANE") == "1" and not _in_ci():
        pytest.skip(
            "SWITCHBOARD_SKIP_CONTROLPLANE=1: control-plane tests skipped "
            "(run `make controlplane` once to build kube-apiserver, etcd and kubectl)"
        )
    try:
        bin_dir: Path | None = build_binaries()
        problem = ""
    except ControlPlaneError as error:
        bin_dir, problem = None, str(error)
    if bin_dir is None:
        pytest.fail(
            f"the control-plane binaries are missing and could not be built: {problem}\n"
            "Fix the build (see docs/testing.md), point KUBEBUILDER_ASSETS at existing "
            "binaries, or set SWITCHBOARD_SKIP_CONTROLPLANE=1 to skip this tier locally.",
            pytrace=False,
        )
    with ControlPlane(bin_dir=bin_dir) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        yield cp


class Operator:
    """`switchboard operator --standalone` as a process against the control plane, with its
    /metrics on a free port (`metrics_url`)."""

    def __init__(self, cp: ControlPlane, log: Path, *args: str) -> None:
        self.cp = cp
        self.log = log
        self.args = args
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "switchboard.cli",
                    "operator",
                    "--standalone",
                    "--debounce",
                    "0.2",
                    "--metrics-host",
                    "127.0.0.1",
                    "--metrics-port",
                    str(self.metrics_port),
                    *self.args,
                ],
                env=self.cp.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(control_plane, tmp_path_factory.mktemp("operator") / "operator.log").start()
    yield op
    op.stop()


def wait_for(predicate: object, timeout: float = 30, interval: float = 0.2) -> None:
    assert callable(predicate)
    wait.wait_for(predicate, timeout=timeout, step=interval)
