"""`switchboard gateway`: serve the routing config of a file, or of manifests compiled here."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import orjson
from aiohttp import web

from switchboard.gateway import app as gateway_app
from switchboard.routing import config as rc

BACKLOG = 4096
"""Listen queue for connection bursts (1,000 streams opening at once); Linux caps it at
net.core.somaxconn (4096 by default since 5.4)."""


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
        type=int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT); each keeps its own metrics",
    )
    parser.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true", help="no JSON line per request")


def _serve(args: argparse.Namespace, sock: socket.socket) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    source = gateway_app.Source(
        config=args.config, manifests=tuple(args.manifests or ()), namespace=args.namespace
    )
    app = gateway_app.build_app(
        source, max_body_bytes=args.max_body_bytes, access_log=not args.no_access_log
    )
    # backlog: run_app listens again on the socket, with its own default of 128 unless told;
    # 1,000 clients connecting at once then wait for SYN retransmits (1 s, 3 s).
    web.run_app(app, sock=sock, backlog=BACKLOG, access_log=None, print=None, handle_signals=True)


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
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((args.host, args.port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    children = []
    for _ in range(max(args.workers, 1) - 1):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            code = 0
            try:
                _serve(args, sock)
            except BaseException:
                code = 1
            os._exit(code)
        children.append(pid)
    log.info("listening on %s:%d with %d worker(s)", args.host, args.port, max(args.workers, 1))
    try:
        _serve(args, sock)
    finally:
        for pid in children:
            try:
                os.kill(pid, 15)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return 0
