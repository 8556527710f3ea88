"""`switchboard config-sync`: the gateway's sidecar. One Secret in, one file out.

Watches the routing Secret of its namespace (get/list/watch on that one name, with a field
selector), validates each version with `routing.config.load`, and writes the routing file
atomically (a temporary file in the same directory, then rename), so the gateway never reads a
half-written file. When the API is unreachable or the Secret is invalid, the last good file
stays; the watch is retried with exponential backoff. In a pod it uses the service account;
elsewhere `--kubeconfig` or the usual kubeconfig ($KUBECONFIG, ~/.kube/config).
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch

from switchboard.controller import publish
from switchboard.routing import config as rc

log = logging.getLogger("switchboard.config_sync")
WATCH_SECONDS = 300


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE"),
        help="namespace of the routing Secret (default: $POD_NAMESPACE)",
    )
    parser.add_argument("--secret", default=publish.SECRET_NAME)
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: in-cluster service account, else $KUBECONFIG)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the routing file to write")
    parser.add_argument("--max-backoff", type=float, default=30.0)
    parser.add_argument("--log-level", default="info")


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Syncer:
    def __init__(self, api: k8s.CoreV1Api, namespace: str, secret: str, out: Path) -> None:
        self.api = api
        self.namespace = namespace
        self.secret = secret
        self.out = out
        self.hash: str | None = None
        if out.exists():
            try:
                self.hash = rc.load(out.read_bytes()).hash
            except rc.ConfigError:
                self.hash = None

    def apply(self, secret: Any) -> None:
        """Write the routing file from one version of the Secret, if it is valid and new."""
        data = (secret.data or {}) if secret is not None else {}
        encoded = data.get(publish.SECRET_KEY)
        if encoded is None:
            log.error(
                "Secret %s/%s has no key %s; keeping the last good file",
                self.namespace,
                self.secret,
                publish.SECRET_KEY,
            )
            return
        try:
            raw = base64.b64decode(encoded)
            config = rc.load(raw)
        except (ValueError, rc.ConfigError) as exc:
            log.error(
                "Secret %s/%s is not a valid routing config (%s); keeping the last good file",
                self.namespace,
                self.secret,
                exc,
            )
            return
        if config.hash == self.hash:
            return
        write_atomically(self.out, rc.to_json(config))
        log.info(
            "routing config %s -> %s written to %s",
            (self.hash or "none")[:12],
            config.hash[:12],
            self.out,
        )
        self.hash = config.hash

    def run(self, max_backoff: float) -> None:
        backoff = 0.5
        selector = f"metadata.name={self.secret}"
        while True:
            try:
                listing = self.api.list_namespaced_secret(
                    self.namespace, field_selector=selector, _request_timeout=(10, 30)
                )
                for item in listing.items:
                    self.apply(item)
                version = listing.metadata.resource_version if listing.metadata else None
                backoff = 0.5
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self.api.list_namespaced_secret,
                    self.namespace,
                    field_selector=selector,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    # a silent network drop must not hang the watch past the server's timeout
                    _request_timeout=(10, WATCH_SECONDS + 30),
                )
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.apply(event["object"])
                    elif event["type"] == "DELETED":
                        log.warning(
                            "Secret %s/%s was deleted; keeping the last good file",
                            self.namespace,
                            self.secret,
                        )
            except Exception as exc:  # the API may be down: keep the file, retry
                log.warning(
                    "watching Secret %s/%s failed (%s); retrying in %.1f s",
                    self.namespace,
                    self.secret,
                    type(exc).__name__,
                    backoff,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.namespace:
        log.error("no namespace: pass --namespace or set POD_NAMESPACE")
        return 2
    try:
        if args.kubeconfig:
            k8s_config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
        else:
            try:
                k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            except k8s_config.ConfigException:
                k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as exc:
        log.error("no Kubernetes credentials: %s", exc)
        return 2
    Syncer(k8s.CoreV1Api(), args.namespace, args.secret, args.out).run(args.max_backoff)
    return 0
