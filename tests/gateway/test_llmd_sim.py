"""The gateway in front of llm-d-inference-sim, a vLLM simulator (pure Go, pinned in
tools/controlplane/versions.env and built by tools/controlplane/build.sh), with the official SDKs.

Unlike the project's own fakes, the simulator is someone else's reading of vLLM's API: its
SSE framing, usage chunks, `/v1/messages` and its own error bodies. Covered here:
- Chat, Responses and Messages clients on its OpenAI Chat endpoint, stream and non-stream, with
  usage and cost (Responses and Messages translated by the gateway);
- a Messages client on its own `/v1/messages` (pass-through);
- its real context-length error (`--failure-types context_length`) moves an agent to the next
  candidate, as vLLM's own does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import pytest

from tests.gateway.conftest import Gateway, _wait_http, render_text, start_gateway
from tests.support.controlplane import build_binaries
from tests.upstreams.server import free_port

pytestmark = pytest.mark.gateway

KEY = "sk-test-sim-0123456789abcdef"
MODEL = "fake-x"


@dataclass
class Sims:
    good: int
    full: int


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
    good, full = free_port(), free_port()
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
    try:
        for port in (good, full):
            _wait_http(f"http://127.0.0.1:{port}/health")
        yield Sims(good, full)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def _manifests(s: Sims) -> str:
    def provider(name: str, port: int, api: str) -> str:
        base = f"http://127.0.0.1:{port}" + ("" if api == "anthropic-messages" else "/v1")
        return (
            "apiVersion: switchboard.dev/v1alpha1\nkind: CustomProvider\n"
            f"metadata: {{name: {name}}}\nspec:\n  baseUrl: {base}\n  api: {api}\n"
            f"  models:\n    - {{id: {MODEL}, contextWindow: 4096, maxTokens: 256,"
            " cost: {input: 2, output: 8}}\n---\n"
        )

    return (
        provider("sim", s.good, "openai-completions")
        + provider("sim-messages", s.good, "anthropic-messages")
        + provider("full", s.full, "openai-completions")
        + "apiVersion: switchboard.dev/v1alpha1\nkind: Agent\nmetadata: {name: overflow}\n"
        f"spec:\n  model: 'full:{MODEL}'\n  fallbacks: ['sim:{MODEL}']\n---\n"
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: keys}}\nstringData: {{k: {KEY}}}\n---\n"
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
