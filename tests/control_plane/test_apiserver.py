"""Smoke test of the test control plane itself (tests/support/controlplane.py).

Covers:
- the apiserver and kubectl report the Kubernetes version pinned in
  tools/controlplane/versions.env (the version ldflags of tools/controlplane/build.sh work);
- the admin kubeconfig works through the pinned kubectl: a namespace and a Secret are created
  and read back, the Secret's data intact;
- CRD validation runs in the real apiserver: a small CRD with a CEL rule (inline below) is
  Established, a good object passes `kubectl apply --dry-run=server`, and a bad one is rejected
  with the rule's message - the way the product CRDs are tested.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.controlplane import ControlPlane, KubectlError, versions

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.switchboard.test
spec:
  group: smoke.switchboard.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              minReplicas: {type: integer, minimum: 0, maximum: 100}
              maxReplicas: {type: integer, minimum: 0, maximum: 100}
            x-kubernetes-validations:
            - rule: "!has(self.minReplicas) || !has(self.maxReplicas) || \\
                self.minReplicas <= self.maxReplicas"
              message: minReplicas must not exceed maxReplicas
              reason: FieldValueInvalid
"""


def widget(name: str, low: int, high: int) -> str:
    return f"""\
apiVersion: smoke.switchboard.test/v1
kind: Widget
metadata: {{name: {name}, namespace: default}}
spec: {{minReplicas: {low}, maxReplicas: {high}}}
"""


def test_versions_are_the_pinned_ones(control_plane: ControlPlane) -> None:
    pinned = versions()["KUBERNETES_VERSION"]
    assert control_plane.server_version() == pinned
    client = json.loads(control_plane.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == pinned


def test_namespace_and_secret_round_trip(control_plane: ControlPlane) -> None:
    cp = control_plane
    cp.kubectl("create", "namespace", "smoke")
    assert cp.kubectl("get", "namespace", "smoke", "-o", "jsonpath={.status.phase}").stdout == (
        "Active"
    )
    cp.kubectl(
        "create", "secret", "generic", "token", "-n", "smoke", "--from-literal=key=s3cr3t value"
    )
    secret = json.loads(cp.kubectl("get", "secret", "token", "-n", "smoke", "-o", "json").stdout)
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["key"]) == b"s3cr3t value"


def test_crd_cel_rule_rejects_a_bad_object(control_plane: ControlPlane) -> None:
    cp = control_plane
    cp.kubectl("apply", "-f", "-", input=CRD)
    cp.kubectl("wait", "--for=condition=Established", "crd/widgets.smoke.switchboard.test")

    good = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=widget("good", 1, 3))
    assert "created (server dry run)" in good.stdout

    with pytest.raises(KubectlError) as rejected:
        cp.kubectl("apply", "--dry-run=server", "-f", "-", input=widget("bad", 5, 2))
    message = rejected.value.stderr
    assert 'The Widget "bad" is invalid' in message
    assert "spec: Invalid value: minReplicas must not exceed maxReplicas" in message
    # Dry run: nothing was stored.
    assert cp.kubectl("get", "widgets", "-n", "default", "-o", "name").stdout == ""
