"""The gateway's own upstream client (gateway/upstream.py) against pyreqwest (reqwest on hyper,
Rust), side by side, doing what the gateway's client does per request.

Each client POSTs the same chat request (the gateway's rendered headers: content-type,
authorization) to the same loopback upstream (bench/upstream_fast.py, its own process, uvloop)
and reads the whole JSON answer, from `--concurrency` tasks in one uvloop process (as the
gateway runs its client), for `--seconds` after a short warm-up. Rounds alternate between the
clients so that drift of a shared machine falls on both. Prints requests/s and latency
p50/p99 per client and concurrency; results in docs/performance.md ("Upstream client: own vs
pyreqwest").

    python bench/clients.py [--concurrency 1 64] [--seconds 3] [--rounds 2]

pyreqwest is in the `bench` extra only (pip install -e '.[bench]'): the gateway does not
depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import uvloop

from switchboard.gateway.upstream import Endpoint, Pool

ROOT = Path(__file__).resolve().parents[1]
BODY = (
    b'{"model":"bench","messages":[{"role":"user","content":"Say hello in five words."}],'
    b'"max_tokens":32}'
)
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench-provider"}

Send = Callable[[], Awaitable[bytes]]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def own(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    pool = Pool()
    endpoint = Endpoint.build(url, HEADERS, connect=5, read=60, total=600)

    async def send() -> bytes:
        response = await pool.post(endpoint, BODY)
        data = await response.read()
        response.release()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        return data

    return send, pool.close


async def pyreqwest(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    from pyreqwest.client import ClientBuilder

    client = (
        ClientBuilder()
        .http1_only()
        .default_headers(HEADERS)
        .pool_max_idle_per_host(1024)
        .connect_timeout(timedelta(seconds=5))
        .read_timeout(timedelta(seconds=60))
        .timeout(timedelta(seconds=600))
        .build()
    )

    async def send() -> bytes:
        response = await client.post(url).body_bytes(BODY).build().send()
        data = await response.bytes()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        return bytes(data)

    return send, client.close


CLIENTS = {"own": own, "pyreqwest": pyreqwest}


async def measure(
    name: str, url: str, concurrency: int, seconds: float
) -> tuple[float, float, float]:
    send, close = await CLIENTS[name](url)
    latencies: list[float] = []
    stop = 0.0
    warm = True

    async def worker() -> None:
        while True:
            started = time.perf_counter()
            if started >= stop:
                return
            await send()
            if not warm:
                latencies.append(time.perf_counter() - started)

    stop = time.perf_counter() + 0.5  # warm-up: connections opened, caches filled
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    warm = False
    began = time.perf_counter()
    stop = began + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await close()
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return len(latencies) / elapsed, statistics.median(ordered) * 1000, p99 * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=list(CLIENTS))
    args = parser.parse_args()
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "upstream_fast.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with __import__("socket").create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        for _ in range(args.rounds):
            for concurrency in args.concurrency:
                for name in args.clients:
                    got = uvloop.run(measure(name, url, concurrency, args.seconds))
                    results.setdefault((name, concurrency), []).append(got)
                    print(
                        f"{name:10} c={concurrency:<3} {got[0]:9,.0f} req/s  "
                        f"p50 {got[1]:.3f} ms  p99 {got[2]:.3f} ms",
                        flush=True,
                    )
        print("\nmedian of rounds")
        print("client     conc      req/s   p50 ms   p99 ms")
        for (name, concurrency), runs in sorted(results.items(), key=lambda kv: kv[0][::-1]):
            rps = statistics.median(r[0] for r in runs)
            p50 = statistics.median(r[1] for r in runs)
            p99 = statistics.median(r[2] for r in runs)
            print(f"{name:10} {concurrency:4} {rps:10,.0f} {p50:8.3f} {p99:8.3f}")
    finally:
        upstream.terminate()
        upstream.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
