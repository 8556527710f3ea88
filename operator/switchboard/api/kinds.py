"""The three kinds: their names, models and printer columns, in one table."""

from __future__ import annotations

from dataclasses import dataclass, field

from switchboard.api.access_key import AccessKeyConfigSpec, AccessKeyConfigStatus
from switchboard.api.agent import AgentSpec, AgentStatus
from switchboard.api.base import CrdModel
from switchboard.api.provider import CustomProviderSpec, CustomProviderStatus

READY_COLUMN: dict[str, str | int] = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    "description": "Whether everything the object declares is being served.",
}
AGE_COLUMN: dict[str, str | int] = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
}


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[CrdModel]
    status: type[CrdModel]
    description: str
    columns: tuple[dict[str, str | int], ...] = field(default=())


CUSTOM_PROVIDER = Kind(
    kind="CustomProvider",
    plural="customproviders",
    singular="customprovider",
    short_names=("cprov", "provider"),
    spec=CustomProviderSpec,
    status=CustomProviderStatus,
    description=(
        "CustomProvider is one upstream model server (vLLM, TGI, Ollama, LM Studio, llama.cpp, "
        "LiteLLM or any OpenAI- or Anthropic-compatible API). Its name is the provider ID that "
        "clients use in 'provider:model'."
    ),
    columns=(
        READY_COLUMN,
        {"name": "API", "type": "string", "jsonPath": ".spec.api"},
        {
            "name": "APIs",
            "type": "string",
            "jsonPath": ".spec.apis",
            "description": "Every API the server speaks when it speaks several (spec.apis).",
        },
        {"name": "URL", "type": "string", "jsonPath": ".spec.baseUrl"},
        {"name": "Models", "type": "integer", "jsonPath": ".status.models"},
        AGE_COLUMN,
    ),
)
ACCESS_KEY_CONFIG = Kind(
    kind="AccessKeyConfig",
    plural="accesskeyconfigs",
    singular="accesskeyconfig",
    short_names=("akc",),
    spec=AccessKeyConfigSpec,
    status=AccessKeyConfigStatus,
    description=(
        "AccessKeyConfig lists client keys (by Secret reference) and what they may call. Deny "
        "by default: a provider or agent is callable only by keys whose configuration allows it."
    ),
    columns=(
        READY_COLUMN,
        {"name": "Keys", "type": "integer", "jsonPath": ".status.keys"},
        {
            "name": "Spend",
            "type": "string",
            "jsonPath": ".status.spend",
            "description": "The first budget's spend against its amount in the current window.",
        },
        {
            "name": "Resets",
            "type": "string",
            "jsonPath": ".status.resets",
            "description": "When the first budget's window resets.",
        },
        {
            "name": "Providers",
            "type": "string",
            "jsonPath": ".spec.allowedProviders",
            "priority": 1,
        },
        AGE_COLUMN,
    ),
)
AGENT = Kind(
    kind="Agent",
    plural="agents",
    singular="agent",
    short_names=("sbagent",),
    spec=AgentSpec,
    status=AgentStatus,
    description=(
        "Agent is a named route: clients send its name as the model, and the gateway tries "
        "its model, then its fallbacks, in order."
    ),
    columns=(
        READY_COLUMN,
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        {"name": "Chain", "type": "string", "jsonPath": ".status.chain", "priority": 1},
        AGE_COLUMN,
    ),
)

KINDS: dict[str, Kind] = {k.kind: k for k in (CUSTOM_PROVIDER, ACCESS_KEY_CONFIG, AGENT)}
