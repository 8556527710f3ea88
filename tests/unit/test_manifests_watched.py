"""`manifests.Watched`, the source of `gateway --manifests`: each file and object fails alone.

Covers: a file that is not YAML, or turned empty, keeps its last good documents (and says so);
a file that was never good loads nothing; an invalid edit of an object keeps its last good
version, a valid edit replaces it; a deleted Secret is not held back (its key is revoked); an
unlabeled Secret is not read, offline as in the cluster; a deleted file removes its objects.
"""

from __future__ import annotations

from pathlib import Path

from switchboard import manifests

PROVIDER = """apiVersion: switchboard.dev/v1alpha1
kind: CustomProvider
metadata: {name: local}
spec:
  baseUrl: http://vllm.models.svc/v1
  api: API
  models: [{id: m, cost: {}}]
"""
KEYS = """apiVersion: v1
kind: Secret
metadata: {name: keys, labels: {switchboard.dev/secret: 'true'}}
stringData: {t: sk-watched-0123456789abcdef}
---
apiVersion: switchboard.dev/v1alpha1
kind: AccessKeyConfig
metadata: {name: team}
spec:
  keys: [{name: k, secretRef: {name: keys, key: t}}]
  allowedProviders: ['*']
"""


def _setup(tmp_path: Path) -> manifests.Watched:
    (tmp_path / "provider.yaml").write_text(PROVIDER.replace("API", "openai-completions"))
    (tmp_path / "keys.yaml").write_text(KEYS)
    return manifests.Watched([tmp_path], "team")


def test_bad_file_keeps_its_last_good_documents(tmp_path: Path) -> None:
    watched = _setup(tmp_path)
    first = watched.read()
    assert first.refused == [] and len(first.result.configs["team"].keys) == 1
    (tmp_path / "keys.yaml").write_text(KEYS + "kind: [oops\n")
    second = watched.read()
    (line,) = second.refused
    assert line.startswith(f"{tmp_path / 'keys.yaml'}: line ") and "invalid YAML" in line
    assert "keeping its last good version (1 objects, 1 Secrets)" in line
    assert second.result.configs["team"] == first.result.configs["team"]
    (tmp_path / "keys.yaml").write_text("")
    (line,) = watched.read().refused
    assert "the file is empty" in line
    (tmp_path / "keys.yaml").unlink()
    gone = watched.read()
    assert gone.refused == [] and gone.result.configs["team"].keys == {}


def test_a_file_never_good_loads_nothing(tmp_path: Path) -> None:
    watched = _setup(tmp_path)
    (tmp_path / "new.yaml").write_text("kind: [oops\n")
    (line,) = watched.read().refused
    assert line.endswith("nothing from it is loaded")


def test_invalid_object_keeps_its_last_good_version(tmp_path: Path) -> None:
    watched = _setup(tmp_path)
    good = watched.read().result.configs["team"]
    (tmp_path / "provider.yaml").write_text(PROVIDER.replace("API", "openai"))
    kept = watched.read()
    (line,) = kept.refused
    assert "CustomProvider/team/local: spec.api" in line
    assert line.endswith("keeping its last good version")
    assert kept.result.configs["team"] == good
    (tmp_path / "provider.yaml").write_text(PROVIDER.replace("API", "openai-responses"))
    edited = watched.read()
    assert edited.refused == [] and edited.result.configs["team"].providers["local"].api == (
        "openai-responses"
    )


def test_secrets_are_not_held_back_and_must_opt_in(tmp_path: Path) -> None:
    watched = _setup(tmp_path)
    assert len(watched.read().result.configs["team"].keys) == 1
    (tmp_path / "keys.yaml").write_text(
        KEYS.replace(", labels: {switchboard.dev/secret: 'true'}", "")
    )
    unlabeled = watched.read()
    assert unlabeled.refused == [] and unlabeled.result.configs["team"].keys == {}
    (problem,) = unlabeled.result.errors
    assert problem.reason.value == "SecretNotLabeled"
    assert "kubectl label secret keys -n team switchboard.dev/secret=true" in problem.message
    assert b"sk-watched" not in str(unlabeled.loaded.secrets).encode()
