"""The CRDs on a real kube-apiserver: schema, CEL messages, defaults, explain, printer columns.

Covers: every case in tests/control_plane/crd_cases/<kind>/<case>.yaml through
`kubectl apply --dry-run=server` (accepted, or rejected with the field path and the human
message in the table); every CEL rule in crds/ has a rejected case (http:// to external hosts,
upper case and `.svc.` suffix tricks, IP addresses; in-cluster, single-label, `.internal`,
localhost, loopback and trailing-dot names accepted; credentials in the URL or in headers;
header names; header values beyond Latin-1 or with CR/LF; headers the gateway owns;
duplicate model ids; `apis` listing an API twice or leaving out `api`, and
`basePaths` naming an API that is not spoken or not an API; `provider:model` refs in every
field; `*` not alone); the schema's defaults applied by the apiserver; `kubectl explain`
teaching the fields (spec.apis included); the APIs printer column; the `switchboard` category
listing all three kinds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from switchboard.api.provider import API_NOT_LISTED, BASE_PATH_NOT_SPOKEN
from tests.support.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]

CASES = Path(__file__).parent / "crd_cases"

REF = (
    "must be 'provider:model' (split at the first colon), for example "
    "'ollama:qwen2.5-coder:32b', where provider is a CustomProvider in the same namespace"
)
HTTPS = (
    "baseUrl must use https:// for external hosts; http:// is allowed only for in-cluster or "
    "private names (*.svc, *.svc.cluster.local, single-label names, *.internal, localhost, "
    "127.0.0.0/8, [::1])"
)
CREDENTIAL_HEADERS = (
    "headers must not set Authorization, X-Api-Key or Proxy-Authorization; put the key in a "
    "Secret and reference it with apiKeySecretRef"
)
WILDCARD = "'*' allows everything: list it alone"
HEADER_VALUE = (
    "header values must be visible ASCII or Latin-1 text, spaces and tabs (no CR, LF, NUL, "
    "other control characters or characters beyond U+00FF)"
)

# case -> None (accepted) or (field path, the message the apiserver prints for it)
EXPECTED: dict[str, tuple[str, str] | None] = {
    # CustomProvider.spec.baseUrl: three CEL rules
    "provider/ftp": (
        "spec.baseUrl",
        "baseUrl must be an absolute http:// or https:// URL with a host",
    ),
    "provider/userinfo": (
        "spec.baseUrl",
        "baseUrl must not contain credentials (user:password@); store the key in a Secret and "
        "reference it with apiKeySecretRef",
    ),
    "provider/http-external": ("spec.baseUrl", HTTPS),
    "provider/http-external-uppercase": ("spec.baseUrl", HTTPS),
    "provider/http-svc-suffix-trick": ("spec.baseUrl", HTTPS),
    "provider/http-ip-address": ("spec.baseUrl", HTTPS),
    "provider/in-cluster-http": None,
    "provider/http-fqdn-trailing-dot": None,
    "provider/http-single-label": None,
    "provider/http-internal": None,
    "provider/http-localhost": None,
    "provider/loopback-ipv6": None,
    "provider/https-external": None,
    # CustomProvider.spec.headers: two CEL rules
    "provider/credential-header": ("spec.headers", CREDENTIAL_HEADERS),
    "provider/credential-header-lowercase": ("spec.headers", CREDENTIAL_HEADERS),
    "provider/header-name-not-token": (
        "spec.headers",
        "header names must be HTTP tokens (letters, digits and !#$%&'*+.^_`|~-)",
    ),
    "provider/header-gateway-owned": (
        "spec.headers",
        "headers must not set Host, Content-Length, Transfer-Encoding, Connection, Keep-Alive, "
        "TE, Trailer, Upgrade, Proxy-Connection or Content-Type: the gateway sets them itself",
    ),
    # CustomProvider.spec.headers{}: one CEL rule per value
    "provider/header-value-not-latin1": ("spec.headers[X-Note]", HEADER_VALUE),
    "provider/header-value-line-break": ("spec.headers[X-Team]", HEADER_VALUE),
    "provider/header-value-latin1": None,
    # CustomProvider.spec.models: CEL rule (the list-map key reports the duplicate too)
    "provider/duplicate-model": ("spec.models", "model ids must be unique within a provider"),
    # CustomProvider.spec.apis and basePaths (#15): two CEL rules on spec, one on each field
    "provider/apis-twice": ("spec.apis", "apis must not list an API twice"),
    "provider/api-not-in-apis": ("spec", API_NOT_LISTED),
    "provider/base-path-not-spoken": ("spec", BASE_PATH_NOT_SPOKEN),
    "provider/base-path-bad-key": (
        "spec.basePaths",
        "basePaths keys must be APIs: openai-completions, openai-responses or anthropic-messages",
    ),
    "provider/several-apis": None,
    # schema (not CEL): enum, pattern
    "provider/bad-api": ("spec.api", 'Unsupported value: "openai"'),
    "provider/bad-duration": ("spec.timeouts.connect", "should match"),
    "provider/minimal": None,
    # Agent: model, fallbacks[], imageModel share one CEL rule
    "agent/no-colon": ("spec.model", REF),
    "agent/uppercase-provider": ("spec.model", REF),
    "agent/bad-fallback": ("spec.fallbacks[0]", REF),
    "agent/bad-image-model": ("spec.imageModel", REF),
    "agent/colons-in-model": None,
    # AccessKeyConfig
    "accesskeyconfig/wildcard-not-alone": ("spec.allowedProviders", WILDCARD),
    "accesskeyconfig/wildcard-agents-not-alone": ("spec.allowedAgents", WILDCARD),
    "accesskeyconfig/bad-model-ref": ("spec.allowedModels[0]", REF),
    "accesskeyconfig/no-keys": ("spec.keys", "should have at least 1 items"),
    "accesskeyconfig/ok": None,
    "accesskeyconfig/limit-without-rate": (
        "spec.limits",
        "each limit needs requestsPerMinute, tokensPerMinute or maxInFlight",
    ),
    "accesskeyconfig/budget-bad-window": ("spec.budgets[0].window", 'Unsupported value: "year"'),
    "accesskeyconfig/budget-zero": ("spec.budgets[0].usd", "should be greater than 0"),
    "accesskeyconfig/limits-ok": None,
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
        return
    assert result.returncode != 0, f"{case} was accepted"
    path, message = expected
    # one line per error: `<path>: Invalid value: ...: <message>` (or `* <path>: ...` for several)
    lines = [line for line in result.stderr.splitlines() if f"{path}: " in line]
    assert any(message in line for line in lines), result.stderr


def _cel_messages(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [r["message"] for r in node.get("x-kubernetes-validations", [])]
        return own + [m for v in node.values() for m in _cel_messages(v)]
    if isinstance(node, list):
        return [m for v in node for m in _cel_messages(v)]
    return []


def test_every_cel_rule_has_a_rejected_case() -> None:
    """Each CEL rule of crds/ has a case rejected with its message (a new rule needs one)."""
    rules = {
        m
        for crd in (ROOT / "crds").glob("*.yaml")
        for m in _cel_messages(yaml.safe_load(crd.read_text()))
    }
    assert len(rules) >= 8
    tested = {case[1] for case in EXPECTED.values() if case}
    assert rules - tested == set()


def test_category_lists_all_three_kinds(control_plane: ControlPlane) -> None:
    names = control_plane.kubectl(
        "api-resources", "--categories=switchboard", "-o", "name"
    ).stdout.split()
    assert sorted(names) == [
        "accesskeyconfigs.switchboard.dev",
        "agents.switchboard.dev",
        "customproviders.switchboard.dev",
    ]


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


def _explain(control_plane: ControlPlane, path: str) -> str:
    """`kubectl explain`, once the apiserver publishes the CRD's OpenAPI (it lags the CRD's
    Established condition by a moment when this test runs first)."""
    deadline = time.monotonic() + 30
    while True:
        result = control_plane.kubectl("explain", path, check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return result.stdout
        time.sleep(0.2)


def test_apis_explained_and_shown_in_a_column(control_plane: ControlPlane) -> None:
    text = _explain(control_plane, "customprovider.spec.apis")
    assert "Every API the server speaks" in text and "switchboard probe" in text
    assert "Per-API base path" in _explain(control_plane, "customprovider.spec")
    name = "apis-column"
    manifest = (
        (CASES / "provider/several-apis.yaml").read_text().replace("name: p}", f"name: {name}}}")
    )
    control_plane.kubectl("apply", "-n", "default", "-f", "-", input=manifest)
    try:
        table = control_plane.kubectl("get", "customprovider", name, "-n", "default").stdout
        head, row = table.splitlines()[:2]
        assert head.split()[:4] == ["NAME", "READY", "API", "APIS"]
        assert '["openai-completions","openai-responses","anthropic-messages"]' in row, table
    finally:
        control_plane.kubectl("delete", "customprovider", name, "-n", "default")


def test_explain_teaches_the_api(control_plane: ControlPlane) -> None:
    text = control_plane.kubectl("explain", "customprovider.spec.models").stdout
    assert "contextWindow" in text and "Model ID sent upstream verbatim" in text
    agent = control_plane.kubectl("explain", "agent.spec").stdout
    assert "fallbacks" in agent and "split at the first colon" in agent
    keys = control_plane.kubectl("explain", "accesskeyconfig.spec.allowedProviders").stdout
    assert "allows every provider of the namespace" in keys
