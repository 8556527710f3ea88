"""The operator's metrics and its peering rule, without a cluster.

Covers: the exposition names every documented `switchboard_operator_*` series (each documented
in docs/operations.md), with zeroes for every kind, readiness, severity and result before any
event; objects held by the Reconciler are counted by kind and Ready; the budget store gauge
exists only once a store is configured; `peering.outranked` follows kopf's rule (a live peer
with a higher or equal priority pauses, a dead one or ourselves does not, a missing peering
object pauses).
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families

from switchboard.controller import metrics, peering, reconciler

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.UTC)


def _names(m: metrics.OperatorMetrics) -> set[str]:
    families = text_string_to_metric_families(m.render().decode())
    return {f.name for f in families if not f.name.endswith("_created")}  # counters' start


def test_every_series_is_exported_and_documented() -> None:
    m = metrics.OperatorMetrics()
    names = _names(m)
    assert "switchboard_operator_budget_store_up" not in names
    m.with_store()
    names = _names(m)
    assert names == {
        "switchboard_operator_objects",
        "switchboard_operator_compile_problems",
        "switchboard_operator_namespaces_not_published",
        "switchboard_operator_config_bytes",
        "switchboard_operator_reconciles",
        "switchboard_operator_reconcile_duration_seconds",
        "switchboard_operator_publishes",
        "switchboard_operator_config_published_timestamp_seconds",
        "switchboard_operator_api_errors",
        "switchboard_operator_active",
        "switchboard_operator_budget_rounds",
        "switchboard_operator_budget_last_success_timestamp_seconds",
        "switchboard_operator_budget_store_up",
    }
    doc = (ROOT / "docs/operations.md").read_text()
    documented = {
        name.removesuffix("_total") for name in re.findall(r"`(switchboard_operator_[a-z_]+)", doc)
    }
    assert names <= documented, names - documented
    text = m.render().decode()
    assert 'switchboard_operator_compile_problems{kind="Agent",severity="warning"} 0.0' in text
    assert 'switchboard_operator_budget_rounds_total{result="passive"} 0.0' in text


def test_objects_by_kind_and_ready() -> None:
    api = k8s.ApiClient(k8s.Configuration())
    rec = reconciler.Reconciler(k8s.CoreV1Api(api), k8s.CustomObjectsApi(api))
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    rec.observe("CustomProvider", "ADDED", {"metadata": {"name": "a"}, "status": ready})
    rec.observe("CustomProvider", "ADDED", {"metadata": {"name": "b", "namespace": "x"}})
    rec.observe("Agent", "ADDED", {"metadata": {"name": "c"}})
    text = rec.metrics.render().decode()
    assert 'switchboard_operator_objects{kind="CustomProvider",ready="true"} 1.0' in text
    assert 'switchboard_operator_objects{kind="CustomProvider",ready="unknown"} 1.0' in text
    assert 'switchboard_operator_objects{kind="Agent",ready="unknown"} 1.0' in text
    assert 'switchboard_operator_objects{kind="AccessKeyConfig",ready="false"} 0.0' in text
    rec.close()


def _peer(priority: int, seconds_ago: float, lifetime: int = 60) -> dict[str, object]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": seen.isoformat()}


def test_outranked_follows_kopf() -> None:
    me = "pod-a/1/abc"
    alone = {"status": {me: _peer(10, 1)}}
    assert not peering.outranked([alone], me, 10, NOW)
    higher = {"status": {me: _peer(10, 1), "pod-b/2/def": _peer(20, 1)}}
    assert peering.outranked([higher], me, 10, NOW)
    lower = {"status": {me: _peer(20, 1), "pod-b/2/def": _peer(10, 1)}}
    assert not peering.outranked([lower], me, 20, NOW)
    same = {"status": {me: _peer(10, 1), "pod-b/2/def": _peer(10, 1)}}
    assert peering.outranked([same], me, 10, NOW)
    dead = {"status": {"pod-b/2/def": _peer(20, 61)}}
    assert not peering.outranked([dead], me, 10, NOW)
    assert peering.outranked([alone, None], me, 10, NOW)  # one namespace without its object
    # standalone: active without reading anything (this client has no server)
    assert peering.Peering(None).is_active(k8s.CustomObjectsApi(k8s.ApiClient()))
