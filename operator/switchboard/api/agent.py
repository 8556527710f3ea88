"""Agent: a named route, a primary model with a fallback chain."""

from __future__ import annotations

from pydantic import Field, field_validator

from switchboard.api.base import CrdModel
from switchboard.api.common import (
    HOSTED_TOOLS_DESCRIPTION,
    MODEL_REF_MESSAGE,
    HostedTools,
    ModelRef,
    StatusBase,
    is_model_ref,
)


class RequestDefaults(CrdModel):
    """Request values applied when the client does not send them."""

    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Output token limit when the client sets none (still clamped to the model's).",
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Sampling temperature when the client sets none."
    )
    top_p: float | None = Field(
        default=None, ge=0, le=1, description="Nucleus sampling when the client sets none."
    )


class AgentSpec(CrdModel):
    """A named route clients call by name, with fallbacks tried in order."""

    model: ModelRef = Field(
        description=(
            "Primary model as 'provider:model', split at the first colon "
            "('ollama:qwen2.5-coder:32b' is provider ollama, model qwen2.5-coder:32b)."
        )
    )
    fallbacks: list[ModelRef] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "Models tried in order when the one before fails before answering (connect error, "
            "timeout, 5xx, 429, context-length error) or cannot take the request (too long, "
            "images on a text-only model)."
        ),
    )
    image_model: ModelRef | None = Field(
        default=None,
        description=(
            "Model used for requests that carry images when the primary model is text-only. It "
            "must list image in its input."
        ),
    )
    description: str | None = Field(
        default=None, max_length=1024, description="What this agent is for (shown in /v1/models)."
    )
    defaults: RequestDefaults = Field(
        default_factory=RequestDefaults,
        description="Request defaults applied when the client does not set them.",
        json_schema_extra={"default": {}},
    )
    allow_truncation: bool = Field(
        default=False,
        description=(
            "When no candidate's context window fits the request, drop the oldest non-system "
            "turns until it fits instead of answering 400."
        ),
    )
    hosted_tools: HostedTools | None = Field(
        default=None,
        description=HOSTED_TOOLS_DESCRIPTION + " Unset: each candidate provider's setting.",
    )

    @field_validator("model", "image_model")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None and not is_model_ref(value):
            raise ValueError(MODEL_REF_MESSAGE)
        return value

    @field_validator("fallbacks")
    @classmethod
    def _refs(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not is_model_ref(ref):
                raise ValueError(f"{ref!r} {MODEL_REF_MESSAGE}")
        return value


class AgentStatus(StatusBase):
    """Observed state of an Agent."""

    chain: list[str] = Field(
        default_factory=list,
        max_length=17,
        description="The candidates the gateway tries, in order, after resolution.",
    )
