"""Two revisions of the gateway side by side, interleaved: `python bench/ab.py REV_A REV_B`.

Each revision runs from a worktree under .cache/bench-base/ (this venv, its own `render` of
bench/run.py's manifests) against one bench upstream; wrk runs of 64 clients and of one client
alternate A, B, A, B ... AB_ROUNDS times (default 5) of BENCH_SECONDS (default 5), so both see
the same noise of a shared machine. Prints medians, the B/A ratios and each gateway's CPU time
per request at both loads (from /proc). A revision named `.` is the working tree. Bounded,
loopback only. Extra gateway arguments for B only: AB_B_ARGS (tracing on is environment:
AB_B_ENV).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.limits_ab import cpu_seconds
from bench.run import KEY, MANIFESTS, PY, ROOT, free_port, lua, process, wrk

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("AB_ROUNDS", "5"))


def tree(rev: str) -> Path:
    if rev == ".":
        return ROOT
    path = ROOT / ".cache/bench-base" / rev.replace("/", "_").replace("^", "_p")
    if not path.exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-f", str(path), rev],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return path


def gateway(
    work: Path,
    n: int,
    rev: str,
    manifests: str,
    *,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
) -> tuple[int, Any]:
    """Revision `rev`'s gateway (number `n` in `work`) on `manifests`, rendered by its own
    `switchboard render`: its port and the `process()` context that starts it. `env` is added
    to its environment, `extra` to its arguments."""
    env = {
        "PYTHONPATH": str(tree(rev) / "operator"),
        "SWITCHBOARD_METRICS_PORT": "0",
        **(env or {}),
    }
    (work / f"m{n}").mkdir()
    (work / f"m{n}" / "all.yaml").write_text(manifests)
    routing = work / f"routing{n}.json"
    routing.write_bytes(
        subprocess.run(
            [
                *(PY, "-m", "switchboard.cli", "render", str(work / f"m{n}")),
                *("-o", "json", "--show-secrets"),
            ],
            capture_output=True,
            check=True,
            env={**os.environ, **env},
        ).stdout
    )
    port = free_port()
    cmd = [PY, "-m", "switchboard.cli", "gateway", "--config", str(routing)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", *(extra or [])]
    return port, process(cmd, f"http://127.0.0.1:{port}/readyz", work / f"gw{n}.log", env)


def interleaved(
    revs: list[str],
    rounds: int = ROUNDS,
    seconds: int = SECONDS,
    b_env: dict[str, str] | None = None,
    b_args: list[str] | None = None,
) -> dict[str, dict[str, list[float]]] | None:
    """Both revisions' gateways up at once on one bench upstream, wrk at 64 clients then one
    client, A, B, A, B ... `rounds` times; per revision the lists rps64, cpu_us (at 64
    clients), p50_1, rps1 and cpu1_us. None when a gateway did not start."""
    work = Path(tempfile.mkdtemp(prefix="ab-"))
    upstream_port = free_port()
    manifests = MANIFESTS.replace("127.0.0.1:19000", f"127.0.0.1:{upstream_port}")
    chat = {"model": "bench:bench", "messages": [{"role": "user", "content": "hello"}]}
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    script = lua(work / "sb.lua", chat, auth)
    with process(
        [PY, str(ROOT / "bench/upstream_fast.py"), "--port", str(upstream_port)],
        f"http://127.0.0.1:{upstream_port}/",
        work / "upstream.log",
    ):
        gateways = []
        for n, rev in enumerate(revs):
            port, ctx = gateway(
                work, n, rev, manifests, env=b_env if n else None, extra=b_args if n else None
            )
            gateways.append((rev, port, ctx))
        procs = [ctx.__enter__() for _, _, ctx in gateways]
        try:
            if any(p is None for p in procs):
                print("a gateway did not start; logs in", work, file=sys.stderr)
                return None
            results: dict[str, dict[str, list[float]]] = {rev: {} for rev in revs}
            for _rev, port, _ctx in gateways:
                wrk(f"http://127.0.0.1:{port}/v1/chat/completions", script, 8, 2)  # warm-up
            for _ in range(rounds):
                for (rev, port, _), proc in zip(gateways, procs, strict=True):
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    assert proc is not None
                    before = cpu_seconds(proc.pid)
                    many = wrk(url, script, 64, seconds)
                    spent = cpu_seconds(proc.pid) - before
                    before_one = cpu_seconds(proc.pid)
                    one = wrk(url, script, 1, seconds)
                    spent_one = cpu_seconds(proc.pid) - before_one
                    got = results[rev]
                    got.setdefault("cpu1_us", []).append(
                        spent_one / max(one["rps"] * seconds, 1) * 1e6
                    )
                    got.setdefault("rps64", []).append(many["rps"])
                    got.setdefault("cpu_us", []).append(spent / max(many["rps"] * seconds, 1) * 1e6)
                    got.setdefault("p50_1", []).append(one.get("p50_ms") or 0.0)
                    got.setdefault("rps1", []).append(one["rps"])
            return results
        finally:
            for _, _, ctx in reversed(gateways):
                ctx.__exit__(None, None, None)


def main() -> int:
    revs = sys.argv[1:3]
    if len(revs) != 2 or revs[0] == revs[1]:
        print(__doc__, file=sys.stderr)
        print(
            "give two different revisions (the same code twice: a commit and `.`)", file=sys.stderr
        )
        return 2
    b_env = json.loads(os.environ["AB_B_ENV"]) if os.environ.get("AB_B_ENV") else None
    results = interleaved(revs, b_env=b_env, b_args=os.environ.get("AB_B_ARGS", "").split())
    if results is None:
        return 1
    med = {rev: {k: statistics.median(v) for k, v in got.items()} for rev, got in results.items()}
    a, b = (med[r] for r in revs)
    print(
        json.dumps({"rounds": ROUNDS, "seconds": SECONDS, "medians": med, "raw": results}, indent=1)
    )
    print(
        f"B/A: 64 clients req/s {b['rps64'] / a['rps64']:.3f}, "
        f"CPU per request {b['cpu_us'] / a['cpu_us']:.3f}; "
        f"one client req/s {b['rps1'] / a['rps1']:.3f}, "
        f"p50 {b['p50_1'] - a['p50_1']:+.3f} ms, "
        f"CPU per request {b['cpu1_us'] / a['cpu1_us']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
