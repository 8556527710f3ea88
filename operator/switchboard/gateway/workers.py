"""Several gateway processes in one pod: `--workers N|auto`, and one /metrics for all of them.

`auto` is one process per CPU the pod may use: the cgroup CPU limit (v2 `cpu.max`, v1
`cpu.cfs_quota_us`), rounded up, else the CPUs this process may run on (affinity).

The processes share the API port (SO_REUSEPORT: the kernel spreads connections) and each keeps
its own routing table, watcher and counters. The metrics port is served by the first process
only: a scrape asks every worker for its samples over a socketpair made before the fork, and
answers their sum (counters, histograms) or maximum (gauges; `switchboard_config_info` so shows
every hash some worker serves), plus `switchboard_workers`, the number of processes summed. A
worker that does not answer within SCRAPE_TIMEOUT is left out of that scrape (and the gauge
says so), never blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("switchboard.gateway")
SCRAPE_TIMEOUT = 5.0
"""Seconds the first process waits for a worker's samples during a scrape."""
_CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpus(root: Path = _CGROUP) -> float | None:
    """The CPU limit of this process's cgroup in CPUs, or None when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(root: Path = _CGROUP) -> int:
    """CPUs the pod may use: the cgroup limit (rounded up) within the affinity set."""
    affinity = len(os.sched_getaffinity(0))
    limit = cgroup_cpus(root)
    return max(1, min(affinity, math.ceil(limit)) if limit else affinity)


def parse(value: str) -> int:
    """`--workers`: a positive number, or `auto`."""
    if value == "auto":
        return available_cpus()
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"--workers must be a positive number or 'auto', not {value!r}") from None
    if count < 1:
        raise ValueError(f"--workers must be at least 1, not {count}")
    return count


# --- the worker side ---------------------------------------------------------------------------


def answer_scrapes(
    app: web.Application, channel: socket.socket, registry: CollectorRegistry
) -> None:
    """In a forked worker: answer the first process's scrape requests on `channel` with this
    process's samples (a 4-byte length, then the text exposition)."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_answer(channel, registry))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(lifecycle)


async def _answer(channel: socket.socket, registry: CollectorRegistry) -> None:
    reader, writer = await asyncio.open_connection(sock=channel)
    try:
        while await reader.read(1):
            body = generate_latest(registry)
            writer.write(len(body).to_bytes(4, "big") + body)
            await writer.drain()
    finally:
        writer.close()


# --- the first process's side -------------------------------------------------------------------


class Peers:
    """The first process's ends of the workers' channels."""

    def __init__(self, channels: Iterable[socket.socket]) -> None:
        self._channels: list[socket.socket | None] = list(channels)
        self._streams: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._channels)

    async def scrape(self) -> list[bytes]:
        """Every reachable worker's exposition; one scrape at a time."""
        async with self._lock:
            got = await asyncio.gather(*(self._one(n) for n in range(len(self._channels))))
        return [text for text in got if text is not None]

    async def _one(self, n: int) -> bytes | None:
        channel = self._channels[n]
        if channel is None:
            return None
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                if n not in self._streams:
                    self._streams[n] = await asyncio.open_connection(sock=channel)
                reader, writer = self._streams[n]
                writer.write(b"?")
                size = int.from_bytes(await reader.readexactly(4), "big")
                return await reader.readexactly(size)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            # A late answer would be read as the next scrape's: this channel is done (a worker
            # that died or hung; `switchboard_workers` drops by one from now on).
            log.warning(
                "worker %d did not answer a scrape (%s); left out", n + 1, type(exc).__name__
            )
            self._channels[n] = None
            stale = self._streams.pop(n, None)
            if stale is not None:
                stale[1].close()
            else:
                channel.close()
            return None


def merged_metrics_app(registry: CollectorRegistry, peers: Peers) -> web.Application:
    """GET /metrics of the first process: its own samples and every worker's, summed."""
    app = web.Application()

    async def metrics_view(request: web.Request) -> web.Response:
        texts = [generate_latest(registry), *(await peers.scrape())]
        return web.Response(
            body=merge(texts),
            headers={"content-type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    app.router.add_get("/metrics", metrics_view)
    return app


def merge(texts: list[bytes]) -> bytes:
    """Text expositions of several processes -> one: counter, histogram and summary samples
    summed, gauges and `_created` timestamps by max / min, plus `switchboard_workers`."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode()):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            into = values[family.name]
            combine = _combiner(family.type)
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = into.get(key)
                if old is None:
                    into[key] = sample.value
                elif sample.name.endswith("_created"):
                    into[key] = min(old, sample.value)
                else:
                    into[key] = combine(old, sample.value)
    workers = Metric(
        "switchboard_workers", "Gateway processes whose samples this scrape sums.", "gauge"
    )
    workers.add_sample("switchboard_workers", {}, float(len(texts)))
    out = [workers]
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
        out.append(family)
    return generate_latest(_Fixed(out))


def _combiner(kind: str) -> Callable[[float, float], float]:
    return max if kind == "gauge" else _add


def _add(a: float, b: float) -> float:
    return a + b


class _Fixed:
    """A collector that yields given metric families (for generate_latest)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)
