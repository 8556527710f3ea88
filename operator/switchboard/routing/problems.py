"""Problems the compiler finds, reported per object, never raised.

SwitchboardError
  * CompileError   .problems: tuple[Problem, ...]; raised only by callers that want to stop
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from switchboard.errors import SwitchboardError


class Severity(enum.StrEnum):
    ERROR = "error"
    """Part of the object is not in effect (the rest still serves)."""
    WARNING = "warning"
    """Everything is in effect, but something deserves a look (e.g. no prices: cost is 0)."""


class Reason(enum.StrEnum):
    """CamelCase reasons, used as condition reasons and event reasons."""

    INVALID_SPEC = "InvalidSpec"
    INVALID_OBJECT = "InvalidObject"
    DUPLICATE = "Duplicate"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    SECRET_NOT_LABELED = "SecretNotLabeled"
    INVALID_SECRET_VALUE = "InvalidSecretValue"
    PROVIDER_NOT_FOUND = "ProviderNotFound"
    MODEL_NOT_FOUND = "ModelNotFound"
    AGENT_NOT_FOUND = "AgentNotFound"
    NOT_IMAGE_CAPABLE = "NotImageCapable"
    DUPLICATE_TOKEN = "DuplicateToken"
    WEAK_TOKEN = "WeakToken"
    NO_PRICES = "NoPrices"
    BUDGET_WITHOUT_PRICES = "BudgetWithoutPrices"
    UNUSUAL_BASE_URL = "UnusualBaseUrl"
    CONFIG_TOO_LARGE = "ConfigTooLarge"


@dataclass(frozen=True, order=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one object: which, where, what, and the fix (in `message`)."""

    ref: ObjectRef
    field: str
    message: str
    reason: Reason = Reason.INVALID_SPEC
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        return f"{self.ref}: {self.field}: {self.message}"


class CompileError(SwitchboardError):
    def __init__(self, problems: tuple[Problem, ...]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
