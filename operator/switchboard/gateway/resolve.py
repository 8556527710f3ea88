"""Resolution of one request against its route: defaults, type checks, and the plan of
candidates (image capability, context window, output limit, truncation). Pure: no I/O."""

from __future__ import annotations

from switchboard.dialects import inspect
from switchboard.dialects.types import Dialect, Json
from switchboard.gateway import errors
from switchboard.gateway.table import Route, Target


def include_usage(surface: Dialect, body: Json) -> bool:
    if surface is not Dialect.CHAT:
        return False
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


_NUMBERS = ("temperature", "top_p")


def check_types(surface: Dialect, body: Json) -> None:
    """The top-level types every surface needs, checked before anything is sent upstream
    (identity pairs pass the body through, so the upstream would be the first to see them)."""
    if surface is Dialect.RESPONSES:
        if not isinstance(body.get("input", ""), str | list):
            raise errors.BadRequest("'input' must be a string or a list of items", param="input")
    else:
        turns = body.get("messages")
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            raise errors.BadRequest("'messages' must be a list of objects", param="messages")
    if "stream" in body and not isinstance(body["stream"], bool | None):
        raise errors.BadRequest("'stream' must be true or false", param="stream")
    for name in _MAX_KEYS[surface]:
        value = body.get(name)
        if value is not None and (type(value) is not int or value < 1):
            raise errors.BadRequest(f"'{name}' must be a positive integer", param=name)
    for name in _NUMBERS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise errors.BadRequest(f"'{name}' must be a number", param=name)


_MAX_KEYS = {
    Dialect.CHAT: ("max_tokens", "max_completion_tokens"),
    Dialect.RESPONSES: ("max_output_tokens",),
    Dialect.MESSAGES: ("max_tokens",),
}


def with_defaults(surface: Dialect, body: Json, route: Route) -> Json:
    d = route.defaults
    if d.max_tokens is None and d.temperature is None and d.top_p is None:
        return body
    body = dict(body)
    if d.max_tokens is not None and not any(k in body for k in _MAX_KEYS[surface]):
        body[_MAX_KEYS[surface][0]] = d.max_tokens
    if d.temperature is not None and body.get("temperature") is None:
        body["temperature"] = d.temperature
    if d.top_p is not None and body.get("top_p") is None:
        body["top_p"] = d.top_p
    return body


def plan(
    surface: Dialect,
    body: Json,
    route: Route,
    counts: dict[str, int] | None = None,
    prompt: int | None = None,
) -> list[tuple[Target, Json, int | None]]:
    """The candidates to try, in order, each with the body and output limit to use.

    The prompt's size is the upstream's own count where `counts` has one for the candidate's
    provider (gateway/tokens.py), else the gateway's estimate (`prompt` when the caller has it
    already: inspect.estimate_prompt_tokens of this body).
    Images need an image-capable model (the agent's imageModel first); a candidate whose
    context window cannot hold the prompt plus the output limit is skipped; when none fits, the
    oldest turns are dropped if the agent allows it, else the request is refused.
    """
    candidates: list[Target] = list(route.chain)
    if inspect.has_images(surface, body):
        capable = [t for t in candidates if t.images]
        if route.image_model is not None and not (capable and capable[0] is candidates[0]):
            capable = [route.image_model, *[t for t in capable if t is not route.image_model]]
        if not capable:
            raise errors.BadRequest(
                f"{route.name!r} does not accept images: its model lists only text input. Set "
                "imageModel on the agent, or call a model whose input includes image",
                param="messages",
            )
        candidates = capable
    requested = inspect.requested_max_tokens(surface, body)
    if prompt is None:
        prompt = inspect.estimate_prompt_tokens(surface, body)
    plan: list[tuple[Target, Json, int | None]] = []
    too_small: list[str] = []
    for target in candidates:
        size = counts.get(target.provider, prompt) if counts else prompt
        limit = max_tokens_for(target, requested, size)
        meta = target.meta
        if meta is not None and size + (limit or 0) > meta.context_window:
            too_small.append(f"{target.ref} holds {meta.context_window}")
            continue
        plan.append((target, body, limit))
    if plan:
        return plan
    first = candidates[0]
    assert first.meta is not None
    if route.allow_truncation:
        limit = max_tokens_for(first, requested, 0)
        budget = first.meta.context_window - (limit or 0)
        truncated = inspect.truncate_oldest(surface, body, budget)
        if truncated is not None:
            return [(first, truncated, limit)]
    raise errors.BadRequest(
        f"the request needs about {prompt} prompt tokens plus {requested or 0} output tokens, "
        f"more than any candidate's context window ({'; '.join(too_small)}); shorten it"
        + (
            ""
            if route.allow_truncation or not route.agent
            else ", or set allowTruncation on the agent"
        ),
        param="messages",
    )


def max_tokens_for(target: Target, requested: int | None, prompt: int) -> int | None:
    meta = target.meta
    if meta is None:
        if requested is None and target.dialect is Dialect.MESSAGES:
            return 4096
        return requested
    if requested is not None:
        return min(requested, meta.max_tokens)
    if target.dialect is Dialect.MESSAGES:
        room = meta.context_window - prompt
        return max(1, min(meta.max_tokens, room))
    return None
