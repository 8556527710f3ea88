"""Budget status: read the gateways' shared store on a timer, write spend into status, post
BudgetExhausted events.

Every `interval` seconds (30 by default) the operator reads, for each AccessKeyConfig that has
budgets, the counters of their current windows from the Redis/Valkey the gateways count in
(`switchboard operator --limits-redis-url`; password and CA as for the gateway: the
`SWITCHBOARD_LIMITS_REDIS_PASSWORD` and `SWITCHBOARD_LIMITS_REDIS_CA_FILE` variables), one
MGET per object (its counters share one Redis Cluster slot), and patches `status.budgets[]`,
`status.spend` and `status.resets` when they changed. A budget spent in its window gets one
Warning event, reason BudgetExhausted, per window: the event's name is derived from the object,
the counter and the window, so a restarted operator or a second replica is refused by the API
server (409) instead of posting it again.

Without a store URL the counters are in each gateway pod's process, out of the operator's
reach: status says so (`spend: unknown: in-process store; see switchboard usage`).

The objects come from the Reconciler's watch cache (no extra list calls). kopf's peering pauses
the watches of a replica that another one outranks, but not this loop, which a startup handler
starts on every replica: a replica that was active and then outranked would keep writing from
its frozen cache (budgets since changed or removed, status alternating between two writers).
Such a replica now restarts (`peering.follow`), and each round first asks
`peering.Peering.is_active()` (kopf's rule, read from the peering objects): a waiting replica
does nothing (`switchboard_operator_budget_rounds_total{result="passive"}`). The writes stay
idempotent for the seconds two replicas may disagree: an unchanged status is not patched, and
an event is posted once per window.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import kopf
import pydantic
import redis.asyncio as aioredis
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from redis.exceptions import RedisError

from switchboard.api import access_key as api
from switchboard.api.base import GROUP, VERSION
from switchboard.controller import metrics as metrics_mod
from switchboard.controller import peering as peering_mod
from switchboard.controller import spend
from switchboard.routing import limits

log = logging.getLogger("switchboard.operator.budgets")
KIND = "AccessKeyConfig"
PLURAL = "accesskeyconfigs"
DEFAULT_INTERVAL = 30.0


@dataclass(frozen=True)
class StoreSettings:
    url: str | None = None
    """redis:// or rediss:// of the gateways' store; None: the gateways count in-process."""
    password: str | None = None
    """From SWITCHBOARD_LIMITS_REDIS_PASSWORD (a Secret); never logged."""
    ca_file: str | None = None
    prefix: str = limits.REDIS_PREFIX
    interval: float = DEFAULT_INTERVAL
    timeout: float = 2.0

    @classmethod
    def from_env(cls, url: str | None, interval: float) -> StoreSettings:
        env = os.environ
        return cls(
            url=url or env.get("SWITCHBOARD_LIMITS_REDIS_URL") or None,
            password=env.get("SWITCHBOARD_LIMITS_REDIS_PASSWORD") or None,
            ca_file=env.get("SWITCHBOARD_LIMITS_REDIS_CA_FILE") or None,
            interval=interval,
        )


def connect(settings: StoreSettings) -> aioredis.Redis:
    assert settings.url is not None
    extra: dict[str, Any] = {"ssl_ca_certs": settings.ca_file} if settings.ca_file else {}
    client: aioredis.Redis = aioredis.Redis.from_url(
        settings.url,
        password=settings.password,
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout,
        decode_responses=True,
        **extra,
    )
    return client


