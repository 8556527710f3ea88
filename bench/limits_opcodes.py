"""What limits add to a request, in Python opcodes by function: deterministic, load-proof.

`python bench/limits_opcodes.py [TREE]`: one bench upstream, one redis-server and one gateway
(this checkout's, or TREE's `operator/` first on PYTHONPATH) serving bench/run.py's two keys
(`bench`: no rules; `limited`: every kind of counter, never reached). The gateway counts the
opcodes it executes (bench/opcount/sitecustomize.py) during a wrk run of 8 clients with each
key; printed: opcodes per request of each side, their difference, and the functions that
differ most (per request, on minus off). Timing-based A/Bs (`bench/limits_ab.py`) move by
more than a change of a few microseconds on a shared machine; opcode counts do not (the
interpreter's work per opcode varies, so they rank and compare, they do not time). Lease
renewals and other timed background work count more per request than they cost in a
full-speed run (the traced process serves a few hundred requests a second).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.limits_ab import NO_PERSISTENCE, setup, wait_for_port
from bench.run import PY, ROOT, free_port, wrk
from tests.support.wait import wait_for

SECONDS = int(os.environ.get("BENCH_SECONDS", "4"))
TOP = 25


def main() -> int:
    tree = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT).resolve()
    work = Path(tempfile.mkdtemp(prefix="limits-opcodes-"))
    up_port, redis_port, port = free_port(), free_port(), free_port()
    routing, scripts = setup(work, up_port)
    out = work / "counts"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'bench' / 'opcount'}:{tree / 'operator'}",
        "OPCOUNT_OUT": str(out),
    }
    procs = [
        subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [PY, str(ROOT / "bench/upstream_fast.py"), "--port", str(up_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    per_request: dict[str, dict[str, float]] = {}
    try:
        wait_for_port(redis_port)
        wait_for_port(up_port)
        cmd = [PY, "-m", "switchboard.cli", "gateway", "--config", str(routing), "--no-access-log"]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--limits-redis-url", f"redis://127.0.0.1:{redis_port}/0"]
        gateway = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        procs.append(gateway)
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for side in ("off", "on"):  # warm: plans made, leases granted
            wrk(url, scripts[side], 8, 2)
        for n, side in enumerate(("off", "on"), start=1):
            os.kill(gateway.pid, signal.SIGUSR1)
            got = wrk(url, scripts[side], 8, SECONDS)
            os.kill(gateway.pid, signal.SIGUSR2)
            dump = Path(f"{out}.{n}")
            counts: dict[str, int] = json.loads(
                wait_for(partial(_read, dump), timeout=60, what="the counts")
            )
            requests = max(1.0, got["requests"])
            per_request[side] = {k: v / requests for k, v in counts.items()}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    off, on = per_request["off"], per_request["on"]
    total_off, total_on = sum(off.values()), sum(on.values())
    added = total_on - total_off
    print(f"opcodes per request: off {total_off:.0f}, on {total_on:.0f}, +{added:.0f}")
    names = sorted(set(off) | set(on), key=lambda k: on.get(k, 0.0) - off.get(k, 0.0))
    for name in reversed(names[-TOP:]):
        print(f"{on.get(name, 0.0) - off.get(name, 0.0):8.1f}  {name}")
    return 0


def _read(path: Path) -> str:
    """The dump's text once it is there as whole JSON ("" before: the gateway may still be
    writing it)."""
    if not path.exists():
        return ""
    text = path.read_text()
    try:
        json.loads(text)
    except ValueError:
        return ""
    return text


if __name__ == "__main__":
    raise SystemExit(main())
