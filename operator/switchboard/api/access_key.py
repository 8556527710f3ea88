"""AccessKeyConfig: what a set of client keys may call, and how much. Deny by default."""

from __future__ import annotations

import enum
import zoneinfo
from typing import Annotated

from pydantic import Field, JsonValue, field_validator, model_validator

from switchboard.api.base import CrdModel
from switchboard.api.common import (
    MODEL_REF_MESSAGE,
    NAME_PATTERN,
    ModelRef,
    SecretKeyRef,
    StatusBase,
    cel,
    is_model_ref,
)

WILDCARD = "*"
NameOrWildcard = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$")
]

ProviderName = Annotated[str, Field(min_length=1, max_length=253, pattern=NAME_PATTERN)]

ALLOWED_LIST_RULES: list[JsonValue] = [
    cel(
        "!self.exists(n, n == '*') || size(self) == 1",
        "'*' allows everything: list it alone",
    )
]


def _wildcard_alone(value: list[str]) -> list[str]:
    if WILDCARD in value and len(value) > 1:
        raise ValueError("'*' allows everything: list it alone")
    return value


class ClientKey(CrdModel):
    """One client key: a token clients send as `Authorization: Bearer` or `x-api-key`."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=NAME_PATTERN,
        description="How logs and metrics name this key (the token itself is never shown).",
    )
    secret_ref: SecretKeyRef = Field(
        description=(
            "Secret key holding the client token. The routing config keeps only its SHA-256 "
            "digest; surrounding whitespace is ignored."
        )
    )


class Scope(enum.StrEnum):
    KEY = "key"
    """Each key of the object has its own counter."""
    SHARED = "shared"
    """All keys of the object (the team) share one counter."""


class Window(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class OnExhausted(enum.StrEnum):
    REFUSE = "refuse"
    REPORT = "report"


_SCOPE_DESCRIPTION = (
    "'key': each key of this object has its own counter; 'shared': all its keys (the team) "
    "share one."
)
_PROVIDERS_DESCRIPTION = (
    "Optional: count only calls served by these CustomProviders. Empty: every provider."
)
_MODELS_DESCRIPTION = (
    "Optional: count only calls served by these 'provider:model' references. Empty: every model."
)


class RateLimit(CrdModel):
    """Per-minute rates and a cap on requests in flight. The request that crosses a limit is
    the last to pass; the next one is answered 429 with retry-after."""

    scope: Scope = Field(default=Scope.KEY, description=_SCOPE_DESCRIPTION)
    requests_per_minute: int | None = Field(
        default=None, ge=1, le=100_000_000, description="Requests per calendar minute."
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000_000,
        description="Input plus output tokens per calendar minute (cache writes count as input).",
    )
    count_cache_reads: bool = Field(
        default=False,
        description="Whether cache-read tokens count towards tokensPerMinute (default: no).",
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Requests answered at the same time (guards single-slot model servers).",
    )
    providers: list[ProviderName] = Field(
        default_factory=list, max_length=64, description=_PROVIDERS_DESCRIPTION
    )
    models: list[ModelRef] = Field(
        default_factory=list, max_length=256, description=_MODELS_DESCRIPTION
    )

    @model_validator(mode="after")
    def _something(self) -> RateLimit:
        if (
            self.requests_per_minute is None
            and self.tokens_per_minute is None
            and self.max_in_flight is None
        ):
            raise ValueError("each limit needs requestsPerMinute, tokensPerMinute or maxInFlight")
        return self


class Budget(CrdModel):
    """A spending cap in USD over a calendar window, from the models' prices (a model without
    a price costs 0). The request that crosses it is the last to pass."""

    scope: Scope = Field(default=Scope.KEY, description=_SCOPE_DESCRIPTION)
    usd: float = Field(gt=0, le=1e9, description="The amount in US dollars, e.g. 25 or 0.5.")
    window: Window = Field(
        description="'day', 'week' (starts on Monday) or 'month': resets at local midnight."
    )
    time_zone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone of the window, e.g. 'Europe/Berlin' (default UTC).",
    )
    on_exhausted: OnExhausted = Field(
        default=OnExhausted.REFUSE,
        description="'refuse': answer 429 until the window resets; 'report': only count it.",
    )
    providers: list[ProviderName] = Field(
        default_factory=list, max_length=64, description=_PROVIDERS_DESCRIPTION
    )
    models: list[ModelRef] = Field(
        default_factory=list, max_length=256, description=_MODELS_DESCRIPTION
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not is_time_zone(value):
            raise ValueError(
                f"{value!r} is not an IANA time zone; use a name such as 'UTC' or 'Europe/Berlin'"
            )
        return value


def is_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


class AccessKeyConfigSpec(CrdModel):
    """Client keys and what they may call. Nothing is allowed unless it is listed here."""

    keys: list[ClientKey] = Field(
        min_length=1,
        max_length=256,
        description="The client keys this configuration applies to.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    allowed_providers: list[NameOrWildcard] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "CustomProvider names these keys may call directly as 'provider:model'; '*' allows "
            "every provider of the namespace. Empty: no direct model calls."
        ),
        json_schema_extra={"x-kubernetes-validations": ALLOWED_LIST_RULES},
    )
    allowed_agents: list[NameOrWildcard] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "Agent names these keys may call; '*' allows every agent of the namespace. An allowed "
            "agent may use every candidate of its chain, whatever allowedProviders says."
        ),
        json_schema_extra={"x-kubernetes-validations": ALLOWED_LIST_RULES},
    )
    allowed_models: list[ModelRef] = Field(
        default_factory=list,
        max_length=1024,
        description=(
            "Optional: narrows direct calls to these 'provider:model' references (the provider "
            "must also be in allowedProviders). Empty: any model of an allowed provider."
        ),
    )

    limits: list[RateLimit] = Field(
        default_factory=list,
        max_length=16,
        description="Per-minute rates and in-flight caps, per key or shared by all keys.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.all(l, has(l.requestsPerMinute) || has(l.tokensPerMinute) || "
                    "has(l.maxInFlight))",
                    "each limit needs requestsPerMinute, tokensPerMinute or maxInFlight",
                )
            ]
        },
    )
    budgets: list[Budget] = Field(
        default_factory=list,
        max_length=16,
        description="USD budgets over a day, week or month, per key or shared by all keys.",
    )

    _providers_wildcard = field_validator("allowed_providers")(_wildcard_alone)
    _agents_wildcard = field_validator("allowed_agents")(_wildcard_alone)

    @field_validator("allowed_models")
    @classmethod
    def _refs(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not is_model_ref(ref):
                raise ValueError(f"{ref!r} {MODEL_REF_MESSAGE}")
        return value


class BudgetStatus(CrdModel):
    """One budget counter in its current window."""

    budget: int = Field(ge=0, description="Index in spec.budgets.")
    key: str | None = Field(
        default=None, max_length=63, description="The key, for a budget of scope 'key'."
    )
    spent_usd: float = Field(ge=0, description="USD spent in the current window.")
    usd: float = Field(ge=0, description="The budget's amount.")
    window: str = Field(max_length=32, description="The window's local start, e.g. '2026-12-01'.")
    resets: str = Field(
        description="When the window resets (RFC 3339).", json_schema_extra={"format": "date-time"}
    )


class AccessKeyConfigStatus(StatusBase):
    """Observed state of an AccessKeyConfig."""

    keys: int | None = Field(
        default=None, ge=0, description="Number of keys whose Secret was found and is in effect."
    )
    budgets: list[BudgetStatus] = Field(
        default_factory=list,
        max_length=16 * 257,
        description="Spend of each budget in its current window, read from the gateway's store.",
    )
    spend: str | None = Field(
        default=None,
        max_length=128,
        description="The first budget's spend against its amount, e.g. '$3.20 / $25.00 day'.",
    )
    resets: str | None = Field(
        default=None,
        description="When the first budget's window resets (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
