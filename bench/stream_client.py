"""Open N streaming requests and measure time to first token and completion.

    python bench/stream_client.py URL --streams 1000 [--key K --model M --surface chat]
                                      [--rate 200 --tokens 250]

Without --rate all N start at once (a burst); with it they start --rate a second, evenly
spaced (spread arrivals). --tokens asks the bench upstream for that many tokens per stream
(Chat `metadata`, see bench/upstream_fast.py). Prints one JSON object: ttft_p50_ms,
ttft_p99_ms, completed, dropped, tokens, seconds, peak_open. A stream counts as dropped unless
it ends with its terminal event ([DONE] / message_stop). bench/streamgen is the Go equivalent
that `make bench` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
import uvloop


async def one(
    session: aiohttp.ClientSession, args: argparse.Namespace, out: dict[str, list[float]]
) -> None:
    if args.surface == "messages":
        path, body, done = (
            "/v1/messages",
            {
                "model": args.model,
                "max_tokens": 200,
                "stream": True,
                "messages": [{"role": "user", "content": "go"}],
            },
            b"message_stop",
        )
    else:
        path, body, done = (
            "/v1/chat/completions",
            {"model": args.model, "stream": True, "messages": [{"role": "user", "content": "go"}]},
            b"[DONE]",
        )
    if args.tokens:
        body["metadata"] = {"bench_tokens": str(args.tokens)}
    out["open"][0] += 1
    out["open"][1] = max(out["open"])
    try:
        await _one(session, args, out, path=path, body=body, done=done)
    finally:
        out["open"][0] -= 1


async def _one(
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    out: dict[str, list[float]],
    *,
    path: str,
    body: dict[str, object],
    done: bytes,
) -> None:
    start = time.perf_counter()
    first = None
    tokens = 0
    tail = b""
    try:
        async with session.post(
            args.url + path, json=body, headers={"authorization": f"Bearer {args.key}"}
        ) as response:
            if response.status != 200:
                out["dropped"].append(1)
                return
            async for chunk in response.content.iter_any():
                if first is None:
                    first = time.perf_counter() - start
                tokens += chunk.count(b"tok")
                tail = (tail + chunk)[-64:]
    except (aiohttp.ClientError, TimeoutError):
        out["dropped"].append(1)
        return
    if first is None or done not in tail:
        out["dropped"].append(1)
        return
    out["ttft"].append(first)
    out["tokens"].append(tokens)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def main(args: argparse.Namespace) -> None:
    out: dict[str, list[float]] = {"ttft": [], "dropped": [], "tokens": [], "open": [0, 0]}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        for i in range(args.streams):
            if args.rate:  # evenly spaced from the start, so that late wake-ups do not drift
                await asyncio.sleep(max(0.0, started + i / args.rate - time.perf_counter()))
            tasks.append(loop.create_task(one(session, args, out)))
        await asyncio.gather(*tasks)
    print(
        json.dumps(
            {
                "ttft_p50_ms": percentile(out["ttft"], 0.5) * 1000,
                "ttft_p99_ms": percentile(out["ttft"], 0.99) * 1000,
                "completed": len(out["ttft"]),
                "dropped": len(out["dropped"]),
                "tokens": sum(out["tokens"]),
                "seconds": time.perf_counter() - started,
                "peak_open": out["open"][1],
                "rate": args.rate,
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--key", default="sk-bench-0123456789abcdef")
    parser.add_argument("--model", default="bench")
    parser.add_argument("--surface", choices=["chat", "messages"], default="chat")
    parser.add_argument("--rate", type=float, default=0.0, help="new streams a second (0: all)")
    parser.add_argument("--tokens", type=int, default=0, help="tokens per stream (0: upstream's)")
    uvloop.run(main(parser.parse_args()))
