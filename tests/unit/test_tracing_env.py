"""When the OTEL_* environment turns the gateway's traces on (switchboard.gateway.tracing).

Covers: off with nothing set, with OTEL_TRACES_EXPORTER=none and with OTEL_SDK_DISABLED; on with
OTEL_TRACES_EXPORTER=otlp or an OTLP endpoint alone; exporters other than OTLP and the gRPC
protocol refused with the variable named; `from_env` builds nothing when off.
"""

from __future__ import annotations

import pytest

from switchboard.gateway import tracing


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": " OTLP "}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, False),
    ],
)
def test_wanted(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on
    if not on:
        assert tracing.Tracing.from_env(env) is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp,zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "PROTOCOL"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "PROTOCOL",
        ),
    ],
)
def test_refused(env: dict[str, str], named: str) -> None:
    with pytest.raises(tracing.TracingError, match=named):
        tracing.wanted(env)
