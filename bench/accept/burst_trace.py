"""Where a cold burst of 1,000 streams waits in h1_server: `python bench/accept/burst_trace.py`.

Runs bench/accept/h1_server.py's protocol with a timestamp at each phase of a stream (accepted,
first request byte, body complete, task started, upstream head in, first chunk written), drives
BURSTS (default 3) bursts of 1,000 streams with bench/streamgen (or bench/stream_client.py),
5 s apart so that the upstream pool's idle connections expire (a cold pool, as in compare.py),
and prints the percentiles of each phase and a histogram of accepts per 100 ms. A diagnostic:
the timestamps cost a few µs per stream. Bounded, loopback only.

    python bench/accept/burst_trace.py serve PORT UPSTREAM OUT   (the traced server; internal)
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import uvloop
from bench.accept import h1_server
from bench.accept.common import Upstream
from bench.run import PY, ROOT, free_port, process, stream_run

from switchboard.gateway import server as gateway_server
from switchboard.gateway.upstream import Response

BURSTS = int(os.environ.get("BURSTS", "3"))
PHASES = ("accepted", "first byte", "body complete", "task started", "upstream head", "first chunk")


class Traced(h1_server.Conn):
    """h1_server.Conn with a timestamp per phase of a stream."""

    records: ClassVar[list[list[float]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.marks = [time.perf_counter()]
        super().connection_made(transport)

    def on_message_begin(self) -> None:
        self.marks = [*self.marks[:1], time.perf_counter()]
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self.marks.append(time.perf_counter())
        super().on_message_complete()

    async def _stream(self, req: h1_server._Request, body: bytes) -> None:
        marks = self.marks
        marks.append(time.perf_counter())
        shared = self.server
        self.server = copy.copy(shared)  # this connection's own view: the upstream is timed
        self.server.upstream = _Timed(shared.upstream, marks)  # type: ignore[assignment]
        try:
            await super()._stream(req, body)
        finally:
            self.server = shared
            if len(marks) == len(PHASES):
                Traced.records.append(marks)


class _Timed:
    """An Upstream whose stream marks the arrival of the head and the first chunk's write."""

    def __init__(self, upstream: Upstream, marks: list[float]) -> None:
        self.upstream = upstream
        self.marks = marks

    async def stream(self, body: bytes) -> _TimedResponse:
        response = await self.upstream.stream(body)
        self.marks.append(time.perf_counter())
        return _TimedResponse(response, self.marks)


class _TimedResponse:
    """What h1_server uses of a Response, with the first chunk's write marked."""

    def __init__(self, response: Response, marks: list[float]) -> None:
        self.response = response
        self.marks = marks
        self.status = response.status
        self.release = response.release
        self.pause = response.pause
        self.resume = response.resume

    async def pipe(self, sink: Callable[[bytes], None]) -> None:
        marks = self.marks

        def first(chunk: bytes) -> None:
            if len(marks) == len(PHASES) - 1:
                marks.append(time.perf_counter())
            sink(chunk)

        await self.response.pipe(first)


async def serve(port: int, upstream: str, out: Path) -> None:
    loop = asyncio.get_running_loop()
    srv = h1_server.Server(Upstream(upstream))
    sock = gateway_server.listen("127.0.0.1", port)
    listener = await loop.create_server(lambda: Traced(srv), sock=sock, backlog=4096)
    async with listener:
        written = 0
        while True:
            await asyncio.sleep(1.0)
            if len(Traced.records) != written:
                written = len(Traced.records)
                out.write_text(json.dumps(Traced.records))


def report(records: list[list[float]]) -> None:
    start = min(r[0] for r in records)

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[int(q * (len(ordered) - 1))] * 1000, 1)

    rows = [("accepted, since the burst's first accept", [r[0] - start for r in records])]
    rows += [
        (f"{PHASES[i]} after {PHASES[i - 1]}", [r[i] - r[i - 1] for r in records])
        for i in range(1, len(PHASES))
    ]
    rows.append(("first chunk, since the burst's first accept", [r[5] - start for r in records]))
    for name, values in rows:
        print(
            f"  {name}: p50 {pct(values, 0.5)} p90 {pct(values, 0.9)} "
            f"p99 {pct(values, 0.99)} max {pct(values, 1.0)} ms"
        )
    accepts = collections.Counter(int((r[0] - start) * 10) for r in records)
    print("  accepts per 100 ms:", sorted(accepts.items()))


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        uvloop.run(serve(int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])))
        return 0
    work = Path(tempfile.mkdtemp(prefix="accept-trace-"))
    up, port = free_port(), free_port()
    out = work / "trace.json"
    upstream = [PY, str(ROOT / "bench/upstream_fast.py"), "--port", str(up)]
    upstream += ["--tokens", "100", "--delay-ms", "20"]
    traced = [PY, __file__, "serve", str(port), f"http://127.0.0.1:{up}", str(out)]
    env = {"PYTHONPATH": str(ROOT / "operator")}
    with (
        process(upstream, f"http://127.0.0.1:{up}/", work / "upstream.log"),
        process(traced, f"http://127.0.0.1:{port}/ready", work / "h1.log", env) as proc,
    ):
        if proc is None:
            print("the traced server did not start; logs in", work, file=sys.stderr)
            return 1
        seen = 0
        for n in range(BURSTS):
            got = stream_run(f"http://127.0.0.1:{port}")
            print(f"burst {n + 1}: " + json.dumps({k: got[k] for k in ("ttft_p99_ms", "seconds")}))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                records = json.loads(out.read_text()) if out.exists() else []
                if len(records) >= seen + got["completed"]:
                    break
                time.sleep(0.2)
            if len(records) > seen:
                report(records[seen:])
            seen = len(records)
            time.sleep(5)  # the pool's idle connections expire: the next burst is cold again
    return 0


if __name__ == "__main__":
    sys.exit(main())
