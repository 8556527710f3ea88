"""compile(): objects and Secrets in; a RoutingConfig per namespace and per-object problems out.

Pure: no I/O, no clock, no environment. The same objects in any order give byte-identical
configs. One bad object never hides good ones:

- a CustomProvider that is invalid, or whose key Secret is missing, drops out; the rest route;
- an Agent candidate naming a missing provider or model is skipped, the other candidates still
  serve in order; an agent with no usable candidate is left out (clients get 404);
- an AccessKeyConfig key whose Secret is missing drops out, the other keys still work; names in
  its allow lists that do not exist are reported and ignored.

Secrets opt in: callers pass only Secrets labeled `switchboard.dev/secret: "true"`
(`SECRET_LABEL`); a reference to one they know exists without the label (`unlabeled`) is a
SecretNotLabeled problem that gives the `kubectl label` command. The routing Secret the operator
writes (`switchboard-routing`) is never an input.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from switchboard.api import access_key as api_access_key
from switchboard.api import agent as api_agent
from switchboard.api import provider as api_provider
from switchboard.api.base import API_VERSION, CrdModel
from switchboard.api.common import NAME_PATTERN
from switchboard.routing import config as rc
from switchboard.routing import headers, limits, refs
from switchboard.routing.problems import ObjectRef, Problem, Reason, Severity

__all__ = ["CompileResult", "ObjectRef", "ObjectReport", "Problem", "Reason", "Severity", "compile"]

SecretData = Mapping[str, bytes]
Secrets = Mapping[tuple[str, str], SecretData]
"""(namespace, name) -> the Secret's decoded data."""

PROVIDER = "CustomProvider"
ACCESS_KEY_CONFIG = "AccessKeyConfig"
AGENT = "Agent"
KIND_ORDER = (PROVIDER, AGENT, ACCESS_KEY_CONFIG)
MIN_TOKEN_LENGTH = 16
SECRET_LABEL = "switchboard.dev/secret"
"""The opt-in label: Switchboard reads a Secret only when it carries SECRET_LABEL=true."""
ROUTING_SECRET = "switchboard-routing"
"""The Secret the operator writes in each namespace; never read as an input."""
_DIALECTS = {
    api_provider.Api.OPENAI_COMPLETIONS: "chat",
    api_provider.Api.OPENAI_RESPONSES: "responses",
    api_provider.Api.ANTHROPIC_MESSAGES: "messages",
}
_SPECS: dict[str, type[CrdModel]] = {
    PROVIDER: api_provider.CustomProviderSpec,
    ACCESS_KEY_CONFIG: api_access_key.AccessKeyConfigSpec,
    AGENT: api_agent.AgentSpec,
}
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-.")

S = TypeVar("S", bound=CrdModel)


@dataclass(frozen=True)
class ObjectReport:
    """What the compiler made of one object: the operator turns it into status and events."""

    ref: ObjectRef
    generation: int | None
    accepted: bool
    """The spec is valid."""
    problems: tuple[Problem, ...] = ()
    models: int | None = None
    """CustomProvider: number of models listed."""
    keys: int | None = None
    """AccessKeyConfig: number of keys in effect."""
    chain: tuple[str, ...] = ()
    """Agent: the candidates the gateway will try, in order."""
    secrets: tuple[str, ...] = ()
    """Names of the Secrets it references (the operator watches them)."""

    @property
    def resolved_refs(self) -> bool:
        return self.accepted and not any(p.severity is Severity.ERROR for p in self.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)


@dataclass(frozen=True)
class CompileResult:
    configs: dict[str, rc.RoutingConfig]
    """Namespace -> its sealed config. A namespace whose config is too large is absent."""
    reports: dict[ObjectRef, ObjectReport]
    problems: tuple[Problem, ...]
    """Every problem, sorted by namespace, kind, name, field."""

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)


@dataclass
class _Report:
    ref: ObjectRef
    generation: int | None
    accepted: bool = True
    problems: list[Problem] = field(default_factory=list)
    models: int | None = None
    keys: int | None = None
    chain: tuple[str, ...] = ()
    secrets: set[str] = field(default_factory=set)

    def problem(
        self,
        path: str,
        message: str,
        reason: Reason = Reason.INVALID_SPEC,
        severity: Severity = Severity.ERROR,
    ) -> None:
        self.problems.append(Problem(self.ref, path, message, reason, severity))

    def freeze(self) -> ObjectReport:
        return ObjectReport(
            ref=self.ref,
            generation=self.generation,
            accepted=self.accepted,
            problems=tuple(sorted(set(self.problems))),
            models=self.models,
            keys=self.keys,
            chain=self.chain,
            secrets=tuple(sorted(self.secrets)),
        )


