"""`--workers auto` and the merged /metrics of several worker processes (gateway/workers.py).

Covers:
- the cgroup CPU limit: v2 `cpu.max` (a quota, or `max`), v1 quota and period, none at all;
  `auto` rounds a fractional limit up and never exceeds the affinity set; bad values refused;
- merging expositions: counters and histogram buckets summed per label set, gauges by max (so
  `switchboard_config_info` lists every hash served), `_created` by min, label sets seen in one
  process only kept, `switchboard_workers` counting the processes; the output parses again.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from switchboard.gateway import workers


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "400000 100000\n"}, 4.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({}, None),
    ],
)
def test_cgroup_cpus(tmp_path: Path, files: dict[str, str], limit: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert workers.cgroup_cpus(tmp_path) == limit
    affinity = len(os.sched_getaffinity(0))
    expected = affinity if limit is None else max(1, min(affinity, -(-limit // 1)))
    assert workers.available_cpus(tmp_path) == expected


def test_parse() -> None:
    assert workers.parse("3") == 3
    assert workers.parse("auto") == workers.available_cpus()
    for bad, message in (("0", "at least 1"), ("two", "positive number or 'auto'")):
        with pytest.raises(ValueError, match=message):
            workers.parse(bad)


def _process(requests: int, hash_: str, latencies: list[float]) -> bytes:
    registry = CollectorRegistry()
    counter = Counter("switchboard_requests", "r", ["status"], registry=registry)
    counter.labels("200").inc(requests)
    if requests > 1:
        counter.labels("500").inc()
    Gauge("switchboard_config_info", "c", ["hash"], registry=registry).labels(hash_).set(1)
    histogram = Histogram("switchboard_latency_seconds", "l", registry=registry)
    for value in latencies:
        histogram.observe(value)
    return generate_latest(registry)


def test_merge() -> None:
    merged = workers.merge(
        [_process(3, "aaa", [0.01, 2.0]), _process(1, "bbb", [0.01]), _process(0, "aaa", [])]
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(merged.decode())
        for s in family.samples
    }
    assert samples[("switchboard_workers", ())] == 3
    assert samples[("switchboard_requests_total", (("status", "200"),))] == 4
    assert samples[("switchboard_requests_total", (("status", "500"),))] == 1
    assert samples[("switchboard_config_info", (("hash", "aaa"),))] == 1
    assert samples[("switchboard_config_info", (("hash", "bbb"),))] == 1
    assert samples[("switchboard_latency_seconds_count", ())] == 3
    assert samples[("switchboard_latency_seconds_bucket", (("le", "0.025"),))] == 2
    assert samples[("switchboard_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert samples[("switchboard_latency_seconds_sum", ())] == pytest.approx(2.02)
