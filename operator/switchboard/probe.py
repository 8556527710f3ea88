"""`switchboard probe URL`: which of the three APIs a model server answers, and the `apis:` to use.

One cheap request per API, at the URL the gateway would call for a provider with this baseUrl
(`routing.compiler.endpoint_url`, so the probe and the gateway agree on paths):

- without `--model`, an empty JSON object: a server that has the route refuses it as invalid
  (400 or 422) without running the model; one that has not answers 404 or 405;
- with `--model`, a one-token request (`max_tokens: 1`): 2xx proves the API end to end.

Verdicts: `answers` (2xx, 400, 422, or a 404 whose error body is about the model: the route
exists, the model name does not), `needs a key` (401 or 403: the route exists; pass
`--api-key-env`), `no` (404 or 405 otherwise), `unsure` (any other status, e.g. 5xx), and
`unreachable` (no connection). The provider key is read from an environment variable, never
from the command line, and is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

import orjson

from switchboard.api.provider import Api
from switchboard.routing.compiler import endpoint_url

ANTHROPIC_VERSION = "2023-06-01"
ANSWERS = "answers"
NEEDS_KEY = "needs a key"
NO = "no"
UNSURE = "unsure"
UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Result:
    api: Api
    url: str
    status: int | None
    verdict: str
    detail: str = ""

    @property
    def served(self) -> bool:
        return self.verdict in (ANSWERS, NEEDS_KEY)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", help="the base URL, as in spec.baseUrl (e.g. .../v1)")
    p.add_argument(
        "--model",
        help="send a one-token request for this model instead of an empty body (proves each API "
        "end to end; costs one token per API)",
    )
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the provider key (sent as Bearer and x-api-key)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")


def _body(api: Api, model: str | None) -> dict[str, Any]:
    if model is None:
        return {}
    if api is Api.OPENAI_RESPONSES:
        return {"model": model, "input": "hi", "max_output_tokens": 16}
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def _about_model(body: bytes) -> bool:
    """A 404 whose error talks about the model (vLLM, the sim, LiteLLM: 'model ... does not
    exist'): the route exists."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and "model" in orjson.dumps(data).decode().lower()


def verdict(status: int, body: bytes) -> str:
    if status < 300 or status in (400, 422):
        return ANSWERS
    if status in (401, 403):
        return NEEDS_KEY
    if status == 404 and _about_model(body):
        return ANSWERS
    if status in (404, 405):
        return NO
    return UNSURE


def probe(
    base_url: str, *, model: str | None = None, key: str | None = None, timeout: float = 10.0
) -> list[Result]:
    """One request per API, in the order of `Api`."""
    import httpx  # here, not at the top: the other offline commands start without it

    results = []
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for api in Api:
            url = endpoint_url(api, base_url)
            headers = {"content-type": "application/json"}
            if api is Api.ANTHROPIC_MESSAGES:
                headers["anthropic-version"] = ANTHROPIC_VERSION
            if key:
                headers["authorization"] = f"Bearer {key}"
                headers["x-api-key"] = key
            try:
                response = client.post(
                    url, content=orjson.dumps(_body(api, model)), headers=headers
                )
            except httpx.HTTPError as exc:
                results.append(Result(api, url, None, UNREACHABLE, type(exc).__name__))
                continue
            results.append(
                Result(
                    api, url, response.status_code, verdict(response.status_code, response.content)
                )
            )
    return results


def suggestion(base_url: str, results: list[Result]) -> str:
    """The spec lines for the APIs that answered (chat first: the one translated to)."""
    served = [r.api for r in results if r.served]
    if not served:
        return ""
    lines = [f"  baseUrl: {base_url}", f"  api: {served[0].value}"]
    if len(served) > 1:
        lines.append(f"  apis: [{', '.join(a.value for a in served)}]")
    return "spec:\n" + "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Print one line per API and the suggested spec; exit 0 when some API answers, 1 when
    none does, 2 when the server cannot be reached at all."""
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            print(f"switchboard probe: ${args.api_key_env} is empty or unset", file=sys.stderr)
            return 2
    how = (
        f"a one-token request for model {args.model!r}"
        if args.model
        else "an empty JSON body (400/422: the API is there; 404/405: it is not)"
    )
    print(f"probing {args.url} with {how}")
    results = probe(args.url, model=args.model, key=key, timeout=args.timeout)
    width = max(len(r.url) for r in results)
    for r in results:
        status = "-" if r.status is None else str(r.status)
        detail = f" ({r.detail})" if r.detail else ""
        print(f"  {r.api.value:<19} POST {r.url:<{width}}  {status:>3}  {r.verdict}{detail}")
    if all(r.verdict == UNREACHABLE for r in results):
        print(
            f"no connection to {args.url}; check the URL and that the server runs", file=sys.stderr
        )
        return 2
    text = suggestion(args.url, results)
    if not text:
        print("no API answered: check the URL (OpenAI-compatible servers usually end in /v1)")
        return 1
    if any(r.verdict == NEEDS_KEY for r in results):
        print("some routes want a key: pass --api-key-env VAR and set apiKeySecretRef")
    print("\nsuggested CustomProvider:\n" + text, end="")
    return 0
