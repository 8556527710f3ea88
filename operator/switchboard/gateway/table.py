"""The routing table: a RoutingConfig turned, once per reload, into what requests look up.

Everything a request needs is precomputed here: upstream headers (provider key attached,
client credentials never), timeouts, per-key permission sets and the /v1/models payload.

Routes are precomputed per client API: for each candidate, a provider that lists the client's
API is called in it (the identity pair, no translation); any other is called in its first API
(`api`) with translation. `route(model, surface)` is one dictionary lookup per request.
A provider that cannot be rendered (a header HTTP/1.1 cannot carry, from a config the compiler
did not check) is left out and listed in `refused`; its models and the agent candidates on it
answer `ProviderRefused` (503), and everything else serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from switchboard.dialects.types import Dialect
from switchboard.gateway import errors
from switchboard.gateway.errors import NO_SCRUB, Scrub
from switchboard.gateway.limits.limiter import KeyRules
from switchboard.gateway.upstream import Endpoint
from switchboard.routing import config as rc
from switchboard.routing import headers as headers_mod
from switchboard.routing import refs

ANTHROPIC_VERSION = "2023-06-01"
_OPEN_ROUTE_CACHE = 4096
TOKENIZE_TIMEOUT = 5.0
"""Seconds, at most, for a call of a provider's tokenizer (it falls back to the estimate)."""
_OPEN_ROUTE_CACHED_CHARS = 256
"""Open-provider model names longer than this are routed but not cached."""
OPEN_MODELS = "(unlisted)"
"""The `model` label of every model id on a provider without a model list: such ids come from
clients, and one series per id would let clients grow /metrics without bound."""