class BudgetStatus:
    def __init__(
        self,
        core: k8s.CoreV1Api,
        custom: k8s.CustomObjectsApi,
        settings: StoreSettings,
        metrics: metrics_mod.OperatorMetrics | None = None,
        peering: peering_mod.Peering | None = None,
    ) -> None:
        self.core = core
        self.custom = custom
        self.settings = settings
        self.client = connect(settings) if settings.url else None
        self.posted: set[str] = set()
        self.failing = False
        self.metrics = metrics or metrics_mod.OperatorMetrics()
        self.peering = peering or peering_mod.Peering(None)
        self.store_up = self.metrics.with_store() if self.client is not None else None
        self._read = self._missed = False

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def run(self, objects: Any) -> None:
        """`objects()`: (namespace, body) of every AccessKeyConfig the operator knows."""
        while True:
            if not await self.active():
                self.metrics.budget_rounds.labels("passive").inc()
            else:
                try:
                    result = await self.tick(objects(), time.time())
                except Exception:  # a bug must not stop status for good
                    log.exception("budget status round failed")
                    result = "failed"
                self.metrics.budget_rounds.labels(result).inc()
                if result == "ok":
                    self.metrics.budget_success.set_to_current_time()
            await asyncio.sleep(self.settings.interval)

    async def active(self) -> bool:
        """Whether this replica is the active one (kopf peering), in `switchboard_operator_active`;
        a peering object that cannot be read counts as passive: better no write than two."""
        try:
            active = await asyncio.to_thread(self.peering.is_active, self.custom)
        except ApiException as exc:
            self.metrics.api_errors.labels("peering").inc()
            log.warning("budget status: cannot read the peering object (%s); pausing", exc.reason)
            active = False
        self.metrics.active.set(1 if active else 0)
        return active

    async def tick(self, found: Iterable[tuple[str, dict[str, Any]]], now: float) -> str:
        """One round; "ok", or "store_error" when the store did not answer a read."""
        count = 0
        self._read = self._missed = False
        for namespace, body in list(found):
            await self.one(namespace, body, now)
            count += 1
        if self.client is not None and not self._read:
            try:  # nothing to read this round: still say whether the store answers
                await self.client.ping()
            except (RedisError, OSError) as exc:
                self._answered(exc)
            else:
                self._answered(None)
        if self.store_up is not None:
            self.store_up.set(0 if self._missed else 1)
        log.debug("budget status round done: %d AccessKeyConfigs", count)
        return "store_error" if self._missed else "ok"

    def _answered(self, exc: BaseException | None) -> None:
        """Log the store's changes of state once each; a failure marks the round."""
        if exc is not None:
            self._missed = True
            if not self.failing:
                log.warning(
                    "budget status: the limits store did not answer (%s)", type(exc).__name__
                )
            self.failing = True
        elif self.failing:
            log.info("budget status: the limits store answers again")
            self.failing = False

    async def one(self, namespace: str, body: dict[str, Any], now: float) -> None:
        meta = body.get("metadata") or {}
        name = str(meta.get("name", ""))
        try:
            parsed = api.AccessKeyConfigSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError:
            return  # the reconciler reports an invalid spec
        old = body.get("status") or {}
        counters = spend.counters(namespace, name, parsed)
        if self.client is None or not counters:
            new = spend.unknown(bool(counters))
            if spend.changed(old, new):
                await asyncio.to_thread(self._patch, namespace, name, new)
            return
        pending = spend.readings(counters, now)
        keys = [limits.redis_key(self.settings.prefix, r.store_key) for r in pending]
        self._read = True
        try:
            raw = await self.client.mget(keys)
        except (RedisError, OSError) as exc:
            self._answered(exc)
            return  # status keeps the last figures read
        self._answered(None)
        readings = spend.with_values(pending, [float(v) if v else 0.0 for v in raw])
        new = spend.status(readings)
        if spend.changed(old, new):
            await asyncio.to_thread(self._patch, namespace, name, new)
        for gone in spend.exhausted(name, str(meta.get("uid")), readings):
            if gone.event_name not in self.posted:
                await asyncio.to_thread(self._event, body, gone)

    # --- writing (blocking kubernetes-client calls, run in threads) ---------------------------

    def _patch(self, namespace: str, name: str, fields: dict[str, Any]) -> None:
        try:
            patched = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": fields}
            )
        except ApiException as exc:
            if exc.status != 404:
                self.metrics.api_errors.labels("budget_status").inc()
                log.warning("budget status of %s/%s not written: %s", namespace, name, exc.reason)
            return
        del patched  # the watch brings the new status into the reconciler's cache

    def _event(self, body: dict[str, Any], gone: spend.Exhausted) -> None:
        meta = body.get("metadata") or {}
        now = datetime.datetime.now(datetime.UTC)
        event = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(name=gone.event_name, namespace=meta.get("namespace")),
            involved_object=k8s.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=KIND,
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
            ),
            reason="BudgetExhausted",
            message=gone.message[:1024],
            type="Warning",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=k8s.V1EventSource(component="switchboard-operator"),
        )
        try:
            self.core.create_namespaced_event(str(meta.get("namespace")), event)
        except ApiException as exc:
            if exc.status != 409:  # 409: posted already (another replica, or before a restart)
                self.metrics.api_errors.labels("budget_event").inc()
                log.warning("could not post event BudgetExhausted: %s", exc.reason)
                return
        if len(self.posted) > 50_000:
            self.posted.clear()
        self.posted.add(gone.event_name)


def _access_key_configs(memo: kopf.Memo) -> list[tuple[str, dict[str, Any]]]:
    reconciler = memo.get("reconciler")
    if reconciler is None:
        return []
    return [
        (namespace, body)
        for namespace, bucket in list(reconciler.objects.items())
        for (kind, _), body in list(bucket.items())
        if kind == KIND
    ]


@kopf.on.startup()
async def start_budget_status(memo: kopf.Memo, **_: Any) -> None:
    settings: StoreSettings = memo.get("limits") or StoreSettings()
    memo["budget_status_task"] = asyncio.create_task(_run(memo, settings))
    where = "from the limits store" if settings.url else "unknown (in-process store)"
    log.info("budget status every %.0f s: %s", settings.interval, where)


async def _run(memo: kopf.Memo, settings: StoreSettings) -> None:
    while memo.get("reconciler") is None:  # its startup handler may run after this one
        await asyncio.sleep(0.1)
    reconciler = memo["reconciler"]
    peering: peering_mod.Peering = memo.get("peering") or peering_mod.Peering(None)
    loop = BudgetStatus(reconciler.core, reconciler.custom, settings, reconciler.metrics, peering)
    memo["budget_status"] = loop
    await loop.run(lambda: _access_key_configs(memo))


@kopf.on.cleanup()
async def stop_budget_status(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("budget_status_task")
    if task is not None:
        task.cancel()
    loop: BudgetStatus | None = memo.get("budget_status")
    if loop is not None:
        await loop.close()
