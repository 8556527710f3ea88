"""Shapes shared by the three kinds: Secret references, conditions, model references."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

from pydantic import Field

from switchboard.api.base import CrdModel

# A Kubernetes object name (DNS-1123 subdomain), the part before the first colon of a reference.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# `provider:model`: split at the FIRST colon, so `ollama:qwen2.5-coder:32b` is provider `ollama`.
MODEL_REF_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?:\S.*$"
MODEL_REF_MESSAGE = (
    "must be 'provider:model' (split at the first colon), for example 'ollama:qwen2.5-coder:32b', "
    "where provider is a CustomProvider in the same namespace"
)
_MODEL_REF = re.compile(MODEL_REF_PATTERN)


def quote(text: str) -> str:
    """A CEL string literal for `text` (backslashes and quotes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cel(rule: str, message: str, *, reason: str = "FieldValueInvalid") -> dict[str, Any]:
    """One `x-kubernetes-validations` entry."""
    return {"rule": rule, "message": message, "reason": reason}


def is_model_ref(value: str) -> bool:
    return _MODEL_REF.match(value) is not None


class HostedTools(enum.StrEnum):
    """What the gateway does with a tool only the client's API vendor runs (OpenAI's
    web_search, file_search, code_interpreter, ...; Anthropic's server tools) when the upstream
    speaks another API and cannot run it."""

    DROP = "drop"
    REFUSE = "refuse"


HOSTED_TOOLS_DESCRIPTION = (
    "Tools only the client's API vendor runs (web_search, file_search, code_interpreter, "
    "image_generation, computer_use, mcp; Anthropic server tools) on an upstream of another "
    "API: drop leaves them out and names them in the x-switchboard-dropped-tools response "
    "header and the access log; refuse answers 400."
)


ModelRef = Annotated[
    str,
    Field(
        min_length=3,
        max_length=512,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(f"self.matches({quote(MODEL_REF_PATTERN)})", MODEL_REF_MESSAGE)
            ]
        },
    ),
]


class SecretKeyRef(CrdModel):
    """A key in a Secret of the same namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=NAME_PATTERN,
        description="Name of the Secret, in the same namespace as this object.",
    )
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key inside the Secret's data whose value is used.",
    )


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CrdModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(
        max_length=316, description="Type of the condition: Accepted, ResolvedRefs or Ready."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024,
        description="One CamelCase word for the condition's last transition, for machines.",
    )
    message: str = Field(
        default="",
        max_length=32768,
        description="What is wrong and how to fix it, for humans.",
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation this condition was computed from.",
    )
    last_transition_time: str | None = Field(
        default=None,
        description="When the status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )


CONDITIONS_SCHEMA_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


class StatusBase(CrdModel):
    """Fields every status carries."""

    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the operator last processed.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=8,
        description=(
            "Accepted (the spec is valid), ResolvedRefs (every Secret, provider and model it "
            "names exists) and Ready (all of it is being served by the gateway)."
        ),
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )
