"""Manifests on disk: the offline source for `render`, `validate` and `gateway --manifests`.

Reads files and directories (`*.yaml`, `*.yml`, `*.json`, recursively, in sorted order),
multi-document YAML and `kind: List`, and sorts the documents into Switchboard objects and
Secrets. Other Kubernetes kinds (Namespace, Deployment, ...) are skipped, so a GitOps directory
can be validated as it is. Every problem with a document is one line naming the file and the
document, never a traceback.

Secrets opt in, as in the cluster: only a Secret labeled `switchboard.dev/secret: "true"` is
read; a reference to another one is a problem on the referring object (`Loaded.unlabeled`).

`Watched` reads the same paths again and again for `switchboard gateway --manifests`, failing
safe: a file that cannot be read or parsed, or is caught half-written, keeps its last good
documents; an object whose new version is invalid keeps its last good version.
"""

from __future__ import annotations

import base64
import binascii
import time
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
    """Opted-in Secrets only: (namespace, name) -> decoded data."""
    unlabeled: set[tuple[str, str]] = field(default_factory=set)
    """Secrets present without the opt-in label: never read, named in problems."""
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
            (d.body for d in self.objects),
            self.secrets,
            default_namespace=default_namespace,
            unlabeled=self.unlabeled,
        )

    def merge(self, other: Loaded) -> None:
        self.objects.extend(other.objects)
        for key, data in other.secrets.items():
            self.secrets[key] = data
            self.unlabeled.discard(key)
        self.unlabeled.update(k for k in other.unlabeled if k not in self.secrets)
        self.errors.extend(other.errors)
        self.skipped += other.skipped


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


