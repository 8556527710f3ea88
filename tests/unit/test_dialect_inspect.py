"""The per-request helpers the gateway calls before routing (dialects/inspect.py).

Covers: the requested output limit in each dialect's field (booleans are not numbers); whether
a request carries images, in each dialect's part type; the prompt estimate (UTF-8 bytes / 4, so
other scripts are not undercounted, per-message overhead, a fixed cost per image, system,
instructions and tools counted); truncation of the oldest turns: system turns and the last turn
stay, a tool call and its result leave together, an Anthropic conversation still starts with a
user turn that answers no missing call (its mid-conversation system turns kept after that
turn), and None when nothing fits; truncated requests still
translate to every upstream.
"""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.dialects import inspect, registry
from switchboard.dialects.types import Ctx, Dialect

WORDS = "x" * 400  # 100 tokens by the estimate


@pytest.mark.parametrize(
    ("dialect", "body", "expected"),
    [
        (Dialect.CHAT, {"max_tokens": 10}, 10),
        (Dialect.CHAT, {"max_completion_tokens": 20, "max_tokens": 10}, 20),
        (Dialect.RESPONSES, {"max_output_tokens": 30}, 30),
        (Dialect.MESSAGES, {"max_tokens": 40}, 40),
        (Dialect.MESSAGES, {"max_tokens": True}, None),
        (Dialect.CHAT, {"max_tokens": "10"}, None),
        (Dialect.RESPONSES, {}, None),
    ],
)
def test_requested_max_tokens(dialect: Dialect, body: dict[str, Any], expected: int) -> None:
    assert inspect.requested_max_tokens(dialect, body) == expected


def test_wants_stream() -> None:
    assert inspect.wants_stream({"stream": True})
    assert not inspect.wants_stream({"stream": "yes"})
    assert not inspect.wants_stream({})


@pytest.mark.parametrize(
    ("dialect", "part"),
    [
        (Dialect.CHAT, {"type": "image_url", "image_url": {"url": "https://e/a.png"}}),
        (Dialect.RESPONSES, {"type": "input_image", "image_url": "https://e/a.png"}),
        (Dialect.MESSAGES, {"type": "image", "source": {"type": "url", "url": "https://e/a"}}),
    ],
)
def test_has_images(dialect: Dialect, part: dict[str, Any]) -> None:
    key = "input" if dialect is Dialect.RESPONSES else "messages"
    with_image = {key: [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]}
    assert inspect.has_images(dialect, with_image)
    assert not inspect.has_images(dialect, {key: [{"role": "user", "content": "hi"}]})
    assert not inspect.has_images(dialect, {key: "hi"})


def test_estimate_counts_text_messages_images_system_and_tools() -> None:
    one = {"messages": [{"role": "user", "content": WORDS}]}
    assert inspect.estimate_prompt_tokens(Dialect.CHAT, one) == inspect.PER_MESSAGE + 100
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 10_000}}
    with_image = {"messages": [{"role": "user", "content": [image]}]}
    assert inspect.estimate_prompt_tokens(Dialect.CHAT, with_image) == (
        inspect.PER_MESSAGE + inspect.PER_IMAGE
    )
    system = {"system": WORDS, **one}
    assert inspect.estimate_prompt_tokens(Dialect.MESSAGES, system) == 2 * 100 + 4
    assert inspect.estimate_prompt_tokens(Dialect.RESPONSES, {"input": WORDS}) == 100
    tools = {**one, "tools": [{"type": "function", "function": {"name": "f" * 400}}]}
    assert inspect.estimate_prompt_tokens(Dialect.CHAT, tools) > 200


def _chat(*roles: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for number, role in enumerate(roles):
        if role == "call":
            call = {"id": f"c{number}", "type": "function", "function": {"name": "f"}}
            messages.append({"role": "assistant", "content": WORDS, "tool_calls": [call]})
        elif role == "tool":
            messages.append({"role": "tool", "tool_call_id": f"c{number - 1}", "content": WORDS})
        else:
            messages.append({"role": role, "content": WORDS})
    return {"model": "m", "messages": messages}


def _roles(body: dict[str, Any] | None) -> list[str]:
    assert body is not None
    return [
        "call" if m.get("tool_calls") else m["role"]
        for m in body.get("messages", body.get("input", []))
    ]


def test_truncate_keeps_system_and_the_last_turn() -> None:
    body = _chat("system", "user", "assistant", "user", "assistant", "user")
    out = inspect.truncate_oldest(Dialect.CHAT, body, 330)
    assert _roles(out) == ["system", "assistant", "user"]
    assert inspect.truncate_oldest(Dialect.CHAT, body, 10_000) == body
    assert inspect.truncate_oldest(Dialect.CHAT, body, 150) is None  # system + last > budget


def test_truncate_drops_a_tool_call_with_its_result() -> None:
    body = _chat("user", "call", "tool", "assistant", "user")
    out = inspect.truncate_oldest(Dialect.CHAT, body, 3 * 104)
    assert _roles(out) == ["assistant", "user"]  # the call went, so its result went too


def test_truncate_refuses_to_leave_an_orphan_tool_result_last() -> None:
    body = _chat("user", "call", "tool")
    assert inspect.truncate_oldest(Dialect.CHAT, body, 110) is None


def test_truncate_messages_starts_with_a_user_turn_that_answers_no_missing_call() -> None:
    use = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": WORDS}
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": WORDS},
            {"role": "assistant", "content": [{"type": "text", "text": WORDS}, use]},
            {"role": "user", "content": [result]},
            {"role": "assistant", "content": WORDS},
            {"role": "user", "content": WORDS},
        ],
    }
    out = inspect.truncate_oldest(Dialect.MESSAGES, body, 250)
    assert out is not None
    assert out["messages"] == body["messages"][4:]


def test_truncate_responses_items() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": WORDS},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": WORDS},
            {"type": "function_call_output", "call_id": "c1", "output": WORDS},
            {"role": "user", "content": WORDS},
        ],
    }
    out = inspect.truncate_oldest(Dialect.RESPONSES, body, 120)
    assert out is not None
    assert out["input"] == body["input"][3:]
    assert inspect.truncate_oldest(Dialect.RESPONSES, {"input": WORDS}, 10) is None


@pytest.mark.parametrize("upstream", list(Dialect), ids=str)
def test_truncated_requests_still_translate(upstream: Dialect) -> None:
    body = _chat("system", "user", "call", "tool", "assistant", "user")
    out = inspect.truncate_oldest(Dialect.CHAT, body, 330)
    assert out is not None
    registry.get(Dialect.CHAT, upstream).translate_request(out, Ctx("u", "p:u", 10, False))


def test_estimate_counts_utf8_bytes_so_other_scripts_are_not_undercounted() -> None:
    ascii_text = {"messages": [{"role": "user", "content": "a" * 400}]}
    cjk_text = {"messages": [{"role": "user", "content": "字" * 400}]}  # 3 bytes each
    assert inspect.estimate_prompt_tokens(Dialect.CHAT, ascii_text) == 104
    assert inspect.estimate_prompt_tokens(Dialect.CHAT, cjk_text) == 304


def test_truncate_keeps_a_messages_system_turn_after_the_first_user_turn() -> None:
    text = "word " * 100
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": text},
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
            {"role": "assistant", "content": text},
            {"role": "user", "content": "last"},
        ],
    }
    out = inspect.truncate_oldest(Dialect.MESSAGES, body, 290)
    assert out is not None
    assert [m["role"] for m in out["messages"]] == ["user", "system", "assistant", "user"]
