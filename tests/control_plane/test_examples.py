"""Every directory in examples/, applied as users apply it, served exactly as `render` says.

Covers: `kubectl apply -n NS -f examples/X` succeeds for every example (the CRDs are applied by
the session fixture); with the operator running, the namespace's `switchboard-routing` Secret
decodes to exactly `switchboard render -n NS examples/X -o json --show-secrets` (parsed JSON,
hash included); `kubectl wait --for=condition=Ready` succeeds on every object of all three
kinds, and `kubectl get switchboard` shows them Ready.
"""

from __future__ import annotations

import pytest

from tests.control_plane import test_operator as helpers
from tests.control_plane.conftest import ROOT, Operator, wait_for
from tests.support.controlplane import ControlPlane

EXAMPLES = sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir())


def test_examples_found() -> None:
    assert {"quickstart", "agents", "access-keys", "fallback"} <= set(EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_secret_equals_render(
    control_plane: ControlPlane, operator: Operator, example: str
) -> None:
    namespace = f"ex-{example}"
    cp = control_plane
    cp.kubectl("create", "namespace", namespace)
    cp.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / example))
    expected = helpers.render(namespace, ROOT / "examples" / example)
    wait_for(lambda: helpers.routing_secret(cp, namespace) == expected)
    names = cp.kubectl("get", "switchboard", "-n", namespace, "-o", "name").stdout.split()
    assert names, f"examples/{example} declares no objects"
    cp.kubectl("wait", "--for=condition=Ready", "-n", namespace, "--timeout=30s", *names)
    table = cp.kubectl("get", "switchboard", "-n", namespace).stdout
    assert "False" not in table, table
