"""build_app(): the aiohttp application, its routes, and the routing table's hot reload.

Stack chosen by measurement (docs/performance.md): aiohttp's own server, and the gateway's
own keep-alive client to the model servers (gateway/upstream.py): aiohttp's client was a fifth
of the CPU, httpx's halved throughput even over an aiohttp transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from switchboard import manifests
from switchboard.dialects import errors as derrors
from switchboard.dialects.types import Dialect
from switchboard.gateway import errors, routes
from switchboard.gateway.accesslog import AccessLog
from switchboard.gateway.limits import gate
from switchboard.gateway.metrics import Metrics
from switchboard.gateway.proxy import Proxy
from switchboard.gateway.table import Table
from switchboard.gateway.tracing import Tracing
from switchboard.gateway.upstream import Pool, Settings
from switchboard.routing import config as rc

log = logging.getLogger("switchboard.gateway")
PROXY = web.AppKey("proxy", Proxy)
METRICS = web.AppKey("metrics", Metrics)


_Watched = manifests.Watched  # Source.manifests shadows the module inside the class


@dataclass(frozen=True)
class Source:
    """Where the routing config comes from: a rendered file, or manifests compiled here.

    In manifests mode the files are read through one `manifests.Watched`, so a file or object
    whose new version is refused keeps its last good version (see `read()`)."""

    config: Path | None = None
    manifests: tuple[Path, ...] = ()
    namespace: str | None = None
    _watched: _Watched | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.config is None:
            watched = manifests.Watched(self.manifests, self.namespace or "default")
            object.__setattr__(self, "_watched", watched)

    def watched(self) -> list[Path]:
        return [self.config] if self.config else list(self.manifests)

    def load(self) -> rc.RoutingConfig:
        return self.read()[0]

    def read(self) -> tuple[rc.RoutingConfig, list[str]]:
        """The config to serve, and one line per file or object refused (kept at its last good
        version). Raises ConfigError (or OSError) when nothing can be served."""
        if self._watched is None:
            assert self.config is not None
            return rc.load(self.config.read_bytes()), []
        reading = self._watched.read()
        for line in reading.loaded.errors:
            log.warning("manifest problem: %s", line)
        for problem in reading.result.problems:
            log.warning("%s: %s", problem.severity.value, problem)
        configs = reading.result.configs
        if self.namespace is not None:
            if self.namespace not in configs:
                raise rc.ConfigError(f"no routing config for namespace {self.namespace!r}")
            return configs[self.namespace], reading.refused
        if len(configs) != 1:
            raise rc.ConfigError(
                f"the manifests hold {len(configs)} namespaces ({', '.join(sorted(configs))}); "
                "choose one with --namespace"
            )
        return next(iter(configs.values())), reading.refused


@dataclass
class ReloadState:
    """What /readyz?verbose shows: the last reload and what the served table leaves out."""

    result: str = "none"
    """ok, unchanged, partial (served, but some files or objects kept their last version),
    failed (nothing changed)."""
    at: float = 0.0
    problems: list[str] = field(default_factory=list)
    ok: int = 0
    failed: int = 0

    def detail(self, table: Table | None) -> dict[str, object]:
        out: dict[str, object] = {
            "status": "ok" if table is not None else "no routing config loaded",
            "hash": table.hash if table is not None else None,
            "namespace": table.config.namespace if table is not None else None,
            "refused_providers": dict(sorted(table.refused.items())) if table else {},
            "last_reload": {
                "result": self.result,
                "at": _utc(self.at) if self.at else None,
                "problems": self.problems,
            },
            "reloads": {"ok": self.ok, "failed": self.failed},
        }
        return out


RELOADS = web.AppKey("reloads", ReloadState)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _build(source: Source) -> tuple[Table, list[str]]:
    """Parse, validate and index a config: pure CPU and file reads, run off the event loop."""
    config, refused = source.read()
    return Table(config), refused


async def reload(app: web.Application, source: Source) -> bool:
    """Load, validate and swap in a new table. A bad config is refused; the old one serves.

    In manifests mode a file or object that is refused keeps its last good version while the
    rest of the edit is served; the reload still counts as failed and /readyz?verbose names it.
    A provider the table cannot render is left out (`Table.refused`), logged on every reload
    and counted in `switchboard_config_refused_providers`. The work runs in a thread so that a
    big manifest set does not stall requests; the swap is one reference assignment on the loop:
    requests in flight keep the table they started on.
    """
    proxy, metrics, state = app[PROXY], app[METRICS], app[RELOADS]
    state.at = time.time()
    try:
        table, refused = await asyncio.to_thread(_build, source)
    except (rc.ConfigError, OSError, ValueError) as exc:
        metrics.reloads.labels("failed").inc()
        metrics.config_ok.set(0)
        state.result, state.problems, state.failed = "failed", [str(exc)], state.failed + 1
        log.error("routing config refused, keeping the last good one: %s", exc)
        return False
    except Exception as exc:  # a compiler bug must not stop the watcher or the old table
        metrics.reloads.labels("failed").inc()
        metrics.config_ok.set(0)
        state.result, state.problems = "failed", [f"{type(exc).__name__}: {exc}"]
        state.failed += 1
        log.error(
            "routing config refused (%s), keeping the last good one: %s", type(exc).__name__, exc
        )
        return False
    for line in refused:
        log.error("manifest refused, its last good version is kept: %s", line)
    for name, why in sorted(table.refused.items()):
        log.error("provider %s left out of the routing table: %s", name, why)
    metrics.refused_providers.set(len(table.refused))
    state.problems = list(refused)
    if refused:
        metrics.reloads.labels("failed").inc()
        state.result, state.failed = "partial", state.failed + 1
    metrics.config_ok.set(0 if refused else 1)
    if proxy.table is not None and proxy.table.hash == table.hash:
        state.result = state.result if refused else "unchanged"
        return True
    proxy.table = table
    if not refused:
        metrics.reloads.labels("ok").inc()
        state.result, state.ok = "ok", state.ok + 1
    config = table.config
    metrics.served(table.hash, config.namespace)
    log.info(
        "serving routing config %s (namespace %s: %d providers, %d agents, %d keys)",
        table.hash[:12],
        config.namespace,
        len(config.providers) - len(table.refused),
        len(config.agents),
        len(config.keys),
    )
    return True


Stamp = list[tuple[str, int, int, int]]


def stamp(source: Source) -> Stamp:
    """What the watcher compares: path, mtime (ns), size and inode of every watched file.

    `stat()` follows symlinks, so an atomic rename over the file, a Kubernetes volume's
    `..data` symlink swap and an in-place rewrite all change the stamp; a file added to or
    removed from a manifest directory changes the list.
    """
    out: Stamp = []
    for path in source.watched():
        files = manifests.files_in([path]) if path.is_dir() else [path]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((str(f), st.st_mtime_ns, st.st_size, st.st_ino))
    return out


async def _watch(app: web.Application, source: Source, poll: float, last: Stamp) -> None:
    """Reload when the stamp of the watched files changes (a stat poll, see docs/gateway.md)."""
    while True:
        await asyncio.sleep(poll)
        try:
            now = stamp(source)
        except OSError as exc:  # a directory vanished mid-walk: try again next tick
            log.warning("cannot read the watched paths: %s", exc)
            continue
        if now != last:
            last = now
            await reload(app, source)


def build_metrics_app(metrics: Metrics) -> web.Application:
    """GET /metrics, served on its own port (`--metrics-port`): the chart gives it to
    Prometheus, never to the client Service."""
    app = web.Application()

    async def metrics_view(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics_view)
    return app


def build_app(
    source: Source,
    *,
    max_body_bytes: int = 10 * 1024 * 1024,
    chain_timeout: float = 600.0,
    hold_bytes: int = 64 * 1024,
    poll_seconds: float = 0.25,
    access_log: bool = True,
    log_stream: IO[bytes] | None = None,
    upstream: Settings | None = None,
    limits: gate.LimitsSettings | None = None,
) -> web.Application:
    """The gateway application. `log_stream` receives the access log (stdout by default);
    `upstream`: the upstream client's limits (gateway/upstream.py)."""
    app = web.Application(client_max_size=max_body_bytes)
    metrics = Metrics()
    app[METRICS] = metrics
    app[RELOADS] = ReloadState()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        pool = Pool(upstream)
        log_writer = AccessLog(log_stream)
        log_writer.enabled = access_log
        limiter = gate.build(limits or gate.LimitsSettings(), metrics)
        # After a --workers fork: each process has its own exporter thread.
        tracing = Tracing.from_env(os.environ)
        app[PROXY] = Proxy(
            pool,
            metrics,
            log_writer,
            max_body_bytes=max_body_bytes,
            chain_timeout=chain_timeout,
            hold_bytes=hold_bytes,
            limiter=limiter,
            tracing=tracing,
        )
        seen = stamp(source)  # before the load: a change during it is reloaded next tick
        await reload(app, source)
        watcher = asyncio.create_task(_watch(app, source, poll_seconds, seen))
        yield
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        log_writer.flush()
        await pool.close()
        await limiter.store.close()  # the in-process store saves its file here
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)

    app.cleanup_ctx.append(lifecycle)

    def surface(dialect: Dialect) -> Callable[[web.Request], object]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await request.app[PROXY].handle(request, dialect)

        return handler

    async def models(request: web.Request) -> web.Response:
        return await routes.guarded(Dialect.CHAT, request.app[PROXY], request, routes.models)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        table = request.app[PROXY].table
        if "verbose" in request.query:  # JSON detail: last reload, refused parts
            body = orjson.dumps(request.app[RELOADS].detail(table), option=orjson.OPT_INDENT_2)
            return web.Response(
                status=503 if table is None else 200, body=body, content_type="application/json"
            )
        if table is None:
            return web.Response(status=503, text="no routing config loaded")
        return web.Response(text=f"ok {table.hash}")

    app.router.add_post("/v1/chat/completions", surface(Dialect.CHAT))  # type: ignore[arg-type]
    app.router.add_post("/v1/responses", surface(Dialect.RESPONSES))  # type: ignore[arg-type]
    app.router.add_post("/v1/messages", surface(Dialect.MESSAGES))  # type: ignore[arg-type]

    async def model(request: web.Request) -> web.Response:
        return await routes.guarded(Dialect.CHAT, request.app[PROXY], request, routes.model)

    async def count_tokens(request: web.Request) -> web.Response:
        return await routes.guarded(
            Dialect.MESSAGES, request.app[PROXY], request, routes.count_tokens
        )

    async def unknown(request: web.Request) -> web.Response:
        dialect = Dialect.MESSAGES if request.path.startswith("/v1/messages") else Dialect.CHAT
        body = derrors.render_error(
            dialect,
            404,
            f"no route {errors.clip(request.method, 16)} {errors.clip(request.path)}; "
            "the gateway serves POST "
            "/v1/chat/completions, /v1/responses, /v1/messages, /v1/messages/count_tokens and "
            "GET /v1/models",
        )
        return web.Response(status=404, body=body, content_type="application/json")

    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model:.+}", model)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", healthz)  # GET and HEAD: clients probe the base URL
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/{tail:.*}", unknown)
    return app
