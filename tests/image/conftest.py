"""Fixtures of the image tier: the image `make image` builds, and commands run from it.

`image` builds the image with tools/image/build.sh, or finds it up to date (the image carries a
hash of the build's inputs), and puts its size in the terminal summary. `run_image` and
`start_in_image` run a command in it with tools/image/run.sh: as the image's user, with a
read-only root file system, a writable /tmp and host paths mounted read-only, on the host's
network (see the head of run.sh for how each is enforced without a docker engine).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.upstreams.server import free_port

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "image"
SIZE = pytest.StashKey[str]()


def run_image(
    image: str,
    *args: str,
    mounts: Sequence[tuple[Path, str]] = (),
    entrypoint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the image's entry point (or `entrypoint`) with `args` to its end."""
    return subprocess.run(
        _command(image, args, mounts, entrypoint),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def _command(
    image: str, args: Sequence[str], mounts: Sequence[tuple[Path, str]], entrypoint: str | None
) -> list[str]:
    command = ["bash", str(TOOLS / "run.sh")]
    for src, dst in mounts:
        command += ["--mount", f"{src}:{dst}"]
    if entrypoint:
        command += ["--entrypoint", entrypoint]
    return [*command, image, *args]


@dataclass
class Served:
    """A long-running process (from the image or on the host) and its log."""

    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def wait_http(self, url: str, deadline_s: float = 120) -> None:
        """Wait until `url` answers below 500; fail with the log if the process ends first."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                if httpx.get(url, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{url} did not come up:\n{self.log.read_text()}")
            time.sleep(0.1)


def start(command: list[str], log: Path) -> Served:
    handle = log.open("wb")
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    handle.close()
    return Served(proc, log)


def start_in_image(
    image: str, args: Sequence[str], log: Path, mounts: Sequence[tuple[Path, str]] = ()
) -> Served:
    return start(_command(image, args, mounts, None), log)


@pytest.fixture(scope="session")
def image(pytestconfig: pytest.Config) -> str:
    """The image reference, built by tools/image/build.sh (a no-op when it is up to date)."""
    built = subprocess.run(
        ["bash", str(TOOLS / "build.sh")], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if built.returncode != 0:
        pytest.fail(f"tools/image/build.sh failed:\n{built.stderr}", pytrace=False)
    ref = built.stdout.strip().splitlines()[-1]
    size = subprocess.run(
        ["bash", str(TOOLS / "size.sh"), ref], capture_output=True, text=True, check=True
    )
    pytestconfig.stash[SIZE] = f"image {ref}: {size.stdout.strip()}"
    return ref


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The fake vLLM upstream on a free loopback port of the host."""
    port = free_port()
    log = tmp_path_factory.mktemp("upstream") / "vllm.log"
    served = start(
        [sys.executable, "-m", "tests.upstreams", "--shape", "vllm", "--port", str(port)], log
    )
    served.wait_http(f"http://127.0.0.1:{port}/_requests")
    yield port
    served.stop()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if SIZE in config.stash:
        terminalreporter.write_line(config.stash[SIZE])
