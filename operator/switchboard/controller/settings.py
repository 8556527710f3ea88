"""kopf settings for the operator."""

from __future__ import annotations

import kopf

from switchboard.routing import compiler

SECRET_SELECTOR = f"{compiler.SECRET_LABEL} in (true,routing)"
"""The one Secret watch: opted-in inputs (`true`) and the routing Secrets it writes (`routing`).
The apiserver filters, so no other Secret reaches the operator."""


def configure(settings: kopf.OperatorSettings) -> None:
    # Our objects carry our status; kopf keeps its own bookkeeping in annotations, never in a
    # status field the strict schema would prune.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="switchboard.dev"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="switchboard.dev"
    )
    settings.posting.level = 40  # kopf's own events: errors only; problems are ours to post
    settings.watching.label_selectors["", "v1", "secrets"] = SECRET_SELECTOR
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
