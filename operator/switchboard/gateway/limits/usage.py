"""`switchboard usage`: spend per key and budget window, read from the limits store.

The routing config (a file or manifests, as for `switchboard gateway`) says which budgets
exist; the store (Redis with `--limits-redis-url`, or the gateway's `--limits-file`) holds
what they have spent. Every stored window is listed, the current one first.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from switchboard.gateway.limits.gate import LimitsSettings, build_store
from switchboard.gateway.limits.store import Store, StoreDown
from switchboard.routing import config as rc
from switchboard.routing import windows


@dataclass(frozen=True)
class Row:
    config: str
    key: str
    """The key's name, or '*' for a budget shared by all keys of the AccessKeyConfig."""
    budget: int
    window: str
    """The window's local start, e.g. 2026-12-01 (a week starts on Monday)."""
    current: bool
    spent_usd: float
    usd: float
    resets: str
    refuse: bool


def budgets(config: rc.RoutingConfig) -> dict[str, rc.BudgetRule]:
    """Each budget counter once (a shared budget is on every key of its object)."""
    out: dict[str, rc.BudgetRule] = {}
    for grant in config.keys.values():
        for rule in grant.budgets:
            out.setdefault(rule.counter, rule)
    return dict(sorted(out.items()))


async def rows(config: rc.RoutingConfig, store: Store, now: float) -> list[Row]:
    out: list[Row] = []
    for counter, rule in budgets(config).items():
        _, name, owner, _, index = counter.split("/")
        current = windows.calendar(rule.window, rule.time_zone, now)
        stored = await store.scan(f"{counter}@")
        spent = {key.rsplit("@", 1)[1]: value for key, value in stored.items()}
        spent.setdefault(current.label, 0.0)
        for label in sorted(spent, key=lambda w: (w != current.label, w)):
            start = dt.datetime.combine(
                dt.date.fromisoformat(label), dt.time(12), tzinfo=windows.zone(rule.time_zone)
            )
            end = windows.calendar(rule.window, rule.time_zone, start.timestamp()).end
            out.append(
                Row(
                    config=name,
                    key=owner,
                    budget=int(index),
                    window=label,
                    current=label == current.label,
                    spent_usd=round(spent[label], 6),
                    usd=rule.usd,
                    resets=windows.rfc3339(end, rule.time_zone),
                    refuse=rule.refuse,
                )
            )
    return out


def format_table(found: list[Row]) -> str:
    header = ("CONFIG", "KEY", "BUDGET", "WINDOW", "SPENT", "OF", "RESETS")
    lines = [header]
    for r in found:
        lines.append(
            (
                r.config,
                "* (shared)" if r.key == "*" else r.key,
                f"{r.budget}" + ("" if r.refuse else " (report)"),
                r.window + ("" if r.current else " (past)"),
                f"${r.spent_usd:.4f}",
                f"${r.usd:.2f}",
                r.resets,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="routing file (JSON, plain or gzip)")
    source.add_argument("--manifests", type=Path, nargs="+", metavar="PATH")
    parser.add_argument("-n", "--namespace", help="namespace to read from --manifests")
    parser.add_argument(
        "--limits-redis-url", help="the gateways' Redis/Valkey (password: env as for the gateway)"
    )
    parser.add_argument("--limits-file", type=Path, help="the in-process store's file")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    from switchboard.gateway import app as gateway_app

    source = gateway_app.Source(
        config=args.config, manifests=tuple(args.manifests or ()), namespace=args.namespace
    )
    try:
        config = source.load()
    except (rc.ConfigError, OSError) as exc:
        print(f"switchboard usage: {exc}", file=sys.stderr)
        return 2
    try:
        settings = LimitsSettings.from_env(redis_url=args.limits_redis_url, file=args.limits_file)
    except ValueError as exc:
        print(f"switchboard usage: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url and settings.file is None:
        print(
            "switchboard usage: say where the counters are: --limits-redis-url or --limits-file",
            file=sys.stderr,
        )
        return 2

    async def read() -> list[Row]:
        store = build_store(settings)
        try:
            return await rows(config, store, time.time())
        finally:
            await store.close()

    try:
        found = asyncio.run(read())
    except StoreDown as exc:
        where = "--limits-redis-url or SWITCHBOARD_LIMITS_REDIS_URL"
        print(
            f"switchboard usage: the counters cannot be read ({exc}); check {where}",
            file=sys.stderr,
        )
        return 1
    if args.output == "json":
        sys.stdout.write(orjson.dumps([asdict(r) for r in found]).decode() + "\n")
    else:
        print(format_table(found))
    return 0
