"""Bad settings of `switchboard usage` and `switchboard gateway`, run as processes.

Covers: every `SWITCHBOARD_LIMITS_*` variable and `--limits-*` flag that `LimitsSettings`
reads (and `SWITCHBOARD_METRICS_PORT` of the gateway), given a bad value, is one line naming
the variable or flag, the value and what is accepted, exit code 2, no traceback; a URL's
password is not printed; a Redis that does not answer is one line for `usage` (exit 1);
`--limits-inflight-lapse` is checked the same way and wins over the environment variable; a
`--limits-file` that is a directory, or in a directory that does not exist, is refused at
start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "examples" / "limits"


def run(command: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    source = ["--manifests", str(MANIFESTS)]
    if command == "gateway":
        source += ["--host", "127.0.0.1", "--port", "0"]
    return subprocess.run(
        [sys.executable, "-m", "switchboard.cli", command, *source, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **env},
        check=False,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    out = (result.stdout + result.stderr).strip()
    assert "Traceback" not in out, out
    assert len(out.splitlines()) == 1, out
    return out


# (flags, environment, what the line must say)
BAD: list[tuple[list[str], dict[str, str], list[str]]] = [
    (
        [],
        {"SWITCHBOARD_LIMITS_INFLIGHT_LAPSE": "abc"},
        ["SWITCHBOARD_LIMITS_INFLIGHT_LAPSE='abc'", "seconds above 0"],
    ),
    (
        [],
        {"SWITCHBOARD_LIMITS_INFLIGHT_LAPSE": "0"},
        ["SWITCHBOARD_LIMITS_INFLIGHT_LAPSE='0'", "seconds above 0"],
    ),
    (
        [],
        {"SWITCHBOARD_LIMITS_ON_STORE_DOWN": "maybe"},
        ["SWITCHBOARD_LIMITS_ON_STORE_DOWN='maybe'", "open or closed"],
    ),
    (
        [],
        {"SWITCHBOARD_LIMITS_REDIS_URL": "http://cache:6379"},
        ["SWITCHBOARD_LIMITS_REDIS_URL='http://cache:6379'", "redis://"],
    ),
    (
        ["--limits-redis-url", "redis://cache:port/0"],
        {},
        ["--limits-redis-url 'redis://cache:port/0'", "redis://"],
    ),
    (
        ["--limits-redis-url", "redis://cache:6379"],
        {"SWITCHBOARD_LIMITS_REDIS_CA_FILE": "/no/such/ca.pem"},
        ["SWITCHBOARD_LIMITS_REDIS_CA_FILE='/no/such/ca.pem'", "CA bundle"],
    ),
]


@pytest.mark.parametrize("command", ["usage", "gateway"])
@pytest.mark.parametrize(("flags", "env", "said"), BAD)
def test_a_bad_limits_setting_is_one_line(
    tmp_path: Path, command: str, flags: list[str], env: dict[str, str], said: list[str]
) -> None:
    if not any(f.startswith("--limits-redis-url") for f in flags):
        flags = [*flags, "--limits-file", str(tmp_path / "c.json")]
    result = run(command, *flags, env={**env, "SWITCHBOARD_METRICS_PORT": "0"})
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result)
    for text in said:
        assert text in line


@pytest.mark.parametrize("command", ["usage", "gateway"])
def test_a_limits_file_that_cannot_be_one_is_one_line(tmp_path: Path, command: str) -> None:
    """Before: a directory was an error logged at load and a failure at the first save; a
    missing directory, a failure at the first save."""
    for path, said in ((tmp_path, "is a directory"), (tmp_path / "no" / "c.json", "no such")):
        result = run(command, "--limits-file", str(path), env={"SWITCHBOARD_METRICS_PORT": "0"})
        assert result.returncode == 2, result.stdout + result.stderr
        line = one_line(result)
        assert said in line and f"--limits-file {str(path)!r}" in line, line


def test_a_redis_password_is_not_printed() -> None:
    url = "http://user:hunter2@cache:6379/0"
    for command in ("usage", "gateway"):
        result = run(command, "--limits-redis-url", url, env={"SWITCHBOARD_METRICS_PORT": "0"})
        assert result.returncode == 2
        line = one_line(result)
        assert "hunter2" not in line
        assert "http://user:<redacted>@cache:6379/0" in line


def test_gateway_flags() -> None:
    bad = run("gateway", "--limits-on-store-down", "maybe", env={})
    assert bad.returncode == 2
    assert "--limits-on-store-down: invalid choice: 'maybe'" in bad.stderr
    lapse = run("gateway", "--limits-inflight-lapse", "-1", env={"SWITCHBOARD_METRICS_PORT": "0"})
    assert lapse.returncode == 2
    line = one_line(lapse)
    assert "--limits-inflight-lapse '-1'" in line and "seconds above 0" in line
    port = run("gateway", "--limits-file", "c.json", env={"SWITCHBOARD_METRICS_PORT": "abc"})
    assert port.returncode == 2
    line = one_line(port)
    assert "SWITCHBOARD_METRICS_PORT='abc'" in line and "0-65535" in line


def test_the_lapse_flag_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from switchboard.cli import build_parser
    from switchboard.gateway import cli as gateway_cli

    monkeypatch.setenv("SWITCHBOARD_LIMITS_INFLIGHT_LAPSE", "7")
    base = ["gateway", "--config", "r.json", "--limits-redis-url", "redis://cache:6379/0"]
    parser = build_parser(["gateway"])
    assert gateway_cli._limits(parser.parse_args(base)).inflight_lapse == 7.0
    flagged = parser.parse_args([*base, "--limits-inflight-lapse", "2.5"])
    assert gateway_cli._limits(flagged).inflight_lapse == 2.5


def test_usage_with_a_redis_that_does_not_answer() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
        result = run("usage", "--limits-redis-url", url, env={})
    assert result.returncode == 1
    line = one_line(result)
    assert "cannot be read" in line and "--limits-redis-url" in line
