"""Generate the CustomResourceDefinitions from the pydantic models. All schema rewrites live here.

The models in `switchboard.api` are the source of truth; `crds/*.yaml` and the Helm chart's copy are
generated (`switchboard crds --out crds/`) and never edited by hand. The rewrites turn pydantic's
JSON Schema into a Kubernetes structural schema:

- `$ref`s are inlined (a structural schema has no references);
- `title`s are dropped and `X | None` becomes `X` with `nullable: true`;
- `default: null` is dropped, deliberate defaults stay (the apiserver applies them);
- `additionalProperties: false` is dropped (Kubernetes prunes and rejects unknown fields itself);
- `propertyNames` is dropped and `patternProperties` becomes `additionalProperties` (neither is
  structural); map keys are checked by CEL rules on the map instead;
- `exclusiveMinimum: N` (pydantic's `gt=N`) becomes `minimum: N` with `exclusiveMinimum: true`
  (OpenAPI v3's boolean form), and the same for maxima.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from switchboard.api.base import CATEGORY, GROUP, VERSION
from switchboard.api.kinds import KINDS, Kind


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        merged = {**_inline(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "propertyNames", "$defs"):
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {name: _inline(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _inline(value, defs)
    if "anyOf" in out:
        variants = [v for v in out["anyOf"] if v != {"type": "null"}]
        if len(variants) == 1 and len(variants) < len(out["anyOf"]):
            del out["anyOf"]
            out = {**variants[0], **out, "nullable": True}
    if "patternProperties" in out:
        (value_schema,) = out.pop("patternProperties").values()
        out["additionalProperties"] = value_schema
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(out.get(flag), (int, float)) and not isinstance(out[flag], bool):
            out[bound] = out[flag]
            out[flag] = True
    return out


def structural(model: type[Any]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _order(_inline(raw, defs))
    return schema


_KEY_ORDER = (
    "description",
    "type",
    "format",
    "nullable",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
)


def _order(node: Any) -> Any:
    """Stable, readable key order: description first, then type and constraints."""
    if isinstance(node, list):
        return [_order(item) for item in node]
    if not isinstance(node, dict):
        return node
    rank = {key: i for i, key in enumerate(_KEY_ORDER)}
    keys = sorted(node, key=lambda k: (rank.get(k, len(rank)), k))
    if "properties" in node:
        return {
            k: (
                {n: _order(p) for n, p in node[k].items()} if k == "properties" else _order(node[k])
            )
            for k in keys
        }
    return {k: _order(node[k]) for k in keys}


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = structural(kind.spec)
    status_schema = structural(kind.status)
    schema = {
        "description": kind.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion of this object: switchboard.dev/v1alpha1.",
                "type": "string",
            },
            "kind": {"description": f"Kind of this object: {kind.kind}.", "type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "switchboard"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in kind.columns],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def file_name(kind: Kind) -> str:
    return f"{kind.plural}.{GROUP}.yaml"


def render(kind: Kind) -> str:
    header = "# Generated by `switchboard crds --out crds/` from operator/switchboard/api.\n"
    return header + yaml.safe_dump(crd(kind), sort_keys=False, width=100, allow_unicode=True)


def render_all() -> dict[str, str]:
    """File name -> YAML text, for every kind, in a stable order."""
    return {file_name(k): render(k) for k in sorted(KINDS.values(), key=lambda k: k.plural)}


def render_stream() -> str:
    """Every CRD as one multi-document YAML stream."""
    return "---\n".join(render_all().values())
