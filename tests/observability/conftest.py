"""Fixtures of the observability tier: real receivers and a real Prometheus, on loopback.

- `collector`: the OpenTelemetry Collector of tools/otelcol (OTLP/HTTP receiver, file exporter),
  built once per machine; spans are read back from its file, as it wrote them.
- `traced_gateway`: `switchboard gateway` as a process with the standard OTEL_* environment
  pointing at the collector, over the fake upstreams of the gateway tier.
- `prometheus`: Debian's prometheus binary (not its system service) with a generated scrape
  config, scraping a gateway process every second.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.gateway.conftest import (
    ROOT,
    Gateway,
    Process,
    Upstreams,
    gateway,  # noqa: F401  (a gateway process without tracing, of the gateway tier)
    manifests,
    render_text,
    start,
    start_gateway,
    upstreams,  # noqa: F401  (the fake upstreams, a session fixture of the gateway tier)
)
from tests.support import wait
from tests.upstreams.server import free_port

BUILD = ROOT / "tools/otelcol/build.sh"


def wait_for(what: str, check: Any, timeout: float = 30.0, step: float = 0.1) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` at the deadline."""
    return wait.wait_for(check, what, timeout, step)


@dataclass
class Collector:
    endpoint: str
    """OTLP/HTTP base URL (what OTEL_EXPORTER_OTLP_ENDPOINT takes)."""
    out: Path

    def spans(self) -> list[dict[str, Any]]:
        """Every span the collector wrote, each with its resource's service.name added."""
        spans: list[dict[str, Any]] = []
        if not self.out.exists():
            return spans
        for line in self.out.read_bytes().splitlines():
            if not line.strip():
                continue
            for rs in orjson.loads(line).get("resourceSpans", []):
                service = attrs(rs.get("resource", {})).get("service.name")
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        spans.append({**span, "service": service})
        return spans

    def trace(self, trace_id: str, count: int) -> list[dict[str, Any]]:
        """The spans of one trace once `count` of them arrived, in start order."""

        def got() -> list[dict[str, Any]] | None:
            found = [s for s in self.spans() if s["traceId"] == trace_id]
            return found if len(found) >= count else None

        found: list[dict[str, Any]] = wait_for(f"{count} spans of trace {trace_id}", got)
        return sorted(found, key=lambda s: int(s["startTimeUnixNano"]))


def attrs(item: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON attributes -> a plain dict (ints from their string form, arrays as lists)."""

    def value(v: dict[str, Any]) -> Any:
        if "intValue" in v:
            return int(v["intValue"])
        if "arrayValue" in v:
            return [value(x) for x in v["arrayValue"].get("values", [])]
        for kind in ("stringValue", "doubleValue", "boolValue"):
            if kind in v:
                return v[kind]
        return None

    return {a["key"]: value(a["value"]) for a in item.get("attributes", [])}


@pytest.fixture(scope="session")
def otelcol_bin() -> Path:
    """The collector binary: built on first use (minutes), cached per machine after."""
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{BUILD} failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def collector(otelcol_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    work = tmp_path_factory.mktemp("otelcol")
    port = free_port()
    out = work / "spans.jsonl"
    config = work / "config.yaml"
    config.write_text(
        f"""
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  file:
    path: {out}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"""
    )
    process = start(
        [str(otelcol_bin), f"--config=file:{config}"],
        work / "otelcol.log",
        f"http://127.0.0.1:{port}/v1/traces",
        python=False,
    )
    yield Collector(f"http://127.0.0.1:{port}", out)
    process.stop()


TRACE_ENV = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_SERVICE_NAME": "switchboard-test",
    "OTEL_BSP_SCHEDULE_DELAY": "100",
}


@pytest.fixture(scope="session")
def traced_gateway(
    upstreams: Upstreams,  # noqa: F811
    collector: Collector,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("traced")
    env = {**TRACE_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
    served = start_gateway(render_text(manifests(upstreams), work), work / "gw.log", env=env)
    yield served
    served.process.stop()


def access_lines(served: Gateway) -> list[dict[str, Any]]:
    """The gateway's access-log lines so far (flushed every 200 ms)."""
    lines = []
    for raw in served.process.log.read_bytes().splitlines():
        if raw.startswith(b"{") and b'"switchboard.gateway.access"' in raw:
            lines.append(orjson.loads(raw))
    return lines


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise AssertionError(
            "prometheus is not installed: `make test` installs Debian's package "
            "(apt-get install -y prometheus); only its binaries are used"
        )
    return path


def start_prometheus(target: str, work: Path) -> tuple[Prometheus, Process]:
    """A Prometheus scraping `target` (host:port) every second, with the labels a
    ServiceMonitor scrape would give (namespace, pod, job)."""
    port = free_port()
    config = work / "prometheus.yml"
    config.write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: switchboard-gateway-metrics
    static_configs:
      - targets: ["{target}"]
        labels: {{namespace: ai, pod: switchboard-gateway-0}}
"""
    )
    process = start(
        [
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        work / "prometheus.log",
        f"http://127.0.0.1:{port}/-/ready",
        python=False,
    )
    return Prometheus(f"http://127.0.0.1:{port}"), process
