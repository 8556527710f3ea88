"""The operator's state and its one reconcile: per namespace, batched.

Watch events only record objects and mark their namespace dirty; a single worker waits a short
debounce, then compiles each dirty namespace with the same `compile()` as the offline tools,
writes the routing Secret when its content changed (`publish`), patches each object's status
when it changed (`status`), and posts an event per new problem. A burst of thousands of objects
compiles a handful of times. A namespace whose reconcile fails is retried with its own backoff,
without holding up the others. Secret values are held in memory only for Secrets that objects
reference and that carry the opt-in label switchboard.dev/secret=true (a label removed is a
Secret gone); the routing Secret is watched too, so one deleted or edited by hand is rewritten.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from switchboard.api.base import GROUP, VERSION
from switchboard.api.kinds import KINDS
from switchboard.controller import metrics as metrics_mod
from switchboard.controller import publish
from switchboard.controller import status as status_mod
from switchboard.routing import compiler
from switchboard.routing import config as rc
from switchboard.routing.problems import Severity

log = logging.getLogger("switchboard.operator")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_BACKOFF = 30.0
API_CONCURRENCY = 16
"""Blocking API calls (status patches, events, Secret reads and writes) in flight at once."""
T = TypeVar("T")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Reconciler:
    core: k8s.CoreV1Api
    custom: k8s.CustomObjectsApi
    debounce: float = 0.3
    objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, bytes] | None] = field(default_factory=dict)
    referenced: dict[str, set[str]] = field(default_factory=dict)
    published: dict[str, str] = field(default_factory=dict)
    """Per namespace, `publish.live_state` of the routing Secret as last written or seen."""
    failures: dict[str, int] = field(default_factory=dict)
    posted: set[tuple[str, str, str]] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    compiles: int = 0
    metrics: metrics_mod.OperatorMetrics = field(default_factory=metrics_mod.OperatorMetrics)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            API_CONCURRENCY, thread_name_prefix="switchboard-api"
        )
    )

    def __post_init__(self) -> None:
        self.metrics.state.objects = self._held

    def _held(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for bucket in self.objects.values():
            for (kind, _), body in bucket.items():
                yield kind, body

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking kubernetes-client call in the operator's own pool (asyncio's default
        executor has min(32, cpus + 4) threads, 6 on 2 cores)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- observing ---------------------------------------------------------------------------

    def observe(self, kind: str, event_type: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        bucket = self.objects.setdefault(namespace, {})
        key = (kind, name)
        if event_type == "DELETED":
            bucket.pop(key, None)
            self._mark(namespace)
            return
        old = bucket.get(key)
        bucket[key] = body = _slim(body)
        if (
            old is None
            or old.get("spec") != body.get("spec")
            or (old.get("metadata") or {}).get("generation") != meta.get("generation")
            or (  # our status wiped by someone else: write it again
                (old.get("status") or {}).get("observedGeneration") is not None
                and (body.get("status") or {}).get("observedGeneration") is None
            )
        ):
            self._mark(namespace)

    def references(self, namespace: str, name: str) -> bool:
        return name in self.referenced.get(namespace, ())

    def manages(self, namespace: str, name: str) -> bool:
        """The routing Secret of a namespace the operator has written to."""
        return name == publish.SECRET_NAME and namespace in self.published

    def observe_secret(self, event_type: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        if self.manages(namespace, name):
            live = (
                None
                if event_type == "DELETED"
                else publish.live_state(meta.get("annotations"), body.get("data"))
            )
            if live != self.published[namespace]:
                log.info("namespace %s: routing Secret deleted or changed; rewriting", namespace)
                del self.published[namespace]
                self._mark(namespace)
        if not self.references(namespace, name):
            return
        labels = meta.get("labels") or {}
        opted_in = labels.get(compiler.SECRET_LABEL) == "true"  # `routing`: never an input
        gone = event_type == "DELETED" or not opted_in
        self.secrets[(namespace, name)] = None if gone else _decode(body)
        self._mark(namespace)

    def _mark(self, namespace: str) -> None:
        self.dirty.add(namespace)
        self._wake.set()

    # --- the worker --------------------------------------------------------------------------

    async def run(self) -> None:
        log.debug("reconcile worker started")
        while True:
            await self._wake.wait()
            log.debug("reconcile worker woke: %s", sorted(self.dirty))
            await asyncio.sleep(self.debounce)
            self._wake.clear()
            batch, self.dirty = self.dirty, set()
            for namespace in sorted(batch):
                started = time.perf_counter()
                try:
                    await self.reconcile(namespace)
                except Exception as exc:  # one namespace's failure must not stop the others
                    self.metrics.reconciles.labels("failed").inc()
                    self._retry_later(namespace, exc)
                else:
                    self.metrics.reconciles.labels("ok").inc()
                    self.failures.pop(namespace, None)
                self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    def _retry_later(self, namespace: str, exc: Exception) -> None:
        failures = self.failures[namespace] = self.failures.get(namespace, 0) + 1
        self.metrics.state.not_published[namespace] = "error"
        delay = min(0.5 * 2**failures, MAX_BACKOFF)
        reason = exc.reason if isinstance(exc, ApiException) else repr(exc)
        log.error(
            "reconcile of namespace %s failed (%s); retrying in %.1f s",
            namespace,
            reason,
            delay,
            exc_info=not isinstance(exc, ApiException),  # API bodies may be long; no traceback
        )
        asyncio.get_running_loop().call_later(delay, self._mark, namespace)

    def _compile(self, namespace: str) -> compiler.CompileResult:
        self.compiles += 1
        secrets = {
            key: value
            for key, value in self.secrets.items()
            if key[0] == namespace and value is not None
        }
        objects = [
            {**body, "apiVersion": body.get("apiVersion") or f"{GROUP}/{VERSION}", "kind": kind}
            for (kind, _), body in sorted(self.objects.get(namespace, {}).items())
        ]
        started = time.perf_counter()
        result = compiler.compile(objects, secrets, default_namespace=namespace)
        log.info(
            "namespace %s: %d objects compiled in %.0f ms",
            namespace,
            len(objects),
            (time.perf_counter() - started) * 1000,
        )
        return result

    async def reconcile(self, namespace: str) -> None:
        result = self._compile(namespace)
        wanted = {s for r in result.reports.values() for s in r.secrets}
        self.referenced[namespace] = wanted
        missing = [n for n in wanted if (namespace, n) not in self.secrets]
        if missing:
            for name in missing:
                self.secrets[(namespace, name)] = await self._call(
                    self._read_secret, namespace, name
                )
            result = self._compile(namespace)
        for key in [k for k in self.secrets if k[0] == namespace and k[1] not in wanted]:
            del self.secrets[key]  # hold no value nobody references
        config = result.configs.get(namespace)
        if config is None and not result.reports:
            config = rc.sealed(rc.RoutingConfig(namespace=namespace))  # everything deleted
        self._count_problems(namespace, result)
        published = False
        if config is not None:
            published = await self._publish(namespace, config)
            self.metrics.state.not_published.pop(namespace, None)
        else:
            self.metrics.state.not_published[namespace] = "compile"
        # Status patches are independent API calls: run them concurrently (bounded).
        limit = asyncio.Semaphore(API_CONCURRENCY)

        async def report_one(report: compiler.ObjectReport) -> None:
            async with limit:
                if namespace in self.dirty:
                    return  # newer changes: the next round compiles and reports again
                await self._call(self._status, report, published)
                if report.problems:
                    await self._call(self._events, report)

        await asyncio.gather(*(report_one(r) for r in result.reports.values()))

    def _count_problems(self, namespace: str, result: compiler.CompileResult) -> None:
        counts: dict[tuple[str, str], int] = {}
        for report in result.reports.values():
            for problem in report.problems:
                key = (report.ref.kind, problem.severity.value)
                counts[key] = counts.get(key, 0) + 1
        if counts:
            self.metrics.state.problems[namespace] = counts
        else:
            self.metrics.state.problems.pop(namespace, None)

    # --- writing -----------------------------------------------------------------------------

    def _read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The Secret if it exists and opted in, else None: a list by name and label (RBAC
        gives the operator list/watch on Secrets, get only on the routing Secret)."""
        try:
            found = self.core.list_namespaced_secret(
                namespace,
                label_selector=f"{compiler.SECRET_LABEL}=true",
                field_selector=f"metadata.name={name}",
            )
        except ApiException:
            self.metrics.api_errors.labels("read_secret").inc()
            raise
        for secret in found.items or ():
            return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        return None

    async def _publish(self, namespace: str, config: rc.RoutingConfig) -> bool:
        """Write the routing Secret unless it holds this config already; True when it does."""
        value, wanted = publish.encode(config)
        state = f"{wanted.hash}/{wanted.digest}"
        if self.published.get(namespace) == state:
            return True  # the watch on the routing Secret tells when this stops being true
        # Recorded before the write: the watch may deliver our own write before the call returns.
        self.published[namespace] = state
        try:
            outcome = await self._call(publish.publish, self.core, namespace, config)
        except BaseException as exc:
            self.published.pop(namespace, None)
            if isinstance(exc, Exception):
                self.metrics.publishes.labels("failed").inc()
                if isinstance(exc, ApiException):
                    self.metrics.api_errors.labels("publish").inc()
            raise
        self.metrics.publishes.labels(outcome.value).inc()
        if outcome is publish.Outcome.SKIPPED:
            self.published.pop(namespace, None)
            self.metrics.state.config_bytes.pop(namespace, None)
            return False
        self.metrics.published_at.set_to_current_time()
        self.metrics.state.config_bytes[namespace] = len(value)
        return True

    def _status(self, report: compiler.ObjectReport, published: bool) -> None:
        kind = KINDS.get(report.ref.kind)
        body = self.objects.get(report.ref.namespace, {}).get((report.ref.kind, report.ref.name))
        if kind is None or body is None:
            return
        old = body.get("status")
        new = status_mod.desired(report, published, old, _now())
        if status_mod.same(old, new):
            return
        try:
            patched = self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                report.ref.namespace,
                kind.plural,
                report.ref.name,
                {"status": new},
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            self.metrics.api_errors.labels("status").inc()
            raise
        body["status"] = patched.get("status") if isinstance(patched, dict) else new

    def _events(self, report: compiler.ObjectReport) -> None:
        body = self.objects.get(report.ref.namespace, {}).get((report.ref.kind, report.ref.name))
        if body is None:
            return
        meta = body.get("metadata") or {}
        for problem in report.problems:
            key = (
                str(meta.get("uid")),
                problem.reason.value,
                f"{problem.field}: {problem.message}",
            )
            if key in self.posted:
                continue
            if len(self.posted) > 50_000:  # bounded memory; at worst a problem is posted again
                self.posted.clear()
            self.posted.add(key)
            self._post_event(body, problem.severity, problem.reason.value, key[2])

    def _post_event(
        self, body: dict[str, Any], severity: Severity, reason: str, message: str
    ) -> None:
        meta = body.get("metadata") or {}
        now = datetime.datetime.now(datetime.UTC)
        event = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(
                generate_name=f"{meta.get('name')}.", namespace=meta.get("namespace")
            ),
            involved_object=k8s.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind=body.get("kind"),
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            ),
            reason=reason,
            message=message[:1024],
            type="Warning",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=k8s.V1EventSource(component="switchboard-operator"),
        )
        del severity  # both errors and warnings are Kubernetes "Warning" events
        try:
            self.core.create_namespaced_event(str(meta.get("namespace")), event)
        except ApiException as exc:
            self.metrics.api_errors.labels("event").inc()
            log.warning("could not post event %s: %s", reason, exc.reason)


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    """The object without what the operator never reads (managedFields, last-applied copy)."""
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return {**body, "metadata": meta}


def _decode(body: dict[str, Any]) -> dict[str, bytes]:
    data = body.get("data") or {}
    out = {k: base64.b64decode(v) for k, v in data.items()}
    for k, v in (body.get("stringData") or {}).items():
        out[k] = str(v).encode()
    return out
