"""The relay's cost per upstream chunk, for each stream pair (a script, not a test).

    python bench/relay_chunks.py                      # this checkout
    python bench/relay_chunks.py --ab /path/to/base   # interleaved A/B against another checkout

What the gateway runs per upstream read once a stream is past its hold-back:
`relay.chunk_translator` (a same-dialect pass-through, the translators' fast path, or the SSE
decode and a `feed` per event), on text deltas shaped as a real server writes them (Chat: the
bench upstream's chunk, bench/upstream_fast.py; Messages and Responses: Anthropic's and
OpenAI's event lines, and the same without `event:` lines, as some compatible servers write
them). `1/read`: one event per read (a server that writes each token at once,
the common case); `4/read`: four events per read (reads that coalesced under load). µs per
event: CPU time (the machine is shared), the best of 5 runs of 20,000 events, in a fresh
process. With `--ab`, base
(`--ab DIR`: a checkout whose `operator/` is put first on PYTHONPATH) and this checkout take
turns (A, B, B, A, ...), `--rounds` rounds each, and the medians are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

CHAT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench",'
    b'"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
)
CHAT_HEAD = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
    b"\n\n" + CHAT
)
MESSAGES = (
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok "}}'
    b"\n\n"
)
MESSAGES_HEAD = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":'
    b'"message","role":"assistant","model":"m","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
    b"\n\n" + MESSAGES
)
RESPONSES = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","item_id":"msg_1","output_index":0,'
    b'"content_index":0,"delta":"tok ","logprobs":[],"sequence_number":4}\n\n'
)
RESPONSES_HEAD = (
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1",'
    b'"model":"m","status":"in_progress","output":[]},"sequence_number":0}\n\n' + RESPONSES
)
PAIRS = {  # name: (client, upstream, head, one event)
    "chat <- chat": ("chat", "chat", CHAT_HEAD, CHAT),
    "messages <- chat": ("messages", "chat", CHAT_HEAD, CHAT),
    "responses <- chat": ("responses", "chat", CHAT_HEAD, CHAT),
    "messages <- messages": ("messages", "messages", MESSAGES_HEAD, MESSAGES),
    "responses <- responses": ("responses", "responses", RESPONSES_HEAD, RESPONSES),
    "messages <- messages without event: lines": (
        "messages",
        "messages",
        MESSAGES_HEAD,
        MESSAGES.split(b"\n", 1)[1],
    ),
    "responses <- responses without event: lines": (
        "responses",
        "responses",
        RESPONSES_HEAD,
        RESPONSES.split(b"\n", 1)[1],
    ),
    "chat <- messages": ("chat", "messages", MESSAGES_HEAD, MESSAGES),
    "chat <- responses": ("chat", "responses", RESPONSES_HEAD, RESPONSES),
}
EVENTS = 20_000


def measure() -> dict[str, float]:
    from switchboard.dialects import registry, sse
    from switchboard.dialects.types import Ctx, Dialect
    from switchboard.gateway import relay

    ctx = Ctx("up", "p:up", 256, True, True, "r1", 1)
    results: dict[str, float] = {}
    for name, (client, upstream, head, event) in PAIRS.items():
        pair = registry.get(Dialect(client), Dialect(upstream))
        for per_read in (1, 4):
            read = event * per_read

            def run(
                pair: registry.Pair = pair,
                head: bytes = head,
                read: bytes = read,
                n: int = per_read,
            ) -> None:
                translate = relay.chunk_translator(pair.stream(ctx), sse.Decoder())
                translate(head)
                for _ in range(EVENTS // n):
                    translate(read)

            best = min(timeit.repeat(run, timer=time.process_time, number=1, repeat=5))
            results[f"{name}, {per_read}/read"] = best / EVENTS * 1e6
    return results


def _child(operator: Path | None) -> dict[str, float]:
    env = dict(os.environ)
    if operator is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(operator), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, __file__, "--json"], env=env, check=True, capture_output=True
    ).stdout
    return dict(json.loads(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true", help="one measurement, as JSON")
    parser.add_argument("--ab", type=Path, help="a base checkout to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure()))
        return
    if args.ab is None:
        for name, us in measure().items():
            print(f"{name}: {us:.2f} µs/event")
        return
    base: list[dict[str, float]] = []
    new: list[dict[str, float]] = []
    for i in range(args.rounds):
        order = [(base, args.ab / "operator"), (new, None)]
        for into, operator in order if i % 2 == 0 else order[::-1]:
            into.append(_child(operator))
    print(f"{args.rounds} rounds each, interleaved; median µs per event (base -> this)\n")
    print("| pair (client <- upstream), events per read | base | this | this/base |")
    print("| --- | ---: | ---: | ---: |")
    for key in base[0]:
        a = statistics.median(r[key] for r in base)
        b = statistics.median(r[key] for r in new)
        print(f"| {key} | {a:.2f} | {b:.2f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
