"""The accept path side by side, interleaved: `python bench/accept/compare.py`.

The same handler (bench/accept/common.py: the gateway's upstream Pool to bench/upstream_fast.py)
served by (1) aiohttp's web server as the gateway serves, (2) an asyncio.Protocol with
httptools, (3) granian RSGI (one worker, one runtime thread), and granian with its Rust task
implementation. wrk runs of 64 clients and of one client alternate aiohttp, h1, granian, ...
ACCEPT_ROUNDS times (default 4) of BENCH_SECONDS (default 5); then ACCEPT_STREAM_ROUNDS
(default 2) bursts of 1,000 concurrent streams (100 tokens 20 ms apart; bench/streamgen, or
bench/stream_client.py without Go) per server, direct included, interleaved.
ACCEPT_SERVERS=aiohttp,h1 picks servers. Prints medians and raw figures as JSON: req/s, the
server's CPU time per request at 64 clients (from /proc, its whole process tree; for granian
also split into the Python thread and granian's own threads), one-client p50, stream TTFT p99,
time to finish and CPU per burst. Bounded, loopback only.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.accept.servers import NAMES, running, tree_pids
from bench.run import lua, stream_run, wrk

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("ACCEPT_ROUNDS", "4"))
STREAM_ROUNDS = int(os.environ.get("ACCEPT_STREAM_ROUNDS", "2"))
TICK = os.sysconf("SC_CLK_TCK")


def threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far per thread name, over a process tree ('python' for a main thread)."""
    out: dict[str, float] = defaultdict(float)
    for p in tree_pids(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                stat = Path(f"/proc/{p}/task/{tid}/stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            key = "main" if tid == str(p) else name.rstrip("0123456789-_ ") or name
            out[key] += (int(fields[11]) + int(fields[12])) / TICK
    return dict(out)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="accept-ab-"))
    chat = {"model": "bench", "messages": [{"role": "user", "content": "hello"}]}
    script = lua(work / "chat.lua", chat, {"Content-Type": "application/json"})
    names = tuple(os.environ.get("ACCEPT_SERVERS", ",".join(NAMES)).split(","))
    results: dict[str, dict[str, list[float]]] = {n: defaultdict(list) for n in names}
    split: dict[str, dict[str, list[float]]] = {n: defaultdict(list) for n in names}
    upstream_args = ("--tokens", "100", "--delay-ms", "20")
    with running(work, names, upstream_args) as (upstream_port, servers):
        if len(servers) != len(names):
            print("a server did not start; logs in", work, file=sys.stderr)
            return 1
        for port, _ in servers.values() if ROUNDS else ():
            wrk(f"http://127.0.0.1:{port}/v1/chat/completions", script, 8, 2)  # warm-up
        for _ in range(ROUNDS):
            for name, (port, pid) in servers.items():
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                before = threads_cpu(pid)
                many = wrk(url, script, 64, SECONDS)
                after = threads_cpu(pid)
                requests = max(many["rps"] * SECONDS, 1)
                got = results[name]
                got["rps64"].append(many["rps"])
                got["errors64"].append(many["errors"])
                got["cpu_us"].append((sum(after.values()) - sum(before.values())) / requests * 1e6)
                for thread, seconds in after.items():
                    spent = seconds - before.get(thread, 0.0)
                    split[name][thread].append(spent / requests * 1e6)
                one = wrk(url, script, 1, SECONDS)
                got["rps1"].append(one["rps"])
                got["p50_1_ms"].append(one.get("p50_ms") or 0.0)
                got["p99_1_ms"].append(one.get("p99_ms") or 0.0)
        streams: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for _ in range(STREAM_ROUNDS):
            for name, (port, pid) in [("direct", (upstream_port, 0)), *servers.items()]:
                spent0 = sum(threads_cpu(pid).values()) if pid else 0.0
                started = time.monotonic()
                got_stream = stream_run(f"http://127.0.0.1:{port}")
                streams[name]["wall_s"].append(time.monotonic() - started)
                if pid:
                    streams[name]["cpu_s"].append(sum(threads_cpu(pid).values()) - spent0)
                for key in ("ttft_p50_ms", "ttft_p99_ms", "seconds", "dropped", "completed"):
                    if key in got_stream:
                        streams[name][key].append(float(got_stream[key]))
    med = {
        name: {k: round(statistics.median(v), 4) for k, v in got.items()}
        for name, got in results.items()
        if got
    }
    med_split = {
        name: {k: round(statistics.median(v), 1) for k, v in got.items() if statistics.median(v)}
        for name, got in split.items()
    }
    med_streams = {
        name: {k: round(statistics.median(v), 4) for k, v in got.items()}
        for name, got in streams.items()
    }
    out = {
        "rounds": ROUNDS,
        "seconds": SECONDS,
        "stream_rounds": STREAM_ROUNDS,
        "medians": med,
        "cpu_us_per_thread": med_split,
        "streams": med_streams,
        "raw": {n: dict(v) for n, v in results.items()},
        "raw_streams": {n: dict(v) for n, v in streams.items()},
    }
    (work / "result.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    base = med.get("aiohttp", {})
    for name in names[1:] if base else ():
        m = med[name]
        print(
            f"{name}/aiohttp: 64 clients req/s {m['rps64'] / base['rps64']:.3f}, "
            f"CPU per request {m['cpu_us'] / base['cpu_us']:.3f}; "
            f"one client req/s {m['rps1'] / base['rps1']:.3f}, "
            f"p50 {m['p50_1_ms'] - base['p50_1_ms']:+.3f} ms"
        )
    print("logs and result.json in", work, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
