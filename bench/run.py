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
  s  spread arrivals: 1,000 streams of 250 tokens starting 200 a second (so up to 1,000 open),
     time to first token beside direct's
  d  RSS of the system's processes during b and c, and over a soak (switchboard) as a curve
  e  an Anthropic Messages client on the OpenAI-compatible upstream (switchboard, and LiteLLM's
     own /v1/messages), as a, b and c
  f  switchboard with --workers 1 and 2 (b and c)
  g  a Messages client on a provider that lists anthropic-messages (no translation) against a
     Chat client on Chat, same gateway, same upstream: one client (interleaved, medians) and 64
     clients (switchboard)

Latency percentiles come from wrk's `--latency` (an HdrHistogram with microsecond resolution,
so p50/p99 of 0.03 ms are resolved; no Python client is needed for (a)). Direct is the bench
upstream itself, so its figures are also the upstream's own ceiling, which must be far above
every proxy's.

BENCH_SECONDS (default 10) is the length of each wrk run; BENCH_REPEATS (default 3) the number
of one-client runs whose medians are recorded (Chat and Messages interleaved);
BENCH_STREAM_ROUNDS (default 3) the rounds of c and s in which direct and switchboard take
turns (each run after its own warm-up), medians recorded with every run's TTFT p99;
BENCH_SOAK_SECONDS (default 600) the soak (0 skips it); BENCH_SYSTEMS (default all:
direct,raw_proxy,switchboard,switchboard_w2,litellm) picks systems. A system whose command does
not start is skipped with its log named. BENCH_SCENARIOS=g runs only scenario g (with
BENCH_SYSTEMS=switchboard, a quick check of one change); the default runs every scenario.

BENCH_SYSTEMS=...,switchboard_otel (not in the default set) adds the current gateway with
traces on: the standard OTEL_* environment pointing at the OpenTelemetry Collector of
tools/otelcol (built once per machine; spans written to a file in the run's temporary
directory), every request sampled: the cost of tracing against `switchboard` (traces off).

BENCH_BASE=<git revision> adds the system `switchboard_base`: the gateway of that revision (a
worktree under .cache/bench-base/, run with this venv), measured in the same run as the current
build for a before/after comparison (a, b, c and e scenarios, like `switchboard`), and the
scenario h: both gateways up at once, wrk rounds alternating between them (bench/ab.py), the
figure the "no regression beyond 3 %" targets are judged on.
Results: docs/bench/results.json; then `python bench/report.py` writes the doc.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
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
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
STREAM_ROUNDS = int(os.environ.get("BENCH_STREAM_ROUNDS", "3"))
PAIRED_SCENARIOS = ("c_1000_streams", "s_spread_streams")
ALL_SYSTEMS = ("direct", "raw_proxy", "switchboard", "switchboard_w2", "litellm")
OPTIONAL_SYSTEMS = ("switchboard_otel",)
BASE = os.environ.get("BENCH_BASE", "").strip()
ONLY = os.environ.get("BENCH_SCENARIOS", "").strip()
SYSTEMS = [
    s.strip()
    for s in os.environ.get("BENCH_SYSTEMS", ",".join(ALL_SYSTEMS)).split(",")
    if s.strip()
]
if BASE and "switchboard_base" not in SYSTEMS:
    at = SYSTEMS.index("switchboard") if "switchboard" in SYSTEMS else 0
    SYSTEMS.insert(at, "switchboard_base")
