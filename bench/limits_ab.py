"""Limits on vs off at 64 clients, interleaved: a small A/B for docs/limits.md and
docs/performance.md.

One bench upstream, one redis-server and one `switchboard gateway --limits-redis-url` serving
both keys of bench/run.py's manifests: `bench` (no rules: limits off) and `limited` (requests,
tokens, in-flight and budget counters, never reached: limits on). wrk runs of 64 clients
alternate off, on, on, off, off, on ... (odd rounds reversed, so that a load rising or falling
during a round favours neither side) LIMITS_AB_ROUNDS times (default 5) of BENCH_SECONDS
(default 5) each, so both sides see the same noise of a shared machine; printed: medians of
req/s and of the gateway process's CPU time per request (from /proc, less sensitive to what
else runs), and the medians of the per-round on/off ratios of both (each round's two runs ran
back to back) and of their differences of CPU per request (`on_minus_off_cpu_us`: what
limits add to a request).

`LIMITS_AB_BASE=<tree>` also starts a second gateway from another checkout (its `operator/` put
first on PYTHONPATH; same upstream, same Redis, other counters) and interleaves its off and on
runs with this tree's in every round: the before/after of a change in one run.

`LIMITS_AB_PROFILE=out.svg` (or `.txt`, py-spy's raw format) also records py-spy profiles of
this tree's gateway during one extra run per side, `out-off.svg` and `out-on.svg` (py-spy must
be installed). Bounded, loopback only.
"""

from __future__ import annotations

import contextlib
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
BASE = os.environ.get("LIMITS_AB_BASE", "")
RENDER = ("-o", "json", "--show-secrets")
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(pid: int, url: str, script: Path, side: str) -> float:
    """A py-spy record of the gateway during one extra 64-client run of `side`; its req/s
    (to turn samples into time per request)."""
    stem, dot, ext = PROFILE.rpartition(".")
    out = f"{stem}-{side}.{ext}" if dot else f"{PROFILE}-{side}"
    fmt = "raw" if out.endswith(".txt") else "flamegraph"
    spy_args = ["record", "-o", out, "-p", str(pid), "-d", str(SECONDS), "-r", "500"]
    spy = subprocess.Popen([str(Path(PY).parent / "py-spy"), *spy_args, "--nonblocking", "-f", fmt])
    got = wrk(url, script, 64, SECONDS)
    spy.wait(60)
    return float(got["rps"])


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def setup(work: Path, upstream_port: int) -> tuple[Path, dict[str, Path]]:
    """bench/run.py's manifests on `upstream_port`, rendered into `work/routing.json`, and the
    wrk scripts of a Chat request with each of its keys: `off` (no rules) and `on` (limited)."""
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
    return routing, {
        "off": lua(work / "off.lua", chat, {**auth, "Authorization": f"Bearer {KEY}"}),
        "on": lua(work / "on.lua", chat, {**auth, "Authorization": f"Bearer {LIMITED_KEY}"}),
    }


