"""`python -m tests.upstreams --shape vllm --port 18000`: run one fake model server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tests.upstreams import server


async def _main(args: argparse.Namespace) -> None:
    upstream = server.Upstream(
        shape=args.shape,
        model=args.model,
        cached=args.cached,
        cache_write=args.cache_write,
        fault=server.parse_fault(args.fault) if args.fault else {},
    )
    await upstream.start(args.port)
    print(f"fake {args.shape} upstream ready on {upstream.root_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await upstream.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.upstreams")
    parser.add_argument("--shape", choices=server.SHAPES, default="vllm")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--cached", type=int, default=0, help="input tokens reported as cached")
    parser.add_argument(
        "--cache-write", type=int, default=0, help="input tokens reported as cache writes"
    )
    parser.add_argument("--fault", help="e.g. status=500 or delay=2")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
