"""ObjectReport -> `.status`: conditions Accepted, ResolvedRefs and Ready, and the key facts.

Pure. `Ready=False` from the first reconcile until everything the object declares is served;
`lastTransitionTime` moves only when a condition's status changes; messages name the field and
the fix. Warnings (everything is in effect, but look) are appended to the Ready message.
"""

from __future__ import annotations

from typing import Any

from switchboard.routing.compiler import ObjectReport
from switchboard.routing.problems import Problem, Severity

MAX_MESSAGE = 1500


def _lines(problems: tuple[Problem, ...]) -> str:
    text = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def conditions(report: ObjectReport, published: bool) -> list[dict[str, Any]]:
    """The three conditions, without lastTransitionTime (see `merge`)."""
    generation = report.generation
    errors = report.errors
    warnings = tuple(p for p in report.problems if p.severity is Severity.WARNING)
    spec_errors = tuple(
        p for p in errors if p.reason.value in ("InvalidSpec", "InvalidObject", "Duplicate")
    )
    ref_errors = tuple(p for p in errors if p not in spec_errors)

    def cond(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": kind,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
        }

    accepted = cond(
        "Accepted",
        report.accepted and not spec_errors,
        "Accepted"
        if report.accepted and not spec_errors
        else spec_errors[0].reason.value
        if spec_errors
        else "Invalid",
        "the spec is valid" if report.accepted and not spec_errors else _lines(spec_errors),
    )
    resolved = cond(
        "ResolvedRefs",
        not ref_errors,
        "ResolvedRefs" if not ref_errors else ref_errors[0].reason.value,
        "every reference resolved" if not ref_errors else _lines(ref_errors),
    )
    ready_ok = report.accepted and not errors and published
    if ready_ok:
        message = "served by the gateway"
        if warnings:
            message += "; warnings: " + _lines(warnings)
        ready = cond("Ready", True, "Served", message)
    elif not published and not errors:
        ready = cond("Ready", False, "NotPublished", "the routing config is not written yet")
    else:
        ready = cond(
            "Ready",
            False,
            errors[0].reason.value if errors else "Invalid",
            _lines(errors) or "not served",
        )
    return [accepted, resolved, ready]


def merge(
    old: list[dict[str, Any]] | None, new: list[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Keep each condition's lastTransitionTime while its status is unchanged."""
    previous = {c.get("type"): c for c in old or [] if isinstance(c, dict)}
    out = []
    for condition in new:
        before = previous.get(condition["type"])
        stamp = now
        if before is not None and before.get("status") == condition["status"]:
            stamp = before.get("lastTransitionTime") or now
        out.append({**condition, "lastTransitionTime": stamp})
    return out


def facts(kind: str, report: ObjectReport) -> dict[str, Any]:
    if kind == "CustomProvider":
        return {"models": report.models}
    if kind == "AccessKeyConfig":
        return {"keys": report.keys}
    if kind == "Agent":
        return {"chain": list(report.chain)}
    return {}


def desired(
    report: ObjectReport, published: bool, old: dict[str, Any] | None, now: str
) -> dict[str, Any]:
    """The full status to write, given the one the object has now."""
    old = old or {}
    return {
        "observedGeneration": report.generation,
        "conditions": merge(old.get("conditions"), conditions(report, published), now),
        **facts(report.ref.kind, report),
    }


def same(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    """Equal but for lastTransitionTime and fields we do not own."""
    if not a:
        return False

    def strip(status: dict[str, Any]) -> dict[str, Any]:
        out = {k: status.get(k) for k in b}
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
        ]
        return out

    return strip(a) == strip(b)
