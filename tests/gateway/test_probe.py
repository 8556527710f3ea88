"""`switchboard probe URL` against the fake upstreams of tests/upstreams (real servers on
loopback); the same command against llm-d-inference-sim is in test_llmd_sim.py.

Covers:
- each fake shape is found to answer exactly its own API (vLLM-style Chat, Responses, Anthropic
  Messages), with the suggested `api:` line, exit 0;
- a server that wants a key: `needs a key` without one, `answers` with `--api-key-env`, and the
  key never printed;
- `--model`: a one-token request answered 200;
- nobody listening: `unreachable`, exit 2; a path where no API answers: exit 1;
- the verdict table (400/422 and a 404 about the model mean the route is there).
"""

from __future__ import annotations

import asyncio

import pytest

from switchboard import cli, probe
from tests.upstreams.server import Upstream, free_port

SHAPES = {
    "vllm": "openai-completions",
    "responses": "openai-responses",
    "anthropic": "anthropic-messages",
}


async def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(cli.main, ["probe", *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_each_shape_answers_its_own_api(
    shape: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Upstream(shape=shape) as upstream:
        code, out = await _run(capsys, upstream.base_url)
    assert code == 0, out
    verdicts = {
        line.split()[0]: line.split()[-1]
        for line in out.splitlines()
        if line.startswith("  ") and "POST" in line
    }
    assert verdicts == {api: ("answers" if api == SHAPES[shape] else "no") for api in verdicts}
    assert set(verdicts) == set(SHAPES.values())
    assert f"  api: {SHAPES[shape]}\n" in out and "apis:" not in out


async def test_a_key_is_needed_then_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-probe-secret-0123456789"
    async with Upstream(shape="anthropic", api_key=secret) as upstream:
        code, out = await _run(capsys, upstream.base_url)
        assert code == 0
        assert "anthropic-messages  POST" in out and "401  needs a key" in out
        assert "--api-key-env" in out
        monkeypatch.setenv("PROBE_KEY", secret)
        code, out = await _run(capsys, upstream.base_url, "--api-key-env", "PROBE_KEY")
    assert code == 0
    assert "400  answers" in out and "needs a key" not in out
    assert secret not in out


async def test_a_one_token_request_with_model(capsys: pytest.CaptureFixture[str]) -> None:
    async with Upstream(shape="vllm") as upstream:
        code, out = await _run(capsys, upstream.base_url, "--model", "fake-model")
        (seen,) = upstream.requests
    assert code == 0
    assert "200  answers" in out and "one-token request for model 'fake-model'" in out
    assert seen["path"] == "/v1/chat/completions" and seen["body"]["max_tokens"] == 1


async def test_nobody_listening_and_no_api(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await _run(capsys, f"http://127.0.0.1:{free_port()}/v1")
    assert code == 2 and out.count("unreachable (ConnectError)") == 3
    assert "no connection to" in out
    async with Upstream(shape="vllm") as upstream:
        code, out = await _run(capsys, f"{upstream.root_url}/elsewhere")
    assert code == 1 and "no API answered" in out


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"{}", probe.ANSWERS),
        (400, b'{"error": {"message": "messages: field required"}}', probe.ANSWERS),
        (422, b'{"detail": [{"loc": ["body", "model"]}]}', probe.ANSWERS),
        (401, b"", probe.NEEDS_KEY),
        (403, b"", probe.NEEDS_KEY),
        (404, b'{"error": {"message": "The model `x` does not exist."}}', probe.ANSWERS),
        (404, b"404: Not Found", probe.NO),
        (404, b'{"detail": "Not Found"}', probe.NO),
        (405, b"", probe.NO),
        (500, b"", probe.UNSURE),
    ],
)
def test_verdicts(status: int, body: bytes, expected: str) -> None:
    assert probe.verdict(status, body) == expected
