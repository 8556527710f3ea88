"""The CRDs on a real kube-apiserver: schema, CEL messages, defaults, explain, printer columns.

Covers: every case in tests/control_plane/crd_cases/<kind>/<case>.yaml through
`kubectl apply --dry-run=server` (accepted, or rejected with the human message in the table);
the schema's defaults applied by the apiserver; `kubectl explain` teaching the fields;
`kubectl get switchboard` listing all three kinds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.controlplane import ControlPlane

CASES = Path(__file__).parent / "crd_cases"

EXPECTED = {
    "provider/http-external": "baseUrl must use https:// for external hosts",
    "provider/userinfo": "baseUrl must not contain credentials",
    "provider/ftp": "baseUrl must be an absolute http:// or https:// URL",
    "provider/duplicate-model": "Duplicate value",
    "provider/credential-header": "headers must not set Authorization",
    "provider/bad-duration": "spec.timeouts.connect",
    "provider/bad-api": 'Unsupported value: "openai"',
    "provider/in-cluster-http": None,
    "provider/loopback-ipv6": None,
    "provider/minimal": None,
    "agent/no-colon": "must be 'provider:model'",
    "agent/bad-fallback": "must be 'provider:model'",
    "agent/colons-in-model": None,
    "accesskeyconfig/wildcard-not-alone": "'*' allows everything: list it alone",
    "accesskeyconfig/no-keys": "spec.keys",
    "accesskeyconfig/bad-model-ref": "must be 'provider:model'",
    "accesskeyconfig/ok": None,
}


def test_every_case_is_in_the_table() -> None:
    found = {f"{p.parent.name}/{p.stem}" for p in CASES.glob("*/*.yaml")}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_crd_case(control_plane: ControlPlane, case: str) -> None:
    result = control_plane.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        "default",
        "-f",
        str(CASES / f"{case}.yaml"),
        check=False,
    )
    expected = EXPECTED[case]
    if expected is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, f"{case} was accepted"
        assert expected in result.stderr, result.stderr


def test_defaults_are_applied(control_plane: ControlPlane) -> None:
    result = control_plane.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        "default",
        "-o",
        "json",
        "-f",
        str(CASES / "provider/minimal.yaml"),
    )
    spec = json.loads(result.stdout)["spec"]
    assert spec["api"] == "openai-completions"
    assert spec["timeouts"] == {"connect": "5s", "firstToken": "60s", "total": "600s"}
    model = spec["models"][0]
    assert (model["contextWindow"], model["maxTokens"], model["reasoning"]) == (200000, 8192, False)
    assert model["input"] == ["text"]


def test_explain_teaches_the_api(control_plane: ControlPlane) -> None:
    text = control_plane.kubectl("explain", "customprovider.spec.models").stdout
    assert "contextWindow" in text and "Model ID sent upstream verbatim" in text
    agent = control_plane.kubectl("explain", "agent.spec").stdout
    assert "fallbacks" in agent and "split at the first colon" in agent
    keys = control_plane.kubectl("explain", "accesskeyconfig.spec.allowedProviders").stdout
    assert "allows every provider of the namespace" in keys
