"""The alert rules (helm/switchboard/files/prometheus-rules.yaml) under Prometheus's own tools.

Covers:
- `promtool check rules`: the file parses, every expression is valid PromQL;
- `promtool test rules tests/observability/alerts_test.yaml`: each alert fires on the series
  that should wake someone, with its labels and annotations, and stays quiet on healthy ones;
- every alert of the file has a test case and a runbook section in docs/operations.md (the
  anchor its runbook_url names).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.gateway.conftest import ROOT

RULES = ROOT / "helm/switchboard/files/prometheus-rules.yaml"
TESTS = Path(__file__).parent / "alerts_test.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make test` installs Debian's prometheus package"
    return subprocess.run(
        [path, *args], capture_output=True, text=True, check=False, timeout=120, cwd=TESTS.parent
    )


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_and_has_a_runbook() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    runbook = (ROOT / "docs/operations.md").read_text()
    names = [str(rule["alert"]) for rule in alerts()]
    assert len(names) >= 7
    for rule in alerts():
        name = str(rule["alert"])
        assert name in tested, f"{name} never fires in {TESTS.name}"
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        anchor = annotations["runbook_url"].rsplit("#", 1)[1]
        assert anchor == name.lower()
        assert f"### {name}\n" in runbook, f"docs/operations.md has no '### {name}' section"
