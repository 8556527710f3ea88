"""The rule for upstream base URLs, shared by the compiler and mirrored by the CRD's CEL rules.

External hosts need `https://`. Plain `http://` is allowed only for names that cannot leave the
cluster or the machine: `*.svc`, `*.svc.cluster.local`, single-label names (`ollama`),
`*.internal`, `localhost` and loopback addresses (127.0.0.0/8, ::1).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_LABEL = r"[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?"
_INTERNAL_SUFFIXES = (".svc", ".svc.cluster.local", ".internal")

# The CEL mirror of `check_base_url`, used in the CRD (RE2 syntax, case-insensitive).
CEL_SCHEME = r"(?i)^https?://[^/?#]+"
CEL_NO_USERINFO = r"^[^/?#]*//[^/?#]*@"
CEL_HTTP_INTERNAL_HOST = (
    r"(?i)^http://("
    r"localhost|127(\.[0-9]{1,3}){3}|\[::1\]|"
    r"[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?|"
    r"([a-z0-9_]([-a-z0-9_]*[a-z0-9_])?\.)+(svc|svc\.cluster\.local|internal)"
    r")\.?(:[0-9]+)?([/?#].*)?$"
)

HTTPS_MESSAGE = (
    "baseUrl must use https:// for external hosts; http:// is allowed only for in-cluster or "
    "private names (*.svc, *.svc.cluster.local, single-label names, *.internal, localhost, "
    "127.0.0.0/8, [::1])"
)
SCHEME_MESSAGE = "baseUrl must be an absolute http:// or https:// URL with a host"
USERINFO_MESSAGE = (
    "baseUrl must not contain credentials (user:password@); store the key in a Secret and "
    "reference it with apiKeySecretRef"
)


def _is_private_host(host: str) -> bool:
    host = host.lower().removesuffix(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if re.fullmatch(_LABEL, host):
        return True
    labels = host.split(".")
    if not all(re.fullmatch(_LABEL, label) for label in labels):
        return False
    return any(host.endswith(suffix) for suffix in _INTERNAL_SUFFIXES)


def check_base_url(url: str) -> str | None:
    """Return None when `url` is an acceptable upstream base URL, else the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError:
        return SCHEME_MESSAGE
    del port
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return SCHEME_MESSAGE
    if "@" in parts.netloc:
        return USERINFO_MESSAGE
    if scheme == "http" and not _is_private_host(parts.hostname):
        return HTTPS_MESSAGE
    return None
