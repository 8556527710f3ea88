"""The operator's bookkeeping, without a cluster: what marks a namespace dirty, what is kept.

Covers: a new object, a spec or generation change, a wiped status and a delete mark its
namespace dirty; a status-only update (the operator's own patch coming back) does not;
managedFields and the last-applied copy are not kept; only referenced Secrets with the opt-in
label are stored (data and stringData decoded), a deleted or unlabeled one becomes None; the
routing Secret the operator wrote is watched: the same content is ignored, a different one or a
delete forgets it and marks the namespace dirty; `publish.encode` and `live_state` agree;
NamespaceTerminating is recognised. The API clients are constructed but never called.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from switchboard.controller import publish, reconciler
from switchboard.routing import config as rc


def _reconciler() -> reconciler.Reconciler:
    api = k8s.ApiClient(k8s.Configuration())
    return reconciler.Reconciler(k8s.CoreV1Api(api), k8s.CustomObjectsApi(api), debounce=0.01)


def _provider(generation: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "CustomProvider",
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "generation": generation,
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {reconciler.LAST_APPLIED: "{...}", "team": "ml"},
        },
        "spec": {"baseUrl": "http://p/v1", "models": [{"id": "m"}]},
        "status": status,
    }


def test_changes_mark_the_namespace_dirty() -> None:
    r = _reconciler()
    r.observe("CustomProvider", "ADDED", _provider())
    assert r.dirty == {"ns"}
    kept = r.objects["ns"][("CustomProvider", "p")]
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"team": "ml"}

    r.dirty.clear()
    r.observe("CustomProvider", "MODIFIED", _provider(observedGeneration=1))
    assert r.dirty == set(), "our own status patch coming back is not a change"
    r.observe("CustomProvider", "MODIFIED", _provider(generation=2, observedGeneration=1))
    assert r.dirty == {"ns"}
    r.dirty.clear()
    r.observe("CustomProvider", "MODIFIED", _provider(generation=2))
    assert r.dirty == {"ns"}, "status wiped: written again"
    r.dirty.clear()
    r.observe("CustomProvider", "DELETED", _provider(generation=2))
    assert r.dirty == {"ns"} and r.objects["ns"] == {}


LABELS = {"switchboard.dev/secret": "true"}


def _secret(name: str, labels: dict[str, str] = LABELS, **fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels}, **fields}


def test_only_referenced_secrets_are_kept() -> None:
    r = _reconciler()
    r.observe_secret("ADDED", _secret("other", data={"t": base64.b64encode(b"x").decode()}))
    assert r.secrets == {} and r.dirty == set()
    r.referenced["ns"] = {"keys"}
    body = _secret("keys", data={"a": base64.b64encode(b"1").decode()}, stringData={"b": "2"})
    r.observe_secret("MODIFIED", body)
    assert r.secrets[("ns", "keys")] == {"a": b"1", "b": b"2"}
    assert r.dirty == {"ns"}
    r.observe_secret("DELETED", body)
    assert r.secrets[("ns", "keys")] is None


def test_a_secret_without_the_opt_in_label_is_not_read() -> None:
    """The watch is label-selected; a referenced Secret whose label is not `true` (removed, or
    the routing Secret's `routing`) holds no value, as if deleted."""
    r = _reconciler()
    r.referenced["ns"] = {"keys"}
    data = {"a": base64.b64encode(b"1").decode()}
    r.observe_secret("ADDED", _secret("keys", data=data))
    assert r.secrets[("ns", "keys")] == {"a": b"1"}
    for labels in ({}, {"switchboard.dev/secret": "routing"}, {"switchboard.dev/secret": "yes"}):
        r.observe_secret("MODIFIED", _secret("keys", labels=labels, data=data))
        assert r.secrets[("ns", "keys")] is None, labels


def test_routing_secret_changed_by_someone_else_is_rewritten() -> None:
    r = _reconciler()
    config = rc.sealed(rc.RoutingConfig(namespace="ns"))
    value, published = publish.encode(config)
    annotations = {publish.HASH_ANNOTATION: config.hash}
    r.published["ns"] = publish.live_state(annotations, {publish.SECRET_KEY: value})
    assert r.published["ns"] == f"{published.hash}/{published.digest}"
    assert r.manages("ns", publish.SECRET_NAME) and not r.manages("ns", "other")
    ours = _secret(
        publish.SECRET_NAME,
        metadata={"name": publish.SECRET_NAME, "namespace": "ns", "annotations": annotations},
        data={publish.SECRET_KEY: value},
    )
    r.observe_secret("MODIFIED", ours)
    assert r.dirty == set() and "ns" in r.published
    r.observe_secret("MODIFIED", {**ours, "data": {publish.SECRET_KEY: "bm90IGpzb24="}})
    assert r.dirty == {"ns"} and "ns" not in r.published
    r.dirty.clear()
    r.published["ns"] = "x"
    r.observe_secret("DELETED", ours)
    assert r.dirty == {"ns"} and "ns" not in r.published


def test_namespace_terminating_is_recognised() -> None:
    body = {"details": {"causes": [{"type": "NamespaceTerminating", "message": "..."}]}}
    terminating = ApiException(status=403, reason="Forbidden")
    terminating.body = json.dumps(body)
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps({"details": {}})
    assert publish._terminating(terminating)
    assert not publish._terminating(forbidden)
