"""Golden tests of the compiler, no cluster and no event loop.

Covers:
- every `examples/<name>/` compiles without problems to exactly
  `tests/golden/compile/<name>/expected.yaml` (the redacted routing config, hash included);
- every problem case `tests/golden/compile/problems/<case>/input.yaml` gives exactly the
  problem lines in `problems.txt` beside it (the `switchboard validate` format) and the routing
  config in `expected.yaml` (what still routes).

Regenerate with `make goldens` (pytest --update-goldens) and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from switchboard import manifests
from switchboard.routing import config as rc

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests/golden/compile"
EXAMPLES = sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir())
PROBLEM_CASES = sorted(p.name for p in (GOLDEN / "problems").iterdir() if p.is_dir())


def _configs_yaml(loaded: manifests.Loaded) -> str:
    result = loaded.compile()
    docs = [orjson.loads(rc.to_json(rc.redacted(c))) for c in result.configs.values()]
    return yaml.safe_dump_all(docs, sort_keys=True, width=100)


def _problem_lines(loaded: manifests.Loaded) -> str:
    sources = loaded.sources("default")
    lines = [line.replace(f"{GOLDEN}/problems/", "") for line in loaded.errors]
    for p in loaded.compile().problems:
        source = sources.get((p.ref.kind, p.ref.namespace, p.ref.name), "<input>")
        source = Path(source).name
        lines.append(f"{source}: {p} [{p.severity.value}, {p.reason.value}]")
    return "".join(f"{line}\n" for line in lines)


def _check(path: Path, actual: str, update: bool) -> None:
    if update or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        if not update:
            pytest.fail(f"{path} did not exist; wrote it: review and commit")
    assert actual == path.read_text(), f"{path} differs: run `make goldens` and review the diff"


def _update(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens", default=False))


@pytest.mark.parametrize("example", EXAMPLES)
def test_example(example: str, request: pytest.FixtureRequest) -> None:
    loaded = manifests.load([ROOT / "examples" / example])
    assert loaded.compile().problems == ()
    assert loaded.errors == []
    _check(GOLDEN / example / "expected.yaml", _configs_yaml(loaded), _update(request))


@pytest.mark.parametrize("case", PROBLEM_CASES)
def test_problem_case(case: str, request: pytest.FixtureRequest) -> None:
    loaded = manifests.load([GOLDEN / "problems" / case / "input.yaml"])
    _check(GOLDEN / "problems" / case / "problems.txt", _problem_lines(loaded), _update(request))
    _check(GOLDEN / "problems" / case / "expected.yaml", _configs_yaml(loaded), _update(request))
