"""Translation cost per request and per stream event, for every pair (a script, not a test).

    python bench/translate_bench.py

Times `translate_request` on a typical ~1 KB request of each client dialect, and `feed` per
upstream stream event, with timeit (best of 5 medians). Targets: < 30 µs per request,
< 5 µs per stream event.
"""

from __future__ import annotations

import json
import statistics
import timeit
from pathlib import Path

from switchboard.dialects import registry, sse
from switchboard.dialects.types import Ctx, Dialect

GOLDEN = Path(__file__).resolve().parents[1] / "tests/golden"
CTX = Ctx("up-model", "p:up-model", 256, False, True, "r1", 1)
SCTX = Ctx("up-model", "p:up-model", 256, True, True, "r1", 1)
TEXT = "Please review this function and suggest improvements for readability. " * 6


def request(client: Dialect) -> dict[str, object]:
    tool = json.loads((GOLDEN / f"requests/{client.value}/tools.json").read_text())
    body = json.loads((GOLDEN / f"requests/{client.value}/multi_turn.json").read_text())
    body["tools"] = tool["tools"]
    if client is Dialect.RESPONSES:
        body["input"] = [*body["input"], {"role": "user", "content": TEXT}]
    else:
        body["messages"] = [*body["messages"], {"role": "user", "content": TEXT}]
    return body


def per_call(fn: object, number: int) -> float:
    assert callable(fn)
    runs = timeit.repeat(fn, number=number, repeat=5)
    return statistics.median(runs) / number * 1e6


def main() -> None:
    print("| client | upstream | request µs (≈1 KB) | stream µs/event |")
    print("| --- | --- | ---: | ---: |")
    for client in Dialect:
        body = request(client)
        size = len(json.dumps(body))
        for upstream in Dialect:
            pair = registry.get(client, upstream)
            req = per_call(lambda pair=pair, body=body: pair.translate_request(body, CTX), 2000)
            raw = (GOLDEN / f"streams/{upstream.value}/text.sse").read_bytes()
            events = sse.Decoder().feed(raw)

            def stream(pair: registry.Pair = pair, events: list[sse.Event] = events) -> None:
                t = pair.stream(SCTX)
                for e in events:
                    t.feed(e)
                t.finish()

            ev = per_call(stream, 500) / len(events)
            print(f"| {client.value} | {upstream.value} | {req:.1f} | {ev:.2f} |")
    print(f"\n(request bodies about {size} bytes; stream: the `text` golden stream)")


if __name__ == "__main__":
    main()
