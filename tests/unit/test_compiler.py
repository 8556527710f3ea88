"""The compiler's contract, beyond the goldens.

Covers:
- model references split at the first colon; durations;
- the seeds' defaults (api, reasoning, input, cost, contextWindow, maxTokens);
- endpoints per api mode (/chat/completions, /responses, /v1/messages or /messages);
- determinism: shuffled objects give identical bytes and hash (hypothesis);
- client tokens only as SHA-256 digests; no token or provider key text in any problem,
  exception or redacted output; `load()` refuses tampered, truncated or foreign-version files;
- one bad object never hides the good ones; a bad header drops its provider alone.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.routing import compiler, refs
from switchboard.routing import config as rc

TOKEN = "sk-client-token-SECRET-0123456789"
PROVIDER_KEY = "sk-provider-key-SECRET-abcdef"


def provider(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "CustomProvider",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"baseUrl": f"http://{name}.models.svc/v1", **spec},
    }


def agent(name: str, model: str, *fallbacks: str) -> dict[str, Any]:
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"model": model, "fallbacks": list(fallbacks)},
    }


def access(name: str, secret: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "AccessKeyConfig",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"keys": [{"name": "k", "secretRef": {"name": secret, "key": "t"}}], **spec},
    }


SECRETS = {
    ("team", "client"): {"t": TOKEN.encode()},
    ("team", "pkey"): {"key": f"  {PROVIDER_KEY}\n".encode()},
}


def world() -> list[dict[str, Any]]:
    return [
        provider("ollama", models=[{"id": "qwen2.5-coder:32b"}, {"id": "llama3.1:8b"}]),
        provider(
            "cloud",
            baseUrl="https://api.example.com",
            api="anthropic-messages",
            apiKeySecretRef={"name": "pkey", "key": "key"},
        ),
        provider("broken", baseUrl="http://api.example.com/v1"),
        agent("coder", "ollama:qwen2.5-coder:32b", "cloud:claude", "broken:x"),
        access("team", "client", allowedProviders=["*"], allowedAgents=["coder"]),
        access("ghost", "missing", allowedProviders=["ollama"]),
    ]


def test_split_ref_first_colon() -> None:
    assert refs.split_ref("ollama:qwen2.5-coder:32b") == ("ollama", "qwen2.5-coder:32b")
    assert refs.split_ref("vllm:Qwen/Qwen2.5") == ("vllm", "Qwen/Qwen2.5")
    assert refs.split_ref("coder") is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("10s", 10), ("2m", 120), ("1h30m", 5400), ("1.5s", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert refs.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "s", "10 s", "1x", "5s10"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        refs.parse_duration(text)


def test_defaults_from_the_seeds() -> None:
    result = compiler.compile([provider("p", models=[{"id": "m"}])], {})
    p = result.configs["team"].providers["p"]
    assert p.api == "openai-completions" and p.dialect == "chat"
    m = p.models["m"]
    assert (m.name, m.reasoning, m.images, m.context_window, m.max_tokens) == (
        "m",
        False,
        False,
        200000,
        8192,
    )
    assert m.price == rc.Price(input=0, output=0, cache_read=0, cache_write=0)
    assert (p.timeouts.connect, p.timeouts.first_token, p.timeouts.total) == (5, 60, 600)


@pytest.mark.parametrize(
    ("api", "base", "endpoint"),
    [
        ("openai-completions", "http://o/v1", "http://o/v1/chat/completions"),
        ("openai-completions", "http://o/v1/", "http://o/v1/chat/completions"),
        ("openai-responses", "https://api.openai.com/v1", "https://api.openai.com/v1/responses"),
        (
            "anthropic-messages",
            "https://api.anthropic.com",
            "https://api.anthropic.com/v1/messages",
        ),
        ("anthropic-messages", "http://proxy/v1", "http://proxy/v1/messages"),
    ],
)
def test_endpoints(api: str, base: str, endpoint: str) -> None:
    result = compiler.compile([provider("p", api=api, baseUrl=base)], {})
    assert result.configs["team"].providers["p"].endpoint == endpoint


def test_one_bad_object_never_hides_good_ones() -> None:
    result = compiler.compile(world(), SECRETS)
    config = result.configs["team"]
    assert sorted(config.providers) == ["cloud", "ollama"]
    assert [c.ref for c in config.agents["coder"].chain] == [
        "ollama:qwen2.5-coder:32b",
        "cloud:claude",
    ]
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    assert list(config.keys) == [digest]
    assert config.keys[digest].providers == ("cloud", "ollama")
    assert config.providers["cloud"].api_key == PROVIDER_KEY  # whitespace stripped
    reports = result.reports
    broken = reports[compiler.ObjectRef("CustomProvider", "team", "broken")]
    assert not broken.accepted
    coder = reports[compiler.ObjectRef("Agent", "team", "coder")]
    assert coder.accepted and not coder.resolved_refs
    assert coder.chain == ("ollama:qwen2.5-coder:32b", "cloud:claude")
    ghost = reports[compiler.ObjectRef("AccessKeyConfig", "team", "ghost")]
    assert ghost.keys == 0 and ghost.secrets == ("missing",)


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False))
def test_shuffled_input_gives_identical_bytes(rnd: random.Random) -> None:
    expected = compiler.compile(world(), SECRETS)
    objects = world()
    rnd.shuffle(objects)
    got = compiler.compile(objects, SECRETS)
    assert rc.to_json(got.configs["team"]) == rc.to_json(expected.configs["team"])
    assert got.configs["team"].hash == expected.configs["team"].hash
    assert got.problems == expected.problems


def test_hash_is_of_the_content() -> None:
    config = compiler.compile(world(), SECRETS).configs["team"]
    assert config.hash == hashlib.sha256(rc.canonical_bytes(config)).hexdigest()
    assert rc.load(rc.to_json(config)) == config
    assert rc.load(rc.to_secret_bytes(config)) == config


def test_load_refuses_bad_files() -> None:
    config = compiler.compile(world(), SECRETS).configs["team"]
    data = rc.to_json(config)
    with pytest.raises(rc.ConfigError, match="hash"):
        rc.load(data.replace(b"ollama.models.svc", b"evil.models.svc"))
    with pytest.raises(rc.ConfigError, match="not JSON"):
        rc.load(data[: len(data) // 2])
    with pytest.raises(rc.ConfigError, match="not JSON"):
        rc.load(rc.to_secret_bytes(config)[:40])
    with pytest.raises(rc.ConfigError, match="schema_version"):
        rc.load(data.replace(b'"schema_version":2', b'"schema_version":3'))
    with pytest.raises(rc.ConfigError) as info:
        rc.load(
            data.replace(
                b'"providers":{',
                b'"providers":{"x":{"api_key":"' + PROVIDER_KEY.encode() + b'"},',
                1,
            )
        )
    assert PROVIDER_KEY not in str(info.value)


def test_no_secret_text_in_problems_or_redacted_output() -> None:
    objects = [
        *world(),
        access("dup", "client", allowedProviders=["ollama"]),  # same token: DuplicateToken
        provider("hdr", headers={"x-team": "a\nb"}),
    ]
    result = compiler.compile(objects, SECRETS)
    text = "\n".join(str(p) for p in result.problems)
    assert "same token" in text
    for secret in (TOKEN, PROVIDER_KEY):
        assert secret not in text
        for config in result.configs.values():
            assert secret.encode() not in rc.to_json(rc.redacted(config))
    assert TOKEN.encode() not in rc.to_json(result.configs["team"])
    assert rc.redacted(result.configs["team"]).providers["cloud"].api_key == rc.REDACTED


def test_config_too_large_is_reported_not_written() -> None:
    rnd = random.Random(7)
    models = [
        {"id": f"m-{i}-" + "".join(rnd.choices("abcdef0123456789", k=200))} for i in range(256)
    ]
    objects = [provider(f"p{i}", models=models) for i in range(40)]
    result = compiler.compile(objects, {})
    assert "team" not in result.configs
    assert any(p.reason is compiler.Reason.CONFIG_TOO_LARGE for p in result.problems)


def test_bad_header_drops_only_its_provider() -> None:
    """#10: a header value beyond Latin-1, a line break or a header the gateway owns is a
    problem on `spec.headers[NAME]` naming the character; the provider alone drops out."""
    objects = [
        provider("good", headers={"X-Team": "\u00e9quipe\tml"}),
        provider("dash", headers={"X-Note": "team \u2014 ml", "X-Ok": "fine"}),
        provider("crlf", headers={"X-Team": "a\r\nX-Injected: 1"}),
        provider("host", headers={"Host": "other.example"}),
        agent("coder", "dash:m", "good:m"),
    ]
    result = compiler.compile(objects, {})
    config = result.configs["team"]
    assert sorted(config.providers) == ["good"]
    assert config.providers["good"].headers == {"X-Team": "\u00e9quipe\tml"}
    assert [c.ref for c in config.agents["coder"].chain] == ["good:m"]
    by_name = {(p.ref.name, p.field): p.message for p in result.problems}
    assert "'\u2014' (U+2014) at position 5" in by_name[("dash", "spec.headers[X-Note]")]
    assert "U+000D at position 1" in by_name[("crlf", "spec.headers[X-Team]")]
    assert "set by the gateway itself" in by_name[("host", "spec.headers[Host]")]
    assert ("dash", "spec.headers[X-Ok]") not in by_name


def test_provider_key_beyond_latin1_is_refused_without_showing_it() -> None:
    secrets = {("team", "pkey"): {"key": "sk-\u2014-SECRET".encode()}}
    objects = [provider("p", apiKeySecretRef={"name": "pkey", "key": "key"})]
    result = compiler.compile(objects, secrets)
    assert "p" not in result.configs["team"].providers
    (problem,) = result.errors
    assert problem.field == "spec.apiKeySecretRef"
    assert "\u2014" not in problem.message and "SECRET" not in problem.message
