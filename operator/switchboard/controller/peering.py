"""Whether this replica is the active one under kopf peering, for work kopf does not pause.

kopf pauses its watch streams on a replica that a live peer outranks, but not the tasks started
by startup handlers (the budget status loop). `Peering.is_active()` reads the peering objects
(ClusterKopfPeering, or one KopfPeering per watched namespace, as kopf uses them) and applies
kopf's own rule (`kopf._core.engines.peering.process_peering_event`): this replica is paused
while a live peer (lastseen + lifetime in the future) other than itself has a higher priority
or the same one; a missing peering object pauses it too (kopf with mandatory peering waits for
it). Standalone: always active. The identity is the one given to `kopf.operator`.

`follow()` returns once a replica that was active is outranked. kopf resumes a paused replica
with a fresh listing but never tells it what was deleted meanwhile, so its cache would keep
objects deleted while it waited (a deleted AccessKeyConfig's keys would be published again);
the operator restarts itself instead (`controller.cli`), and a fresh process starts empty.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import secrets
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("switchboard.operator")
GROUP, VERSION = "kopf.dev", "v1"
FOLLOW_INTERVAL = 2.0
"""Seconds between two reads of the peering objects by `follow` (kopf's peers live 60 s)."""


def own_identity() -> str:
    """A peer id unique to this process: the pod name (POD_ID, as kopf reads it) or the host,
    then the process id and a random suffix."""
    base = os.environ.get("POD_ID") or socket.gethostname()
    return f"{base}/{os.getpid()}/{secrets.token_hex(3)}"


def _alive(info: Mapping[str, Any], now: datetime.datetime) -> bool:
    try:
        seen = datetime.datetime.fromisoformat(str(info["lastseen"]))
        lifetime = datetime.timedelta(seconds=int(info.get("lifetime", 60)))
    except (KeyError, TypeError, ValueError):
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=datetime.UTC)
    return seen + lifetime > now


def outranked(
    bodies: Iterable[Mapping[str, Any] | None],
    identity: str,
    priority: int,
    now: datetime.datetime,
) -> bool:
    """True when kopf would keep this replica paused: a peering object is missing (None), or
    one lists a live peer other than `identity` with a priority >= `priority`."""
    for body in bodies:
        if body is None:
            return True
        peers = body.get("status") or {}
        for peer, info in peers.items():
            if peer == identity or not isinstance(info, Mapping) or not _alive(info, now):
                continue
            if int(info.get("priority", 0)) >= priority:
                return True
    return False


@dataclass(frozen=True)
class Peering:
    name: str | None
    """The peering object's name; None: standalone (always active)."""
    namespaces: tuple[str, ...] = ()
    """Watched namespaces (one KopfPeering each); empty: cluster-wide (ClusterKopfPeering)."""
    identity: str = ""
    priority: int = 0

    def read(self, custom: k8s.CustomObjectsApi) -> list[dict[str, Any] | None]:
        """The peering objects (None for one that does not exist). Blocking: run in a thread."""
        assert self.name is not None
        found: list[dict[str, Any] | None] = []
        targets: tuple[str | None, ...] = self.namespaces or (None,)
        for namespace in targets:
            try:
                if namespace is None:
                    body = custom.get_cluster_custom_object(
                        GROUP, VERSION, "clusterkopfpeerings", self.name
                    )
                else:
                    body = custom.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, "kopfpeerings", self.name
                    )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                body = None
            found.append(body if isinstance(body, dict) else None)
        return found

    def is_active(self, custom: k8s.CustomObjectsApi) -> bool:
        """Blocking; raises ApiException when a peering object cannot be read."""
        if self.name is None:
            return True
        now = datetime.datetime.now(datetime.UTC)
        return not outranked(self.read(custom), self.identity, self.priority, now)


async def follow(
    peering: Peering, custom: k8s.CustomObjectsApi, interval: float = FOLLOW_INTERVAL
) -> None:
    """Return when this replica, active at an earlier read, is outranked (a read that fails
    changes nothing)."""
    was_active = False
    while True:
        try:
            active = await asyncio.to_thread(peering.is_active, custom)
        except ApiException as exc:
            log.debug("peering object not read (%s)", exc.reason)
        else:
            if active:
                was_active = True
            elif was_active:
                return
        await asyncio.sleep(interval)