@dataclass
class _Parsed:
    report: _Report
    spec: Any


def compile(
    objects: Iterable[Mapping[str, Any]],
    secrets: Secrets,
    *,
    default_namespace: str = "default",
    unlabeled: Collection[tuple[str, str]] = (),
) -> CompileResult:
    """Compile Switchboard objects (CustomProvider, Agent, AccessKeyConfig manifests as dicts).

    `secrets` maps (namespace, name) to the data of the opted-in Secrets; `unlabeled` names the
    Secrets known to exist without the opt-in label. Objects without a namespace go to
    `default_namespace`. Other kinds must be filtered out by the caller.
    """
    by_namespace: dict[str, dict[str, dict[str, _Parsed]]] = {}
    reports: list[_Report] = []
    for obj in objects:
        parsed = _parse(obj, default_namespace)
        reports.append(parsed.report)
        ref = parsed.report.ref
        kinds = by_namespace.setdefault(ref.namespace, {k: {} for k in KIND_ORDER})
        bucket = kinds.get(ref.kind)
        if bucket is None:
            continue
        if ref.name in bucket:
            parsed.report.problem(
                "metadata.name",
                f"{ref.kind} {ref.name!r} is defined twice in namespace {ref.namespace!r}; "
                "remove or rename one (both are ignored until then)",
                Reason.DUPLICATE,
            )
            bucket[ref.name].report.problem(
                "metadata.name",
                f"{ref.kind} {ref.name!r} is defined twice in namespace {ref.namespace!r}; "
                "remove or rename one (both are ignored until then)",
                Reason.DUPLICATE,
            )
            parsed.report.accepted = bucket[ref.name].report.accepted = False
            bucket[ref.name].spec = None
            continue
        bucket[ref.name] = parsed

    configs: dict[str, rc.RoutingConfig] = {}
    for namespace in sorted(by_namespace):
        kinds = by_namespace[namespace]
        config = _compile_namespace(namespace, kinds, secrets, frozenset(unlabeled))
        size = len(rc.to_secret_bytes(config))
        if size > rc.SECRET_LIMIT_BYTES - 16 * 1024:
            for item in (p for bucket in kinds.values() for p in bucket.values()):
                item.report.problem(
                    "metadata.namespace",
                    f"the routing config of namespace {namespace!r} is {size} bytes compressed, "
                    f"over the {rc.SECRET_LIMIT_BYTES}-byte Secret limit; it is not written and "
                    "the gateway keeps its last good config. Split the objects across namespaces",
                    Reason.CONFIG_TOO_LARGE,
                )
            continue
        configs[namespace] = config

    frozen = [r.freeze() for r in reports]
    problems = sorted(
        {p for r in frozen for p in r.problems},
        key=lambda p: (
            p.ref.namespace,
            KIND_ORDER.index(p.ref.kind) if p.ref.kind in KIND_ORDER else 9,
            p.ref.name,
            p.field,
            p.message,
        ),
    )
    return CompileResult(
        configs=configs,
        reports={r.ref: r for r in sorted(frozen, key=lambda r: r.ref)},
        problems=tuple(problems),
    )


# --- parsing ----------------------------------------------------------------------------------


