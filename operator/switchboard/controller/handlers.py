"""kopf handlers: the watch events feed the Reconciler; nothing else happens here.

The three kinds are watched with `on.event` (no kopf progress storage on our objects, since the
status is ours). Secrets are watched with a server-side label selector (`settings.SECRET_SELECTOR`:
only those labelled switchboard.dev/secret=true, and the routing Secrets the operator writes),
and kept only when an object references them or when it is a routing Secret the operator wrote
(`when=`), so other Secrets never reach the operator at all. Options come
from `switchboard operator` through kopf's memo (`debounce`, `metrics_port`, `metrics_host`).
The startup handler also starts GET /metrics (`controller.metrics`) unless its port is 0.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from switchboard.api.base import GROUP, VERSION
from switchboard.api.kinds import KINDS
from switchboard.controller import metrics as metrics_mod
from switchboard.controller import peering as peering_mod
from switchboard.controller import settings as settings_mod
from switchboard.controller.reconciler import Reconciler

log = logging.getLogger("switchboard.operator")


def _api_client() -> k8s.ApiClient:
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = k8s.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = 32  # status patches run 16 at a time
    return k8s.ApiClient(configuration)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings_mod.configure(settings)
    api = _api_client()
    debounce = float(memo.get("debounce", 0.3))
    metrics = metrics_mod.OperatorMetrics()
    reconciler = Reconciler(
        k8s.CoreV1Api(api), k8s.CustomObjectsApi(api), debounce, metrics=metrics
    )
    memo["reconciler"] = reconciler
    port = int(memo.get("metrics_port", metrics_mod.DEFAULT_PORT))
    if port:
        host = str(memo.get("metrics_host", "0.0.0.0"))
        memo["metrics_server"] = await metrics_mod.serve(metrics, host, port)
    memo["worker"] = asyncio.create_task(reconciler.run())
    peering: peering_mod.Peering | None = memo.get("peering")
    restart: asyncio.Event | None = memo.get("restart")
    if peering is not None and peering.name is not None and restart is not None:
        memo["follower"] = asyncio.create_task(
            _restart_when_outranked(peering, reconciler, restart)
        )


async def _restart_when_outranked(
    peering: peering_mod.Peering, reconciler: Reconciler, restart: asyncio.Event
) -> None:
    await peering_mod.follow(peering, reconciler.custom)
    log.warning(
        "another replica took over: restarting, so that the cache held while waiting (where "
        "objects deleted meanwhile would remain) is never used"
    )
    restart.set()  # kopf's stop flag: a clean stop, then `switchboard operator` again


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for name in ("worker", "follower"):
        task = memo.get(name)
        if task is not None:
            task.cancel()
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        reconciler.close()
    server = memo.get("metrics_server")
    if server is not None:
        await server.cleanup()


def _register(kind: str, plural: str) -> None:
    @kopf.on.event(GROUP, VERSION, plural, id=f"observe-{plural}")
    async def observe(*, type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
        reconciler: Reconciler | None = memo.get("reconciler")
        if reconciler is not None:  # type is None for objects of the initial listing
            reconciler.observe(kind, type or "ADDED", dict(body))


for _kind in KINDS.values():
    _register(_kind.kind, _kind.plural)


def _referenced(name: str | None, namespace: str | None, memo: kopf.Memo, **_: Any) -> bool:
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is None or not name or not namespace:
        return False
    return reconciler.references(namespace, name) or reconciler.manages(namespace, name)


@kopf.on.event("", "v1", "secrets", when=_referenced, id="observe-secrets")
async def observe_secret(*, type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    reconciler: Reconciler = memo["reconciler"]
    reconciler.observe_secret(type or "ADDED", dict(body))


logging.getLogger("kubernetes").setLevel(logging.WARNING)
