"""The Grafana dashboard's queries against a real Prometheus scraping a real gateway process under
a short load, and per-key attribution over that run.

Covers:
- every query of every panel of helm/switchboard/files/grafana-dashboard.json (the one source
  of the chart's ConfigMap and of docs/) returns data with at least one finite value, with
  the dashboard's variables set as Grafana would ($namespace = All, $__rate_interval);
- the load: two keys, Chat and Messages, streams (time to first token), an agent whose first
  candidate is down (fallback, upstream error) and one whose every candidate fails (5xx), and
  two keys with limits (#12) refused for their rate and for their budget (429);
- per-key attribution: `sum by (key)` of switchboard_key_cost_usd_total, in Prometheus and on
  /metrics, equals the sum of `cost_usd` of that key's access-log lines, and the key token
  counters equal the sums of the lines' tokens;
- the dashboard JSON: unique panel ids, a datasource variable on every target.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import (
    KEY,
    NARROW_KEY,
    ROOT,
    Gateway,
    Upstreams,
    manifests,
    render_text,
    start_gateway,
)
from tests.observability.conftest import Prometheus, access_lines, start_prometheus, wait_for

pytestmark = pytest.mark.gateway
DASHBOARD = ROOT / "helm/switchboard/files/grafana-dashboard.json"
RATE_KEY = "sk-obs-rate-limited-0123456789abcdef"
BUDGET_KEY = "sk-obs-budget-capped-0123456789abcdef"
CAPPED = f"""---
apiVersion: v1
kind: Secret
metadata: {{name: capped, labels: {{switchboard.dev/secret: "true"}}}}
stringData: {{rate: {RATE_KEY}, budget: {BUDGET_KEY}}}
---
apiVersion: switchboard.dev/v1alpha1
kind: AccessKeyConfig
metadata: {{name: rate}}
spec:
  keys: [{{name: rate, secretRef: {{name: capped, key: rate}}}}]
  allowedAgents: [coder]
  limits: [{{requestsPerMinute: 1}}]
---
apiVersion: switchboard.dev/v1alpha1
kind: AccessKeyConfig
metadata: {{name: budget}}
spec:
  keys: [{{name: budget, secretRef: {{name: capped, key: budget}}}}]
  allowedAgents: [coder]
  budgets: [{{usd: 0.00001, window: day, onExhausted: refuse}}]
"""
VARIABLES = {"$namespace": ".*", "$__rate_interval": "1m", "$__range": "10m"}


def panels() -> list[dict[str, Any]]:
    data = json.loads(DASHBOARD.read_text())
    out = []
    for panel in data["panels"]:
        out.extend([panel, *panel.get("panels", [])])
    return [p for p in out if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    found = []
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((f"{panel['title']} [{target['refId']}]", expr))
    return found


def load(gateway: Gateway, rounds: int) -> None:
    """A short mixed load: both keys, Chat and Messages, streams, a fallback and a failure."""
    hi = [{"role": "user", "content": "hello there"}]
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for _ in range(rounds):
            for key, model, stream in (
                (KEY, "coder", False),
                (KEY, "coder", True),
                (KEY, "fb-connect", False),
                (KEY, "fb-all-fail", False),
                (NARROW_KEY, "coder", False),
                (NARROW_KEY, "coder", True),
            ):
                body: dict[str, Any] = {"model": model, "messages": hi, "stream": stream}
                with client.stream(
                    "POST",
                    "/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {key}"},
                ) as response:
                    response.read()
            for key in (RATE_KEY, RATE_KEY, BUDGET_KEY, BUDGET_KEY):  # the second ones: 429
                client.post(
                    "/v1/chat/completions",
                    json={"model": "coder", "messages": hi},
                    headers={"authorization": f"Bearer {key}"},
                )
            response = client.post(
                "/v1/messages",
                json={"model": "anth:m", "max_tokens": 50, "messages": hi},
                headers={"x-api-key": KEY},
            )
            assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def scraped(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Prometheus]]:
    work = tmp_path_factory.mktemp("dashboard")
    gateway = start_gateway(render_text(manifests(upstreams) + CAPPED, work), work / "gw.log")
    prometheus, process = start_prometheus(gateway.metrics_url.removeprefix("http://"), work)
    try:
        # Two phases with a scrape between them, so that every rate() sees an increase.
        wait_for("the first scrape", lambda: prometheus.query("switchboard_config_info"))
        load(gateway, 3)
        scraped_at = gateway.metric("switchboard_requests_total")
        wait_for(
            "a scrape after the first load",
            lambda: any(
                float(r["value"][1]) >= scraped_at
                for r in prometheus.query("sum(switchboard_requests_total)")
            ),
        )
        load(gateway, 3)
        total = gateway.metric("switchboard_requests_total")
        wait_for(
            "a scrape after the second load",
            lambda: any(
                float(r["value"][1]) >= total
                for r in prometheus.query("sum(switchboard_requests_total)")
            ),
        )
        yield gateway, prometheus
    finally:
        process.stop()
        gateway.process.stop()


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


@pytest.mark.parametrize(("title", "expr"), queries(), ids=[t for t, _ in queries()])
def test_every_panel_query_returns_data(
    scraped: tuple[Gateway, Prometheus], title: str, expr: str
) -> None:
    _, prometheus = scraped
    result = prometheus.query(expr)
    assert result, f"{title}: no data for {expr}"
    assert finite(result), f"{title}: only NaN/Inf for {expr}: {result}"


def test_cost_by_key_equals_the_access_log(scraped: tuple[Gateway, Prometheus]) -> None:
    gateway, prometheus = scraped
    lines = wait_for("the access log", lambda: access_lines(gateway))
    by_key: dict[str, float] = {}
    tokens: dict[tuple[str, str], int] = {}
    for line in lines:
        by_key[line["key"]] = by_key.get(line["key"], 0.0) + line["cost_usd"]
        for kind, n in (line.get("tokens") or {}).items():
            tokens[line["key"], kind] = tokens.get((line["key"], kind), 0) + n
    assert set(by_key) == {"full/full", "narrow/narrow", "rate/rate", "budget/budget"}
    assert all(usd > 0 for usd in by_key.values())
    refused = {
        (r["metric"]["key"], r["metric"]["limit"])
        for r in prometheus.query("switchboard_limit_rejections_total > 0")
    }
    assert refused == {("rate/rate", "requests"), ("budget/budget", "budget")}
    stored = {
        r["metric"]["key"]: float(r["value"][1])
        for r in prometheus.query("sum by (key) (switchboard_key_cost_usd_total)")
    }
    assert stored.keys() == by_key.keys()
    for key, usd in by_key.items():
        # The log rounds each line to 8 decimals.
        assert stored[key] == pytest.approx(usd, abs=1e-8 * len(lines))
        assert gateway.metric("switchboard_key_cost_usd_total", key=key) == pytest.approx(
            usd, abs=1e-8 * len(lines)
        )
    for (key, kind), n in tokens.items():
        assert gateway.metric("switchboard_key_tokens_total", key=key, kind=kind) == n


def test_dashboard_json_is_well_formed() -> None:
    all_panels = panels()
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    for panel in all_panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
    assert Path(ROOT / "docs/observability/grafana-dashboard.json").resolve() == DASHBOARD
