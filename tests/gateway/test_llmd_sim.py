"""The gateway in front of llm-d-inference-sim, a vLLM simulator (pure Go, pinned in
tools/controlplane/versions.env and built by tools/controlplane/build.sh), with the official SDKs.

Unlike the project's own fakes, the simulator is someone else's reading of vLLM's API: its
SSE framing, usage chunks, `/v1/messages` and its own error bodies. Covered here:
- Chat, Responses and Messages clients on its OpenAI Chat endpoint, stream and non-stream, with
  usage and cost (Responses and Messages translated by the gateway);
- a Messages client on its own `/v1/messages` (pass-through);
- its real context-length error (`--failure-types context_length`) moves an agent to the next
  candidate, as vLLM's own does;
- a provider listing several APIs (`apis: [openai-completions, anthropic-messages]`, issue #15):
  a Messages client is served on the sim's `/v1/messages` untranslated (and, on a recording fake
  upstream listing the same two, the upstream receives the client's body with only the model
  rewritten), a Chat client on Chat, a Responses client translated to Chat; stream and
  non-stream; the served API in `x-switchboard-api` and the access log; fallback across
  candidates whose lists differ, each candidate called in its own way;
- `switchboard probe` on the sim: the three APIs found, with an empty body and with a
  one-token request for its model.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from switchboard import cli
from tests.gateway.conftest import (
    SECRET_LABEL,
    Gateway,
    _wait_http,
    render_text,
    start,
    start_gateway,
)
from tests.support.controlplane import build_binaries
from tests.upstreams.server import free_port

pytestmark = pytest.mark.gateway

KEY = "sk-test-sim-0123456789abcdef"
MODEL = "fake-x"


@dataclass
class Sims:
    good: int
    full: int
    recorder: int
    """A fake Anthropic upstream (tests/upstreams) that records the bodies it receives."""


def _sim(binary: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    proc = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--model",
            MODEL,
            "--force-dummy-tokenizer",  # no Hugging Face lookup: offline
            "--mode",
            "echo",
            "--max-model-len",
            "4096",
            "--max-num-seqs",
            "64",
            "--time-to-first-token",
            "5ms",
            "--inter-token-latency",
            "1ms",
            *extra,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    return proc


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sims]:
    binary = build_binaries("llm-d-inference-sim") / "llm-d-inference-sim"
    logs = tmp_path_factory.mktemp("sim")
    good, full, recorder = free_port(), free_port(), free_port()
    procs = [
        _sim(binary, good, logs / "good.log"),
        _sim(
            binary,
            full,
            logs / "full.log",
            "--failure-injection-rate",
            "100",
            "--failure-types",
            "context_length",
        ),
    ]
    fake = start(
        ["-m", "tests.upstreams", "--shape", "anthropic", "--port", str(recorder)],
        logs / "recorder.log",
        f"http://127.0.0.1:{recorder}/_requests",
    )
    try:
        for port, proc in zip((good, full), procs, strict=True):
            _wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield Sims(good, full, recorder)
    finally:
        fake.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(10)


BOTH = "  apis: [openai-completions, anthropic-messages]\n"


def _manifests(s: Sims) -> str:
    def provider(name: str, port: int, api: str, apis: str = "") -> str:
        base = f"http://127.0.0.1:{port}" + ("" if api == "anthropic-messages" else "/v1")
        return (
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
            f"metadata: {{name: {name}}}\nspec:\n  baseUrl: {base}\n  api: {api}\n{apis}"
            f"  models:\n    - {{id: {MODEL}, contextWindow: 4096, maxTokens: 256,"
            " cost: {input: 2, output: 8}}\n---\n"
        )

    return (
        provider("sim", s.good, "openai-completions")
        + provider("sim-messages", s.good, "anthropic-messages")
        + provider("full", s.full, "openai-completions")
        + provider("sim-both", s.good, "openai-completions", BOTH)
        + provider("recorder", s.recorder, "openai-completions", BOTH)
        + provider("dead-both", free_port(), "openai-completions", BOTH)
        + provider("dead-chat", free_port(), "openai-completions")
        + "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\nmetadata: {name: overflow}\n"
        f"spec:\n  model: 'full:{MODEL}'\n  fallbacks: ['sim:{MODEL}']\n---\n"
        # fallback across candidates whose API lists differ, in both orders
         + "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\nmetadata: {name: both-then-chat}\n"
        f"spec:\n  model: 'dead-both:{MODEL}'\n  fallbacks: ['sim:{MODEL}']\n---\n"
        + "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\nmetadata: {name: chat-then-both}\n"
        f"spec:\n  model: 'dead-chat:{MODEL}'\n  fallbacks: ['sim-both:{MODEL}']\n---\n"
        "apiVersion: v1\nkind: Secret\n"
        f"metadata: {{name: keys, labels: {SECRET_LABEL}}}\nstringData: {{k: {KEY}}}\n---\n"
        "apiVersion: switchboard.dev/v1alpha1\nkind: AccessKeyConfig\nmetadata: {name: sim}\n"
        "spec:\n  keys: [{name: k, secretRef: {name: keys, key: k}}]\n"
        "  allowedProviders: ['*']\n  allowedAgents: ['*']\n"
    )


@pytest.fixture(scope="module")
def gw(sims: Sims, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("sim-gateway")
    gw = start_gateway(render_text(_manifests(sims), work), work / "gateway.log")
    yield gw
    gw.process.stop()


def _oai(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)


def test_chat_client_stream_and_not(gw: Gateway) -> None:
    client = _oai(gw)
    raw = client.chat.completions.with_raw_response.create(
        model=f"sim:{MODEL}", messages=[{"role": "user", "content": "hello from the sdk"}]
    )
    done = raw.parse()
    assert done.choices[0].message.content == "hello from the sdk"  # echo mode
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens > 0
    assert raw.headers["x-switchboard-provider"] == "sim"
    cost = (done.usage.prompt_tokens * 2 + done.usage.completion_tokens * 8) / 1e6
    assert float(raw.headers["x-switchboard-cost-usd"]) == pytest.approx(cost, abs=1e-8)

    chunks = list(
        client.chat.completions.create(
            model=f"sim:{MODEL}",
            messages=[{"role": "user", "content": "one two three four"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_responses_client_translated_to_chat(gw: Gateway) -> None:
    client = _oai(gw)
    response = client.responses.create(model=f"sim:{MODEL}", input="respond in kind")
    assert response.output_text == "respond in kind"
    assert response.usage is not None and response.usage.output_tokens > 0
    with client.responses.stream(model=f"sim:{MODEL}", input="streamed words here") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "streamed words here" == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0


@pytest.mark.parametrize("provider", ["sim", "sim-messages"])
def test_messages_client_translated_and_on_the_sims_own_messages_api(
    gw: Gateway, provider: str
) -> None:
    client = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
    message = client.messages.create(
        model=f"{provider}:{MODEL}",
        max_tokens=100,
        messages=[{"role": "user", "content": "hello claude"}],
    )
    assert message.content[0].type == "text" and message.content[0].text == "hello claude"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    with client.messages.stream(
        model=f"{provider}:{MODEL}",
        max_tokens=100,
        messages=[{"role": "user", "content": "stream it back"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "stream it back"
    assert final.usage.output_tokens > 0


def test_the_sims_context_length_error_falls_back(gw: Gateway) -> None:
    before = gw.metric("switchboard_fallbacks_total", provider="full", reason="context_length")
    raw = _oai(gw).chat.completions.with_raw_response.create(
        model="overflow", messages=[{"role": "user", "content": "too long for the first"}]
    )
    assert raw.parse().choices[0].message.content == "too long for the first"
    assert raw.headers["x-switchboard-provider"] == "sim"
    assert raw.headers["x-switchboard-attempts"] == "2"
    after = gw.metric("switchboard_fallbacks_total", provider="full", reason="context_length")
    assert after == before + 1


def _anthropic(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)


def test_messages_client_on_a_provider_listing_messages_is_not_translated(gw: Gateway) -> None:
    client = _anthropic(gw)
    raw = client.messages.with_raw_response.create(
        model=f"sim-both:{MODEL}",
        max_tokens=100,
        messages=[{"role": "user", "content": "native messages"}],
    )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == "native messages"
    assert message.usage.output_tokens > 0
    assert raw.headers["x-switchboard-api"] == "anthropic-messages"
    with client.messages.with_streaming_response.create(
        model=f"sim-both:{MODEL}",
        max_tokens=100,
        stream=True,
        messages=[{"role": "user", "content": "native stream"}],
    ) as response:
        assert response.headers["x-switchboard-api"] == "anthropic-messages"
        events = [e for e in response.iter_lines() if e.startswith("event: ")]
    assert events[0] == "event: message_start" and events[-1] == "event: message_stop"
    lines = _access_lines(gw, f"sim-both:{MODEL}", 2)
    assert [(line["surface"], line["api"]) for line in lines[-2:]] == [
        ("messages", "anthropic-messages")
    ] * 2


def _access_lines(gw: Gateway, model: str, count: int) -> list[dict[str, object]]:
    """The access-log lines of requests for `model`, once there are `count` (flushed every
    200 ms, so waited for with a deadline)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            json.loads(line)
            for line in gw.log_text.splitlines()
            if line.startswith('{"level":"info","logger":"switchboard.gateway.access"')
        ]
        found = [line for line in lines if line.get("model") == model]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_chat_and_responses_clients_on_the_same_provider(gw: Gateway) -> None:
    client = _oai(gw)
    raw = client.chat.completions.with_raw_response.create(
        model=f"sim-both:{MODEL}", messages=[{"role": "user", "content": "plain chat"}]
    )
    assert raw.parse().choices[0].message.content == "plain chat"
    assert raw.headers["x-switchboard-api"] == "openai-completions"
    raw_r = client.responses.with_raw_response.create(
        model=f"sim-both:{MODEL}", input="translated to chat"
    )
    assert raw_r.parse().output_text == "translated to chat"
    assert raw_r.headers["x-switchboard-api"] == "openai-completions"
    with client.responses.stream(model=f"sim-both:{MODEL}", input="streamed and translated") as st:
        deltas = [e.delta for e in st if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "streamed and translated"


@pytest.mark.parametrize("stream", [False, True])
def test_the_upstream_sees_the_messages_clients_own_body(
    gw: Gateway, sims: Sims, stream: bool
) -> None:
    fake = f"http://127.0.0.1:{sims.recorder}/_requests"
    httpx.delete(fake)
    body = {
        "model": f"recorder:{MODEL}",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "and again"},
        ],
        "metadata": {"user_id": "u-1"},
        "temperature": 0.25,
        "stream": stream,
    }
    response = httpx.post(
        f"{gw.url}/v1/messages", json=body, headers={"x-api-key": KEY}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-switchboard-api"] == "anthropic-messages"
    (seen,) = httpx.get(fake).json()
    assert seen["path"] == "/v1/messages"
    assert seen["body"] == {**body, "model": MODEL}


@pytest.mark.parametrize(
    ("agent", "served_by", "api"),
    [
        ("both-then-chat", "sim", "openai-completions"),
        ("chat-then-both", "sim-both", "anthropic-messages"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_fallback_across_candidates_with_different_lists(
    gw: Gateway, agent: str, served_by: str, api: str, stream: bool
) -> None:
    client = _anthropic(gw)
    messages = [{"role": "user", "content": "fall back please"}]
    if stream:
        with client.messages.stream(model=agent, max_tokens=100, messages=messages) as events:
            headers = events.response.headers
            text = "".join(events.text_stream)
        assert text == "fall back please"
    else:
        raw = client.messages.with_raw_response.create(
            model=agent, max_tokens=100, messages=messages
        )
        headers = raw.headers
        content = raw.parse().content[0]
        assert content.type == "text" and content.text == "fall back please"
    assert headers["x-switchboard-provider"] == served_by
    assert headers["x-switchboard-attempts"] == "2"
    assert headers["x-switchboard-api"] == api


def test_probe_finds_the_sims_apis(sims: Sims, capsys: pytest.CaptureFixture[str]) -> None:
    base = f"http://127.0.0.1:{sims.good}/v1"
    assert cli.main(["probe", base]) == 0
    out = capsys.readouterr().out
    verdicts = {
        line.split()[0]: line.split()[-1]
        for line in out.splitlines()
        if line.startswith("  ") and " POST " in line
    }
    # v0.10.2 answers all three; an empty body gets its "model `` does not exist" 404 on Chat
    # and Messages (a 404 about the model: the route is there), 400 on Responses
    assert verdicts == dict.fromkeys(
        ("openai-completions", "openai-responses", "anthropic-messages"), "answers"
    )
    assert "  apis: [openai-completions, openai-responses, anthropic-messages]\n" in out
    # the same with a one-token request for its model, end to end
    assert cli.main(["probe", base, "--model", MODEL]) == 0
    out = capsys.readouterr().out
    assert "chat/completions  200  answers" in out and "/v1/messages" in out
