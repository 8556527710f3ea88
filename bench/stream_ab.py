"""Streams through two revisions of the gateway and direct, interleaved:
`python bench/stream_ab.py REV_A REV_B`.

Like bench/ab.py (worktrees under .cache/bench-base/, `.` is the working tree, one bench
upstream), but for bench/run.py's stream scenarios: per round, direct, A and B (A first in
even rounds, B first in odd ones) each take a burst of 1,000 streams at once (c) and spread
arrivals (s: 200 new streams a second of 250 tokens), AB_ROUNDS rounds (default 3), one
warm-up burst each first. Prints the medians of time to first token (p50, p99), the burst's
seconds to all done, the streams dropped and each gateway's CPU time per stream (from /proc),
then B − A and each minus direct.
AB_SCENARIOS=c or s runs one scenario; AB_STREAMS (default 1000) sets the streams of each
run. AB_PROFILE=DIR records a py-spy profile (speedscope JSON, 100 Hz, idle included) of each
gateway's first burst into DIR. Bounded, loopback only.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ab import gateway
from bench.run import (
    MANIFESTS,
    PY,
    ROOT,
    SPREAD_RATE,
    SPREAD_TOKENS,
    cpu_seconds,
    free_port,
    process,
    stream_run,
)

ROUNDS = int(os.environ.get("AB_ROUNDS", "3"))
SCENARIOS = os.environ.get("AB_SCENARIOS", "c,s").split(",")
PROFILE = os.environ.get("AB_PROFILE", "")
STREAMS = int(os.environ.get("AB_STREAMS", "1000"))


def _run(url: str, model: str, scenario: str) -> dict[str, Any]:
    if scenario == "s":
        return stream_run(url, model=model, rate=SPREAD_RATE, tokens=SPREAD_TOKENS, streams=STREAMS)
    return stream_run(url, model=model, streams=STREAMS)


def _profiled(pid: int, path: Path, url: str, model: str) -> dict[str, Any]:
    spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    recorder = subprocess.Popen(
        [
            *(spy, "record", "--pid", str(pid), "--rate", "100", "--idle"),
            *("--format", "speedscope", "--output", str(path), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)  # py-spy attaches
        return _run(url, model, "c")
    finally:
        recorder.send_signal(2)  # SIGINT: py-spy writes the profile and exits
        recorder.wait(timeout=60)


def main() -> int:
    revs = sys.argv[1:3]
    if len(revs) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="stream-ab-"))
    upstream_port = free_port()
    manifests = MANIFESTS.replace("127.0.0.1:19000", f"127.0.0.1:{upstream_port}")
    upstream_cmd = [PY, str(ROOT / "bench/upstream_fast.py"), "--port", str(upstream_port)]
    upstream_cmd += ["--tokens", "100", "--delay-ms", "20"]
    direct = f"http://127.0.0.1:{upstream_port}"
    with process(upstream_cmd, f"{direct}/", work / "upstream.log") as upstream:
        assert upstream is not None
        gateways = []
        for n, rev in enumerate(revs):
            port, ctx = gateway(work, n, rev, manifests)
            gateways.append((f"{n}:{rev}", f"http://127.0.0.1:{port}", ctx))
        procs = [ctx.__enter__() for _, _, ctx in gateways]
        try:
            if any(p is None for p in procs):
                print("a gateway did not start; logs in", work, file=sys.stderr)
                return 1
            systems: list[tuple[str, str, subprocess.Popen[bytes] | None]] = [
                ("direct", direct, upstream)
            ]
            systems += [(n, u, p) for (n, u, _), p in zip(gateways, procs, strict=True)]
            results: dict[str, dict[str, list[float]]] = {name: {} for name, _, _ in systems}
            for name, url, proc in systems:
                model = "bench" if name == "direct" else "bench:bench"
                _run(url, model, "c")  # warm-up: the pools
                if PROFILE and name != "direct":
                    assert proc is not None
                    out = Path(PROFILE) / f"burst-{name.replace(':', '-').replace('/', '_')}.json"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    got = _profiled(proc.pid, out, url, model)
                    print(f"profile {out}: {json.dumps(got)}", file=sys.stderr)
            for n in range(ROUNDS):
                # direct first, then A and B, in turn first (what ran just before a system,
                # and for how long its pool sat idle, must not always favour the same one)
                order = systems if n % 2 == 0 else [systems[0], systems[2], systems[1]]
                for scenario in SCENARIOS:
                    for name, url, proc in order:
                        assert proc is not None
                        model = "bench" if name == "direct" else "bench:bench"
                        time.sleep(2)  # the last run's client connections close everywhere
                        before = cpu_seconds(proc.pid)
                        got = _run(url, model, scenario)
                        spent = cpu_seconds(proc.pid) - before
                        row = results[name]
                        row.setdefault(f"{scenario}_ttft_p99", []).append(got["ttft_p99_ms"])
                        row.setdefault(f"{scenario}_ttft_p50", []).append(got["ttft_p50_ms"])
                        row.setdefault(f"{scenario}_seconds", []).append(got["seconds"])
                        row.setdefault(f"{scenario}_dropped", []).append(got["dropped"])
                        row.setdefault(f"{scenario}_cpu_ms_per_stream", []).append(
                            spent / max(got["completed"], 1) * 1000
                        )
                        print(f"{scenario} {name}: {json.dumps(got)}", file=sys.stderr)
            med = {
                name: {k: round(statistics.median(v), 3) for k, v in row.items()}
                for name, row in results.items()
            }
            print(json.dumps({"rounds": ROUNDS, "medians": med, "raw": results}, indent=1))
            names = [name for name, _, _ in systems]
            for scenario in SCENARIOS:
                key = f"{scenario}_ttft_p99"
                d, a, b = (med[n][key] for n in names)
                print(
                    f"{scenario}: TTFT p99 direct {d:.1f}, A {a:.1f} (+{a - d:.1f}), "
                    f"B {b:.1f} (+{b - d:.1f}) ms; B - A {b - a:+.1f} ms; CPU per stream A "
                    f"{med[names[1]][f'{scenario}_cpu_ms_per_stream']:.3f}, B "
                    f"{med[names[2]][f'{scenario}_cpu_ms_per_stream']:.3f} ms"
                )
        finally:
            for _, _, ctx in reversed(gateways):
                ctx.__exit__(None, None, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
