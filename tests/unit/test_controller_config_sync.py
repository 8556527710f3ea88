"""config-sync's file handling, without a cluster (the watch itself is tested on the control
plane in tests/control_plane/test_operator_config_sync.py).

Covers: a valid Secret version is written as the routing file (JSON, loadable, same hash);
the same hash again is not rewritten; a corrupted value, a missing key and a deleted Secret
keep the last good file; the hash of an existing file is read at start, so a restart does not
rewrite it; the atomic write leaves no temporary file.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from kubernetes import client as k8s

from switchboard.controller import config_sync, publish
from switchboard.routing import config as rc


def _config(description: str) -> rc.RoutingConfig:
    agent = rc.Agent(
        name="a", description=description, chain=(rc.Candidate(provider="p", model="m"),)
    )
    return rc.sealed(rc.RoutingConfig(namespace="ns", agents={"a": agent}))


def _secret(data: dict[str, str] | None) -> k8s.V1Secret:
    return k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=publish.SECRET_NAME), data=data)


def _encoded(config: rc.RoutingConfig) -> dict[str, str]:
    return {publish.SECRET_KEY: base64.b64encode(rc.to_secret_bytes(config)).decode()}


def _syncer(out: Path) -> config_sync.Syncer:
    api = k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration()))  # never called here
    return config_sync.Syncer(api, "ns", publish.SECRET_NAME, out)


def test_writes_follows_and_keeps_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "config" / "routing.json"
    syncer = _syncer(out)
    first = _config("one")
    syncer.apply(_secret(_encoded(first)))
    assert rc.load(out.read_bytes()).hash == first.hash
    stamp = out.stat().st_mtime_ns
    syncer.apply(_secret(_encoded(first)))
    assert out.stat().st_mtime_ns == stamp, "same hash: not rewritten"

    second = _config("two")
    with caplog.at_level(logging.INFO):
        syncer.apply(_secret(_encoded(second)))
    assert f"{first.hash[:12]} -> {second.hash[:12]}" in caplog.text
    good = out.read_bytes()
    for bad in ({publish.SECRET_KEY: "bm90IGpzb24="}, {publish.SECRET_KEY: "%%%"}, {}, None):
        syncer.apply(_secret(bad))
        assert out.read_bytes() == good
    syncer.apply(None)
    assert out.read_bytes() == good
    assert "keeping the last good file" in caplog.text
    assert [p.name for p in out.parent.iterdir()] == ["routing.json"]


def test_existing_file_is_not_rewritten_after_restart(tmp_path: Path) -> None:
    out = tmp_path / "routing.json"
    config = _config("one")
    config_sync.write_atomically(out, rc.to_json(config))
    stamp = out.stat().st_mtime_ns
    syncer = _syncer(out)
    assert syncer.hash == config.hash
    syncer.apply(_secret(_encoded(config)))
    assert out.stat().st_mtime_ns == stamp
