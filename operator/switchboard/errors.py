"""The one base of every error Switchboard raises on purpose, below every layer so that each
layer's tree hangs from it (docs/architecture.md, "Errors"):

SwitchboardError
  * CompileError          routing/problems.py: .problems
  * ConfigError           routing/config.py: a routing file the gateway refuses (also ValueError)
  * TranslationError      dialects/errors.py: UnsupportedFeature, MalformedPayload
  * GatewayError          gateway/errors.py: what a client is answered (.status .type .message)
  * AttemptFailed         gateway/errors.py: one candidate failed; the fallback loop decides
  * UpstreamError         gateway/http1.py (exported by upstream.py): the HTTP exchange failed
  * TracingError          gateway/tracing.py: the OTEL_* environment asks for the impossible

Third-party errors are mapped into these in one place per layer (gateway/errors.map_upstream()
for the upstream client; controller/ for the Kubernetes API).
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Root of every error Switchboard raises on purpose."""