def add_text(loaded: Loaded, text: str, source: str, default_namespace: str) -> bool:
    """Parse one file's text into `loaded`. False (and one error line) when it is not YAML."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        loaded.errors.append(f"{source}:{where}: invalid YAML: {problem}")
        return False
    many = len(docs) > 1
    for index, doc in enumerate(docs, start=1):
        label = f"{source}#{index}" if many else source
        _add_document(loaded, doc, label, default_namespace)
    return True


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
    if (namespace, name) in loaded.secrets or (namespace, name) in loaded.unlabeled:
        loaded.errors.append(f"{label}: Secret/{namespace}/{name} is defined twice")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping) or labels.get(compiler.SECRET_LABEL) != "true":
        loaded.unlabeled.add((namespace, name))  # not opted in: its values are dropped here
        loaded.secrets.pop((namespace, name), None)
        return
    loaded.unlabeled.discard((namespace, name))
    loaded.secrets[(namespace, name)] = data


# --- watched manifests (gateway --manifests) ---------------------------------------------------

SETTLE_SECONDS = 0.05
"""A file is read again after this long; it is loaded once two reads agree."""
READ_ATTEMPTS = 20
_KEPT_REASONS = (compiler.Reason.INVALID_SPEC, compiler.Reason.INVALID_OBJECT)


@dataclass
class Reading:
    """One pass over watched manifests: what to compile, and what was refused and kept."""

    loaded: Loaded
    result: compiler.CompileResult
    refused: list[str]
    """One line per file or object whose new version was refused: `FILE: why; what is kept`."""


class Watched:
    """The manifests of `gateway --manifests`, read on every change, each part failing alone.

    - a file is loaded only when two reads `SETTLE_SECONDS` apart give the same bytes (a file
      being written is read again), and a file that became empty keeps its last documents (an
      editor truncates before it writes; delete the file to remove its objects);
    - a file that cannot be read or is not YAML keeps its last good documents;
    - an object whose new version is invalid (InvalidSpec, InvalidObject) keeps its last good
      version, so a typo in a served provider or key does not take it away. Missing Secrets and
      references are not held back: a revoked key must stop working.
    Not thread-safe: one `read()` at a time.
    """

    def __init__(self, paths: Iterable[str | Path], default_namespace: str) -> None:
        self.paths = tuple(Path(p) for p in paths)
        self.default_namespace = default_namespace
        self._files: dict[str, Loaded] = {}
        self._stamps: dict[str, tuple[int, int, int]] = {}
        self._objects: dict[compiler.ObjectRef, Mapping[str, Any]] = {}

    def read(self) -> Reading:
        """Raises FileNotFoundError when a watched path itself is missing."""
        refused: list[str] = []
        merged = Loaded()
        files: dict[str, Loaded] = {}
        stamps: dict[str, tuple[int, int, int]] = {}
        paths = files_in(self.paths)
        changed = []
        for path in paths:
            key = str(path)
            stamps[key] = _stamp(path)
            if key not in self._files or stamps[key] != self._stamps.get(key):
                changed.append(path)
        texts = _settled_texts(changed)
        for path in paths:
            key = str(path)
            if path in texts:
                part, why = self._parse(path, *texts[path])
            else:
                part, why = self._files[key], ""
            if part is None:
                old = self._files.get(key)
                stamps.pop(key, None)  # read it again next time
                if old is None:
                    refused.append(f"{key}: {why}; nothing from it is loaded")
                    continue
                refused.append(
                    f"{key}: {why}; keeping its last good version ({len(old.objects)} objects, "
                    f"{len(old.secrets) + len(old.unlabeled)} Secrets)"
                )
                part = old
            files[key] = part
            merged.merge(part)
        self._files, self._stamps = files, stamps
        result = merged.compile(self.default_namespace)
        kept = self._keep_last_good(merged, result, refused)
        if kept:
            result = merged.compile(self.default_namespace)
        self._objects = {
            ref: body
            for ref, body in self._bodies(merged).items()
            if ref in result.reports and not _invalid(result.reports[ref])
        }
        return Reading(merged, result, refused)

    def _parse(self, path: Path, text: str | None, why: str) -> tuple[Loaded | None, str]:
        if text is None:
            return None, why
        old = self._files.get(str(path))
        if not text.strip() and old is not None and (old.objects or old.secrets or old.unlabeled):
            return None, "the file is empty (being written?)"
        part = Loaded()
        if not add_text(part, text, str(path), self.default_namespace):
            return None, part.errors[-1].removeprefix(f"{path}:").strip()
        return part, ""

    def _bodies(self, loaded: Loaded) -> dict[compiler.ObjectRef, Mapping[str, Any]]:
        out: dict[compiler.ObjectRef, Mapping[str, Any]] = {}
        for doc in loaded.objects:
            out.setdefault(_ref(doc.body, self.default_namespace), doc.body)
        return out

    def _keep_last_good(
        self, merged: Loaded, result: compiler.CompileResult, refused: list[str]
    ) -> bool:
        kept = False
        for i, doc in enumerate(merged.objects):
            ref = _ref(doc.body, self.default_namespace)
            report = result.reports.get(ref)
            good = self._objects.get(ref)
            if report is None or good is None or not _invalid(report) or good is doc.body:
                continue
            first = next(p for p in report.errors if p.reason in _KEPT_REASONS)
            refused.append(
                f"{doc.source}: {ref}: {first.field}: {first.message}; keeping its last good "
                "version"
            )
            merged.objects[i] = Document(doc.source, good)
            kept = True
        return kept


def _ref(body: Mapping[str, Any], default_namespace: str) -> compiler.ObjectRef:
    meta = body.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return compiler.ObjectRef(
        str(body.get("kind") or ""),
        str(meta.get("namespace") or default_namespace),
        str(meta.get("name") or "<unnamed>"),
    )


def _invalid(report: compiler.ObjectReport) -> bool:
    return any(p.reason in _KEPT_REASONS for p in report.errors)


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0, 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _settled_texts(paths: list[Path]) -> dict[Path, tuple[str | None, str]]:
    """Each file's text once two reads `SETTLE_SECONDS` apart agree; (None, why) otherwise.

    All files are read, then read again after one pause, so many files cost one pause."""
    out: dict[Path, tuple[str | None, str]] = {}
    previous: dict[Path, bytes] = {}
    pending = list(paths)
    for attempt in range(READ_ATTEMPTS):
        if not pending:
            break
        if attempt:
            time.sleep(SETTLE_SECONDS)  # runs in a worker thread, off the event loop
        still = []
        for path in pending:
            try:
                data = path.read_bytes()
            except OSError as exc:
                out[path] = (None, f"cannot read: {exc.strerror or exc}")
                continue
            if previous.get(path) != data:
                previous[path] = data
                still.append(path)
                continue
            try:
                out[path] = (data.decode("utf-8"), "")
            except UnicodeDecodeError as exc:
                out[path] = (None, f"not UTF-8 text: {exc.reason} at byte {exc.start}")
        pending = still
    for path in pending:
        out[path] = (None, f"still changing after {READ_ATTEMPTS} reads")
    return out
