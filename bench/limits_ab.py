"""Limits on vs off at 64 clients, interleaved in one gateway: a small A/B for docs/limits.md.

One bench upstream, one redis-server and one `switchboard gateway --limits-redis-url` serving
both keys of bench/run.py's manifests: `bench` (no rules: limits off) and `limited` (requests,
tokens, in-flight and budget counters, never reached: limits on). wrk runs of 64 clients
alternate off, on, off, on ... LIMITS_AB_ROUNDS times (default 5) of BENCH_SECONDS (default 5)
each, so both sides see the same noise of a shared machine; medians and the ratio are printed,
and the gateway process's CPU time per request (from /proc, less sensitive to what else runs).
`LIMITS_AB_PROFILE=out.svg` also records a py-spy flame graph of the gateway during one extra
limits-on run (py-spy must be installed). Bounded, loopback only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import KEY, LIMITED_KEY, MANIFESTS, PY, ROOT, free_port, lua, process, wrk

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("LIMITS_AB_ROUNDS", "5"))
PROFILE = os.environ.get("LIMITS_AB_PROFILE", "")
RENDER = ("-o", "json", "--show-secrets")
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("no redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="limits-ab-"))
    upstream_port, redis_port, gw_port = free_port(), free_port(), free_port()
    (work / "manifests").mkdir()
    (work / "manifests" / "all.yaml").write_text(
        MANIFESTS.replace("127.0.0.1:19000", f"127.0.0.1:{upstream_port}")
    )
    routing = work / "routing.json"
    routing.write_bytes(
        subprocess.run(
            [PY, "-m", "switchboard.cli", "render", str(work / "manifests"), *RENDER],
            capture_output=True,
            check=True,
            cwd=ROOT,
        ).stdout
    )
    chat = {"model": "bench:bench", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Content-Type": "application/json"}
    off = lua(work / "off.lua", chat, {**auth, "Authorization": f"Bearer {KEY}"})
    on = lua(work / "on.lua", chat, {**auth, "Authorization": f"Bearer {LIMITED_KEY}"})
    redis = subprocess.Popen(
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", redis_port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        upstream = [PY, str(ROOT / "bench/upstream_fast.py"), "--port", str(upstream_port)]
        gateway = [PY, "-m", "switchboard.cli", "gateway", "--config", str(routing)]
        gateway += ["--host", "127.0.0.1", "--port", str(gw_port), "--no-access-log"]
        gateway += ["--limits-redis-url", f"redis://127.0.0.1:{redis_port}/0"]
        with (
            process(upstream, f"http://127.0.0.1:{upstream_port}/", work / "up.log"),
            process(gateway, f"http://127.0.0.1:{gw_port}/readyz", work / "gw.log") as gw,
        ):
            assert gw is not None
            url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
            wrk(url, off, 8, 2)
            wrk(url, on, 8, 2)
            runs: dict[str, list[float]] = {"off": [], "on": []}
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            errors = 0
            for _ in range(ROUNDS):
                for name, script in (("off", off), ("on", on)):
                    before = cpu_seconds(gw.pid)
                    got = wrk(url, script, 64, SECONDS)
                    used = cpu_seconds(gw.pid) - before
                    runs[name].append(got["rps"])
                    cpu[name].append(used / max(1.0, got["rps"] * SECONDS) * 1e6)
                    errors += int(got["errors"])
            if PROFILE:
                fmt = "raw" if PROFILE.endswith(".txt") else "flamegraph"
                spy = subprocess.Popen(
                    [
                        str(Path(PY).parent / "py-spy"),
                        "record",
                        "-o",
                        PROFILE,
                        "-p",
                        str(gw.pid),
                        "-d",
                        str(SECONDS),
                        "-r",
                        "200",
                        "--nonblocking",
                        "-f",
                        fmt,
                    ]
                )
                wrk(url, on, 64, SECONDS)
                spy.wait(60)
    finally:
        redis.terminate()
        redis.wait(10)
    off_med, on_med = statistics.median(runs["off"]), statistics.median(runs["on"])
    print(
        json.dumps(
            {
                "seconds": SECONDS,
                "rounds": ROUNDS,
                "off_rps": [round(x) for x in runs["off"]],
                "on_rps": [round(x) for x in runs["on"]],
                "off_median": round(off_med),
                "on_median": round(on_med),
                "on_over_off": round(on_med / off_med, 3),
                "gateway_cpu_us_per_request_off": round(statistics.median(cpu["off"])),
                "gateway_cpu_us_per_request_on": round(statistics.median(cpu["on"])),
                "errors": errors,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
