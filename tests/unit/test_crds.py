"""The generated CRDs: fresh (no drift from the models), every property described, CEL rules.

Covers:
- `switchboard crds` output equals `crds/` and the Helm chart's copy (the fix is `make crds`);
- every schema property, at any depth, has a description (so `kubectl explain` teaches the API);
- every CEL rule accepts and rejects what it should, evaluated offline with cel-python;
- the CEL URL rule and the compiler's URL rule agree on every case of the URL table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy import celtypes

from switchboard.api import crdgen, urls

from .test_urls import URL_CASES

ROOT = Path(__file__).resolve().parents[2]


def test_crds_are_fresh() -> None:
    for name, text in crdgen.render_all().items():
        for directory in (ROOT / "crds", ROOT / "helm/switchboard/crds"):
            path = directory / name
            assert path.exists(), f"{path} is missing: run `make crds`"
            assert path.read_text() == text, f"{path} is stale: run `make crds` and commit"
    assert sorted(p.name for p in (ROOT / "crds").glob("*.yaml")) == sorted(crdgen.render_all())


def test_stream_is_every_crd() -> None:
    docs = list(yaml.safe_load_all(crdgen.render_stream()))
    assert [d["spec"]["names"]["kind"] for d in docs] == [
        "AccessKeyConfig",
        "Agent",
        "CustomProvider",
    ]


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from _walk(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for text in crdgen.render_all().values():
        crd = yaml.safe_load(text)
        kind = crd["spec"]["names"]["kind"]
        (version,) = crd["spec"]["versions"]
        yield kind, version["schema"]["openAPIV3Schema"]


def test_every_property_has_a_description() -> None:
    missing = []
    for kind, schema in _schemas():
        for path, node in _walk(schema, kind):
            if path.endswith(".metadata") or path.endswith("[]") or path.endswith("{}"):
                continue
            if not node.get("description"):
                missing.append(path)
    assert missing == []


def test_structural_schema_shapes() -> None:
    for _, schema in _schemas():
        for path, node in _walk(schema, ""):
            assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
            assert "patternProperties" not in node and "propertyNames" not in node, path
            assert "type" in node, f"{path} has no type"


def test_crd_metadata() -> None:
    for text in crdgen.render_all().values():
        spec = yaml.safe_load(text)["spec"]
        assert spec["scope"] == "Namespaced"
        assert spec["names"]["categories"] == ["switchboard"]
        (version,) = spec["versions"]
        assert version["subresources"] == {"status": {}}
        columns = [c["name"] for c in version["additionalPrinterColumns"]]
        assert columns[0] == "Ready" and columns[-1] == "Age"
        conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
            "conditions"
        ]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


# --- CEL, offline --------------------------------------------------------------------------


def _lower_ascii(value: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(str(value).lower())


def _rules(kind: str, path: str) -> list[dict[str, str]]:
    for k, schema in _schemas():
        if k == kind:
            for p, node in _walk(schema, k):
                if p == f"{kind}.{path}":
                    return list(node.get("x-kubernetes-validations", []))
    raise AssertionError(f"no schema node {kind}.{path}")


def _violations(kind: str, path: str, value: Any) -> list[str]:
    """Messages of the CEL rules at `kind.path` that `value` breaks."""
    env = celpy.Environment()
    out = []
    for rule in _rules(kind, path):
        program = env.program(env.compile(rule["rule"]), functions={"lowerAscii": _lower_ascii})
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            out.append(rule["message"])
    return out


@pytest.mark.parametrize(("url", "ok"), URL_CASES)
def test_cel_base_url_agrees_with_compiler(url: str, ok: bool) -> None:
    cel_ok = not _violations("CustomProvider", "spec.baseUrl", url)
    assert cel_ok is ok, f"CEL says {cel_ok} for {url}"
    assert (urls.check_base_url(url) is None) is ok, f"compiler disagrees on {url}"


def test_cel_base_url_messages() -> None:
    assert _violations("CustomProvider", "spec.baseUrl", "http://api.example.com/v1") == [
        urls.HTTPS_MESSAGE
    ]
    assert _violations("CustomProvider", "spec.baseUrl", "https://u:p@api.example.com") == [
        urls.USERINFO_MESSAGE
    ]
    assert _violations("CustomProvider", "spec.baseUrl", "ftp://x") == [urls.SCHEME_MESSAGE]
    assert _violations("CustomProvider", "spec.baseUrl", "http://ollama.ml.svc:11434/v1") == []


CEL_CASES = [
    # kind, path, value, broken rule message fragment (None: accepted)
    ("CustomProvider", "spec.models", [{"id": "a"}, {"id": "b"}], None),
    ("CustomProvider", "spec.models", [{"id": "a"}, {"id": "a"}], "unique"),
    ("CustomProvider", "spec.headers", {"anthropic-version": "2023-06-01"}, None),
    ("CustomProvider", "spec.headers", {"Authorization": "Bearer x"}, "must not set"),
    ("CustomProvider", "spec.headers", {"X-API-KEY": "x"}, "must not set"),
    ("CustomProvider", "spec.headers", {"bad header": "x"}, "HTTP tokens"),
    ("CustomProvider", "spec.apis", ["openai-completions", "anthropic-messages"], None),
    ("CustomProvider", "spec.apis", ["anthropic-messages", "anthropic-messages"], "twice"),
    ("CustomProvider", "spec.basePaths", {"anthropic-messages": "/anthropic"}, None),
    ("CustomProvider", "spec.basePaths", {"anthropic": "/anthropic"}, "keys must be APIs"),
    ("CustomProvider", "spec", {"api": "openai-completions"}, None),
    (
        "CustomProvider",
        "spec",
        {"api": "anthropic-messages", "apis": ["openai-completions"]},
        "one of apis",
    ),
    (
        "CustomProvider",
        "spec",
        {"api": "openai-completions", "apis": ["anthropic-messages", "openai-completions"]},
        None,
    ),
    (
        "CustomProvider",
        "spec",
        {"api": "openai-completions", "basePaths": {"anthropic-messages": "/"}},
        "basePaths may only name",
    ),
    (
        "CustomProvider",
        "spec",
        {
            "api": "openai-completions",
            "apis": ["openai-completions", "anthropic-messages"],
            "basePaths": {"anthropic-messages": "/"},
        },
        None,
    ),
    ("CustomProvider", "spec.headers", {"Host": "x"}, "the gateway sets them"),
    ("CustomProvider", "spec.headers", {"content-LENGTH": "1"}, "the gateway sets them"),
    ("CustomProvider", "spec.headers{}", "équipe\tplateforme ~", None),
    ("CustomProvider", "spec.headers{}", "", None),
    ("CustomProvider", "spec.headers{}", "team \u2014 platform", "beyond U+00FF"),
    ("CustomProvider", "spec.headers{}", "a\r\nX-Injected: 1", "no CR, LF"),
    ("CustomProvider", "spec.headers{}", "nul\x00", "no CR, LF"),
    ("CustomProvider", "spec.headers{}", "del\x7f", "no CR, LF"),
    ("Agent", "spec.model", "ollama:qwen2.5-coder:32b", None),
    ("Agent", "spec.model", "vllm:Qwen/Qwen2.5-Coder-32B-Instruct", None),
    ("Agent", "spec.model", "qwen2.5-coder", "provider:model"),
    ("Agent", "spec.model", ":model", "provider:model"),
    ("Agent", "spec.model", "ollama:", "provider:model"),
    ("Agent", "spec.model", "Ollama:x", "provider:model"),
    ("Agent", "spec.fallbacks[]", "anthropic:claude-sonnet-4-6", None),
    ("Agent", "spec.fallbacks[]", "claude", "provider:model"),
    ("Agent", "spec.imageModel", "llamacpp:qwen2.5-vl-7b-instruct", None),
    ("AccessKeyConfig", "spec.allowedProviders", ["*"], None),
    ("AccessKeyConfig", "spec.allowedProviders", ["vllm", "ollama"], None),
    ("AccessKeyConfig", "spec.allowedProviders", ["*", "vllm"], "alone"),
    ("AccessKeyConfig", "spec.allowedAgents", ["coder", "*"], "alone"),
    ("AccessKeyConfig", "spec.allowedModels[]", "vllm:m", None),
    ("AccessKeyConfig", "spec.allowedModels[]", "vllm", "provider:model"),
]


@pytest.mark.parametrize(("kind", "path", "value", "fragment"), CEL_CASES)
def test_cel_rule(kind: str, path: str, value: Any, fragment: str | None) -> None:
    messages = _violations(kind, path, value)
    if fragment is None:
        assert messages == []
    else:
        assert len(messages) == 1 and fragment in messages[0], messages
