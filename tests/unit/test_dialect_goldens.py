"""Golden tests of the translators: every pair, requests, responses, streams and errors.

Layout (inputs beside what they must become):
  requests/<client>/<case>.json      -> <case>.<upstream>.json     for each upstream dialect
  responses/<upstream>/<case>.json   -> <case>.<client>.json       (+ usage in the file)
  streams/<upstream>/<case>.sse      -> <case>.<client>.sse and <case>.<client>.usage.json
  errors/<case>.json                 -> <case>.expected.json (status, message, context length)
Every expected output parses with the official SDK type of its dialect (openai and anthropic
packages), so the shapes are the real ones; every translated request parses with the SDK's
request type of the upstream dialect, and every input with its client's. The check is strict
(`tests/support/sdk_strict.py`): unknown keys are rejected and nested lists walked item by
item, as pydantic's TypeAdapter over the SDKs' TypedDicts does neither. Messages requests are
checked against the beta request type (`context_management`, `output_format`: the gateway
passes the client's `anthropic-beta` on). Regenerate with `make goldens` and review the diff.

A case may set the translators' context in `<folder>/_ctx.json` ({"case": {"reasoning":
false, "hosted_tools": "refuse"}}); the gateway's own choices (`dropped`, `stop`,
`tool_names`) are recorded in the golden beside the request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic.types as at
import orjson
import pytest
from anthropic.types.beta import message_create_params
from openai.types.chat import ChatCompletion, ChatCompletionChunk, completion_create_params
from openai.types.responses import Response, ResponseStreamEvent, response_create_params
from pydantic import TypeAdapter

from switchboard.dialects import errors, registry, sse
from switchboard.dialects.types import Ctx, Dialect
from tests.support.sdk_strict import strict

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
DIALECTS = [Dialect.CHAT, Dialect.RESPONSES, Dialect.MESSAGES]

RESPONSE_SDK: dict[Dialect, Any] = {
    Dialect.CHAT: ChatCompletion,
    Dialect.RESPONSES: Response,
    Dialect.MESSAGES: at.Message,
}
EVENT_SDK: dict[Dialect, Any] = {
    Dialect.CHAT: ChatCompletionChunk,
    Dialect.RESPONSES: ResponseStreamEvent,
    Dialect.MESSAGES: at.RawMessageStreamEvent,
}
REQUEST_SDK: dict[Dialect, Any] = {
    Dialect.CHAT: completion_create_params.CompletionCreateParamsNonStreaming,
    Dialect.RESPONSES: response_create_params.ResponseCreateParamsNonStreaming,
    Dialect.MESSAGES: message_create_params.MessageCreateParamsNonStreaming,
}
RESPONSE_TYPES = {d: TypeAdapter(t) for d, t in RESPONSE_SDK.items()}
EVENT_TYPES = {d: TypeAdapter(t) for d, t in EVENT_SDK.items()}
REQUEST_TYPES = {d: TypeAdapter(t) for d, t in REQUEST_SDK.items()}


def ctx(stream: bool = False, **overrides: Any) -> Ctx:
    values: dict[str, Any] = {
        "upstream_model": "up-model",
        "response_model": "prov:up-model",
        "max_tokens": 256,
        "stream": stream,
        "include_usage": True,
        "request_id": "req1",
        "created": 1700000000,
        "reasoning": True,
        **overrides,
    }
    return Ctx(**values)


def _case_ctx(folder: Path, case: str) -> dict[str, Any]:
    spec = folder / "_ctx.json"
    if not spec.exists():
        return {}
    found: dict[str, Any] = dict(json.loads(spec.read_text()).get(case, {}))
    if "stop" in found:
        found["stop"] = tuple(found["stop"])
    if "tool_names" in found:
        found["tool_names"] = {k: tuple(v) for k, v in found["tool_names"].items()}
    return found


def _request_ctx(client: Dialect, case: str, stream: bool) -> Ctx:
    return ctx(stream, **_case_ctx(GOLDEN / "requests" / client.value, case))


def _validate_request(dialect: Dialect, body: dict[str, Any]) -> None:
    plain = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    REQUEST_TYPES[dialect].validate_python(plain)
    strict(REQUEST_SDK[dialect], plain)


def _cases(tree: str, suffix: str) -> list[tuple[Dialect, str]]:
    out = []
    for dialect in DIALECTS:
        folder = GOLDEN / tree / dialect.value
        for path in sorted(folder.glob(f"*{suffix}")) if folder.exists() else []:
            if path.name.count(".") == 1 and not path.name.startswith("_"):
                out.append((dialect, path.stem))
    return out


def _check(path: Path, actual: str, update: bool) -> None:
    if update or not path.exists():
        path.write_text(actual)
        if not update:
            pytest.fail(f"{path} did not exist; wrote it: review and commit")
    assert actual == path.read_text(), f"{path} differs: run `make goldens` and review"


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("upstream", DIALECTS, ids=lambda d: d.value)
@pytest.mark.parametrize(("client", "case"), _cases("requests", ".json"), ids=str)
def test_request(client: Dialect, case: str, upstream: Dialect, update_goldens: bool) -> None:
    body = json.loads((GOLDEN / "requests" / client.value / f"{case}.json").read_text())
    stream = bool(body.get("stream"))
    _validate_request(client, body)  # the input is what a real client sends
    target = GOLDEN / "requests" / client.value / f"{case}.{upstream.value}.json"
    context = _request_ctx(client, case, stream)
    try:
        out = registry.get(client, upstream).translate_request(body, context)
    except errors.TranslationError as exc:  # refused: the golden records the 400's message
        refusal = {"refused": type(exc).__name__, "message": exc.message, "param": exc.param}
        _check(target, _dump(refusal), update_goldens)
        return
    noted = {k: getattr(context, k) for k in ("dropped", "stop", "tool_names")}
    if any(v is not None for v in noted.values()):  # what the gateway itself must do
        out = {**out, "_gateway": {k: v for k, v in noted.items() if v is not None}}
    _check(target, _dump(out), update_goldens)
    _validate_request(upstream, {k: v for k, v in out.items() if k != "_gateway"})
    assert out["model"] == "up-model"


@pytest.mark.parametrize("client", DIALECTS, ids=lambda d: d.value)
@pytest.mark.parametrize(("upstream", "case"), _cases("responses", ".json"), ids=str)
def test_response(upstream: Dialect, case: str, client: Dialect, update_goldens: bool) -> None:
    folder = GOLDEN / "responses" / upstream.value
    body = json.loads((folder / f"{case}.json").read_text())
    RESPONSE_TYPES[upstream].validate_python(body)
    strict(RESPONSE_SDK[upstream], body)
    out, usage = registry.get(client, upstream).translate_response(
        body, ctx(**_case_ctx(folder, case))
    )
    result = {
        "body": out,
        "usage": usage.__dict__
        if hasattr(usage, "__dict__")
        else {
            k: getattr(usage, k)
            for k in usage.__slots__  # type: ignore[attr-defined]
        },
    }
    _check(
        GOLDEN / "responses" / upstream.value / f"{case}.{client.value}.json",
        _dump(result),
        update_goldens,
    )
    RESPONSE_TYPES[client].validate_python(out)
    strict(RESPONSE_SDK[client], out)


def _usage_dict(usage: Any) -> dict[str, int]:
    return {
        k: getattr(usage, k)
        for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    }


def _translate_stream(
    client: Dialect, upstream: Dialect, raw: bytes, splits: list[int], case: str = ""
) -> tuple[bytes, Any]:
    overrides = _case_ctx(GOLDEN / "streams" / upstream.value, case)
    translator = registry.get(client, upstream).stream(ctx(stream=True, **overrides))
    decoder = sse.Decoder()
    out = b""
    last = 0
    for cut in [*splits, len(raw)]:
        for event in decoder.feed(raw[last:cut]):
            out += translator.feed(event)
        last = cut
    for event in decoder.close():
        out += translator.feed(event)
    return out + translator.finish(), translator.usage


def _validate_events(dialect: Dialect, raw: bytes) -> None:
    for event in sse.Decoder().feed(raw):
        if event.data == b"[DONE]":
            continue
        data = orjson.loads(event.data)
        if "error" in data or data.get("type") in ("ping", "error"):
            continue  # error and ping events are not in the SDKs' event unions
        EVENT_TYPES[dialect].validate_python(data)
        strict(EVENT_SDK[dialect], data)


@pytest.mark.parametrize("client", DIALECTS, ids=lambda d: d.value)
@pytest.mark.parametrize(("upstream", "case"), _cases("streams", ".sse"), ids=str)
def test_stream(upstream: Dialect, case: str, client: Dialect, update_goldens: bool) -> None:
    raw = (GOLDEN / "streams" / upstream.value / f"{case}.sse").read_bytes()
    if not case.startswith("nonconforming_"):
        _validate_events(upstream, raw)  # the fixture is what a real upstream sends
    # nonconforming_*: what a real server sends outside its API's schema (named in the file's
    # case); the client must still get valid events.
    out, usage = _translate_stream(client, upstream, raw, [], case)
    folder = GOLDEN / "streams" / upstream.value
    _check(folder / f"{case}.{client.value}.sse", out.decode(), update_goldens)
    _check(folder / f"{case}.{client.value}.usage.json", _dump(_usage_dict(usage)), update_goldens)
    _validate_events(client, out)  # what the client gets parses with its SDK's event type
    # Any split of the upstream bytes gives the same client bytes.
    for step in (1, 7, 64):
        again, _ = _translate_stream(client, upstream, raw, list(range(step, len(raw), step)), case)
        assert again == out


@pytest.mark.parametrize(
    "case", sorted(p.stem for p in (GOLDEN / "errors").glob("*.json") if p.stem.count(".") == 0)
)
def test_upstream_error(case: str, update_goldens: bool) -> None:
    spec = json.loads((GOLDEN / "errors" / f"{case}.json").read_text())
    body = spec["body"]
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    info = errors.parse_upstream_error(spec["status"], raw)
    rendered = {
        d.value: json.loads(errors.render_error(d, info.status, info.message)) for d in DIALECTS
    }
    result = {
        "status": info.status,
        "message": info.message,
        "context_length": info.context_length,
        "type": info.type,
        "rendered": rendered,
    }
    _check(GOLDEN / "errors" / f"{case}.expected.json", _dump(result), update_goldens)
    assert info.context_length is case.endswith("_context")
