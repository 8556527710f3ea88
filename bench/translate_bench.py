"""Translation cost per request and per stream event, for every pair (a script, not a test).

    python bench/translate_bench.py

Request: `translate_request` on a typical ~1 KB request of each client dialect (three turns,
one tool). Stream: a 100-delta text answer in each upstream dialect (the `text` golden stream
with its first text delta repeated), decoded once up front; µs/event is the whole stream (new
translator, every event, `finish()`) divided by its events, so the fixed cost of the opening
and closing events is spread as it is in a real answer. `fixed` is that fixed cost: a stream
with no deltas at all. timeit, median of 7 repeats. Targets: < 30 µs per request, < 5 µs per
stream event. Last, the SSE decoder's own cost per event, the same streams read 1 KB at a time.
"""

from __future__ import annotations

import json
import platform
import statistics
import timeit
from pathlib import Path
from typing import Any

from switchboard.dialects import registry, sse
from switchboard.dialects.types import Ctx, Dialect

GOLDEN = Path(__file__).resolve().parents[1] / "tests/golden"
CTX = Ctx("up-model", "p:up-model", 256, False, True, "r1", 1)
SCTX = Ctx("up-model", "p:up-model", 256, True, True, "r1", 1)
TEXT = "Please review this function and suggest improvements for readability. " * 6
DELTAS = 100


def request(client: Dialect) -> dict[str, object]:
    tool = json.loads((GOLDEN / f"requests/{client.value}/tools.json").read_text())
    body: dict[str, Any] = json.loads(
        (GOLDEN / f"requests/{client.value}/multi_turn.json").read_text()
    )
    body["tools"] = tool["tools"]
    if client is Dialect.RESPONSES:
        body["input"] = [*body["input"], {"role": "user", "content": TEXT}]
    else:
        body["messages"] = [*body["messages"], {"role": "user", "content": TEXT}]
    return body


def _is_delta(event: sse.Event) -> bool:
    return (
        any(
            marker in event.data
            for marker in (b'"text_delta"', b'"response.output_text.delta"', b'"content":"')
        )
        and b'"role"' not in event.data
    )


def stream(upstream: Dialect, deltas: int) -> list[sse.Event]:
    """The golden text stream with its first text delta repeated `deltas` times."""
    events = sse.Decoder().feed((GOLDEN / f"streams/{upstream.value}/text.sse").read_bytes())
    first = next(i for i, e in enumerate(events) if _is_delta(e))
    rest = [e for e in events[first:] if not _is_delta(e)]
    return events[:first] + [events[first]] * deltas + rest


def per_call(fn: object, number: int) -> float:
    assert callable(fn)
    runs = timeit.repeat(fn, number=number, repeat=7)
    return statistics.median(runs) / number * 1e6


def run_stream(pair: registry.Pair, events: list[sse.Event]) -> None:
    translator = pair.stream(SCTX)
    for event in events:
        translator.feed(event)
    translator.finish()


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}\n")
    print("| client | upstream | request µs (≈1 KB) | stream µs/event | fixed µs/stream |")
    print("| --- | --- | ---: | ---: | ---: |")
    size = 0
    for client in Dialect:
        body = request(client)
        size = max(size, len(json.dumps(body)))
        for upstream in Dialect:
            pair = registry.get(client, upstream)
            req = per_call(lambda pair=pair, body=body: pair.translate_request(body, CTX), 2000)
            long, empty = stream(upstream, DELTAS), stream(upstream, 0)
            ev = per_call(lambda p=pair, e=long: run_stream(p, e), 200) / len(long)
            fixed = per_call(lambda p=pair, e=empty: run_stream(p, e), 2000)
            print(f"| {client.value} | {upstream.value} | {req:.1f} | {ev:.2f} | {fixed:.1f} |")
    print(f"\n(request bodies up to {size} bytes; streams of {DELTAS} text deltas)\n")
    print("| upstream | SSE decode µs/event (1,024-byte reads) |")
    print("| --- | ---: |")
    for upstream in Dialect:
        raw = b"".join(sse.encode(e.event, e.data) for e in stream(upstream, DELTAS))
        reads = [raw[i : i + 1024] for i in range(0, len(raw), 1024)]
        count = len(stream(upstream, DELTAS))
        decode = per_call(lambda r=reads: decode_all(r), 200) / count
        print(f"| {upstream.value} | {decode:.2f} |")


def decode_all(reads: list[bytes]) -> None:
    decoder = sse.Decoder()
    for chunk in reads:
        decoder.feed(chunk)


if __name__ == "__main__":
    main()
