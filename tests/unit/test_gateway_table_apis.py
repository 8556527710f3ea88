"""The routing table of providers that speak several APIs (issue #15), no network.

Covers:
- a provider listing a client's API is called in it (the identity pair); one that does not is
  called in its first API (`api`), with translation, whatever the order of `apis`;
- each (provider, model, served API) is one Target, built at reload and shared by the routes of
  every client API that calls it the same way: `route()` does no work per request;
- an agent's chain is resolved per client API, candidate by candidate (different lists in one
  chain);
- the endpoint of each API, basePaths included, and its auth headers (x-api-key and
  anthropic-version for Messages, Bearer for the OpenAI APIs);
- a provider with the single `api` routes every client API to it, and a routing config written
  before `apis` existed (no `apis` in the JSON) loads and routes the same;
- open-model providers (no models listed) are routed per client API too.
"""

from __future__ import annotations

import orjson

from switchboard import manifests
from switchboard.dialects.types import Dialect
from switchboard.gateway.table import Table
from switchboard.routing import config as rc

CHAT, RESPONSES, MESSAGES = Dialect.CHAT, Dialect.RESPONSES, Dialect.MESSAGES

MANIFESTS = """
apiVersion: switchboard.dev/v1alpha1
kind: CustomProvider
metadata: {name: both}
spec:
  baseUrl: http://vllm.models.svc:8000/v1
  apis: [anthropic-messages, openai-completions]
  basePaths: {anthropic-messages: /anthropic}
  apiKeySecretRef: {name: keys, key: provider}
  models: [{id: m, cost: {}}]
---
apiVersion: switchboard.dev/v1alpha1
kind: CustomProvider
metadata: {name: single}
spec:
  baseUrl: http://ollama:11434/v1
  models: [{id: m, cost: {}}]
---
apiVersion: switchboard.dev/v1alpha1
kind: CustomProvider
metadata: {name: open}
spec:
  baseUrl: https://api.anthropic.com
  api: anthropic-messages
  apis: [anthropic-messages, openai-responses]
---
apiVersion: switchboard.dev/v1alpha1
kind: Agent
metadata: {name: mixed}
spec:
  model: 'single:m'
  fallbacks: ['both:m']
---
apiVersion: v1
kind: Secret
metadata: {name: keys, labels: {switchboard.dev/secret: "true"}}
stringData: {provider: sk-provider-0123456789}
"""


def _config() -> rc.RoutingConfig:
    loaded = manifests.Loaded()
    manifests.add_text(loaded, MANIFESTS, "<test>", "default")
    result = loaded.compile()
    assert result.errors == ()
    (config,) = result.configs.values()
    return config


def _served(table: Table, model: str, surface: Dialect) -> list[tuple[str, str]]:
    route = table.route(model, surface)
    assert route is not None
    return [(t.provider, t.api) for t in route.chain]


def test_each_client_is_served_in_its_own_api_when_listed() -> None:
    table = Table(_config())
    assert _served(table, "both:m", MESSAGES) == [("both", "anthropic-messages")]
    assert _served(table, "both:m", CHAT) == [("both", "openai-completions")]
    # not listed: the first API, `api` (openai-completions by default, whatever the order)
    assert _served(table, "both:m", RESPONSES) == [("both", "openai-completions")]
    for surface in Dialect:
        assert _served(table, "single:m", surface) == [("single", "openai-completions")]


def test_targets_are_built_once_and_shared() -> None:
    table = Table(_config())
    chat = table.route("both:m", CHAT)
    responses = table.route("both:m", RESPONSES)
    assert chat is not None and responses is not None
    assert chat.chain[0] is responses.chain[0]  # both call the provider in Chat
    assert table.route("both:m", CHAT) is chat  # a lookup, nothing built per request
    single = {id(table.route("single:m", s).chain[0]) for s in Dialect}  # type: ignore[union-attr]
    assert len(single) == 1


def test_an_agent_chain_is_resolved_per_client_api() -> None:
    table = Table(_config())
    assert _served(table, "mixed", MESSAGES) == [
        ("single", "openai-completions"),
        ("both", "anthropic-messages"),
    ]
    assert _served(table, "mixed", RESPONSES) == [
        ("single", "openai-completions"),
        ("both", "openai-completions"),
    ]


def test_endpoints_and_auth_headers_per_api() -> None:
    table = Table(_config())
    messages = table.route("both:m", MESSAGES)
    chat = table.route("both:m", CHAT)
    assert messages is not None and chat is not None
    m, c = messages.chain[0], chat.chain[0]
    assert m.dialect is MESSAGES and c.dialect is CHAT
    assert m.endpoint.url == "http://vllm.models.svc:8000/anthropic/v1/messages"
    assert c.endpoint.url == "http://vllm.models.svc:8000/v1/chat/completions"
    m_head, c_head = m.endpoint.head.lower(), c.endpoint.head.lower()
    assert b"x-api-key: sk-provider-0123456789" in m_head and b"anthropic-version:" in m_head
    assert b"authorization: bearer sk-provider-0123456789" in c_head
    assert b"x-api-key" not in c_head


def test_a_config_from_before_apis_routes_as_before() -> None:
    data = orjson.loads(rc.to_json(_config()))
    for provider in data["providers"].values():
        del provider["apis"]
    old = rc.sealed(rc.RoutingConfig.model_validate(data))
    rc.load(rc.to_json(old))  # loads: the field has a default
    table = Table(old)
    for surface in Dialect:
        assert _served(table, "both:m", surface) == [("both", "openai-completions")]
        assert _served(table, "open:x", surface) == [("open", "anthropic-messages")]


def test_open_models_are_routed_per_client_api() -> None:
    table = Table(_config())
    assert _served(table, "open:claude-x", RESPONSES) == [("open", "openai-responses")]
    assert _served(table, "open:claude-x", MESSAGES) == [("open", "anthropic-messages")]
    assert _served(table, "open:claude-x", CHAT) == [("open", "anthropic-messages")]
