"""`switchboard gateway`: serve the routing config of a file, or of manifests compiled here."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys
import traceback
from pathlib import Path

import orjson

from switchboard.gateway import app as gateway_app
from switchboard.gateway import server, tracing, upstream, workers
from switchboard.gateway.limits import gate
from switchboard.routing import config as rc

METRICS_PORT_ENV = "SWITCHBOARD_METRICS_PORT"


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Request lines carry their fields; never a key or token."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # Type and traceback, so that a 500 can be diagnosed from the log line alone.
            # Tracebacks hold code and exception messages, never local variables; the
            # gateway's exceptions never carry keys (docs/gateway.md, "Errors").
            line["exc_type"] = record.exc_info[0].__name__
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(line).decode()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="routing file (JSON, plain or gzip)")
    source.add_argument(
        "--manifests",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="manifest files or directories, compiled here (no cluster needed)",
    )
    parser.add_argument("-n", "--namespace", help="namespace to serve from --manifests")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--workers",
        default="1",
        help="processes sharing the port (SO_REUSEPORT), or 'auto': one per CPU of the cgroup "
        "limit (else of the affinity set); /metrics sums them all",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="port of GET /metrics, apart from the API port so that the client Service does "
        f"not expose it; 0 turns it off (default 9090, or ${METRICS_PORT_ENV})",
    )
    parser.add_argument("--metrics-host", help="address of the metrics port (default: --host)")
    parser.add_argument(
        "--max-connections",
        type=int,
        default=server.Limits.max_connections,
        help="client connections open at once per process; past it a connection gets 503",
    )
    parser.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument(
        "--stream-hold-bytes",
        type=int,
        default=64 * 1024,
        help="a stream is held back from the client until its first content event or this "
        "many upstream bytes (or the provider's first-token timeout), so that an error event "
        "before it moves to the next candidate (default 65536)",
    )
    parser.add_argument(
        "--chain-timeout",
        type=float,
        default=600.0,
        help="seconds for a whole fallback chain: no candidate is tried past it (default 600)",
    )
    limits = upstream.Settings()
    parser.add_argument(
        "--upstream-max-header-bytes",
        type=int,
        default=limits.max_header_bytes,
        help="largest upstream response head (interim 1xx and trailers included); more is a 502",
    )
    parser.add_argument(
        "--upstream-max-body-bytes",
        type=int,
        default=limits.max_body_bytes,
        help="largest non-stream upstream response body; more is a 502",
    )
    parser.add_argument(
        "--upstream-max-connections-per-host",
        type=int,
        default=limits.max_connections_per_host,
        help="open connections per upstream host; further requests queue for its connect timeout",
    )
    parser.add_argument(
        "--upstream-idle-seconds",
        type=float,
        default=limits.idle_seconds,
        help="an idle upstream connection older than this is not reused (default below "
        "uvicorn's 5 s keep-alive; raise it for upstreams that keep connections longer)",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true", help="no JSON line per request")
    group = parser.add_argument_group("limits and budgets (docs/limits.md)")
    group.add_argument(
        "--limits-redis-url",
        help="Redis/Valkey shared by the replicas (redis:// or rediss://); password in "
        "$SWITCHBOARD_LIMITS_REDIS_PASSWORD. Default: counters in this process",
    )
    group.add_argument(
        "--limits-file",
        type=Path,
        help="in-process counters are kept in this file across restarts (put it on a volume)",
    )
    group.add_argument(
        "--limits-on-store-down",
        choices=("open", "closed"),
        help="when Redis is down: count in this process (open, default) or answer 503 (closed)",
    )
    group.add_argument(
        "--limits-inflight-lapse",
        metavar="SECONDS",
        help="Redis: seconds after its last heartbeat at which a replica that stopped answering "
        "no longer holds in-flight slots (default 10, or $SWITCHBOARD_LIMITS_INFLIGHT_LAPSE)",
    )


def _serve(
    args: argparse.Namespace,
    sock: socket.socket,
    metrics_sock: socket.socket | None,
    *,
    channel: socket.socket | None = None,
    peers: workers.Peers | None = None,
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    source = gateway_app.Source(
        config=args.config, manifests=tuple(args.manifests or ()), namespace=args.namespace
    )
    limits = upstream.Settings(
        max_header_bytes=args.upstream_max_header_bytes,
        max_body_bytes=args.upstream_max_body_bytes,
        max_connections_per_host=args.upstream_max_connections_per_host,
        idle_seconds=args.upstream_idle_seconds,
    )
    app = gateway_app.build_app(
        source,
        max_body_bytes=args.max_body_bytes,
        chain_timeout=args.chain_timeout,
        hold_bytes=args.stream_hold_bytes,
        access_log=not args.no_access_log,
        upstream=limits,
        limits=_limits(args),
    )
    metrics = app[gateway_app.METRICS]
    if channel is not None:  # a forked worker: the first process serves /metrics for it
        workers.answer_scrapes(app, channel, metrics.registry)
    metrics_app = None
    if metrics_sock is not None:
        metrics_app = (
            workers.merged_metrics_app(metrics.registry, peers)
            if peers
            else gateway_app.build_metrics_app(metrics)
        )
    server.run(
        app,
        sock,
        metrics_app=metrics_app,
        metrics_sock=metrics_sock,
        limits=server.Limits(max_connections=args.max_connections),
        on_refused=metrics.connections_refused.inc,
    )


def _limits(args: argparse.Namespace) -> gate.LimitsSettings:
    return gate.LimitsSettings.from_env(
        redis_url=args.limits_redis_url,
        file=args.limits_file,
        on_store_down=args.limits_on_store_down,
        inflight_lapse=args.limits_inflight_lapse,
    )


def _metrics_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(
            f"{METRICS_PORT_ENV}={text!r} is not a port number; set 0-65535 (0: no metrics port)"
        )
    return port


def _die_with_parent() -> None:
    """A worker gets SIGTERM when the first process dies, even by SIGKILL (Linux prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    log = logging.getLogger("switchboard.gateway")
    if args.metrics_port is None:
        try:
            args.metrics_port = _metrics_port(os.environ.get(METRICS_PORT_ENV, "9090"))
        except ValueError as exc:
            log.error("%s", exc)
            return 2
    try:
        count = workers.parse(str(args.workers))
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    try:
        tracing.wanted(os.environ)
    except tracing.TracingError as exc:
        log.error("cannot export traces: %s", exc)
        return 2
    if args.manifests:
        # Manifests that cannot be served as given (several namespaces and no --namespace, a
        # namespace that is not there, a missing path) are a usage error: say so and stop.
        # Later edits that break them are refused like a bad routing file.
        source = gateway_app.Source(manifests=tuple(args.manifests), namespace=args.namespace)
        try:
            source.load()
        except (rc.ConfigError, OSError) as exc:
            log.error("cannot serve these manifests: %s", exc)
            return 2
    try:
        limits = _limits(args)
    except ValueError as exc:
        log.error("limits: %s", exc)
        return 2
    if count > 1 and not limits.redis_url:
        log.warning(
            "limits: %d workers count limits and budgets each on their own; set "
            "--limits-redis-url to share them",
            count,
        )
    try:
        sock = server.listen(args.host, args.port)
        metrics_sock = (
            server.listen(args.metrics_host or args.host, args.metrics_port, backlog=128)
            if args.metrics_port
            else None
        )
    except OSError as exc:
        log.error(
            "cannot listen: %s (--port %d, --metrics-port %d)", exc, args.port, args.metrics_port
        )
        return 2
    children = []
    mine: list[socket.socket] = []  # the first process's ends of the workers' channels
    for _ in range(count - 1):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            for other in (*mine, ours):
                other.close()
            if metrics_sock is not None:
                metrics_sock.close()  # only the first process serves /metrics
            code = 0
            try:
                _serve(args, sock, None, channel=theirs)
            except BaseException:
                code = 1
            os._exit(code)
        theirs.close()
        mine.append(ours)
        children.append(pid)
    log.info(
        "listening on %s:%d with %d worker(s), metrics on %s",
        args.host,
        args.port,
        count,
        f"port {args.metrics_port}" if metrics_sock else "no port (--metrics-port 0)",
    )
    try:
        _serve(args, sock, metrics_sock, peers=workers.Peers(mine) if mine else None)
    finally:
        for pid in children:
            try:
                os.kill(pid, 15)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return 0
