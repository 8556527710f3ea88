"""The base URL rule: https for external hosts, http only for in-cluster and private names.

Covers scheme, userinfo, IPv4 and IPv6 loopback, single-label names, *.svc, *.svc.cluster.local,
*.internal, trailing dots, uppercase hosts, ports, odd schemes and look-alike hosts. The same
table drives the offline CEL test in test_crds.py, so the CRD and the compiler agree.
"""

from __future__ import annotations

import pytest

from switchboard.api import urls

URL_CASES: list[tuple[str, bool]] = [
    ("https://api.anthropic.com", True),
    ("https://api.example.com/v1", True),
    ("HTTPS://API.EXAMPLE.COM/v1", True),
    ("https://10.1.2.3:8443/v1", True),
    ("http://ollama.ml.svc:11434/v1", True),
    ("http://vllm.models.svc.cluster.local:8000/v1", True),
    ("http://ollama:11434/v1", True),
    ("http://llama_server:8080/v1", True),
    ("http://my-ollama.internal", True),
    ("http://my-ollama.internal./v1", True),
    ("http://OLLAMA.ML.SVC:11434/v1", True),
    ("http://localhost:11434/v1", True),
    ("http://LOCALHOST:8000/v1", True),
    ("http://127.0.0.1:8000/v1", True),
    ("http://127.10.20.30/v1", True),
    ("http://[::1]:8000/v1", True),
    ("http://api.example.com/v1", False),
    ("http://api.example.com./v1", False),
    ("http://10.0.0.5:8000/v1", False),
    ("http://192.168.1.10/v1", False),
    ("http://[2001:db8::1]/v1", False),
    ("http://svc.example.com/v1", False),
    ("http://ollama.svc.evil.com/v1", False),
    ("http://internal.example.com/v1", False),
    ("http://localhost.example.com/v1", False),
    ("http://user:pass@ollama.ml.svc/v1", False),
    ("https://user:pass@api.example.com/v1", False),
    ("https://token@api.example.com/v1", False),
    ("ftp://ollama.ml.svc/v1", False),
    ("file:///etc/passwd", False),
    ("ollama.ml.svc:11434/v1", False),
    ("//ollama.ml.svc/v1", False),
    ("https://", False),
    ("http:///v1", False),
]


@pytest.mark.parametrize(("url", "ok"), URL_CASES)
def test_base_url_rule(url: str, ok: bool) -> None:
    assert (urls.check_base_url(url) is None) is ok


def test_messages_say_what_to_do() -> None:
    assert urls.check_base_url("http://api.example.com/v1") == urls.HTTPS_MESSAGE
    assert "https://" in urls.HTTPS_MESSAGE and "*.svc" in urls.HTTPS_MESSAGE
    assert urls.check_base_url("https://a:b@x.com") == urls.USERINFO_MESSAGE
    assert "apiKeySecretRef" in urls.USERINFO_MESSAGE
