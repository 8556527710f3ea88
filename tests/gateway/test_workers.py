"""`switchboard gateway --workers 2` as a real process.

Covers:
- both worker processes accept on the one port (SO_REUSEPORT) and answer the SDK;
- stopping the first process (SIGTERM) stops the forked worker too, and so does killing it
  (SIGKILL: the worker has PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import openai
import pytest

from tests.gateway.conftest import KEY, Upstreams, manifests, render_text, start_gateway

pytestmark = pytest.mark.gateway


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"):
            return True  # a zombie waiting for its (dead) parent's reaper
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_two_workers(upstreams: Upstreams, tmp_path: Path, how: signal.Signals) -> None:
    gw = start_gateway(
        render_text(manifests(upstreams), tmp_path), tmp_path / "gw.log", "--workers", "2"
    )
    process = gw.process
    try:
        workers = _children(process.proc.pid)
        assert len(workers) == 1
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)
        for n in range(20):
            answer = client.chat.completions.create(
                model="chat:m", messages=[{"role": "user", "content": f"n{n}"}]
            )
            assert answer.choices[0].message.content == f"You said: n{n}"
        assert "with 2 worker(s)" in process.log.read_text()
    finally:
        process.proc.send_signal(how)
        process.proc.wait(10)
    assert all(_gone(w) for w in workers)
