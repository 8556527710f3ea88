"""CustomProvider: one upstream model server. Its metadata.name is the provider ID."""

from __future__ import annotations

import enum
import re
from typing import Annotated

from pydantic import ConfigDict, Field, field_validator, model_validator

from switchboard.api import urls
from switchboard.api.base import CrdModel
from switchboard.api.common import (
    HOSTED_TOOLS_DESCRIPTION,
    HostedTools,
    SecretKeyRef,
    StatusBase,
    cel,
    quote,
)

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_DOC = "A duration such as 500ms, 10s, 2m or 1h30m."
FORBIDDEN_HEADERS = ("authorization", "x-api-key", "proxy-authorization")


class Api(enum.StrEnum):
    """The wire format the upstream speaks."""

    OPENAI_COMPLETIONS = "openai-completions"
    OPENAI_RESPONSES = "openai-responses"
    ANTHROPIC_MESSAGES = "anthropic-messages"


class Tokenizer(enum.StrEnum):
    """An upstream's own tokenizer endpoint."""

    VLLM = "vllm"


class InputKind(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"


class Cost(CrdModel):
    """Prices in USD per million tokens. All default to 0 (free or local models)."""

    input: float = Field(default=0, ge=0, description="USD per million uncached input tokens.")
    output: float = Field(default=0, ge=0, description="USD per million output tokens.")
    cache_read: float = Field(
        default=0, ge=0, description="USD per million input tokens read from the prompt cache."
    )
    cache_write: float = Field(
        default=0, ge=0, description="USD per million input tokens written to the prompt cache."
    )


class Model(CrdModel):
    """Metadata of one model the provider serves."""

    id: str = Field(
        min_length=1,
        max_length=256,
        description=(
            "Model ID sent upstream verbatim, exactly as the server expects it (Ollama: the tag "
            "such as qwen2.5-coder:32b; vLLM: the served model name). Clients call it as "
            "'<provider>:<id>'."
        ),
    )
    name: str | None = Field(default=None, max_length=256, description="Human-readable name.")
    reasoning: bool = Field(default=False, description="The model supports extended thinking.")
    input: list[InputKind] = Field(
        default_factory=lambda: [InputKind.TEXT],
        min_length=1,
        max_length=2,
        description="Input types the model accepts: [text] or [text, image].",
        json_schema_extra={"default": ["text"]},
    )
    cost: Cost = Field(
        default_factory=Cost,
        description=(
            "Prices used for cost tracking. Leave out or set to 0 for local models; a model "
            "without cost gets a NoPrices warning, so set it (all zeros) to say so explicitly."
        ),
    )
    context_window: int = Field(
        default=200000,
        ge=1,
        le=100_000_000,
        description=(
            "Context window in tokens. The gateway uses it to move a request that would not "
            "fit to the next candidate, or to truncate it, before calling the upstream."
        ),
    )
    max_tokens: int = Field(
        default=8192,
        ge=1,
        le=100_000_000,
        description=(
            "Largest number of output tokens. Client requests are clamped to it, and it is the "
            "default where the upstream requires a limit (Anthropic Messages)."
        ),
    )

    @model_validator(mode="after")
    def _max_tokens_fit(self) -> Model:
        if self.max_tokens > self.context_window:
            raise ValueError(
                f"maxTokens ({self.max_tokens}) is larger than contextWindow "
                f"({self.context_window}); lower maxTokens or raise contextWindow"
            )
        return self


class Timeouts(CrdModel):
    """How long the gateway waits on this upstream before it gives up (and falls back)."""

    connect: str = Field(
        default="5s",
        pattern=DURATION_PATTERN,
        max_length=32,
        description=f"Time to open a connection. {_DURATION_DOC}",
    )
    first_token: str = Field(
        default="60s",
        pattern=DURATION_PATTERN,
        max_length=32,
        description=(
            "Time from sending the request to the first byte of the response (the first token "
            f"of a stream). {_DURATION_DOC}"
        ),
    )
    total: str = Field(
        default="600s",
        pattern=DURATION_PATTERN,
        max_length=32,
        description=f"Time for the whole request, stream included. {_DURATION_DOC}",
    )


class Tls(CrdModel):
    """How the gateway verifies this upstream's TLS certificate (https baseUrl)."""

    ca_secret_ref: SecretKeyRef = Field(
        description=(
            "Secret key holding PEM CA certificates (a bundle) that verify the upstream's "
            "certificate, instead of the system trust store: for a model server behind an "
            "internal CA."
        ),
    )


HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
PATH_PATTERN = r"^/[^?#\s]*$"
API_NOT_LISTED = (
    "api must be one of apis: api is the API clients of an unlisted API are translated to "
    "(openai-completions when left out); add it to apis or set api to one of them"
)
BASE_PATH_NOT_SPOKEN = (
    "basePaths may only name APIs the provider speaks (api, or those in apis); remove the entry "
    "or add the API to apis"
)
HeaderName = Annotated[str, Field(pattern=HEADER_NAME_PATTERN, max_length=256)]
# RFC 9110 field-value: visible ASCII, obs-text (Latin-1), space and tab; no CR, LF or NUL.
HEADER_VALUE_PATTERN = r"^[\t\x20-\x7e\x80-\xff]*$"
HEADER_VALUE_MESSAGE = (
    "header values must be visible ASCII or Latin-1 text, spaces and tabs (no CR, LF, NUL, "
    "other control characters or characters beyond U+00FF)"
)
HeaderValue = Annotated[
    str,
    Field(
        max_length=4096,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(f"self.matches({quote(HEADER_VALUE_PATTERN)})", HEADER_VALUE_MESSAGE)
            ]
        },
    ),
]
GATEWAY_HEADERS = (
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-type",
)
"""Headers the gateway sets on every upstream request itself (framing, host, body type)."""
GATEWAY_HEADERS_MESSAGE = (
    "headers must not set Host, Content-Length, Transfer-Encoding, Connection, Keep-Alive, TE, "
    "Trailer, Upgrade, Proxy-Connection or Content-Type: the gateway sets them itself"
)