KEY = "sk-bench-0123456789abcdef"
LIMITED_KEY = "sk-bench-limited-0123456789abcdef"
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
apiVersion: switchboard.dev/v1alpha1
kind: CustomProvider
metadata: {{name: native}}
spec:
  baseUrl: http://127.0.0.1:{UPSTREAM}/v1
  apis: [openai-completions, anthropic-messages]
  models: [{{id: bench, contextWindow: 32768, maxTokens: 4096, cost: {{input: 1, output: 2}}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: k, labels: {{switchboard.dev/secret: "true"}}}}
stringData: {{t: {KEY}, l: {LIMITED_KEY}}}
---
apiVersion: switchboard.dev/v1alpha1
kind: AccessKeyConfig
metadata: {{name: bench}}
spec:
  keys: [{{name: bench, secretRef: {{name: k, key: t}}}}]
  allowedProviders: ["*"]
---
# b_64_clients_limits: every kind of counter, none ever reached (docs/limits.md).
apiVersion: switchboard.dev/v1alpha1
kind: AccessKeyConfig
metadata: {{name: limited}}
spec:
  keys: [{{name: limited, secretRef: {{name: k, key: l}}}}]
  allowedProviders: ["*"]
  limits: [{{requestsPerMinute: 100000000, tokensPerMinute: 10000000000, maxInFlight: 100000}}]
  budgets: [{{scope: shared, usd: 1000000, window: day}}]
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
    done = re.search(r"^\s*(\d+) requests in ", out, re.M)
    result["requests"] = float(done.group(1)) if done else 0.0
    return result


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the median over runs (errors: the sum)."""
    out = {key: statistics.median(r[key] for r in runs if key in r) for key in runs[0]}
    out["errors"] = sum(r.get("errors", 0.0) for r in runs)
    out["runs"] = len(runs)
    return out


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


@contextlib.contextmanager
def otel_collector(work: Path) -> Iterator[dict[str, str]]:
    """The collector of tools/otelcol on a free port (spans to a file); the gateway's OTEL_*."""
    built = subprocess.run(
        ["bash", str(ROOT / "tools/otelcol/build.sh")], capture_output=True, text=True, check=True
    )
    binary = built.stdout.strip().splitlines()[-1]
    port = free_port()
    config = work / "otelcol.yaml"
    config.write_text(
        f"receivers: {{otlp: {{protocols: {{http: {{endpoint: '127.0.0.1:{port}'}}}}}}}}\n"
        f"exporters: {{file: {{path: '{work / 'spans.jsonl'}'}}}}\n"
        "service: {telemetry: {metrics: {level: none}}, pipelines: "
        "{traces: {receivers: [otlp], exporters: [file]}}}\n"
    )
    with process(
        [binary, f"--config=file:{config}"],
        f"http://127.0.0.1:{port}/v1/traces",
        work / "otelcol.log",
    ) as proc:
        if proc is None:
            raise RuntimeError(f"the OpenTelemetry Collector did not start ({work}/otelcol.log)")
        yield {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_TRACES_SAMPLER": "always_on",
        }


@contextlib.contextmanager
def _chained(
    stack: contextlib.ExitStack, inner: contextlib.AbstractContextManager[Any]
) -> Iterator[Any]:
    with stack, inner as value:
        yield value


STREAMGEN = ROOT / ".cache/streamgen"


def limits_run(work: Path, routing: Path, script: Path, off: Path) -> dict[str, float] | None:
    """64 clients on a key with limits and a budget (never reached), counters on a local
    redis-server, against the same request on a key without limits (`off`) on the same gateway
    process: rounds alternating off and on (REPEATS + 2, odd ones on first), medians of req/s and
    of the gateway's CPU time per request for both sides. Two runs one after the other move by
    more than the 15 % judged here on a shared machine; interleaved rounds on one process do
    not."""
    binary = shutil.which("redis-server")
    if binary is None:
        say("skipped: b_64_clients_limits: no redis-server (apt-get install redis-server)")
        return None
    port = free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                say("skipped: b_64_clients_limits: redis-server did not start")
                return None
            time.sleep(0.05)
        gw = free_port()
        cmd = [PY, "-m", "switchboard.cli", "gateway", "--config", str(routing)]
        cmd += ["--host", "127.0.0.1", "--port", str(gw), "--no-access-log"]
        cmd += ["--limits-redis-url", f"redis://127.0.0.1:{port}/0"]
        ready = f"http://127.0.0.1:{gw}/readyz"
        with process(cmd, ready, work / "limits.log") as proc:
            if proc is None:
                return None
            url = f"http://127.0.0.1:{gw}/v1/chat/completions"
            wrk(url, script, 8, 2)
            wrk(url, off, 8, 2)
            runs: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
            for n in range(REPEATS + 2):
                # odd rounds on first: a load that rises or falls over the run favours neither
                sides = (("off", off), ("on", script))
                for side, lua_script in sides if n % 2 == 0 else sides[::-1]:
                    before = cpu_seconds(proc.pid)
                    got = wrk(url, lua_script, 64, SECONDS)
                    used = cpu_seconds(proc.pid) - before
                    got["cpu_us"] = used / got["requests"] * 1e6 if got["requests"] else 0.0
                    runs[side].append(got)
            on, off_run = median_run(runs["on"]), median_run(runs["off"])
            return {
                **on,
                "rps_off": off_run["rps"],
                "cpu_us": on["cpu_us"],
                "cpu_us_off": off_run["cpu_us"],
            }
    finally:
        redis.terminate()
        redis.wait()


SPREAD_RATE = 200.0
"""Spread arrivals: new streams a second."""
SPREAD_TOKENS = 250
"""... of this many tokens (5 s at 20 ms apart), so that 1,000 streams are open at the end."""


def streamgen() -> Path | None:
    """Build the Go stream load generator (bench/streamgen) when its source is newer than the
    binary; None without a Go toolchain."""
    source = ROOT / "bench/streamgen/main.go"
    if not STREAMGEN.exists() or STREAMGEN.stat().st_mtime < source.stat().st_mtime:
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


def stream_run(
    url: str,
    *,
    surface: str = "chat",
    model: str = "bench",
    rate: float = 0.0,
    tokens: int = 0,
    streams: int = 1000,
) -> dict[str, Any]:
    """`streams` streams: all at once, or `rate` new ones a second; `tokens` per stream (0: the
    upstream's default of 100)."""
    generator = streamgen()
    if generator is not None:
        cmd = [
            str(generator),
            "-url",
            url,
            "-streams",
            str(streams),
            "-model",
            model,
            "-surface",
            surface,
            "-key",
            KEY,
            "-rate",
            str(rate),
            "-tokens",
            str(tokens),
        ]
    else:
        cmd = [
            PY,
            str(ROOT / "bench/stream_client.py"),
            url,
            "--streams",
            str(streams),
            "--model",
            model,
            "--surface",
            surface,
            "--key",
            KEY,
            "--rate",
            str(rate),
            "--tokens",
            str(tokens),
        ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = dict(json.loads(out.strip().splitlines()[-1]))
    result["generator"] = "bench/streamgen (Go)" if generator else "bench/stream_client.py"
    return result


def versions() -> dict[str, str]:
    import aiohttp
    import orjson
    import uvloop

    out = {
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": uvloop.__version__,  # type: ignore[attr-defined]
        "orjson": orjson.__version__,
    }
    switchboard = subprocess.run(
        [PY, "-c", "import switchboard; print(switchboard.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    out["switchboard"] = switchboard.stdout.strip() or "not installed"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    out["commit"] = commit.stdout.strip()
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


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "loadavg_start": list(os.getloadavg()),
    }


def native_messages(record: Any, url: str, scripts: dict[str, Path], pid: int) -> None:
    """g: a Messages client on a provider that lists anthropic-messages (the identity pair) and
    a Chat client on Chat, on the same gateway and upstream: the acceptance check of issue #15
    is that the first costs no more than the second. Besides latency and requests/s (which move
    with the machine's load), the gateway's own CPU time per request (`cpu_us`, from
    /proc/PID/stat), which other processes on the machine do not inflate."""
    chat, messages = f"{url}/v1/chat/completions", f"{url}/v1/messages"
    wrk(messages, scripts["native"], 8, 2)
    wrk(chat, scripts["switchboard"], 8, 2)
    targets = {"chat": (chat, scripts["switchboard"]), "messages": (messages, scripts["native"])}
    # Interleaved repeats, medians recorded, for both loads: the load of the shared machine
    # moves between two back-to-back runs more than the difference measured here.
    for clients, label in ((1, "one_client"), (64, "64_clients")):
        runs: dict[str, list[dict[str, float]]] = {"chat": [], "messages": []}
        for _ in range(REPEATS):
            for client, (target, script) in targets.items():
                before = cpu_seconds(pid)
                got = wrk(target, script, clients, SECONDS)
                used = cpu_seconds(pid) - before
                got["cpu_us"] = used / got["requests"] * 1e6 if got["requests"] else 0.0
                runs[client].append(got)
        for client in targets:
            got = median_run(runs[client])
            record(
                f"g_{client}_native_{label}",
                "switchboard",
                p50_ms=got.get("p50_ms"),
                p99_ms=got.get("p99_ms"),
                rps=got["rps"],
                cpu_us=round(got["cpu_us"], 1),
                errors=int(got["errors"]),
                runs=int(got["runs"]),
            )


def base_interleaved(record: Any) -> None:
    """h: this tree against BENCH_BASE with both gateways up at once, wrk rounds alternating
    between them (bench/ab.py): the check that a change costs at most 3 % at 64 clients and at
    one client. Back-to-back runs of one system after the other (a and b above) move by more
    than that on a shared machine; medians of interleaved rounds, and each gateway's own CPU
    time per request (which the other processes do not inflate), do not."""
    if str(ROOT) not in sys.path:  # run as `python bench/run.py`: the repo is not on the path
        sys.path.insert(0, str(ROOT))
    from bench import ab  # here: ab imports this module

    say(f"h: this tree against {BASE}, {REPEATS + 2} interleaved rounds of {SECONDS} s")
    got = ab.interleaved([BASE, "."], rounds=REPEATS + 2, seconds=SECONDS)
    if got is None:
        say("skipped: h_base_interleaved: a gateway did not start")
        return
    for system, rev in (("switchboard_base", BASE), ("switchboard", ".")):
        med = {k: statistics.median(v) for k, v in got[rev].items()}
        record(
            "h_base_interleaved",
            system,
            rps=round(med["rps64"], 1),
            cpu_us=round(med["cpu_us"], 1),
            rps_one=round(med["rps1"], 1),
            p50_ms_one=med["p50_1"],
            cpu_us_one=round(med["cpu1_us"], 1),
            runs=len(got[rev]["rps64"]),
        )


def main() -> int:
    unknown = sorted(set(SYSTEMS) - {*ALL_SYSTEMS, *OPTIONAL_SYSTEMS, "switchboard_base"})
    if unknown:
        say(f"unknown BENCH_SYSTEMS {unknown}; known: {', '.join(ALL_SYSTEMS)}")
        return 2
    if ONLY not in ("", "g"):
        say(f"unknown BENCH_SCENARIOS {ONLY!r}; only 'g' can run alone")
        return 2
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    chat = {"model": "bench", "messages": [{"role": "user", "content": "hello"}]}
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    scripts = {
        "direct": lua(work / "direct.lua", chat, auth),
        "switchboard": lua(work / "sb.lua", {**chat, "model": "bench:bench"}, auth),
        "limits": lua(
            work / "limits.lua",
            {**chat, "model": "bench:bench"},
            {**auth, "Authorization": f"Bearer {LIMITED_KEY}"},
        ),
        "messages": lua(
            work / "messages.lua", {**chat, "model": "bench:bench", "max_tokens": 64}, auth
        ),
        "litellm_messages": lua(work / "ll-messages.lua", {**chat, "max_tokens": 64}, auth),
        "native": lua(
            work / "native.lua", {**chat, "model": "native:bench", "max_tokens": 64}, auth
        ),
    }
    routing = work / "routing.json"
    base_env: dict[str, str] = {}
    if BASE:
        base_tree = ROOT / ".cache/bench-base" / BASE.replace("/", "_")
        if not base_tree.exists():
            subprocess.run(
                ["git", "worktree", "add", "--detach", "-f", str(base_tree), BASE],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        base_env["PYTHONPATH"] = str(base_tree / "operator")
        commit = subprocess.run(
            ["git", "rev-parse", "--short", BASE],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        say(f"switchboard_base: revision {BASE} ({commit}) from {base_tree}")
        (work / "base-manifests").mkdir()
        (work / "base-manifests" / "all.yaml").write_text(MANIFESTS)
        base_routing = work / "routing-base.json"
        base_routing.write_bytes(
            subprocess.run(
                [
                    *(PY, "-m", "switchboard.cli", "render", str(work / "base-manifests")),
                    *("-o", "json", "--show-secrets"),
                ],
                capture_output=True,
                check=True,
                env={**os.environ, **base_env},
            ).stdout
        )
    if any(s.startswith("switchboard") for s in SYSTEMS):
        manifests = work / "manifests"
        manifests.mkdir()
        (manifests / "all.yaml").write_text(MANIFESTS)
        rendered = subprocess.run(
            [PY, "-m", "switchboard.cli", "render", str(manifests), "-o", "json", "--show-secrets"],
            capture_output=True,
            check=False,
        )
        if rendered.returncode != 0:
            say(f"switchboard render failed; switchboard is skipped: {rendered.stderr[-300:]!r}")
        routing.write_bytes(rendered.stdout)
    results: list[dict[str, Any]] = []
    soak: list[list[float]] = []
    skipped: dict[str, str] = {}

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

    paired = "direct" in SYSTEMS and "switchboard" in SYSTEMS

    def stream_once(
        proc: subprocess.Popen[bytes], url: str, **kw: Any
    ) -> tuple[dict[str, Any], float]:
        stream_run(url, **kw)  # warm-up: fills the connection pools
        time.sleep(2)  # let the warm-up's 1,000 client connections close on every side
        with Sampler(proc.pid) as sampler:
            got = stream_run(url, **kw)
        return got, sampler.peak

    def record_streams(scenario: str, name: str, runs: list[tuple[dict[str, Any], float]]) -> None:
        """The medians of `runs` (streams dropped: the sum; peak RSS: the highest), and every
        run's time to first token p99 beside them."""
        gots = [got for got, _ in runs]
        record(
            scenario,
            name,
            ttft_p99_ms=statistics.median(g["ttft_p99_ms"] for g in gots),
            ttft_p50_ms=statistics.median(g["ttft_p50_ms"] for g in gots),
            dropped=sum(g["dropped"] for g in gots),
            rss_mb=round(max(peak for _, peak in runs), 1),
            tokens=statistics.median(g["tokens"] for g in gots),
            seconds=round(statistics.median(g["seconds"] for g in gots), 2),
            generator=gots[0]["generator"],
            **({"peak_open": max(g["peak_open"] for g in gots)} if "peak_open" in gots[0] else {}),
            runs=len(gots),
            ttft_p99_runs=[g["ttft_p99_ms"] for g in gots],
        )

    def streams(
        name: str, scenario: str, proc: subprocess.Popen[bytes], url: str, **kw: Any
    ) -> None:
        """One stream scenario. Direct's c and s runs are made in turns with switchboard's (in
        its turn below), STREAM_ROUNDS rounds each, medians recorded: one run's time to first
        token p99 moves by more than the targets between runs on shared cores, and a run
        of direct minutes earlier is not the same machine."""
        if name == "direct" and paired and scenario in PAIRED_SCENARIOS:
            return
        if name != "switchboard" or not paired or scenario not in PAIRED_SCENARIOS:
            record_streams(scenario, name, [stream_once(proc, url, **kw)])
            return
        direct_url = f"http://127.0.0.1:{UPSTREAM}"
        direct_kw = {**kw, "model": "bench"}
        mine: list[tuple[dict[str, Any], float]] = []
        theirs: list[tuple[dict[str, Any], float]] = []
        for n in range(STREAM_ROUNDS):
            turns = [(upstream, direct_url, direct_kw, theirs), (proc, url, kw, mine)]
            for p, u, k, into in turns if n % 2 == 0 else turns[::-1]:
                into.append(stream_once(p, u, **k))  # type: ignore[arg-type]
        record_streams(scenario, "direct", theirs)
        record_streams(scenario, name, mine)

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
            name: free_port() for name in (*ALL_SYSTEMS, *OPTIONAL_SYSTEMS, "switchboard_base")
        }
        gateway = [PY, "-m", "switchboard.cli", "gateway", "--config", str(routing)]
        commands: dict[str, list[str] | None] = {
            "direct": None,
            "raw_proxy": [
                PY,
                str(ROOT / "bench/raw_proxy.py"),
                "--port",
                str(ports["raw_proxy"]),
                "--upstream",
                f"http://127.0.0.1:{UPSTREAM}",
            ],
            "switchboard": [*gateway, "--host", "127.0.0.1", "--port", str(ports["switchboard"])],
            "switchboard_otel": [
                *gateway,
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["switchboard_otel"]),
            ],
            "switchboard_base": [
                *gateway[:-1],
                str(work / "routing-base.json"),
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["switchboard_base"]),
            ],
            "switchboard_w2": [
                *gateway,
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["switchboard_w2"]),
                "--workers",
                "2",
            ],
            # Their production guidance: one uvicorn worker per pod, no debug logging,
            # LITELLM_MODE=PRODUCTION (no .env loading); no database for a pure proxy.
            "litellm": [
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
        }
        for name in SYSTEMS:
            if name == "litellm" and not LITELLM.exists():
                skipped[name] = "not installed (bench/setup.sh could not install it)"
                say(f"skipped: litellm: {skipped[name]}")
                continue
            say(f"system: {name}")
            url = f"http://127.0.0.1:{UPSTREAM if name == 'direct' else ports[name]}"
            ready = {
                "switchboard": f"{url}/readyz",
                "switchboard_base": f"{url}/readyz",
                "switchboard_otel": f"{url}/readyz",
                "switchboard_w2": f"{url}/readyz",
                "litellm": f"{url}/health/liveliness",
            }.get(name, f"{url}/")
            env = {
                "LITELLM_MODE": "PRODUCTION",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
                "SWITCHBOARD_METRICS_PORT": "0",  # no scrape here; no port to collide on
                **(base_env if name == "switchboard_base" else {}),
            }
            cmd = commands[name]
            stack = contextlib.ExitStack()
            if name == "switchboard_otel":
                env.update(stack.enter_context(otel_collector(work)))
            context = (
                process(cmd, ready, work / f"{name}.log", env)
                if cmd
                else contextlib.nullcontext(upstream)
            )
            context = _chained(stack, context)
            sb = name.startswith("switchboard")
            script = scripts["switchboard" if sb else "direct"]
            model = "bench:bench" if sb else "bench"
            with context as proc:
                if proc is None:
                    log = work / f"{name}.log"
                    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                    skipped[name] = f"did not start: {' | '.join(tail)[-300:]}"
                    continue
                endpoint = f"{url}/v1/chat/completions"
                if name == "switchboard":
                    native_messages(record, url, scripts, proc.pid)
                if ONLY:
                    continue
                translating = name in (
                    "switchboard",
                    "switchboard_base",
                    "switchboard_otel",
                    "litellm",
                )
                messages_url = f"{url}/v1/messages"
                messages = scripts["messages" if sb else "litellm_messages"]
                wrk(endpoint, script, 8, 2)  # warm up connections and caches
                if translating:
                    wrk(messages_url, messages, 8, 2)
                if name != "switchboard_w2":
                    # One client: REPEATS runs, Chat and Messages interleaved, medians recorded:
                    # the differences measured here are tens of microseconds, below one run's
                    # noise on shared cores.
                    a_runs, e_runs = [], []
                    for _ in range(REPEATS):
                        a_runs.append(wrk(endpoint, script, 1, SECONDS))
                        if translating:
                            e_runs.append(wrk(messages_url, messages, 1, SECONDS))
                    one = median_run(a_runs)
                    record(
                        "a_one_client",
                        name,
                        p50_ms=one.get("p50_ms"),
                        p99_ms=one.get("p99_ms"),
                        rps=one["rps"],
                        errors=int(one["errors"]),
                        runs=int(one["runs"]),
                    )
                with Sampler(proc.pid) as sampler:
                    many = wrk(endpoint, script, 64, SECONDS)
                record(
                    "b_64_clients",
                    name,
                    rps=many["rps"],
                    p99_ms=many.get("p99_ms"),
                    p50_ms=many.get("p50_ms"),
                    rss_mb=round(sampler.peak, 1),
                    errors=int(many["errors"]),
                )
                if name == "switchboard":
                    limited = limits_run(work, routing, scripts["limits"], script)
                    if limited is not None:
                        record(
                            "b_64_clients_limits",
                            name,
                            rps=limited["rps"],
                            p50_ms=limited.get("p50_ms"),
                            p99_ms=limited.get("p99_ms"),
                            errors=int(limited["errors"]),
                            rps_off=limited["rps_off"],
                            cpu_us=round(limited["cpu_us"], 1),
                            cpu_us_off=round(limited["cpu_us_off"], 1),
                            runs=int(limited["runs"]),
                        )
                streams(name, "c_1000_streams", proc, url, model=model)
                if name in ("direct", "switchboard", "switchboard_base", "switchboard_w2"):
                    streams(
                        name,
                        "s_spread_streams",
                        proc,
                        url,
                        model=model,
                        rate=SPREAD_RATE,
                        tokens=SPREAD_TOKENS,
                    )
                if name == "switchboard_w2":
                    continue
                if translating:
                    endpoint = messages_url
                    one = median_run(e_runs)
                    record(
                        "e_messages_one_client",
                        name,
                        p50_ms=one.get("p50_ms"),
                        p99_ms=one.get("p99_ms"),
                        rps=one["rps"],
                        errors=int(one["errors"]),
                        runs=int(one["runs"]),
                    )
                    many = wrk(endpoint, messages, 64, SECONDS)
                    record(
                        "e_messages_64_clients",
                        name,
                        rps=many["rps"],
                        p50_ms=many.get("p50_ms"),
                        p99_ms=many.get("p99_ms"),
                        errors=int(many["errors"]),
                    )
                    streams(name, "e_messages_streams", proc, url, surface="messages", model=model)
                if name == "switchboard" and SOAK > 0:
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
    if BASE and not ONLY:
        try:
            base_interleaved(record)
        except Exception as exc:  # the run's other results are kept
            skipped["h_base_interleaved"] = f"{type(exc).__name__}: {exc}"[:300]
    info["loadavg_end"] = list(os.getloadavg())
    output = {
        "machine": info,
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "bench_seconds": SECONDS,
        "soak_seconds": SOAK,
        "systems": SYSTEMS,
        "skipped": skipped,
        "results": results,
        "soak": soak,
    }
    # A partial run (BENCH_SCENARIOS) must not replace the full results the docs are made from.
    target = work / "results.json" if ONLY else ROOT / "docs/bench/results.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(output, indent=2) + "\n")
    say(f"results in {target}")
    for name, why in skipped.items():
        say(f"skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
