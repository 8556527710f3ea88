"""`make bench`: every system side by side, in one run, on this machine.

Systems (each its own process, all on loopback, against the same fast upstream):
direct (the upstream itself), raw_proxy (bench/raw_proxy.py, the Python ceiling), switchboard
(`switchboard gateway`, one worker), switchboard_w2 (two workers), litellm (the LiteLLM proxy,
one worker). Load: wrk (a second process, C) for request/response; for streams bench/streamgen
(Go, built once into .cache/), or the Python bench/stream_client.py when no Go toolchain is
there. Scenarios:

  a  one client at a time, non-streaming: p50 and p99 latency
  b  64 concurrent clients, non-streaming: requests/s and p99
  c  1,000 concurrent streams of 100 tokens, 20 ms apart: time to first token, dropped streams
  d  RSS of the system's processes during b and c, and over a soak (switchboard) as a curve
  e  an Anthropic Messages client on the OpenAI-compatible upstream (switchboard), as a and b
  f  switchboard with --workers 1 and 2 (b)

BENCH_SECONDS (default 10) is the length of each wrk run; BENCH_SOAK_SECONDS (default 600)
the soak. Results: docs/bench/results.json; then `python bench/report.py` writes the doc.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
SOAK = int(os.environ.get("BENCH_SOAK_SECONDS", "600"))
KEY = "sk-bench-0123456789abcdef"
UPSTREAM = 19000
LITELLM = ROOT / ".cache/bench-litellm/bin/litellm"
MANIFESTS = f"""
apiVersion: switchboard.dev/v1alpha1
kind: CustomProvider
metadata: {{name: bench}}
spec:
  baseUrl: http://127.0.0.1:{UPSTREAM}/v1
  models: [{{id: bench, contextWindow: 32768, maxTokens: 4096, cost: {{input: 1, output: 2}}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: k}}
stringData: {{t: {KEY}}}
---
apiVersion: switchboard.dev/v1alpha1
kind: AccessKeyConfig
metadata: {{name: bench}}
spec:
  keys: [{{name: bench, secretRef: {{name: k, key: t}}}}]
  allowedProviders: ["*"]
"""


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lua(path: Path, body: dict[str, Any], headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = '{json.dumps(body)}'"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = {}
    for pct, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        m = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)$", out, re.M)
        if m:
            result[key] = float(m.group(1)) * _UNITS[m.group(2)]
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else 0.0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    return result


def rss_mb(pid: int) -> float:
    """RSS of a process and its children (workers), in MB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


class Sampler:
    """Peak RSS of a process while a block runs, sampled every 200 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.2)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def process(
    args: list[str], ready: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes] | None]:
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
    deadline = time.monotonic() + 60
    ok = False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(ready, timeout=1).status_code < 500:
                ok = True
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        if not ok:
            say(f"skipped: {args[0]} did not start ({log})")
            yield None
        else:
            yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


STREAMGEN = ROOT / ".cache/streamgen"


def streamgen() -> Path | None:
    """Build the Go stream load generator once (bench/streamgen); None without a Go toolchain."""
    if not STREAMGEN.exists():
        built = subprocess.run(
            ["go", "build", "-o", str(STREAMGEN), "."],
            cwd=ROOT / "bench/streamgen",
            env={**os.environ, "CGO_ENABLED": "0"},
            capture_output=True,
            check=False,
        )
        if built.returncode != 0:
            say("no Go toolchain: streams are driven by the Python client instead")
            return None
    return STREAMGEN


def stream_run(url: str, surface: str = "chat", model: str = "bench") -> dict[str, Any]:
    generator = streamgen()
    if generator is not None:
        cmd = [
            str(generator),
            "-url",
            url,
            "-streams",
            "1000",
            "-model",
            model,
            "-surface",
            surface,
            "-key",
            KEY,
        ]
    else:
        cmd = [
            PY,
            str(ROOT / "bench/stream_client.py"),
            url,
            "--streams",
            "1000",
            "--model",
            model,
            "--surface",
            surface,
            "--key",
            KEY,
        ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def versions() -> dict[str, str]:
    import aiohttp

    out = {"python": platform.python_version(), "aiohttp": aiohttp.__version__}
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    out["wrk"] = (wrk_version.stdout or wrk_version.stderr).split("\n")[0]
    if LITELLM.exists():
        pip = subprocess.run(
            [str(LITELLM.parent / "pip"), "show", "litellm"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        out["litellm"] = next(
            (x.split()[1] for x in pip.splitlines() if x.startswith("Version")), "?"
        )
    return out


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    manifests = work / "manifests"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(MANIFESTS)
    routing = work / "routing.json"
    routing.write_bytes(
        subprocess.run(
            [PY, "-m", "switchboard.cli", "render", str(manifests), "-o", "json", "--show-secrets"],
            capture_output=True,
            check=True,
        ).stdout
    )
    chat = {"model": "bench", "messages": [{"role": "user", "content": "hello"}]}
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    scripts = {
        "direct": lua(work / "direct.lua", chat, auth),
        "switchboard": lua(work / "sb.lua", {**chat, "model": "bench:bench"}, auth),
        "messages": lua(
            work / "messages.lua", {**chat, "model": "bench:bench", "max_tokens": 64}, auth
        ),
    }
    systems: list[tuple[str, list[str] | None, str, str]] = []
    results: list[dict[str, Any]] = []
    soak: list[list[float]] = []

    def record(scenario: str, system: str, **values: Any) -> None:
        row = {
            "scenario": scenario,
            "system": system,
            "rps": None,
            "p50_ms": None,
            "p99_ms": None,
            "ttft_p99_ms": None,
            "dropped": None,
            "rss_mb": None,
            **values,
        }
        results.append(row)
        say(
            f"{scenario:<22} {system:<15} "
            + ", ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in values.items()
                if v is not None
            )
        )

    say(f"starting the bench upstream on :{UPSTREAM} (100 tokens 20 ms apart when streaming)")
    with process(
        [
            PY,
            str(ROOT / "bench/upstream_fast.py"),
            "--port",
            str(UPSTREAM),
            "--tokens",
            "100",
            "--delay-ms",
            "20",
        ],
        f"http://127.0.0.1:{UPSTREAM}/",
        work / "upstream.log",
    ) as upstream:
        assert upstream is not None
        ports = {
            name: free_port() for name in ("raw_proxy", "switchboard", "switchboard_w2", "litellm")
        }
        systems = [
            ("direct", None, f"http://127.0.0.1:{UPSTREAM}", "direct"),
            (
                "raw_proxy",
                [
                    PY,
                    str(ROOT / "bench/raw_proxy.py"),
                    "--port",
                    str(ports["raw_proxy"]),
                    "--upstream",
                    f"http://127.0.0.1:{UPSTREAM}",
                ],
                f"http://127.0.0.1:{ports['raw_proxy']}",
                "direct",
            ),
            (
                "switchboard",
                [
                    PY,
                    "-m",
                    "switchboard.cli",
                    "gateway",
                    "--config",
                    str(routing),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports["switchboard"]),
                ],
                f"http://127.0.0.1:{ports['switchboard']}",
                "switchboard",
            ),
            (
                "switchboard_w2",
                [
                    PY,
                    "-m",
                    "switchboard.cli",
                    "gateway",
                    "--config",
                    str(routing),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports["switchboard_w2"]),
                    "--workers",
                    "2",
                ],
                f"http://127.0.0.1:{ports['switchboard_w2']}",
                "switchboard",
            ),
        ]
        if LITELLM.exists():
            systems.append(
                (
                    "litellm",
                    [
                        str(LITELLM),
                        "--config",
                        str(ROOT / "bench/litellm_config.yaml"),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(ports["litellm"]),
                        "--num_workers",
                        "1",
                    ],
                    f"http://127.0.0.1:{ports['litellm']}",
                    "direct",
                )
            )
        else:
            say("skipped: litellm (run bench/setup.sh)")
        for name, cmd, url, script in systems:
            say(f"system: {name}")
            ready = (
                f"{url}/readyz"
                if name.startswith("switchboard")
                else (f"{url}/health/liveliness" if name == "litellm" else f"{url}/")
            )
            env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
            context = (
                process(cmd, ready, work / f"{name}.log", env)
                if cmd
                else contextlib.nullcontext(upstream)
            )
            with context as proc:
                if proc is None:
                    continue
                endpoint = f"{url}/v1/chat/completions"
                wrk(endpoint, scripts[script], 8, 2)  # warm up connections and caches
                if name != "switchboard_w2":
                    one = wrk(endpoint, scripts[script], 1, SECONDS)
                    record(
                        "a_one_client",
                        name,
                        p50_ms=one.get("p50_ms"),
                        p99_ms=one.get("p99_ms"),
                        rps=one["rps"],
                    )
                with Sampler(proc.pid) as sampler:
                    many = wrk(endpoint, scripts[script], 64, SECONDS)
                record(
                    "b_64_clients",
                    name,
                    rps=many["rps"],
                    p99_ms=many.get("p99_ms"),
                    p50_ms=many.get("p50_ms"),
                    rss_mb=round(sampler.peak, 1),
                    errors=int(many["errors"]),
                )
                if name in ("litellm", "switchboard_w2"):
                    continue
                model = "bench:bench" if name == "switchboard" else "bench"
                stream_run(url, model=model)  # warm-up: fills the connection pools
                with Sampler(proc.pid) as sampler:
                    streams = stream_run(url, model=model)
                record(
                    "c_1000_streams",
                    name,
                    ttft_p99_ms=streams["ttft_p99_ms"],
                    p50_ms=streams["ttft_p50_ms"],
                    dropped=streams["dropped"],
                    rss_mb=round(sampler.peak, 1),
                    tokens=streams["tokens"],
                    seconds=round(streams["seconds"], 2),
                )
                if name == "switchboard":
                    endpoint = f"{url}/v1/messages"
                    one = wrk(endpoint, scripts["messages"], 1, SECONDS)
                    record(
                        "e_messages_one_client",
                        name,
                        p50_ms=one.get("p50_ms"),
                        p99_ms=one.get("p99_ms"),
                        rps=one["rps"],
                    )
                    many = wrk(endpoint, scripts["messages"], 64, SECONDS)
                    record(
                        "e_messages_64_clients",
                        name,
                        rps=many["rps"],
                        p99_ms=many.get("p99_ms"),
                        errors=int(many["errors"]),
                    )
                    streams = stream_run(url, surface="messages", model="bench:bench")
                    record(
                        "e_messages_streams",
                        name,
                        ttft_p99_ms=streams["ttft_p99_ms"],
                        dropped=streams["dropped"],
                    )
                    say(f"soak: {SOAK} s of 16 clients, RSS sampled every second")
                    load = subprocess.Popen(
                        [
                            "wrk",
                            "-t1",
                            "-c16",
                            f"-d{SOAK}s",
                            "-s",
                            str(scripts["switchboard"]),
                            f"{url}/v1/chat/completions",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    started = time.monotonic()
                    while load.poll() is None:
                        soak.append(
                            [round(time.monotonic() - started, 1), round(rss_mb(proc.pid), 1)]
                        )
                        time.sleep(1)
                    record(
                        "d_soak",
                        name,
                        rss_mb=max(r for _, r in soak) if soak else None,
                        start_rss_mb=soak[0][1] if soak else None,
                        end_rss_mb=soak[-1][1] if soak else None,
                    )
    output = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "versions": versions(),
        "bench_seconds": SECONDS,
        "soak_seconds": SOAK,
        "results": results,
        "soak": soak,
    }
    target = ROOT / "docs/bench/results.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(output, indent=2) + "\n")
    say(f"results in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
