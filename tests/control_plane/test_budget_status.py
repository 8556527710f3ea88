"""Budget spend in AccessKeyConfig status, read by the operator from the gateways' Redis.

Covers (a real kube-apiserver + etcd and a real redis-server; examples/limits applied):
- spend written by the gateway's own store code (`RedisStore.reserve`, as a gateway replica
  reserves a request) appears in `kubectl get accesskeyconfig` (Spend, Resets columns) and in
  `status.budgets[]` (shared and per-key budgets, the window's reset in its own zone);
- a budget spent in its window gives one Warning event, reason BudgetExhausted, however many
  rounds and operator restarts follow;
- an operator without `--limits-redis-url` says in status that the spend is unknown.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.api import access_key as api
from switchboard.controller import spend
from switchboard.gateway.limits.redis_store import RedisSettings, RedisStore
from switchboard.gateway.limits.store import Charge
from switchboard.routing import limits, windows
from tests.control_plane.conftest import ROOT, Operator, wait_for
from tests.support.controlplane import ControlPlane
from tests.support.redis_server import RedisServer

NS = "limits-team-a"
FAST = ("--budget-status-interval", "0.5", "--log-level", "debug")
SHARED = limits.counter(NS, "team-a", api.Scope.SHARED, "", kind="budgets", i=0)
ALICE = limits.counter(NS, "team-a", api.Scope.KEY, "alice", kind="budgets", i=1)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def spend_in_redis(
    url: str, counter: str, window: str, zone: str, *, usd: float, limit: float
) -> None:
    """What a gateway replica does when it reserves a request: one budget charge."""

    async def go() -> None:
        store = RedisStore(RedisSettings(url))
        try:
            span = windows.calendar(window, zone, time.time())
            key = limits.budget_key(counter, span.label)
            refused, _ = await store.reserve([Charge(key, usd, limit, span.end + 3600)])
            assert refused == -1
        finally:
            await store.close()

    asyncio.run(go())


def status(cp: ControlPlane) -> dict[str, Any]:
    body = json.loads(cp.kubectl("get", "accesskeyconfig", "team-a", "-n", NS, "-o", "json").stdout)
    found: dict[str, Any] = body.get("status") or {}
    return found


def row(cp: ControlPlane) -> str:
    return cp.kubectl("get", "accesskeyconfig", "-n", NS).stdout


def exhausted_events(cp: ControlPlane) -> list[dict[str, Any]]:
    items = json.loads(cp.kubectl("get", "events", "-n", NS, "-o", "json").stdout)["items"]
    return [e for e in items if e.get("reason") == "BudgetExhausted"]


def test_budget_spend_in_status_and_event(
    control_plane: ControlPlane, operator: Operator, redis_server: RedisServer, tmp_path: Path
) -> None:
    cp = control_plane
    # The session's operator (no store) would write "unknown" over ours: paused here.
    operator.stop()
    try:
        _spend_and_exhaust(cp, redis_server, tmp_path)
    finally:
        operator.start()
    # Back to an operator without a store: status says the spend is unknown, where to look.
    wait_for(lambda: status(cp).get("spend") == spend.UNKNOWN_SPEND, timeout=60)
    assert status(cp).get("budgets") is None and "resets" not in status(cp)
    assert "unknown: in-process store" in row(cp)


def _spend_and_exhaust(cp: ControlPlane, redis_server: RedisServer, tmp_path: Path) -> None:
    cp.kubectl("create", "namespace", NS)
    cp.kubectl("apply", "-n", NS, "-f", str(ROOT / "examples/limits"))
    args = ("--namespace", NS, "--limits-redis-url", redis_server.url)
    op = Operator(cp, tmp_path / "op.log", *args, *FAST).start()
    try:
        cp.kubectl(
            "wait", "--for=condition=Ready", "accesskeyconfig/team-a", "-n", NS, "--timeout=60s"
        )
        # Nothing spent yet: the columns show the window's 0 and its reset (Berlin midnight).
        day = windows.calendar("day", "Europe/Berlin", time.time())
        reset = windows.rfc3339(day.end, "Europe/Berlin")
        wait_for(lambda: status(cp).get("spend") == "$0.00 / $50.00 day", timeout=60)
        assert status(cp)["resets"] == reset

        spend_in_redis(redis_server.url, SHARED, "day", "Europe/Berlin", usd=12.5, limit=50)
        spend_in_redis(redis_server.url, ALICE, "month", "Europe/Berlin", usd=3.25, limit=400)
        wait_for(lambda: status(cp).get("spend") == "$12.50 / $50.00 day", timeout=60)
        wait_for(lambda: any(b.get("spentUsd") == 3.25 for b in status(cp)["budgets"]))
        table = row(cp)
        header, line = table.splitlines()[:2]
        assert "SPEND" in header and "RESETS" in header
        assert "$12.50 / $50.00 day" in line and reset in line
        budgets = {(b["budget"], b.get("key")): b for b in status(cp)["budgets"]}
        assert set(budgets) == {(0, None), (1, "alice"), (1, "ci")}
        assert budgets[(0, None)]["window"] == day.label
        month = windows.calendar("month", "Europe/Berlin", time.time())
        assert budgets[(1, "alice")]["resets"] == windows.rfc3339(month.end, "Europe/Berlin")
        assert budgets[(1, "ci")]["spentUsd"] == 0
        assert exhausted_events(cp) == []

        # The crossing reservation (the last request to pass): the budget is spent.
        spend_in_redis(redis_server.url, SHARED, "day", "Europe/Berlin", usd=40.0, limit=50)
        wait_for(lambda: status(cp).get("spend") == "$52.50 / $50.00 day", timeout=60)
        wait_for(lambda: len(exhausted_events(cp)) == 1, timeout=30)
        event = exhausted_events(cp)[0]
        assert event["type"] == "Warning"
        assert event["involvedObject"]["name"] == "team-a"
        assert "spec.budgets[0] of $50.00 per day" in event["message"]
        assert f"refused (429) until {reset}" in event["message"]
        # Once per window: more rounds, and a restarted operator, post nothing new.
        rounds_seen = _log_rounds(op)
        wait_for(lambda: _log_rounds(op) >= rounds_seen + 4, timeout=60)
        op.stop()
        op = Operator(cp, tmp_path / "op2.log", *args, *FAST).start()
        wait_for(lambda: _log_rounds(op) >= 4, timeout=60)
        assert len(exhausted_events(cp)) == 1
        # The reconciler's own status is untouched by the budget patches.
        conditions = {c["type"]: c["status"] for c in status(cp)["conditions"]}
        assert conditions["Ready"] == "True" and status(cp)["keys"] == 2
    finally:
        op.stop()


def _log_rounds(op: Operator) -> int:
    """Budget status rounds the operator logged (debug lines 'budget status round')."""
    text = op.log.read_text(errors="replace") if op.log.exists() else ""
    return text.count("budget status round done")
