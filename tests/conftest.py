"""Shared pytest options: `--update-goldens` rewrites golden expectations (review the diff)."""

from __future__ import annotations

import os

import pytest

# Gateways started by tests serve /metrics only where a test asks for it (--metrics-port N):
# the default port (9090) would collide between tests and sessions running side by side.
os.environ.setdefault("SWITCHBOARD_METRICS_PORT", "0")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite golden expectation files from the current output",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))
