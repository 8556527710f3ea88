"""The offline CLI as GitOps users run it: `switchboard validate`, `render`, `crds`.

Covers:
- validate: one line per problem `FILE: Kind/namespace/name: field.path: message`, exit 1 on
  errors and 0 otherwise, warnings only with --strict (but "cost is 0: this budget never
  fires", always), `--format github` annotations;
- a header value an HTTP header cannot carry is an error on its field;
- bad YAML, unknown kinds, unknown fields, objects without a name: one clear line, no traceback;
- render: yaml and json, identical bytes and hash twice and with shuffled documents, provider
  keys redacted unless --show-secrets, Secrets from --secrets;
- crds: stdout is the multi-document stream; --out writes one file per kind.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_validate_examples_ok() -> None:
    # Each example is meant for its own namespace, so they are validated one at a time.
    for example in sorted((ROOT / "examples").iterdir()):
        one = run("validate", "--strict", example)
        assert one.returncode == 0, one.stdout + one.stderr
        assert one.stdout == ""


def test_validate_http_external(tmp_path: Path) -> None:
    manifest = tmp_path / "p.yaml"
    manifest.write_text(
        "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
        "metadata: {name: ext, namespace: ml}\nspec: {baseUrl: 'http://api.example.com/v1'}\n"
    )
    result = run("validate", manifest)
    assert result.returncode == 1
    assert result.stdout.startswith(f"{manifest}: CustomProvider/ml/ext: spec.baseUrl: ")
    assert "https://" in result.stdout
    assert "Traceback" not in result.stderr
    github = run("validate", "--format", "github", manifest)
    assert github.stdout.startswith(f"::error file={manifest}::")


def test_validate_header_value_beyond_latin1(tmp_path: Path) -> None:
    """#10 "one bad header value stops a namespace": validate must catch it before the cluster."""
    manifest = tmp_path / "p.yaml"
    manifest.write_text(
        "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
        "metadata: {name: ext, namespace: ml}\n"
        "spec: {baseUrl: 'https://api.example.com/v1', headers: {X-Note: 'team \u2014 ml'}}\n",
        encoding="utf-8",
    )
    result = run("validate", manifest)
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith(
        f"{manifest}: CustomProvider/ml/ext: spec.headers[X-Note]: the value of header 'X-Note' "
        "has '\u2014' (U+2014) at position 5"
    ), result.stdout
    assert "replace it with plain ASCII text" in result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1,\n", "invalid YAML"),
        (
            "apiVersion: switchboard.dev/v1alpha1\nkind: Gadget\nmetadata: {name: g}\n",
            "unknown kind",
        ),
        ("just a string\n", "must be a mapping"),
        ("kind: Agent\n", "apiVersion and kind are required"),
        (
            "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\nmetadata: {}\n"
            "spec: {model: 'a:b'}\n",
            "metadata.name: the object has no name",
        ),
        (
            "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\nmetadata: {name: a}\n"
            "spec: {model: 'a:b', fallback: []}\n",
            "spec.fallback: unknown field",
        ),
        (
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\nmetadata: {name: a}\n"
            "spec: {baseUrl: 'http://a/v1', models: [{id: m, contextWindow: lots}]}\n",
            "spec.models[0].contextWindow",
        ),
    ],
)
def test_validate_bad_input_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(text)
    result = run("validate", manifest)
    assert result.returncode == 1
    assert expected in result.stdout
    assert str(manifest) in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_validate_missing_path() -> None:
    result = run("validate", "does/not/exist")
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_warnings_fail_only_with_strict(tmp_path: Path) -> None:
    manifest = tmp_path / "p.yaml"
    manifest.write_text(
        "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\nmetadata: {name: p}\n"
        "spec: {baseUrl: 'http://p/v1', models: [{id: m}]}\n"
    )
    assert run("validate", manifest).returncode == 0
    strict = run("validate", "--strict", manifest)
    assert strict.returncode == 1
    assert "has no cost" in strict.stdout and "(warning)" in strict.stdout


def _shuffled_copy(src: Path, dst: Path, seed: int) -> None:
    docs = []
    for path in sorted(src.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    random.Random(seed).shuffle(docs)
    dst.mkdir()
    (dst / "all.yaml").write_text(yaml.safe_dump_all(docs))


def test_render_fallback_is_deterministic(tmp_path: Path) -> None:
    first = run("render", "examples/fallback", "-o", "json")
    second = run("render", "examples/fallback", "-o", "json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    for seed in range(3):
        shuffled = tmp_path / f"s{seed}"
        _shuffled_copy(ROOT / "examples/fallback", shuffled, seed)
        again = run("render", shuffled, "-o", "json")
        assert again.stdout == first.stdout
    config = json.loads(first.stdout)
    assert len(config["hash"]) == 64
    assert config["providers"]["anthropic"]["api_key"] == "<redacted>"


def test_render_show_secrets_and_secrets_flag(tmp_path: Path) -> None:
    shown = json.loads(run("render", "examples/fallback", "-o", "json", "--show-secrets").stdout)
    assert shown["providers"]["anthropic"]["api_key"] == "sk-ant-replace-me"
    # Secrets may live elsewhere (e.g. sealed in another repo): --secrets adds them.
    objects = tmp_path / "objects.yaml"
    secrets = tmp_path / "secrets.yaml"
    docs = list(yaml.safe_load_all((ROOT / "examples/litellm/provider.yaml").read_text()))
    objects.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"]))
    secrets.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] == "Secret"]))
    assert run("validate", objects).returncode == 1
    assert run("validate", objects, "--secrets", secrets).returncode == 0
    rendered = yaml.safe_load(run("render", objects, "--secrets", secrets).stdout)
    assert rendered["providers"]["litellm"]["api_key"] == "<redacted>"


def test_crds_command(tmp_path: Path) -> None:
    stream = run("crds")
    assert stream.returncode == 0
    kinds = [d["spec"]["names"]["kind"] for d in yaml.safe_load_all(stream.stdout)]
    assert kinds == ["AccessKeyConfig", "Agent", "CustomProvider"]
    assert run("crds", "--out", tmp_path / "out").returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in (ROOT / "crds").iterdir()
    )


def test_validate_warns_about_a_budget_that_never_fires(tmp_path: Path) -> None:
    # Other warnings need --strict; this one is printed always: the budget would never refuse.
    (tmp_path / "a.yaml").write_text(
        "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\nmetadata: {name: local}\n"
        "spec:\n  baseUrl: http://ollama.models.svc:11434/v1\n"
        "  models: [{id: m, contextWindow: 4096, maxTokens: 512}]\n---\n"
        "apiVersion: v1\nkind: Secret\n"
        "metadata: {name: s, labels: {switchboard.dev/secret: 'true'}}\n"
        "stringData: {t: sk-sb-budget-test-0123456789abcdef}\n---\n"
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\nmetadata: {name: team}\n"
        "spec:\n  keys: [{name: a, secretRef: {name: s, key: t}}]\n"
        "  allowedProviders: [local]\n  budgets: [{usd: 10, window: month}]\n"
    )
    result = run("validate", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # the model's own NoPrices warning needs --strict
    assert (
        "AccessKeyConfig/default/team: spec.budgets[0]: cost is 0: this budget never fires"
        in (lines[0])
    )
    assert lines[0].endswith("(warning)")
