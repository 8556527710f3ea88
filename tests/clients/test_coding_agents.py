"""Coding agents through the gateway, each in a real tool loop on each upstream API.

Claude Code (`claude -p`, Messages), Codex CLI (`codex exec`, Responses) and pi-coding-agent
(`pi -p`, each of its three APIs) run as subprocesses against the gateway, which serves the
scripted model server (scripted.py) as a Chat, a Responses and a Messages upstream. The script
answers the first turn with a call of the agent's own write-file or shell tool and the next,
which carries the tool's result, with `FINAL`. Pass: the file exists with the content the tool
wrote, the agent printed `FINAL`, and every request the upstream received is a valid request
of its API (official SDK types) that the gateway translated from the agent's own.

These agents stream always; they have no non-streaming mode. Each runs with docs/clients.md's
settings and a recording proxy (conftest.Sink) for anything but loopback: a connection it sees
(telemetry, update checks, plugin catalogs) fails the test. Covered here beyond the loop:
Claude Code's `anthropic-beta` reaching an Anthropic upstream.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clients.conftest import (
    KEY,
    MODES,
    Run,
    Tier,
    check_upstream,
    node_bin,
    quiet_env,
    run_client,
)
from tests.clients.scripted import CONTENT, FINAL

pytestmark = pytest.mark.clients


def _assert_loop(tier: Tier, mode: str, client_api: str, out: Path, run: Run) -> None:
    assert not tier.sink.seen, f"the agent tried to reach outside: {tier.sink.seen}"
    explain = run.explain()
    assert out.exists(), f"the agent's tool did not write {out}\n{explain}"
    assert out.read_text() == CONTENT
    assert FINAL in run.stdout, f"no final answer\n{explain}"
    check_upstream(tier, mode, client_api)


def _claude_env(tier: Tier, tmp_path: Path, mode: str) -> dict[str, str]:
    """docs/clients.md's settings for Claude Code."""
    model = f"scripted-{mode}"
    return quiet_env(
        tmp_path / "home",
        tier.sink.url,
        ANTHROPIC_BASE_URL=tier.gateway,
        ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_MODEL=model,
        ANTHROPIC_DEFAULT_OPUS_MODEL=model,
        ANTHROPIC_DEFAULT_SONNET_MODEL=model,
        ANTHROPIC_DEFAULT_HAIKU_MODEL=model,
        CLAUDE_CODE_MAX_CONTEXT_TOKENS="200000",
        CLAUDE_CONFIG_DIR=str(tmp_path / "home" / ".claude"),
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )


@pytest.mark.parametrize("mode", MODES)
def test_claude_code(tier: Tier, mode: str, tmp_path: Path) -> None:
    out = tmp_path / "work" / "out.txt"
    out.parent.mkdir()
    env = _claude_env(tier, tmp_path, mode)
    tier.clear()
    prompt = f"Write the file @file:{out}@ for me."
    argv = [node_bin("claude"), "-p", prompt, "--model", f"scripted-{mode}"]
    run = run_client([*argv, "--allowedTools", "Write", "Bash"], out.parent, env)
    _assert_loop(tier, mode, "messages", out, run)
    assert run.code == 0, run.explain()


def test_claude_code_beta_header_reaches_an_anthropic_upstream(tier: Tier, tmp_path: Path) -> None:
    """Claude Code turns features on with `anthropic-beta` (claude-code-20250219, context
    management, ...); on an Anthropic upstream the header must arrive with the request."""
    out = tmp_path / "work" / "out.txt"
    out.parent.mkdir()
    env = _claude_env(tier, tmp_path, "messages")
    tier.clear()
    argv = [node_bin("claude"), "-p", f"Write @file:{out}@", "--model", "scripted-messages"]
    run = run_client([*argv, "--allowedTools", "Write"], out.parent, env)
    assert run.code == 0, run.explain()
    betas = [r["headers"].get("anthropic-beta", "") for r in tier.requests()]
    assert betas and all("claude-code-20250219" in b for b in betas), betas


def _codex_home(tier: Tier, home: Path, mode: str) -> None:
    home.mkdir(parents=True)
    (home / "config.toml").write_text(
        f'model = "scripted-{mode}"\n'
        'model_provider = "switchboard"\n'
        "check_for_update_on_startup = false\n"
        "[analytics]\nenabled = false\n"
        "[feedback]\nenabled = false\n"
        '[otel]\nexporter = "none"\n'
        "[features]\nplugins = false\nremote_plugin = false\n"
        "[model_providers.switchboard]\n"
        'name = "Switchboard"\n'
        f'base_url = "{tier.gateway}/v1"\n'
        'env_key = "SWITCHBOARD_API_KEY"\n'
        'wire_api = "responses"\n'
    )


@pytest.mark.parametrize("mode", MODES)
def test_codex_cli(tier: Tier, mode: str, tmp_path: Path) -> None:
    """Codex with its default tools (exec_command, the multi_agent_v1 namespace, web_search)."""
    out = tmp_path / "work" / "out.txt"
    out.parent.mkdir()
    home = tmp_path / "codex-home"
    _codex_home(tier, home, mode)
    env = quiet_env(tmp_path / "home", tier.sink.url, CODEX_HOME=str(home), SWITCHBOARD_API_KEY=KEY)
    tier.clear()
    argv = [node_bin("codex"), "exec", "--skip-git-repo-check"]
    argv += ["--dangerously-bypass-approvals-and-sandbox", f"Write the file @file:{out}@."]
    run = run_client(argv, out.parent, env)
    _assert_loop(tier, mode, "responses", out, run)
    assert run.code == 0, run.explain()


_PI_APIS = {
    "chat": "openai-completions",
    "responses": "openai-responses",
    "messages": "anthropic-messages",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("api", list(_PI_APIS))
def test_pi_coding_agent(tier: Tier, api: str, mode: str, tmp_path: Path) -> None:
    """pi on each of its three APIs (the client's) x each upstream API."""
    out = tmp_path / "work" / "out.txt"
    out.parent.mkdir()
    agent_dir = tmp_path / "pi"
    agent_dir.mkdir()
    base = tier.gateway + ("" if api == "messages" else "/v1")
    models = {
        "providers": {
            "switchboard": {
                "baseUrl": base,
                "api": _PI_APIS[api],
                "apiKey": "SWITCHBOARD_API_KEY",
                "models": [{"id": f"scripted-{mode}", "contextWindow": 200000, "maxTokens": 8000}],
            }
        }
    }
    (agent_dir / "models.json").write_text(json.dumps(models))
    env = quiet_env(
        tmp_path / "home",
        tier.sink.url,
        PI_CODING_AGENT_DIR=str(agent_dir),
        PI_OFFLINE="1",
        PI_TELEMETRY="0",
        PI_SKIP_VERSION_CHECK="1",
        SWITCHBOARD_API_KEY=KEY,
    )
    tier.clear()
    argv = [node_bin("pi"), "--provider", "switchboard", "--model", f"scripted-{mode}"]
    run = run_client([*argv, "-p", f"Write the file @file:{out}@."], out.parent, env)
    _assert_loop(tier, mode, api, out, run)
    assert run.code == 0, run.explain()
