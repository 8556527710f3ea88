"""Manifests on disk: the offline source for `render`, `validate` and `gateway --manifests`.

Reads files and directories (`*.yaml`, `*.yml`, `*.json`, recursively, in sorted order),
multi-document YAML and `kind: List`, and sorts the documents into Switchboard objects and
Secrets. Other Kubernetes kinds (Namespace, Deployment, ...) are skipped, so a GitOps directory
can be validated as it is. Every problem with a document is one line naming the file and the
document, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from switchboard.api.base import GROUP
from switchboard.routing import compiler

_SUFFIXES = (".yaml", ".yml", ".json")
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Document:
    source: str
    """`FILE` or `FILE#N` (N counts documents from 1) when the file holds several."""
    body: Mapping[str, Any]


@dataclass
class Loaded:
    objects: list[Document] = field(default_factory=list)
    """Switchboard objects, in file order."""
    secrets: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """One line each: `FILE#N: what is wrong`."""
    skipped: int = 0
    """Documents of other kinds."""

    def sources(self, default_namespace: str) -> dict[tuple[str, str, str], str]:
        """(kind, namespace, name) -> the document it came from."""
        out: dict[tuple[str, str, str], str] = {}
        for doc in self.objects:
            meta = doc.body.get("metadata") or {}
            key = (
                str(doc.body.get("kind")),
                str(meta.get("namespace") or default_namespace),
                str(meta.get("name") or "<unnamed>"),
            )
            out.setdefault(key, doc.source)
        return out

    def compile(self, default_namespace: str = "default") -> compiler.CompileResult:
        return compiler.compile(
            (d.body for d in self.objects), self.secrets, default_namespace=default_namespace
        )


def files_in(paths: Iterable[str | Path]) -> list[Path]:
    """Every manifest file below `paths`, in sorted order. Missing paths raise FileNotFoundError."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file()))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return out


def load(paths: Iterable[str | Path], default_namespace: str = "default") -> Loaded:
    loaded = Loaded()
    for path in files_in(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            loaded.errors.append(f"{path}: cannot read: {exc}")
            continue
        add_text(loaded, text, str(path), default_namespace)
    return loaded


def add_text(loaded: Loaded, text: str, source: str, default_namespace: str) -> None:
    """Parse one file's text into `loaded`."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        loaded.errors.append(f"{source}:{where}: invalid YAML: {problem}")
        return
    many = len(docs) > 1
    for index, doc in enumerate(docs, start=1):
        label = f"{source}#{index}" if many else source
        _add_document(loaded, doc, label, default_namespace)


def _add_document(loaded: Loaded, doc: Any, label: str, default_namespace: str) -> None:
    if not isinstance(doc, Mapping):
        loaded.errors.append(f"{label}: a manifest must be a mapping, got {type(doc).__name__}")
        return
    kind = doc.get("kind")
    api_version = doc.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        loaded.errors.append(f"{label}: not a Kubernetes object (apiVersion and kind are required)")
        return
    if kind == "List" and api_version == "v1":
        items = doc.get("items")
        for i, item in enumerate(items if isinstance(items, list) else []):
            _add_document(loaded, item, f"{label} items[{i}]", default_namespace)
        return
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    if group == GROUP:
        if kind not in (compiler.PROVIDER, compiler.AGENT, compiler.ACCESS_KEY_CONFIG):
            loaded.errors.append(
                f"{label}: unknown kind {kind!r} in {GROUP}; expected CustomProvider, Agent or "
                "AccessKeyConfig"
            )
            return
        loaded.objects.append(Document(label, doc))
        return
    if kind == "Secret" and api_version == "v1":
        _add_secret(loaded, doc, label, default_namespace)
        return
    loaded.skipped += 1


def _add_secret(loaded: Loaded, doc: Mapping[str, Any], label: str, default_namespace: str) -> None:
    meta = doc.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        loaded.errors.append(f"{label}: Secret has no metadata.name")
        return
    namespace = str(meta.get("namespace") or default_namespace)
    data: dict[str, bytes] = {}
    raw = doc.get("data") or {}
    if not isinstance(raw, Mapping):
        loaded.errors.append(f"{label}: Secret/{namespace}/{name}: data must be a mapping")
        return
    for key, value in raw.items():
        try:
            data[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            # The value is not echoed: it is meant to be secret.
            loaded.errors.append(
                f"{label}: Secret/{namespace}/{name}: data.{key} is not valid base64; "
                "use stringData for plain text"
            )
    string_data = doc.get("stringData") or {}
    if isinstance(string_data, Mapping):
        for key, value in string_data.items():
            data[str(key)] = str(value).encode("utf-8")
    if (namespace, name) in loaded.secrets:
        loaded.errors.append(f"{label}: Secret/{namespace}/{name} is defined twice")
    loaded.secrets[(namespace, name)] = data
