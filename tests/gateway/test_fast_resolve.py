"""Fast tier: `gateway/resolve.py`, pure, on a table built from a config in Python.

Covers: the output limit (client's clamped to maxTokens; none for OpenAI upstreams unless asked;
always one for Anthropic upstreams, within the room left by the prompt; 4096 for an open
Anthropic provider); agent defaults only where the client set none; the plan (images to the
imageModel first, then image-capable candidates, else 400; candidates whose window is too small
skipped; truncation when allowed; else 400 naming each model's window).
"""

from __future__ import annotations

import pytest

from switchboard.dialects.types import Dialect
from switchboard.gateway import errors, resolve
from switchboard.gateway import table as gateway_table
from switchboard.routing import config as rc
from tests.gateway import inproc


def _table() -> gateway_table.Table:
    small = inproc.provider("small", 1, "chat", models=("s",), context_window=100)
    big = inproc.provider("big", 2, "messages", models=("b",))
    eyes = small.models["s"].model_copy(
        update={"id": "eyes", "images": True, "context_window": 4096}
    )
    small = small.model_copy(update={"models": {"s": small.models["s"], "eyes": eyes}})
    openp = inproc.provider("open", 3, "messages", models=())
    agents = [
        rc.Agent(name="move", chain=inproc.chain("small:s", "big:b")),
        rc.Agent(name="trunc", chain=inproc.chain("small:s"), allow_truncation=True),
        rc.Agent(name="strict", chain=inproc.chain("small:s")),
        rc.Agent(
            name="vision",
            chain=inproc.chain("small:s", "big:b"),
            image_model=inproc.chain("small:eyes")[0],
        ),
        rc.Agent(
            name="defaults",
            chain=inproc.chain("big:b"),
            defaults=rc.RequestDefaults(max_tokens=9, top_p=0.5),
        ),
    ]
    config = rc.RoutingConfig(
        namespace="r",
        providers={p.name: p for p in (small, big, openp)},
        agents={a.name: a for a in agents},
    )
    return gateway_table.Table(rc.sealed(config))


def _route(name: str) -> gateway_table.Route:
    route = _table().route(name)
    assert route is not None
    return route


def test_output_limits() -> None:
    small, big = _route("small:s").chain[0], _route("big:b").chain[0]
    assert resolve.max_tokens_for(small, 10_000, 0) == 512
    assert resolve.max_tokens_for(small, None, 0) is None
    assert resolve.max_tokens_for(big, None, 0) == 512
    assert resolve.max_tokens_for(big, None, 4000) == 96  # 4096 - 4000 left
    assert resolve.max_tokens_for(_route("open:x").chain[0], None, 0) == 4096


def test_defaults() -> None:
    route = _route("defaults")
    body = {"model": "defaults", "messages": []}
    assert resolve.with_defaults(Dialect.CHAT, body, route) == {
        **body,
        "max_tokens": 9,
        "top_p": 0.5,
    }
    mine = {**body, "max_completion_tokens": 3, "top_p": 1.0}
    assert resolve.with_defaults(Dialect.CHAT, mine, route) == mine
    assert resolve.with_defaults(Dialect.RESPONSES, body, route)["max_output_tokens"] == 9


def _chat(words: int, image: bool = False) -> dict[str, object]:
    content: object = "last question"
    if image:
        content = [
            {"type": "text", "text": "x"},
            {"type": "image_url", "image_url": {"url": "data:,"}},
        ]
    return {
        "model": "m",
        "messages": [
            {"role": "user", "content": "old " * words},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": content},
        ],
    }


def test_plan_images() -> None:
    plan = resolve.plan(Dialect.CHAT, _chat(1, image=True), _route("vision"))
    assert [t.ref for t, _, _ in plan] == ["small:eyes"]  # big:b takes text only
    with pytest.raises(errors.BadRequest, match="imageModel"):
        resolve.plan(Dialect.CHAT, _chat(1, image=True), _route("strict"))


def test_plan_context_window() -> None:
    assert [t.ref for t, _, _ in resolve.plan(Dialect.CHAT, _chat(2), _route("move"))] == [
        "small:s",
        "big:b",
    ]
    assert [t.ref for t, _, _ in resolve.plan(Dialect.CHAT, _chat(200), _route("move"))] == [
        "big:b"
    ]
    [(target, body, _)] = resolve.plan(Dialect.CHAT, _chat(200), _route("trunc"))
    assert target.ref == "small:s" and len(body["messages"]) < 3
    with pytest.raises(errors.BadRequest, match=r"small:s holds 100.*allowTruncation"):
        resolve.plan(Dialect.CHAT, _chat(200), _route("strict"))
