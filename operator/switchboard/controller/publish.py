"""Writes a namespace's RoutingConfig to its Secret `switchboard-routing`.

The Secret holds one key, `routing.json.gz` (`routing.config.to_secret_bytes`: gzip JSON,
deterministic), the content hash as the annotation `switchboard.dev/config-hash`, and the
labels `app.kubernetes.io/managed-by: switchboard` and `switchboard.dev/secret: routing` (so the
operator's label-selected Secret watch sees it; the value `routing` is never read as an input).
It is written only when the live Secret does not already hold exactly these bytes (compared by
annotation and by a digest of the data, so a Secret edited or corrupted by hand is rewritten).
Blocking calls: run them in a thread.

A namespace whose objects are all deleted gets an empty config written over the last one (its
keys must stop working), but no Secret is created just to hold an empty config, so a namespace
being deleted is not written to.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from switchboard.routing import compiler
from switchboard.routing import config as rc

log = logging.getLogger("switchboard.operator")

SECRET_NAME = "switchboard-routing"
SECRET_KEY = "routing.json.gz"
HASH_ANNOTATION = "switchboard.dev/config-hash"
LABELS = {
    "app.kubernetes.io/managed-by": "switchboard",
    "app.kubernetes.io/part-of": "switchboard",
    # In the operator's one label-selected Secret watch, never an input (compiler.ROUTING_SECRET)
    compiler.SECRET_LABEL: "routing",
}


@dataclass(frozen=True)
class Published:
    """What the operator last saw in (or wrote to) a namespace's routing Secret."""

    hash: str
    """The config's content hash (the annotation)."""
    digest: str
    """SHA-256 of the base64 `routing.json.gz` value as stored."""


class Outcome(enum.Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"  # empty config and no Secret, or the namespace is being deleted


def digest(data: Mapping[str, str] | None) -> str | None:
    """Digest of the Secret's base64 data value, None when the key is missing."""
    value = (data or {}).get(SECRET_KEY)
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def encode(config: rc.RoutingConfig) -> tuple[str, Published]:
    value = base64.b64encode(rc.to_secret_bytes(config)).decode()
    return value, Published(config.hash, hashlib.sha256(value.encode()).hexdigest())


def live_state(annotations: Mapping[str, str] | None, data: Mapping[str, str] | None) -> str:
    """A comparable summary of a live Secret: hash annotation and data digest."""
    return f"{(annotations or {}).get(HASH_ANNOTATION)}/{digest(data)}"


def _terminating(exc: ApiException) -> bool:
    """The apiserver refuses new objects in a namespace being deleted (403 NamespaceTerminating)."""
    if exc.status != 403:
        return False
    try:
        causes = json.loads(exc.body or "{}").get("details", {}).get("causes", [])
    except ValueError:
        return False
    return any(c.get("type") == "NamespaceTerminating" for c in causes)


def _secret(namespace: str, config: rc.RoutingConfig, value: str, version: str | None) -> Any:
    return k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(
            name=SECRET_NAME,
            namespace=namespace,
            labels=dict(LABELS),
            annotations={HASH_ANNOTATION: config.hash},
            resource_version=version,
        ),
        type="Opaque",
        data={SECRET_KEY: value},
    )


def publish(core: k8s.CoreV1Api, namespace: str, config: rc.RoutingConfig) -> Outcome:
    value, wanted = encode(config)
    try:
        live = core.read_namespaced_secret(SECRET_NAME, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        if not (config.providers or config.agents or config.keys):
            return Outcome.SKIPPED
        try:
            core.create_namespaced_secret(namespace, _secret(namespace, config, value, None))
        except ApiException as create_exc:
            if _terminating(create_exc) or create_exc.status == 404:
                log.info("namespace %s is being deleted: routing config not written", namespace)
                return Outcome.SKIPPED
            raise
    else:
        meta = live.metadata or k8s.V1ObjectMeta()
        data = {k: str(v) for k, v in (live.data or {}).items()}
        labeled = (meta.labels or {}).get(compiler.SECRET_LABEL) == LABELS[compiler.SECRET_LABEL]
        if labeled and live_state(meta.annotations, data) == f"{wanted.hash}/{wanted.digest}":
            return Outcome.UNCHANGED
        # replace, not patch: labels, annotations and data become exactly ours; the resource
        # version makes a concurrent writer (a second replica by mistake) fail, not win silently
        body = _secret(namespace, config, value, meta.resource_version)
        core.replace_namespaced_secret(SECRET_NAME, namespace, body)
    log.info("namespace %s: routing config %s written", namespace, config.hash[:12])
    return Outcome.WRITTEN