def _parse(obj: Mapping[str, Any], default_namespace: str) -> _Parsed:
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or default_namespace)
    generation = meta.get("generation")
    report = _Report(
        ObjectRef(kind, namespace, name or "<unnamed>"),
        generation if isinstance(generation, int) else None,
    )
    spec_model = _SPECS.get(kind)
    if spec_model is None:
        report.accepted = False
        report.problem(
            "kind",
            f"unknown kind {kind!r}; expected one of {', '.join(sorted(_SPECS))}",
            Reason.INVALID_OBJECT,
        )
        return _Parsed(report, None)
    if obj.get("apiVersion") != API_VERSION:
        report.problem(
            "apiVersion",
            f"apiVersion is {obj.get('apiVersion')!r}; use {API_VERSION!r}",
            Reason.INVALID_OBJECT,
        )
        report.accepted = False
    if not name:
        report.problem(
            "metadata.name", "the object has no name; set metadata.name", Reason.INVALID_OBJECT
        )
        report.accepted = False
    elif (
        not set(name) <= _NAME_CHARS
        or len(name) > 253
        or not name[0].isalnum()
        or not name[-1].isalnum()
    ):
        report.problem(
            "metadata.name",
            f"{name!r} is not a valid Kubernetes name: use lowercase letters, digits, '-' and "
            "'.', starting and ending with a letter or digit",
            Reason.INVALID_OBJECT,
        )
        report.accepted = False
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        report.problem("spec", "the object has no spec (a mapping is required)")
        report.accepted = False
        return _Parsed(report, None)
    try:
        parsed = spec_model.model_validate(spec)
    except ValidationError as exc:
        for err in exc.errors(include_input=False, include_url=False):
            report.problem(
                _path(("spec", *err["loc"])), _message(err["type"], err["msg"], err.get("ctx"))
            )
        report.accepted = False
        return _Parsed(report, None)
    if not report.accepted:
        return _Parsed(report, None)
    return _Parsed(report, parsed)


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in ("str", "int", "float"):
            continue
        else:
            out += f".{part}" if out else part
    return out


_PATTERN_MESSAGES = {
    api_provider.DURATION_PATTERN: "must be a duration such as 500ms, 10s, 2m or 1h30m",
    NAME_PATTERN: "must be a Kubernetes name: lowercase letters, digits, '-' and '.'",
}


def _message(kind: str, msg: str, ctx: Mapping[str, Any] | None) -> str:
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field; check its spelling (`kubectl explain` lists the fields)"
    if kind == "string_pattern_mismatch" and ctx and ctx.get("pattern") in _PATTERN_MESSAGES:
        return _PATTERN_MESSAGES[ctx["pattern"]]
    return msg.removeprefix("Value error, ")


# --- per namespace ----------------------------------------------------------------------------


def _compile_namespace(
    namespace: str,
    kinds: dict[str, dict[str, _Parsed]],
    secrets: Secrets,
    unlabeled: frozenset[tuple[str, str]],
) -> rc.RoutingConfig:
    scope = _Scope(namespace, secrets, unlabeled)
    for name in sorted(kinds[PROVIDER]):
        item = kinds[PROVIDER][name]
        routed = None if item.spec is None else scope.provider(name, item.spec, item.report)
        if routed is None:
            scope.invalid_providers.add(name)
        else:
            scope.providers[name] = routed
    for name in sorted(kinds[AGENT]):
        item = kinds[AGENT][name]
        agent = None if item.spec is None else scope.agent(name, item.spec, item.report)
        if agent is None:
            scope.invalid_agents.add(name)
        else:
            scope.agents[name] = agent
    for name in sorted(kinds[ACCESS_KEY_CONFIG]):
        item = kinds[ACCESS_KEY_CONFIG][name]
        if item.spec is not None:
            scope.grants(name, item.spec, item.report)
    return rc.sealed(
        rc.RoutingConfig(
            namespace=namespace, providers=scope.providers, agents=scope.agents, keys=scope.keys
        )
    )


def _pem(value: str, ref: Any, path: str, report: _Report) -> str | None:
    """A CA bundle: PEM certificates that OpenSSL loads."""
    try:
        ssl.create_default_context(cadata=value)
    except (ssl.SSLError, ValueError):
        report.problem(
            path,
            f"Secret {ref.name!r} key {ref.key!r} must hold PEM CA certificates "
            "(-----BEGIN CERTIFICATE----- blocks); OpenSSL cannot load it",
            Reason.INVALID_SECRET_VALUE,
        )
        return None
    return value


def endpoint_url(api: api_provider.Api, base_url: str, base_path: str | None = None) -> str:
    """The URL requests in `api` are POSTed to, from baseUrl (and its basePaths entry)."""
    if base_path is not None:  # basePaths: the path of baseUrl replaced for this API
        parts = urlsplit(base_url)
        base_url = urlunsplit((parts.scheme, parts.netloc, base_path, "", ""))
    base = base_url.rstrip("/")
    if api is api_provider.Api.OPENAI_COMPLETIONS:
        return f"{base}/chat/completions"
    if api is api_provider.Api.OPENAI_RESPONSES:
        return f"{base}/responses"
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


def _tokenize_url(tokenizer: api_provider.Tokenizer | None, base_url: str) -> str | None:
    """vLLM serves /tokenize at its root, beside /v1."""
    if tokenizer is None:
        return None
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/tokenize"


