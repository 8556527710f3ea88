"""AccessKeyConfig: what a set of client keys may call. Deny by default."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, JsonValue, field_validator

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

    _providers_wildcard = field_validator("allowed_providers")(_wildcard_alone)
    _agents_wildcard = field_validator("allowed_agents")(_wildcard_alone)

    @field_validator("allowed_models")
    @classmethod
    def _refs(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not is_model_ref(ref):
                raise ValueError(f"{ref!r} {MODEL_REF_MESSAGE}")
        return value


class AccessKeyConfigStatus(StatusBase):
    """Observed state of an AccessKeyConfig."""

    keys: int | None = Field(
        default=None, ge=0, description="Number of keys whose Secret was found and is in effect."
    )
