"""RoutingConfig: the one contract between the control plane and the data plane.

The operator, `switchboard render` and `switchboard gateway --manifests` produce it with
`compile()`; the gateway only reads it. It is per namespace (one namespace, one tenant), holds
no timestamps, and serialises to canonical bytes (sorted keys, compact) whose SHA-256 is the
`hash` stamped inside. A gateway that sees another `schema_version` keeps its last good config.

Everything the gateway would otherwise work out per request is precomputed here: the upstream
endpoint of each provider, each model's limits and prices, each agent's resolved chain, and
each client key's grant (wildcards expanded) indexed by the SHA-256 digest of its token.

Provider keys travel in `Provider.api_key`, because the gateway must send them upstream. Every
human-facing output uses `redacted()`.
"""

from __future__ import annotations

import gzip
import hashlib
from typing import Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from switchboard.errors import SwitchboardError

SCHEMA_VERSION = 2
"""2: providers list every API they speak (`apis`, one ServedApi each), keys carry limits and
budgets, providers a CA bundle, `hosted_tools` and a tokenizer. A gateway of version 1 refuses
such a file by its version (and keeps its last good config) instead of failing on its fields."""
REDACTED = "<redacted>"
SECRET_LIMIT_BYTES = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Price(_Frozen):
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0


class Model(_Frozen):
    id: str = Field(description="Model ID sent upstream.")
    name: str = Field(description="Human-readable name (the id when none was given).")
    reasoning: bool = False
    images: bool = Field(False, description="Accepts image input.")
    context_window: int
    max_tokens: int
    price: Price = Price()


class Timeouts(_Frozen):
    """Seconds."""

    connect: float
    first_token: float
    total: float


class ServedApi(_Frozen):
    """One API a provider speaks, and where."""

    api: str = Field(description="openai-completions, openai-responses or anthropic-messages.")
    dialect: str = Field(description="chat, responses or messages.")
    endpoint: str = Field(description="Full URL requests in this API are POSTed to.")


class Provider(_Frozen):
    name: str
    api: str = Field(
        description="openai-completions, openai-responses or anthropic-messages: the API "
        "clients of an API the provider does not speak are translated to."
    )
    dialect: str = Field(description="chat, responses or messages: the dialect of `api`.")
    endpoint: str = Field(description="Full URL requests in `api` are POSTed to.")
    apis: tuple[ServedApi, ...] = Field(
        default=(),
        description="Every API the provider speaks, `api` first; a client whose API is here is "
        "served in it untranslated. Empty (configs from before the field) means `api` alone.",
    )
    api_key: str | None = Field(None, description="Provider key sent upstream. Secret.")
    headers: dict[str, str] = Field(default_factory=dict, description="Static headers.")
    hosted_tools: str = Field("drop", description="drop or refuse: see CustomProvider.")
    ca_bundle: str | None = Field(
        None, description="PEM CA certificates verifying the upstream instead of the system's."
    )
    timeouts: Timeouts
    models: dict[str, Model] = Field(default_factory=dict, description="By model id.")
    open_models: bool = Field(
        False, description="No models were listed: any model id routes, without cost or limits."
    )
    tokenize_url: str | None = Field(
        None, description="The upstream's vLLM-style /tokenize URL, when the provider has one."
    )


class Candidate(_Frozen):
    provider: str
    model: str

    @property
    def ref(self) -> str:
        return f"{self.provider}:{self.model}"


class RequestDefaults(_Frozen):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None


class Agent(_Frozen):
    name: str
    description: str | None = None
    chain: tuple[Candidate, ...] = Field(description="Candidates tried in order; never empty.")
    image_model: Candidate | None = None
    defaults: RequestDefaults = RequestDefaults()
    allow_truncation: bool = False
    hosted_tools: str | None = Field(None, description="drop, refuse, or None: the provider's.")


class RateRule(_Frozen):
    """One rate limit of an AccessKeyConfig, as it applies to one key."""

    counter: str = Field(
        description="Store counter id: '<namespace>/<config>/<key or *shared>/limits/<index>'."
    )
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    count_cache_reads: bool = False
    max_in_flight: int | None = None
    providers: tuple[str, ...] = Field((), description="Counted providers; empty: all.")
    models: tuple[str, ...] = Field((), description="Counted 'provider:model' refs; empty: all.")


