"""Where each server's CPU goes at 64 clients: `python bench/accept/profile.py` (needs py-spy).

For each server of bench/accept/, wrk drives 64 clients while py-spy samples the Python thread
(200 Hz, idle samples left out); a sample whose stack holds a frame of the handler (the shared
handler, bench/accept/common.py, and the gateway's upstream client: upstream.py, http1.py,
dial.py) counts as handler, any other as server (accept, parse, request and response objects,
the task per request, the writes, the event loop's own work). Prints the shares and the top
self frames; compare.py's CPU per request times these shares is the µs split.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accept.servers import NAMES, running, tree_pids
from bench.run import PY, lua, wrk

SECONDS = int(os.environ.get("PROFILE_SECONDS", "5"))
HANDLER = ("accept/common.py", "gateway/upstream.py", "gateway/http1.py", "gateway/dial.py")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy not found (pip install py-spy)")
    return found


def python_pid(pid: int) -> int:
    """The process that runs the handler: the deepest of the tree (granian's worker)."""
    return tree_pids(pid)[-1]


WRITE = ("StreamWriter._write", "Conn._write (h1_server.py")
"""The response's `transport.write` (the send system call) of aiohttp and of h1_server."""
LOOP = ("Runner.run", "run (switchboard/gateway/server.py", "_spawn_rsgi_worker")
"""A stack that ends in the function that runs the loop: uvloop's own C work (epoll, recv,
callbacks' dispatch) with no Python frame above it."""


def classify(raw: Path) -> dict[str, object]:
    """Shares of the samples: handler, response write, event loop, other server Python, and
    threads other than the main one (granian's runtime thread, when it holds the GIL)."""
    shares: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        thread, _, rest = stack.partition(";")
        frames = rest.split(";") if rest else []
        if "MainThread" not in thread:
            shares["other thread (no Python frame: granian's runtime holding the GIL)"] += n
        elif any(h in f for f in frames for h in HANDLER):
            shares["handler (incl. the upstream client and its send/recv)"] += n
        elif frames and any(frames[-1].startswith(w) for w in WRITE):
            shares["response write (send)"] += n
        elif not frames or any(w in frames[-1] for w in LOOP):
            shares["event loop (C: epoll, recv, dispatch)"] += n
        else:
            shares["server Python (parse, request/response objects, task, routing)"] += n
        leaf = frames[-1] if frames else thread
        name, _, where = leaf.partition(" (")
        leaves[f"{name} ({Path(where.split(':')[0]).name})"] += n
    total = max(sum(shares.values()), 1)
    return {
        "samples": total,
        "shares": {k: round(v / total, 3) for k, v in shares.most_common()},
        "top_self": [(k, round(v / total, 3)) for k, v in leaves.most_common(12)],
    }


def main() -> int:
    spy = py_spy()
    work = Path(tempfile.mkdtemp(prefix="accept-profile-"))
    chat = {"model": "bench", "messages": [{"role": "user", "content": "hello"}]}
    script = lua(work / "chat.lua", chat, {"Content-Type": "application/json"})
    out: dict[str, object] = {}
    names = tuple(os.environ.get("ACCEPT_SERVERS", ",".join(NAMES)).split(","))
    with running(work, names) as (_, servers):
        for name, (port, pid) in servers.items():
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            wrk(url, script, 8, 2)
            raw = work / f"{name}.txt"
            load = threading.Thread(target=wrk, args=(url, script, 64, SECONDS + 2))
            load.start()
            subprocess.run(
                [
                    *(spy, "record", "--pid", str(python_pid(pid)), "--rate", "200"),
                    *("--duration", str(SECONDS), "--format", "raw", "--output", str(raw)),
                    *("--nonblocking", "--threads"),
                ],
                capture_output=True,
                check=False,
            )
            load.join()
            out[name] = classify(raw) if raw.exists() else "py-spy failed"
    print(json.dumps(out, indent=1))
    print("stacks in", work, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