@dataclass(frozen=True, slots=True)
class Target:
    """One candidate: a model on a provider, ready to call."""

    ref: str
    provider: str
    model_id: str
    dialect: Dialect
    """The dialect the upstream is called in."""
    api: str
    """Its API name (openai-completions...), for the x-switchboard-api header and the log."""
    endpoint: Endpoint
    """URL, request head with the provider's headers and key, and timeouts, rendered once."""
    first_token: float
    meta: rc.Model | None
    """None for a provider without listed models: no limits, no prices."""
    label: str
    """The model as metrics name it: the id when the provider lists it, else OPEN_MODELS."""
    hosted_tools: str = "drop"
    """The provider's `hostedTools` (an Agent's own setting wins: `Route.hosted_tools`)."""
    scrub: Scrub = NO_SCRUB
    """The provider's secrets, to take out of upstream error text (`_scrub`)."""
    tokenize: Endpoint | None = None
    """The upstream's own tokenizer (CustomProvider `tokenizer`), see gateway/tokens.py."""

    @property
    def reasoning(self) -> bool:
        return self.meta is not None and self.meta.reasoning

    @property
    def images(self) -> bool:
        return self.meta is None or self.meta.images


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    chain: tuple[Target, ...]
    image_model: Target | None = None
    defaults: rc.RequestDefaults = field(default_factory=rc.RequestDefaults)
    allow_truncation: bool = False
    agent: bool = False
    hosted_tools: str | None = None
    tokenize: bool = field(init=False, default=False)
    """Some candidate has its upstream's tokenizer (gateway/tokens.py); set from the chain."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokenize", any(t.tokenize for t in self.chain))


@dataclass(frozen=True, slots=True)
class Access:
    name: str
    providers: frozenset[str]
    models: frozenset[str] | None
    agents: frozenset[str]
    models_json: bytes
    model_json: dict[str, bytes]
    """One /v1/models/{id} entry per callable id."""
    rules: KeyRules | None = None
    """Limits and budgets; None for a key without (the request path skips them)."""

    def may_call(self, route: Route, target: Target | None) -> bool:
        if route.agent:
            return route.name in self.agents
        assert target is not None
        if target.provider not in self.providers:
            return False
        return self.models is None or target.ref in self.models


class ProviderRefused(errors.GatewayError):
    """A request for a provider (or an agent made only of such) that this table left out."""

    status = 503

    def __init__(self, provider: str) -> None:
        super().__init__(
            f"provider {provider!r} is not served: the gateway refused its configuration "
            "(the gateway log and its /readyz?verbose say why)",
            param="model",
        )


class Table:
    def __init__(self, config: rc.RoutingConfig) -> None:
        self.config = config
        self.hash = config.hash
        self.refused: dict[str, str] = {}
        """Provider -> why it cannot be rendered; it is left out, everything else serves."""
        self._endpoints: dict[tuple[str, Dialect], Endpoint] = {}
        """(provider, dialect) -> its endpoint, for every API the provider speaks."""
        self._served: dict[tuple[str, Dialect], Dialect] = {}
        """(provider, client dialect) -> the dialect the provider is called in."""
        self._api_names: dict[Dialect, str] = {}
        for name, provider in config.providers.items():
            first = rc.ServedApi(
                api=provider.api, dialect=provider.dialect, endpoint=provider.endpoint
            )
            served = provider.apis or (first,)
            try:
                endpoints = {Dialect(api.dialect): _endpoint(provider, api) for api in served}
            except rc.ConfigError as exc:
                self.refused[name] = str(exc)
                continue
            for api in served:
                self._endpoints[(name, Dialect(api.dialect))] = endpoints[Dialect(api.dialect)]
                self._api_names[Dialect(api.dialect)] = api.api
            for surface in Dialect:
                spoken = (name, surface) in self._endpoints
                self._served[(name, surface)] = surface if spoken else Dialect(served[0].dialect)
        self._providers = {n: p for n, p in config.providers.items() if n not in self.refused}
        self._tokenizers = {
            name: _endpoint(
                p,
                rc.ServedApi(api=p.api, dialect=Dialect.CHAT.value, endpoint=p.tokenize_url),
                cap=TOKENIZE_TIMEOUT,
            )
            for name, p in self._providers.items()
            if p.tokenize_url
        }
        self._targets: dict[tuple[str, str, Dialect], Target] = {}
        self._scrubs = {name: _scrub(p) for name, p in config.providers.items()}
        self._direct: dict[str, Route] = {}
        """'provider:model' -> its route in the provider's first API (for /v1/models)."""
        self._routes: dict[Dialect, dict[str, Route]] = {surface: {} for surface in Dialect}
        """Client dialect -> model or agent name -> its route for clients of that dialect."""
        for provider in self._providers.values():
            for model in provider.models.values():
                for surface in Dialect:
                    target = self._target(provider, model.id, surface)
                    self._routes[surface][target.ref] = Route(target.ref, (target,))
                ref = f"{provider.name}:{model.id}"
                self._direct[ref] = Route(ref, (self._target(provider, model.id, None),))
        for name, agent in config.agents.items():
            for surface in Dialect:
                if name in self._routes[surface]:
                    continue  # a 'provider:model' of the same name wins, as it always did
                chain = tuple(
                    self._resolve(c, surface) for c in agent.chain if c.provider not in self.refused
                )
                if not chain:
                    continue  # every candidate's provider was refused: route() says so
                image = None
                if agent.image_model and agent.image_model.provider not in self.refused:
                    image = self._resolve(agent.image_model, surface)
                self._routes[surface][name] = Route(
                    name,
                    chain,
                    image,
                    agent.defaults,
                    agent.allow_truncation,
                    agent=True,
                    hosted_tools=agent.hosted_tools,
                )
        self.keys = {digest: self._access(grant) for digest, grant in config.keys.items()}

    def _target(
        self, provider: rc.Provider, model_id: str, surface: Dialect | None, *, keep: bool = True
    ) -> Target:
        """The candidate for clients of `surface` (None: the provider's first API), shared by
        every client dialect it is called in the same way for. `keep=False` (a model id of an
        open provider, named by a request) builds it without keeping it: no unbounded cache."""
        dialect = (
            Dialect(provider.dialect) if surface is None else self._served[(provider.name, surface)]
        )
        key = (provider.name, model_id, dialect)
        target = self._targets.get(key)
        if target is None:
            target = Target(
                ref=f"{provider.name}:{model_id}",
                provider=provider.name,
                model_id=model_id,
                dialect=dialect,
                api=self._api_names[dialect],
                endpoint=self._endpoints[(provider.name, dialect)],
                first_token=provider.timeouts.first_token,
                meta=(meta := provider.models.get(model_id)),
                label=model_id if meta is not None else OPEN_MODELS,
                hosted_tools=provider.hosted_tools,
                scrub=self._scrubs[provider.name],
                tokenize=self._tokenizers.get(provider.name),
            )
            if keep:
                self._targets[key] = target
        return target

    def _resolve(self, candidate: rc.Candidate, surface: Dialect) -> Target:
        return self._target(self._providers[candidate.provider], candidate.model, surface)

    def route(self, model: str, surface: Dialect = Dialect.CHAT) -> Route | None:
        """The route of an agent name or 'provider:model' for clients of `surface`; None when
        nothing of that name exists. Raises `ProviderRefused` for a model or agent left out
        because its provider was refused."""
        routes = self._routes[surface]
        route = routes.get(model)
        if route is not None:
            return route
        split = refs.split_ref(model)
        if split is None:
            agent = self.config.agents.get(model)
            if agent is not None:  # every candidate's provider was refused
                raise ProviderRefused(agent.chain[0].provider)
            return None
        if split[0] in self.refused:
            raise ProviderRefused(split[0])
        provider = self._providers.get(split[0])
        if provider is None or not provider.open_models or not split[1]:
            return None
        route = Route(model, (self._target(provider, split[1], surface, keep=False),))
        if (
            len(model) <= _OPEN_ROUTE_CACHED_CHARS
            and len(routes) < _OPEN_ROUTE_CACHE + len(self._providers) * 256
        ):
            routes[model] = route
        return route

    def _access(self, grant: rc.Grant) -> Access:
        providers = frozenset(grant.providers)
        models = frozenset(grant.models) if grant.models is not None else None
        agents = frozenset(grant.agents)
        data = []
        for name in sorted(agents & self._routes[Dialect.CHAT].keys()):
            agent = self.config.agents[name]
            data.append(_model_entry(name, "switchboard-agent", agent.description or name))
        for ref, route in sorted(self._direct.items()):
            target = route.chain[0]
            if target.provider in providers and (models is None or ref in models):
                meta = target.meta
                data.append(_model_entry(ref, target.provider, meta.name if meta else ref))
        payload = {
            "object": "list",
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        entries = {str(entry["id"]): orjson.dumps(entry) for entry in data}
        return Access(
            grant.key,
            providers,
            models,
            agents,
            orjson.dumps(payload),
            entries,
            KeyRules.of(grant),
        )


def _model_entry(model_id: str, owner: str, display: str) -> dict[str, object]:
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": owner,
        "type": "model",
        "display_name": display,
        "created_at": "1970-01-01T00:00:00Z",
    }


