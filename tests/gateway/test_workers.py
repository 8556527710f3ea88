"""`switchboard gateway --workers 2` as a real process.

Covers:
- both worker processes accept on the one port (SO_REUSEPORT) and answer the SDK;
- stopping the first process (SIGTERM) stops the forked worker too, and so does killing it
  (SIGKILL: the worker has PR_SET_PDEATHSIG);
- /metrics on the metrics port sums both processes: 60 requests on 60 fresh connections (the
  kernel spreads them over the workers) count 60, scrape after scrape, with
  `switchboard_workers 2`;
- a config reload reaches both: the merged `switchboard_config_info` names only the new hash,
  and 30 fresh connections all reach the agent only the new config has;
- `--workers auto` starts one process per available CPU, and a bad value exits 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from switchboard.gateway import workers
from tests.gateway.conftest import (
    KEY,
    ROOT,
    Upstreams,
    manifests,
    render,
    render_text,
    start_gateway,
)

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


def _fresh(url: str, model: str) -> int:
    """One request on a connection of its own (so the kernel picks a worker for each)."""
    with httpx.Client(timeout=30) as client:
        return client.post(
            f"{url}/v1/chat/completions",
            headers={"authorization": f"Bearer {KEY}", "connection": "close"},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        ).status_code


def _scrape(metrics_url: str) -> dict[str, float]:
    """Sample line (name and labels) -> value."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{metrics_url}/metrics", timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _requests(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("switchboard_requests_total{"))


def test_metrics_and_reload_reach_every_worker(upstreams: Upstreams, tmp_path: Path) -> None:
    text = manifests(upstreams)
    config = render_text(text, tmp_path)
    gw = start_gateway(config, tmp_path / "gw.log", "--workers", "2")
    try:
        for _ in range(60):
            assert _fresh(gw.url, "chat:m") == 200
        for _ in range(3):
            samples = _scrape(gw.metrics_url)
            assert samples["switchboard_workers"] == 2
            assert _requests(samples) == 60
        # A new agent, only in the new config: every worker must reload to serve it.
        (tmp_path / "v2").mkdir()
        (tmp_path / "v2" / "all.yaml").write_text(
            text.rstrip().removesuffix("---")
            + "\n---\napiVersion: switchboard.dev/v1alpha1\nkind: Agent\n"
            "metadata: {name: coder2}\nspec: {model: 'chat:m'}\n"
        )
        render(tmp_path / "v2", tmp_path / "v2.json")
        new_hash = json.loads((tmp_path / "v2.json").read_text())["hash"]
        (tmp_path / "v2.json").replace(config)
        deadline = time.monotonic() + 30
        while True:
            hashes = {
                k
                for k, v in _scrape(gw.metrics_url).items()
                if k.startswith("switchboard_config_info{") and v == 1
            }
            if len(hashes) == 1 and f'hash="{new_hash}"' in next(iter(hashes)):
                break
            assert time.monotonic() < deadline, hashes
            time.sleep(0.1)
        assert all(_fresh(gw.url, "coder2") == 200 for _ in range(30))
    finally:
        gw.process.stop()


def test_workers_auto(upstreams: Upstreams, tmp_path: Path) -> None:
    config = render_text(manifests(upstreams), tmp_path)
    gw = start_gateway(config, tmp_path / "gw.log", "--workers", "auto")
    try:
        expected = workers.available_cpus()
        assert len(_children(gw.process.proc.pid)) == expected - 1
        assert f"with {expected} worker(s)" in gw.process.log.read_text()
        assert _scrape(gw.metrics_url)["switchboard_workers"] == expected
    finally:
        gw.process.stop()
    bad = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "gateway", f"--config={config}", "--workers=0"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "--workers must be at least 1" in bad.stdout
