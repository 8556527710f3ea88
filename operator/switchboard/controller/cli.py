"""`switchboard operator`: watch the three kinds and their Secrets, compile, publish, report."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import socket
import sys

import kopf

from switchboard.controller import (
    budgets,
    handlers,  # noqa: F401  (registers the handlers)
    metrics,
    peering,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: only for a single replica (tests, local runs)",
    )
    parser.add_argument(
        "--peering", default="switchboard", help="KopfPeering name for leader election"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority of this replica (default: derived from the host name, so that "
        "replicas of one Deployment differ; the highest is active)",
    )
    parser.add_argument("--debounce", type=float, default=0.3, help="seconds to batch changes")
    parser.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8081/healthz")
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("SWITCHBOARD_OPERATOR_METRICS_PORT", metrics.DEFAULT_PORT)),
        help="port of GET /metrics (Prometheus); 0 turns it off "
        "(default: $SWITCHBOARD_OPERATOR_METRICS_PORT, else %(default)s)",
    )
    parser.add_argument(
        "--metrics-host", default="0.0.0.0", help="address of /metrics (default: %(default)s)"
    )
    parser.add_argument(
        "--limits-redis-url",
        default=None,
        help="the Redis/Valkey the gateways count limits in (redis:// or rediss://; password "
        "and CA from SWITCHBOARD_LIMITS_REDIS_PASSWORD / _CA_FILE): budget spend goes into "
        "AccessKeyConfig status; default: SWITCHBOARD_LIMITS_REDIS_URL, else status says "
        "the spend is unknown (in-process store)",
    )
    parser.add_argument(
        "--budget-status-interval",
        type=float,
        default=budgets.DEFAULT_INTERVAL,
        help="seconds between two reads of budget spend into status (default: %(default)s)",
    )


def _priority(args: argparse.Namespace) -> int:
    """Replicas with equal priorities would all freeze, so derive a distinct one per pod."""
    if args.priority is not None:
        return int(args.priority)
    digest = hashlib.sha256(socket.gethostname().encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % 1_000_000


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per event is noise
    priority = _priority(args)
    identity = peering.own_identity()
    restart = asyncio.Event()  # set when an outranked replica must start afresh (peering.py)
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=args.standalone,
            peering_name=None if args.standalone else args.peering,
            priority=priority,
            identity=identity,  # type: ignore[arg-type]  # kopf: NewType of str, not exported
            liveness_endpoint=args.liveness,
            stop_flag=restart,
            memo=kopf.Memo(
                restart=restart,
                debounce=args.debounce,
                metrics_port=args.metrics_port,
                metrics_host=args.metrics_host,
                peering=peering.Peering(
                    None if args.standalone else args.peering,
                    tuple(args.namespace),
                    identity,
                    priority,
                ),
                limits=budgets.StoreSettings.from_env(
                    args.limits_redis_url, args.budget_status_interval
                ),
            ),
        )
    )
    if restart.is_set():
        # the same command line (never logged: a store URL may carry a password)
        os.execv(sys.executable, [sys.executable, "-m", "switchboard.cli", *sys.argv[1:]])
    return 0