@dataclass
class _Scope:
    """One namespace being compiled: what is routed so far, and the Secrets to resolve."""

    namespace: str
    secrets: Secrets
    unlabeled: frozenset[tuple[str, str]]
    providers: dict[str, rc.Provider] = field(default_factory=dict)
    invalid_providers: set[str] = field(default_factory=set)
    agents: dict[str, rc.Agent] = field(default_factory=dict)
    invalid_agents: set[str] = field(default_factory=set)
    keys: dict[str, rc.Grant] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    """Token digest -> the key that claimed it first."""

    def secret_value(
        self, ref: Any, path: str, report: _Report, what: str, *, pem: bool = False
    ) -> str | None:
        namespace = self.namespace
        label = f"kubectl label secret {ref.name} -n {namespace} {SECRET_LABEL}=true"
        if ref.name == ROUTING_SECRET:
            report.problem(
                path,
                f"Secret {ROUTING_SECRET!r} is the routing config Switchboard writes, never an "
                f"input; put the {what} in a Secret of another name",
                Reason.SECRET_NOT_FOUND,
            )
            return None
        report.secrets.add(ref.name)
        data = self.secrets.get((namespace, ref.name))
        if data is None and (namespace, ref.name) in self.unlabeled:
            report.problem(
                path,
                f"Secret {ref.name!r} has no label {SECRET_LABEL}=true, so Switchboard does not "
                f"read it; label it (`{label}`, or add the label to its manifest)",
                Reason.SECRET_NOT_LABELED,
            )
            return None
        if data is None:
            report.problem(
                path,
                f"Secret {ref.name!r} labeled {SECRET_LABEL}=true not found in namespace "
                f"{namespace!r}; create it with key {ref.key!r} holding the {what} and that "
                f"label, or label the existing one (`{label}`)",
                Reason.SECRET_NOT_FOUND,
            )
            return None
        raw = data.get(ref.key)
        if raw is None:
            report.problem(
                path,
                f"Secret {ref.name!r} has no key {ref.key!r}; add it, holding the {what}",
                Reason.SECRET_KEY_NOT_FOUND,
            )
            return None
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            value = ""
        if pem and value:
            return _pem(value, ref, path, report)
        if not value or not value.isprintable():
            report.problem(
                path,
                f"Secret {ref.name!r} key {ref.key!r} must hold the {what} as printable text on "
                "one line (it is empty or has control characters)",
                Reason.INVALID_SECRET_VALUE,
            )
            return None
        return value

    def provider(
        self, name: str, spec: api_provider.CustomProviderSpec, report: _Report
    ) -> rc.Provider | None:
        report.models = len(spec.models)
        api_key = None
        if spec.api_key_secret_ref is not None:
            api_key = self.secret_value(
                spec.api_key_secret_ref, "spec.apiKeySecretRef", report, "provider key"
            )
            if api_key is None:
                return None
            if headers.value_problem("key", api_key) is not None:  # never name the character
                ref = spec.api_key_secret_ref
                report.problem(
                    "spec.apiKeySecretRef",
                    f"Secret {ref.name!r} key {ref.key!r} holds a character an HTTP header cannot "
                    "carry (beyond Latin-1, or a control character); store the provider key as "
                    "plain ASCII text",
                    Reason.INVALID_SECRET_VALUE,
                )
                return None
        ca_bundle = None
        if spec.tls is not None:
            ca_bundle = self.secret_value(
                spec.tls.ca_secret_ref, "spec.tls.caSecretRef", report, "CA bundle", pem=True
            )
            if ca_bundle is None:
                return None
        bad_headers = False
        for header, value in spec.headers.items():
            why = headers.name_problem(header) or headers.value_problem(header, value)
            if why is not None:
                report.problem(f"spec.headers[{header}]", f"{why}; the provider is not served")
                bad_headers = True
        if bad_headers:
            return None
        served: list[rc.ServedApi] = []
        for api in spec.served_apis():
            path = spec.base_paths.get(api)
            endpoint = endpoint_url(api, spec.base_url, path)
            served.append(rc.ServedApi(api=api.value, dialect=_DIALECTS[api], endpoint=endpoint))
            if api is api_provider.Api.ANTHROPIC_MESSAGES:
                continue
            base = (path if path is not None else spec.base_url).rstrip("/")
            if not base.endswith("/v1"):
                where = f"spec.basePaths.{api.value}" if path is not None else "spec.baseUrl"
                report.problem(
                    where,
                    f"{where.removeprefix('spec.')} does not end in /v1, so {api.value} requests "
                    f"go to {endpoint}; most OpenAI-compatible servers (Ollama, vLLM, LM Studio, "
                    "TGI) expect /v1",
                    Reason.UNUSUAL_BASE_URL,
                    Severity.WARNING,
                )
        models: dict[str, rc.Model] = {}
        for i, m in enumerate(spec.models):
            if "cost" not in m.model_fields_set:
                report.problem(
                    f"spec.models[{i}].cost",
                    f"model {m.id!r} has no cost, so its cost is reported as 0; set cost "
                    "(all zeros for a local model) to say so explicitly",
                    Reason.NO_PRICES,
                    Severity.WARNING,
                )
            models[m.id] = rc.Model(
                id=m.id,
                name=m.name or m.id,
                reasoning=m.reasoning,
                images=api_provider.InputKind.IMAGE in m.input,
                context_window=m.context_window,
                max_tokens=m.max_tokens,
                price=rc.Price(
                    input=m.cost.input,
                    output=m.cost.output,
                    cache_read=m.cost.cache_read,
                    cache_write=m.cost.cache_write,
                ),
            )
        return rc.Provider(
            name=name,
            api=served[0].api,
            dialect=served[0].dialect,
            endpoint=served[0].endpoint,
            apis=tuple(served),
            api_key=api_key,
            headers=dict(sorted(spec.headers.items())),
            hosted_tools=spec.hosted_tools.value,
            ca_bundle=ca_bundle,
            timeouts=rc.Timeouts(
                connect=refs.parse_duration(spec.timeouts.connect),
                first_token=refs.parse_duration(spec.timeouts.first_token),
                total=refs.parse_duration(spec.timeouts.total),
            ),
            models=dict(sorted(models.items())),
            open_models=not spec.models,
            tokenize_url=_tokenize_url(spec.tokenizer, spec.base_url),
        )

    def candidate(
        self, ref: str, path: str, report: _Report, consequence: str
    ) -> rc.Candidate | None:
        split = refs.split_ref(ref)
        if split is None:  # the CRD schema already refuses this; kept for offline manifests
            report.problem(path, f"{ref!r} is not a 'provider:model' reference")
            return None
        provider_name, model = split
        provider = self.providers.get(provider_name)
        if provider is None:
            if provider_name in self.invalid_providers:
                why = f"CustomProvider {provider_name!r} is invalid (see its status)"
            else:
                why = (
                    f"CustomProvider {provider_name!r} does not exist in namespace "
                    f"{self.namespace!r}"
                )
            report.problem(path, f"{why}; {consequence}", Reason.PROVIDER_NOT_FOUND)
            return None
        if not provider.open_models and model not in provider.models:
            listed = ", ".join(sorted(provider.models))
            report.problem(
                path,
                f"CustomProvider {provider_name!r} lists no model {model!r} (it lists: {listed}); "
                f"add it to spec.models of the provider or fix the reference; {consequence}",
                Reason.MODEL_NOT_FOUND,
            )
            return None
        return rc.Candidate(provider=provider_name, model=model)

    def agent(self, name: str, spec: api_agent.AgentSpec, report: _Report) -> rc.Agent | None:
        chain: list[rc.Candidate] = []
        refs_in_order = [("spec.model", spec.model)] + [
            (f"spec.fallbacks[{i}]", ref) for i, ref in enumerate(spec.fallbacks)
        ]
        for path, ref in refs_in_order:
            candidate = self.candidate(
                ref, path, report, "this candidate is skipped and the others are tried in order"
            )
            if candidate is None:
                continue
            if candidate in chain:
                report.problem(
                    path,
                    f"{ref!r} is already in the chain; the repeat is skipped",
                    Reason.DUPLICATE,
                    Severity.WARNING,
                )
                continue
            chain.append(candidate)
        image_model = None
        if spec.image_model is not None:
            image_model = self.candidate(
                spec.image_model,
                "spec.imageModel",
                report,
                "requests with images use the chain's image-capable candidates instead",
            )
            if image_model is not None:
                meta = self.providers[image_model.provider].models.get(image_model.model)
                if meta is not None and not meta.images:
                    report.problem(
                        "spec.imageModel",
                        f"model {spec.image_model!r} does not list image in its input; add "
                        "input: [text, image] to it or choose an image-capable model",
                        Reason.NOT_IMAGE_CAPABLE,
                    )
                    image_model = None
        report.chain = tuple(c.ref for c in chain)
        if not chain:
            report.problem(
                "spec.model",
                "no candidate of this agent can be routed, so the agent is not served (clients get "
                "404); fix the references above",
                Reason.PROVIDER_NOT_FOUND,
            )
            return None
        return rc.Agent(
            name=name,
            description=spec.description,
            chain=tuple(chain),
            image_model=image_model,
            defaults=rc.RequestDefaults(
                max_tokens=spec.defaults.max_tokens,
                temperature=spec.defaults.temperature,
                top_p=spec.defaults.top_p,
            ),
            allow_truncation=spec.allow_truncation,
            hosted_tools=spec.hosted_tools.value if spec.hosted_tools else None,
        )

    def expand(
        self, names: list[str], field_name: str, kind: str, report: _Report
    ) -> tuple[str, ...]:
        valid: Mapping[str, Any] = self.providers if kind == PROVIDER else self.agents
        invalid = self.invalid_providers if kind == PROVIDER else self.invalid_agents
        if api_access_key.WILDCARD in names:
            return tuple(sorted(valid))
        out: list[str] = []
        for i, name in enumerate(names):
            if name in valid:
                out.append(name)
                continue
            if name in invalid:
                why = f"{kind} {name!r} is not served (see its status)"
            else:
                why = f"{kind} {name!r} does not exist in namespace {self.namespace!r}"
            report.problem(
                f"spec.{field_name}[{i}]",
                f"{why}; these keys cannot call it until it is",
                Reason.PROVIDER_NOT_FOUND if kind == PROVIDER else Reason.AGENT_NOT_FOUND,
            )
        return tuple(sorted(set(out)))

    def grants(self, name: str, spec: api_access_key.AccessKeyConfigSpec, report: _Report) -> None:
        allowed_providers = self.expand(
            spec.allowed_providers, "allowedProviders", PROVIDER, report
        )
        allowed_agents = self.expand(spec.allowed_agents, "allowedAgents", AGENT, report)
        models: tuple[str, ...] | None = None
        if spec.allowed_models:
            kept: set[str] = set()
            for i, ref in enumerate(spec.allowed_models):
                path = f"spec.allowedModels[{i}]"
                candidate = self.candidate(ref, path, report, "it is ignored")
                if candidate is None:
                    continue
                if candidate.provider not in allowed_providers:
                    report.problem(
                        path,
                        f"provider {candidate.provider!r} is not in allowedProviders, so {ref!r} "
                        "cannot be called; add the provider to allowedProviders",
                        Reason.PROVIDER_NOT_FOUND,
                        Severity.WARNING,
                    )
                kept.add(candidate.ref)
            models = tuple(sorted(kept))
        targets = limits.reachable(
            self.providers, self.agents, allowed_providers, models, allowed_agents
        )
        for finding in limits.findings(spec, self.providers, targets):
            report.problem(finding.path, finding.message, finding.reason, Severity.WARNING)

        resolved = 0
        for i, key in enumerate(spec.keys):
            path = f"spec.keys[{i}].secretRef"
            token = self.secret_value(key.secret_ref, path, report, "client token")
            if token is None:
                continue
            label = f"{name}/{key.name}"
            if len(token) < MIN_TOKEN_LENGTH:
                report.problem(
                    path,
                    f"the token of key {key.name!r} is shorter than {MIN_TOKEN_LENGTH} characters; "
                    "use a long random token (for example `openssl rand -hex 24`)",
                    Reason.WEAK_TOKEN,
                    Severity.WARNING,
                )
            digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
            if digest in self.owners:
                report.problem(
                    path,
                    f"key {key.name!r} has the same token as {self.owners[digest]!r}; a token may "
                    "belong to one key only, so this one is ignored. Give it its own token",
                    Reason.DUPLICATE_TOKEN,
                )
                continue
            self.owners[digest] = label
            rate_rules, budget_rules = limits.rules(self.namespace, name, key.name, spec)
            self.keys[digest] = rc.Grant(
                key=label,
                providers=allowed_providers,
                models=models,
                agents=allowed_agents,
                limits=rate_rules,
                budgets=budget_rules,
            )
            resolved += 1
        report.keys = resolved
