"""Run one fake model server as a process (the demo, the benchmarks, the gateway tests):

    python -m tests.upstreams --shape vllm --port 8000 --model qwen2.5-coder:32b
    python -m tests.upstreams --shape anthropic --port 8001 --api-key sk-ant-x --cached 10
    python -m tests.upstreams --shape tgi --port 8002 --fault status=503

Prints "fake <shape> upstream ready on <url>" once it accepts connections; stops on SIGINT or
SIGTERM. Faults can be changed while it runs: `curl -d '{"status": 500}' URL/_fault`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from tests.upstreams import server


async def _main(args: argparse.Namespace) -> None:
    upstream = server.Upstream(
        shape=args.shape,
        model=args.model,
        cached=args.cached,
        cache_write=args.cache_write,
        fault=server.parse_fault(args.fault) if args.fault else {},
        api_key=args.api_key,
        strict_headers=args.strict_headers,
        host=args.host,
    )
    await upstream.start(args.port)
    print(f"fake {args.shape} upstream ready on {upstream.root_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await upstream.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.upstreams", description=__doc__)
    parser.add_argument("--shape", choices=server.SHAPES, default="vllm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--model", default="fake-model", help="the id /v1/models lists")
    parser.add_argument("--cached", type=int, default=0, help="input tokens reported as cached")
    parser.add_argument(
        "--cache-write", type=int, default=0, help="input tokens reported as cache writes"
    )
    parser.add_argument("--api-key", help="require this key (Bearer, or x-api-key for Anthropic)")
    parser.add_argument(
        "--strict-headers",
        action="store_true",
        help="anthropic: require anthropic-version and a key, as the real API does",
    )
    parser.add_argument("--fault", help="faults for every request, e.g. status=500 or delay=2")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
