"""Status as Kubernetes tools read it: conditions from compile reports, and the Argo CD check.

Covers: Ready=False from the first reconcile until everything is served, with the reason and a
message naming the field; warnings appended to a True Ready; lastTransitionTime kept while a
condition's status is unchanged; `same()` ignores lastTransitionTime; the facts per kind; the
shipped Argo CD Lua health check (run with lupa) maps Ready, generations and missing status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa

from switchboard.controller import status
from switchboard.routing import compiler

ROOT = Path(__file__).resolve().parents[2]


def _report(objects: list[dict[str, Any]], secrets: compiler.Secrets | None = None) -> Any:
    result = compiler.compile(objects, secrets or {})
    return result.reports


PROVIDER = {
    "apiVersion": "switchboard.dev/v1alpha1",
    "kind": "CustomProvider",
    "metadata": {"name": "p", "namespace": "ns", "generation": 3},
    "spec": {"baseUrl": "http://p/v1", "models": [{"id": "m"}]},
}
KEYS = {
    "apiVersion": "switchboard.dev/v1alpha1",
    "kind": "AccessKeyConfig",
    "metadata": {"name": "k", "namespace": "ns", "generation": 1},
    "spec": {
        "keys": [{"name": "a", "secretRef": {"name": "missing", "key": "t"}}],
        "allowedProviders": ["p"],
    },
}


def _by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions}


def test_ready_with_warning_and_missing_secret() -> None:
    reports = _report([PROVIDER, KEYS])
    provider = next(r for r in reports.values() if r.ref.kind == "CustomProvider")
    conditions = _by_type(status.conditions(provider, published=True))
    assert conditions["Ready"]["status"] == "True"
    assert "warnings" in conditions["Ready"]["message"] and "cost" in conditions["Ready"]["message"]
    assert all(c["observedGeneration"] == 3 for c in conditions.values())
    keys = next(r for r in reports.values() if r.ref.kind == "AccessKeyConfig")
    conditions = _by_type(status.conditions(keys, published=True))
    assert conditions["Accepted"]["status"] == "True"
    assert conditions["ResolvedRefs"]["status"] == "False"
    assert conditions["ResolvedRefs"]["reason"] == "SecretNotFound"
    assert "spec.keys[0].secretRef" in conditions["ResolvedRefs"]["message"]
    assert conditions["Ready"]["status"] == "False"
    assert status.facts("AccessKeyConfig", keys) == {"keys": 0}


def test_not_published_is_not_ready() -> None:
    provider = next(iter(_report([PROVIDER]).values()))
    ready = _by_type(status.conditions(provider, published=False))["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "NotPublished")


def test_transition_time_kept_while_status_unchanged() -> None:
    provider = next(iter(_report([PROVIDER]).values()))
    first = status.desired(provider, True, None, "2026-01-01T00:00:00Z")
    again = status.desired(provider, True, first, "2026-01-02T00:00:00Z")
    assert [c["lastTransitionTime"] for c in again["conditions"]] == ["2026-01-01T00:00:00Z"] * 3
    assert status.same(first, again)
    failing = next(
        iter(_report([{**PROVIDER, "spec": {"baseUrl": "http://x.example.com/v1"}}]).values())
    )
    changed = status.desired(failing, True, again, "2026-01-03T00:00:00Z")
    stamps = {c["type"]: c["lastTransitionTime"] for c in changed["conditions"]}
    assert stamps["Accepted"] == "2026-01-03T00:00:00Z"
    assert not status.same(again, changed)


def _argo(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    script = (ROOT / "helm/switchboard/files/argocd-health.lua").read_text()
    table = runtime.eval("function(o, f) obj = o; return f() end")
    result = table(runtime.table_from(_lua(runtime, obj)), runtime.eval(f"function() {script} end"))
    return str(result["status"]), str(result["message"])


def _lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_lua(runtime, v) for v in value])
    return value


def test_argocd_health_check() -> None:
    meta = {"name": "p", "generation": 2}
    ready = {"type": "Ready", "status": "True", "message": "served by the gateway"}
    assert _argo({"metadata": meta})[0] == "Progressing"
    assert (
        _argo({"metadata": meta, "status": {"observedGeneration": 1, "conditions": [ready]}})[0]
        == "Progressing"
    )
    assert _argo(
        {"metadata": meta, "status": {"observedGeneration": 2, "conditions": [ready]}}
    ) == ("Healthy", "served by the gateway")
    failing = {**ready, "status": "False", "message": "spec.baseUrl: use https://"}
    assert _argo(
        {"metadata": meta, "status": {"observedGeneration": 2, "conditions": [failing]}}
    ) == ("Degraded", "spec.baseUrl: use https://")
