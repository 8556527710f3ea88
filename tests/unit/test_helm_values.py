"""The chart's files without helm: the Argo CD health Lua, its copy in docs/helm.md, the values.

Covers: the Lua health check run with lupa over every case of the mapping in docs/helm.md (no
status, empty conditions, generation behind at the object and at the Ready condition, Ready
True/False/Unknown, NotPublished, Stalled, messages falling back to the reason); the script in
docs/helm.md equals helm/switchboard/files/argocd-health.lua; every value in values.yaml is
declared, typed and described in values.schema.json, which refuses unknown keys at every level.
(Rendering, lint and installs: tests/control_plane/test_helm.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm/switchboard"
LUA = (CHART / "files/argocd-health.lua").read_text()
WAITING = "Waiting for the Switchboard operator"
READY = {"type": "Ready", "status": "True", "reason": "Served", "message": "served by the gateway"}


def argo(obj: dict[str, Any]) -> tuple[str, str]:
    lupa = pytest.importorskip("lupa", reason="lupa (dev extra) runs the Argo CD Lua check")
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)

    def table(value: Any) -> Any:
        if isinstance(value, dict):
            return runtime.table_from({k: table(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([table(v) for v in value])
        return value

    # Argo CD runs the script as a chunk with the resource in the global `obj`.
    run = runtime.eval("function(o, script) obj = o; return script() end")
    result = run(table(obj), runtime.eval(f"function()\n{LUA}\nend"))
    return str(result["status"]), str(result["message"])


def obj(generation: int = 2, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "p", "generation": generation}}
    if status:
        body["status"] = status
    return body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (obj(), ("Progressing", WAITING)),
        (obj(observedGeneration=2, conditions=[]), ("Progressing", WAITING)),
        (
            obj(observedGeneration=1, conditions=[READY]),
            ("Progressing", "The operator has not processed generation 2 yet"),
        ),
        (
            obj(conditions=[READY]),
            ("Progressing", "The operator has not processed generation 2 yet"),
        ),
        (obj(observedGeneration=2, conditions=[READY]), ("Healthy", "served by the gateway")),
        (
            obj(observedGeneration=2, conditions=[{**READY, "observedGeneration": 1}]),
            ("Progressing", "Ready describes generation 1"),
        ),
        (
            obj(observedGeneration=2, conditions=[{**READY, "observedGeneration": 2}]),
            ("Healthy", "served by the gateway"),
        ),
        (
            obj(
                observedGeneration=2,
                conditions=[
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "SecretNotFound",
                        "message": "spec.apiKeySecretRef: Secret 'k' not found",
                    }
                ],
            ),
            ("Degraded", "spec.apiKeySecretRef: Secret 'k' not found"),
        ),
        (
            obj(
                observedGeneration=2,
                conditions=[{"type": "Ready", "status": "False", "reason": "InvalidSpec"}],
            ),
            ("Degraded", "InvalidSpec"),
        ),
        (
            obj(
                observedGeneration=2,
                conditions=[
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "NotPublished",
                        "message": "the routing config is not written yet",
                    }
                ],
            ),
            ("Progressing", "the routing config is not written yet"),
        ),
        (
            obj(
                observedGeneration=2,
                conditions=[{"type": "Ready", "status": "Unknown", "message": "checking"}],
            ),
            ("Progressing", "checking"),
        ),
        (
            obj(
                observedGeneration=2,
                conditions=[
                    READY,
                    {"type": "Stalled", "status": "True", "message": "config too large"},
                ],
            ),
            ("Degraded", "config too large"),
        ),
        (
            obj(observedGeneration=2, conditions=[{"type": "Accepted", "status": "True"}]),
            ("Progressing", "No Ready condition yet"),
        ),
    ],
    ids=[
        "no-status",
        "no-conditions",
        "generation-behind",
        "no-observed-generation",
        "ready",
        "ready-condition-behind",
        "ready-condition-current",
        "ready-false",
        "ready-false-reason-only",
        "not-published",
        "unknown",
        "stalled",
        "no-ready-condition",
    ],
)
def test_argocd_health(body: dict[str, Any], expected: tuple[str, str]) -> None:
    assert argo(body) == expected


def test_docs_carry_the_same_lua() -> None:
    doc = (ROOT / "docs/helm.md").read_text()
    key = "resource.customizations.health.switchboard.dev_CustomProvider: |\n"
    assert key in doc
    block = doc.split(key, 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    assert "\n".join(lines).strip() == LUA.strip()
    for kind in ("AccessKeyConfig", "Agent"):
        assert f"resource.customizations.health.switchboard.dev_{kind}: |" in doc


def _walk_values(values: Any, schema: dict[str, Any], path: str) -> None:
    if "$ref" in schema:
        schema = _definition(schema["$ref"])
    assert schema.get("description"), f"{path}: no description"
    if isinstance(values, dict) and "properties" in schema:
        assert schema.get("additionalProperties") is False, f"{path}: unknown keys accepted"
        for key, value in values.items():
            assert key in schema["properties"], f"{path}.{key}: not in values.schema.json"
            _walk_values(value, schema["properties"][key], f"{path}.{key}")
        missing = set(schema["properties"]) - set(values)
        assert not missing, f"{path}: in the schema, not in values.yaml: {missing}"


SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def _definition(ref: str) -> dict[str, Any]:
    match = re.fullmatch(r"#/definitions/(\w+)", ref)
    assert match, ref
    definition: dict[str, Any] = SCHEMA["definitions"][match.group(1)]
    return definition


def test_values_and_schema_agree() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert SCHEMA["additionalProperties"] is False
    for key, value in values.items():
        assert key in SCHEMA["properties"], key
        _walk_values(value, SCHEMA["properties"][key], key)
    assert set(SCHEMA["properties"]) == set(values)