_SECRET_HEADER_WORDS = ("auth", "key", "token", "secret")


def _scrub(provider: rc.Provider) -> Scrub:
    """What to take out of this provider's error text: its key, and the values of its headers
    whose names say they carry a credential (an upstream that echoes `Authorization`)."""
    secrets = [provider.api_key] if provider.api_key else []
    secrets += [
        value
        for name, value in provider.headers.items()
        if any(word in name.lower() for word in _SECRET_HEADER_WORDS)
    ]
    return Scrub(secrets)


def _endpoint(provider: rc.Provider, served: rc.ServedApi, cap: float | None = None) -> Endpoint:
    """`served`'s endpoint with the provider's headers, key and timeouts (each at most `cap`
    seconds: the tokenizer's, which is a Chat-style endpoint of the same server)."""
    limit = cap if cap is not None else float("inf")
    headers = {"content-type": "application/json"}
    headers.update((k.lower(), v) for k, v in provider.headers.items())
    if served.dialect == Dialect.MESSAGES:
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
        if provider.api_key:
            headers["x-api-key"] = provider.api_key
    elif provider.api_key:
        headers["authorization"] = f"Bearer {provider.api_key}"
    for name, value in provider.headers.items():
        why = headers_mod.name_problem(name) or headers_mod.value_problem(name, value)
        if why is not None:
            raise rc.ConfigError(f"provider {provider.name!r}: {why}")
    if provider.api_key and headers_mod.value_problem("key", provider.api_key):
        raise rc.ConfigError(  # the key itself is never shown
            f"provider {provider.name!r}: its key holds a character an HTTP header cannot carry"
        )
    try:
        return Endpoint.build(
            served.endpoint,
            headers,
            connect=min(provider.timeouts.connect, limit),
            read=min(provider.timeouts.first_token, limit),
            total=min(provider.timeouts.total, limit),
            ca_pem=provider.ca_bundle,
        )
    except ValueError:  # the message may quote the request head, key included: not shown
        raise rc.ConfigError(
            f"provider {provider.name!r}: its endpoint {served.endpoint!r}, headers or CA bundle "
            "cannot be rendered as an HTTP/1.1 request"
        ) from None