def main() -> int:
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("no redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="limits-ab-"))
    upstream_port, redis_port = free_port(), free_port()
    routing, scripts = setup(work, upstream_port)
    off, on = scripts["off"], scripts["on"]
    trees = {"": None, "base_": BASE} if BASE else {"": None}
    redis = subprocess.Popen(
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
        stdout=subprocess.DEVNULL,
    )
    runs: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    errors = 0
    try:
        wait_for_port(redis_port)
        upstream = [PY, str(ROOT / "bench/upstream_fast.py"), "--port", str(upstream_port)]
        with contextlib.ExitStack() as stack:
            up = stack.enter_context(
                process(upstream, f"http://127.0.0.1:{upstream_port}/", work / "up.log")
            )
            assert up is not None, "the bench upstream did not start"
            others = {"redis": redis.pid, "upstream": up.pid}
            gateways: dict[str, tuple[int, str]] = {}
            for prefix, tree in trees.items():
                port = free_port()
                cmd = [PY, "-m", "switchboard.cli", "gateway", "--config", str(routing)]
                cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
                cmd += ["--limits-redis-url", f"redis://127.0.0.1:{redis_port}/{len(gateways)}"]
                env = {"PYTHONPATH": str(Path(tree).resolve() / "operator")} if tree else None
                ready = f"http://127.0.0.1:{port}/readyz"
                gw = stack.enter_context(process(cmd, ready, work / f"{prefix}gw.log", env))
                assert gw is not None, f"gateway {prefix or 'this tree'} did not start"
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                gateways[prefix] = (gw.pid, url)
                wrk(url, off, 8, 2)
                wrk(url, on, 8, 2)
            for i in range(ROUNDS):
                # Odd rounds in the reverse order: on before off, the other gateway first.
                order = list(gateways.items())
                sides = [("off", off), ("on", on)]
                if i % 2:
                    order.reverse()
                    sides.reverse()
                for prefix, (pid, url) in order:
                    for side, script in sides:
                        before = cpu_seconds(pid)
                        theirs = {name: cpu_seconds(p) for name, p in others.items()}
                        got = wrk(url, script, 64, SECONDS)
                        used = cpu_seconds(pid) - before
                        count = max(1.0, got["rps"] * SECONDS)
                        runs.setdefault(prefix + side, []).append(got["rps"])
                        cpu.setdefault(prefix + side, []).append(used / count * 1e6)
                        for name, p in others.items():
                            spent = cpu_seconds(p) - theirs[name]
                            cpu.setdefault(f"{name}:{prefix}{side}", []).append(spent / count * 1e6)
                        errors += int(got["errors"])
            if PROFILE:  # one extra run per side of this tree's gateway
                pid, url = gateways[""]
                for side, script in (("off", off), ("on", on)):
                    runs[f"profile_{side}"] = [profile(pid, url, script, side)]
    finally:
        redis.terminate()
        redis.wait(10)
    result: dict[str, object] = {"seconds": SECONDS, "rounds": ROUNDS, "base": BASE or None}
    for prefix in trees:
        for side in ("off", "on"):
            result[f"{prefix}{side}_rps"] = [round(x) for x in runs[prefix + side]]
            result[f"{prefix}{side}_cpu_us"] = [round(x, 1) for x in cpu[prefix + side]]
        # Medians of the per-round ratios: each round's off and on ran back to back.
        rps = [a / b for a, b in zip(runs[prefix + "on"], runs[prefix + "off"], strict=True)]
        us = [a / b for a, b in zip(cpu[prefix + "on"], cpu[prefix + "off"], strict=True)]
        result[f"{prefix}off_median_rps"] = round(statistics.median(runs[prefix + "off"]))
        result[f"{prefix}on_median_rps"] = round(statistics.median(runs[prefix + "on"]))
        result[f"{prefix}on_over_off_rps"] = round(statistics.median(rps), 3)
        result[f"{prefix}cpu_us_off"] = round(statistics.median(cpu[prefix + "off"]), 1)
        result[f"{prefix}cpu_us_on"] = round(statistics.median(cpu[prefix + "on"]), 1)
        result[f"{prefix}on_over_off_cpu"] = round(statistics.median(us), 3)
        added = [a - b for a, b in zip(cpu[prefix + "on"], cpu[prefix + "off"], strict=True)]
        result[f"{prefix}on_minus_off_cpu_us"] = round(statistics.median(added), 1)
        for name in ("redis", "upstream"):  # what the others spent per request, medians
            for side in ("off", "on"):
                spent = statistics.median(cpu[f"{name}:{prefix}{side}"])
                result[f"{name}_{prefix}cpu_us_{side}"] = round(spent, 1)
    for side in ("off", "on") if PROFILE else ():
        result[f"profile_{side}_rps"] = round(runs[f"profile_{side}"][0])
    result["errors"] = errors
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