class BudgetRule(_Frozen):
    """One USD budget of an AccessKeyConfig, as it applies to one key."""

    counter: str = Field(
        description="Store counter id: '<namespace>/<config>/<key or *shared>/budgets/<index>'."
    )
    usd: float
    window: str = Field(description="day, week (from Monday) or month.")
    time_zone: str = Field(description="IANA zone in which the window starts at midnight.")
    refuse: bool = Field(True, description="False: count and report only, never refuse.")
    providers: tuple[str, ...] = Field((), description="Counted providers; empty: all.")
    models: tuple[str, ...] = Field((), description="Counted 'provider:model' refs; empty: all.")


class Grant(_Frozen):
    """What one client key may call, and how much. Wildcards are already expanded."""

    key: str = Field(description="'<AccessKeyConfig name>/<key name>', used in logs and metrics.")
    providers: tuple[str, ...] = Field(description="Providers callable as 'provider:model'.")
    models: tuple[str, ...] | None = Field(
        None, description="When set, direct calls are limited to these 'provider:model' refs."
    )
    agents: tuple[str, ...] = Field(description="Agents callable by name.")
    limits: tuple[RateRule, ...] = ()
    budgets: tuple[BudgetRule, ...] = ()

    @model_serializer(mode="wrap")
    def _without_empty_rules(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A key without limits serialises as before they existed: same bytes, same hash, and
        # a gateway of the previous release still reads the config.
        data: dict[str, Any] = handler(self)
        for name in ("limits", "budgets"):
            if not data.get(name):
                data.pop(name, None)
        return data


class RoutingConfig(_Frozen):
    schema_version: int = SCHEMA_VERSION
    namespace: str
    hash: str = Field("", description="SHA-256 of the canonical bytes of everything else.")
    providers: dict[str, Provider] = Field(default_factory=dict)
    agents: dict[str, Agent] = Field(default_factory=dict)
    keys: dict[str, Grant] = Field(
        default_factory=dict, description="By SHA-256 hex digest of the client token."
    )


def canonical_bytes(config: RoutingConfig) -> bytes:
    """Compact, key-sorted JSON of everything but the hash."""
    data = config.model_dump(mode="json", exclude={"hash"})
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def content_hash(config: RoutingConfig) -> str:
    return hashlib.sha256(canonical_bytes(config)).hexdigest()


def sealed(config: RoutingConfig) -> RoutingConfig:
    """The config with its `hash` stamped."""
    return config.model_copy(update={"hash": content_hash(config)})


def to_json(config: RoutingConfig, *, indent: bool = False) -> bytes:
    """Deterministic JSON including the hash."""
    option = orjson.OPT_SORT_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(config.model_dump(mode="json"), option=option)


def to_secret_bytes(config: RoutingConfig) -> bytes:
    """Gzip-compressed JSON, deterministic (no name, mtime 0), for the routing Secret."""
    return gzip.compress(to_json(config), compresslevel=9, mtime=0)


def redacted(config: RoutingConfig) -> RoutingConfig:
    """A copy fit for humans: provider keys replaced by a marker. The hash is left as it was."""
    providers = {
        name: p.model_copy(update={"api_key": REDACTED}) if p.api_key else p
        for name, p in config.providers.items()
    }
    return config.model_copy(update={"providers": providers})


class ConfigError(SwitchboardError, ValueError):
    """A routing file the gateway must refuse (it keeps serving its last good config)."""


def load(data: bytes) -> RoutingConfig:
    """Parse a routing file (plain or gzip JSON), checking its schema version and hash."""
    try:
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
        raw: Any = orjson.loads(data)
    except (OSError, EOFError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"routing file is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("routing file must hold a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"routing file has schema_version {version!r}, this gateway reads {SCHEMA_VERSION}; "
            "keeping the last good config (likely in the middle of a rolling update)"
        )
    try:
        config = RoutingConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"routing file does not match the schema: {describe(exc)}") from None
    if config.hash != content_hash(config):
        raise ConfigError("routing file hash does not match its content (truncated or edited)")
    return config


def describe(exc: ValidationError) -> str:
    """A ValidationError without the offending input values (which may be secrets)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )


def json_schema() -> dict[str, Any]:
    return RoutingConfig.model_json_schema()


if __name__ == "__main__":  # `python -m switchboard.routing.config` prints the JSON Schema
    import sys

    sys.stdout.write(
        orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        + "\n"
    )
