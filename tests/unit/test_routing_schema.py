"""The RoutingConfig JSON Schema in docs/ is generated from the model (`make schema`)."""

from __future__ import annotations

import json
from pathlib import Path

from switchboard.routing import config as rc

ROOT = Path(__file__).resolve().parents[2]


def test_schema_doc_is_fresh() -> None:
    path = ROOT / "docs/routing-config.schema.json"
    assert json.loads(path.read_text()) == rc.json_schema(), "stale: run `make schema`"
    assert rc.SCHEMA_VERSION == 2
