"""Agent libraries through the gateway: each of their APIs, streaming and not, on each upstream.

The OpenAI Agents SDK (Responses and Chat models), LangChain (ChatOpenAI with and without the
Responses API, ChatAnthropic), pydantic-ai (OpenAIChatModel, OpenAIResponsesModel,
AnthropicModel), instructor (tools mode on Chat, Responses and Messages; JSON-schema mode on
Chat) and the Vercel AI SDK (`@ai-sdk/openai` `.chat()` and `.responses()`, `@ai-sdk/anthropic`)
run in their own process (python_clients.py in `.venv-clients`, vercel_ai.mjs under node), once
per library and upstream API for all their cases. Pass per case: the library called its tool
function with the word the scripted model chose and returned the model's final text; and every
request the upstream received during the run is a valid request of its API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import (
    CLIENTS_PY,
    HERE,
    KEY,
    MODES,
    Tier,
    check_upstream,
    quiet_env,
    run_client,
)
from tests.clients.scripted import FINAL, WORD

pytestmark = pytest.mark.clients

_APIS = ("chat", "responses", "messages")
_CASES = {
    "openai-agents": [f"{a}/{s}" for a in ("chat", "responses") for s in ("nostream", "stream")],
    "langchain": [f"{a}/{s}" for a in _APIS for s in ("nostream", "stream")],
    "pydantic-ai": [f"{a}/{s}" for a in _APIS for s in ("nostream", "stream")],
    "instructor": [
        f"{a}/{s}"
        for a in ("chat", "chat-json-schema", "responses", "messages")
        for s in ("nostream", "stream")
    ],
    "vercel-ai": [f"{a}/{s}" for a in _APIS for s in ("nostream", "stream")],
}
_runs: dict[tuple[str, str], tuple[dict[str, Any], list[dict[str, Any]], list[str]]] = {}


def _run(
    tier: Tier, library: str, mode: str, tmp: Path
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """All of a library's cases against one upstream API, run once per session."""
    if (library, mode) not in _runs:
        tier.clear()
        args = [tier.gateway, KEY, f"scripted-{mode}"]
        if library == "vercel-ai":
            argv = ["node", str(HERE / "vercel_ai.mjs"), *args]
        else:
            argv = [str(CLIENTS_PY), str(HERE / "python_clients.py"), library, *args]
        env = quiet_env(
            tmp / "home",
            tier.sink.url,
            OPENAI_AGENTS_DISABLE_TRACING="1",
            AI_SDK_LOG_WARNINGS="false",
        )
        run = run_client(argv, HERE, {**env, "NODE_PATH": str(HERE / "node_modules")})
        assert run.code == 0, run.explain()
        _runs[(library, mode)] = (json.loads(run.stdout), tier.requests(), list(tier.sink.seen))
    return _runs[(library, mode)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("library", "case"), [(lib, case) for lib, cases in _CASES.items() for case in cases]
)
def test_library(tier: Tier, library: str, case: str, mode: str, tmp_path: Path) -> None:
    results, received, outside = _run(tier, library, mode, tmp_path)
    assert not outside, f"the library tried to reach outside: {outside}"
    result = results[case]
    assert result["error"] is None, result["error"]
    assert result["called"] == [WORD], f"tool called with {result['called']}"
    assert FINAL in (result["final"] or ""), result["final"]
    mine = [r for r in received if f"[case:{case}]" in json.dumps(r["body"])]
    turns = 1 if library == "instructor" else 2  # instructor: one extraction, no loop
    client_api = case.split("/", maxsplit=1)[0].removesuffix("-json-schema")
    check_upstream(tier, mode, client_api, received=mine, turns=turns)