class CustomProviderSpec(CrdModel):
    """One upstream endpoint: an in-cluster model server or an OpenAI/Anthropic-compatible API."""

    model_config = ConfigDict(
        **CrdModel.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!has(self.apis) || self.api in self.apis", API_NOT_LISTED),
                cel(
                    "!has(self.basePaths) || self.basePaths.all(k, k == self.api || "
                    "(has(self.apis) && k in self.apis))",
                    BASE_PATH_NOT_SPOKEN,
                ),
            ]
        },
    )

    base_url: str = Field(
        min_length=1,
        max_length=2048,
        description=(
            "Base URL. For openai-completions and openai-responses it normally ends in /v1 and the "
            "gateway appends /chat/completions or /responses; for anthropic-messages it is the API "
            "root (https://api.anthropic.com) and the gateway appends /v1/messages (/messages when "
            "it already ends in /v1). External hosts need https://; http:// is allowed for *.svc, "
            "*.svc.cluster.local, single-label names, *.internal, localhost and loopback addresses."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(f"self.matches({quote(urls.CEL_SCHEME)})", urls.SCHEME_MESSAGE),
                cel(f"!self.matches({quote(urls.CEL_NO_USERINFO)})", urls.USERINFO_MESSAGE),
                cel(
                    "!self.matches('(?i)^http://') || "
                    f"self.matches({quote(urls.CEL_HTTP_INTERNAL_HOST)})",
                    urls.HTTPS_MESSAGE,
                ),
            ]
        },
    )
    api: Api = Field(
        default=Api.OPENAI_COMPLETIONS,
        description=(
            "API the upstream speaks: openai-completions (Ollama, vLLM, LM Studio, llama.cpp, "
            "LiteLLM, TGI), openai-responses, or anthropic-messages. With apis set, it is the one "
            "of them that clients of an unlisted API are translated to; it must be in apis."
        ),
    )
    apis: list[Api] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description=(
            "Every API the server speaks, when it speaks several (vLLM: all three; "
            "llm-d-inference-sim, Ollama, LM Studio: openai-completions and anthropic-messages). "
            "Each client is then served in its own API when it is listed here, with no "
            "translation; clients of another API are translated to api. Leave out for a server "
            "that speaks only api. `switchboard probe URL` tells which APIs a server answers."
        ),
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "x-kubernetes-validations": [
                cel("self.all(a, self.exists_one(b, b == a))", "apis must not list an API twice")
            ],
        },
    )
    base_paths: dict[Api, str] = Field(
        default_factory=dict,
        max_length=3,
        description=(
            "Per-API base path, for a server that mounts its APIs apart: the path replaces the "
            "path of baseUrl for that API, and the gateway appends /chat/completions, /responses "
            "or /messages to it as it does to baseUrl (for example anthropic-messages: /anthropic "
            "sends Messages to <host>/anthropic/v1/messages). Keys are APIs the provider speaks."
        ),
        json_schema_extra={
            "additionalProperties": {"type": "string", "maxLength": 256, "pattern": PATH_PATTERN},
            "x-kubernetes-validations": [
                cel(
                    "self.all(k, k in ['openai-completions', 'openai-responses', "
                    "'anthropic-messages'])",
                    "basePaths keys must be APIs: openai-completions, openai-responses or "
                    "anthropic-messages",
                ),
            ],
        },
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description=(
            "Secret key holding the provider key sent upstream (as Authorization: Bearer for "
            "OpenAI APIs, x-api-key for Anthropic). Leave out for servers without auth."
        ),
    )
    tls: Tls | None = Field(
        default=None,
        description="TLS settings for an https baseUrl: a CA bundle of its own.",
    )
    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        max_length=32,
        description=(
            "Static, non-secret headers added to every upstream request. Credentials belong in "
            "apiKeySecretRef, not here."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.all(h, !(h.lowerAscii() in ['authorization', 'x-api-key', "
                    "'proxy-authorization']))",
                    "headers must not set Authorization, X-Api-Key or Proxy-Authorization; "
                    "put the key in a Secret and reference it with apiKeySecretRef",
                ),
                cel(
                    "self.all(h, !(h.lowerAscii() in ["
                    + ", ".join(quote(h) for h in GATEWAY_HEADERS)
                    + "]))",
                    GATEWAY_HEADERS_MESSAGE,
                ),
                cel(
                    f"self.all(h, h.matches({quote(HEADER_NAME_PATTERN)}))",
                    "header names must be HTTP tokens (letters, digits and !#$%&'*+.^_`|~-)",
                ),
            ]
        },
    )
    hosted_tools: HostedTools = Field(
        default=HostedTools.DROP, description=HOSTED_TOOLS_DESCRIPTION
    )
    timeouts: Timeouts = Field(
        default_factory=Timeouts,
        description="Connect, first-token and total timeouts.",
        json_schema_extra={"default": {}},
    )
    tokenizer: Tokenizer | None = Field(
        default=None,
        description=(
            "The upstream's own tokenizer, used for POST /v1/messages/count_tokens and the "
            "context-window check instead of the gateway's estimate (characters / 4): vllm "
            "(POST /tokenize at the base URL's scheme, host and port, with the request's "
            "messages and tools in Chat form). Unset: the estimate."
        ),
    )
    models: list[Model] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "Models served, with their metadata. With none listed the provider still routes any "
            "model ID, without cost tracking or limits."
        ),
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["id"],
            "x-kubernetes-validations": [
                cel(
                    "self.all(m, self.exists_one(n, n.id == m.id))",
                    "model ids must be unique within a provider",
                )
            ],
        },
    )

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        problem = urls.check_base_url(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("headers")
    @classmethod
    def _no_credentials_in_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in FORBIDDEN_HEADERS:
                raise ValueError(
                    f"header {name!r} carries credentials; put the key in a Secret and "
                    "reference it with apiKeySecretRef"
                )
        return value

    @field_validator("apis")
    @classmethod
    def _apis_once(cls, value: list[Api] | None) -> list[Api] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("apis must not list an API twice")
        return value

    @model_validator(mode="after")
    def _apis_agree(self) -> CustomProviderSpec:
        if self.apis is not None and self.api not in self.apis:
            raise ValueError(API_NOT_LISTED)
        spoken = self.served_apis()
        for api in self.base_paths:
            if api not in spoken:
                raise ValueError(BASE_PATH_NOT_SPOKEN)
        for path in self.base_paths.values():
            if not re.fullmatch(PATH_PATTERN, path) or len(path) > 256:
                raise ValueError(
                    f"basePaths value {path!r} must be an absolute path such as /anthropic "
                    "(no query, fragment or spaces)"
                )
        return self

    def served_apis(self) -> tuple[Api, ...]:
        """The APIs served, api first: the one clients of an unlisted API are translated to."""
        if not self.apis:
            return (self.api,)
        return (self.api, *(a for a in self.apis if a is not self.api))

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, value: list[Model]) -> list[Model]:
        seen: set[str] = set()
        for model in value:
            if model.id in seen:
                raise ValueError(f"model id {model.id!r} is listed twice; model ids must be unique")
            seen.add(model.id)
        return value


class CustomProviderStatus(StatusBase):
    """Observed state of a CustomProvider."""

    models: int | None = Field(default=None, ge=0, description="Number of models listed.")
