"""The Helm chart: lint, render, server-side validation and a real install on the control plane.

Covers: `helm lint --strict` and `helm template` with the default values and each file in
helm_values/; every rendered object accepted by `kubectl apply --dry-run=server` (real
schemas and admission; the ServiceMonitor CRD is installed minimally for that); `helm install`
creating every object with pods that run as non-root with a read-only root file system and no
capabilities; RBAC: config-sync may read only the routing Secret; values.schema.json refuses
unknown values; `helm uninstall` removes the release.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.control_plane.conftest import ROOT
from tests.support.controlplane import ControlPlane

CHART = ROOT / "helm/switchboard"
VALUES = sorted((Path(__file__).parent / "helm_values").glob("*.yaml"))
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, plural: servicemonitors}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def helm(cp: ControlPlane, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert cp.bin_dir is not None
    result = subprocess.run(
        [str(cp.bin_dir / "helm"), *args], env=cp.env, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda v: v.stem if v else "default")
def test_lint_template_and_server_validation(
    control_plane: ControlPlane, values: Path | None
) -> None:
    extra = ["-f", str(values)] if values else []
    helm(control_plane, "lint", "--strict", str(CHART), *extra)
    rendered = helm(control_plane, "template", "sb", str(CHART), "-n", "helm-dry", *extra).stdout
    # Helm installs crds/ before the templates; do the same before validating the templates.
    control_plane.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "crd", "--all")
    control_plane.kubectl("apply", "-f", "-", input=SERVICE_MONITOR_CRD)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com"
    )
    for namespace in ("helm-dry", "team-a", "team-b"):
        control_plane.kubectl("create", "namespace", namespace, check=False)
    # Every namespaced object names its namespace, so no -n: kubectl applies each where it says.
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=rendered, check=False
    )
    assert result.returncode == 0, result.stderr


def test_schema_refuses_unknown_values(control_plane: ControlPlane) -> None:
    result = helm(
        control_plane, "template", "sb", str(CHART), "--set", "gateway.replicaz=2", check=False
    )
    assert result.returncode != 0
    assert "replicaz" in result.stderr


def test_install_creates_every_object(control_plane: ControlPlane) -> None:
    cp = control_plane
    helm(
        cp,
        "install",
        "sb",
        str(CHART),
        "-n",
        "switchboard-system",
        "--create-namespace",
        "--set",
        "tests.enabled=false",
    )
    try:
        deployments = json.loads(
            cp.kubectl("get", "deployments", "-n", "switchboard-system", "-o", "json").stdout
        )["items"]
        assert sorted(d["metadata"]["name"] for d in deployments) == [
            "sb-switchboard-gateway",
            "sb-switchboard-operator",
        ]
        for deployment in deployments:
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                security = container["securityContext"]
                assert security["readOnlyRootFilesystem"] is True
                assert security["allowPrivilegeEscalation"] is False
                assert security["capabilities"]["drop"] == ["ALL"]
        gateway = next(d for d in deployments if d["metadata"]["name"].endswith("gateway"))
        names = [c["name"] for c in gateway["spec"]["template"]["spec"]["containers"]]
        assert names == ["gateway", "config-sync"]
        for kind in ("service", "serviceaccount", "role", "rolebinding", "poddisruptionbudget"):
            assert cp.kubectl("get", kind, "-n", "switchboard-system", "-o", "name").stdout
        sa = "system:serviceaccount:switchboard-system:sb-switchboard-gateway"

        def can(*args: str) -> str:
            result = cp.kubectl(
                "auth", "can-i", *args, "-n", "switchboard-system", "--as", sa, check=False
            )
            return result.stdout.strip()

        assert can("get", "secret/switchboard-routing") == "yes"
        assert can("get", "secret/other") == "no"
        assert can("list", "customproviders.switchboard.dev") == "no"
        operator_sa = "system:serviceaccount:switchboard-system:sb-switchboard-operator"
        assert (
            cp.kubectl(
                "auth",
                "can-i",
                "patch",
                "customproviders.switchboard.dev/status",
                "-n",
                "anywhere",
                "--subresource=status",
                "--as",
                operator_sa,
                check=False,
            ).stdout.strip()
            == "yes"
        )
        assert "Switchboard" in helm(cp, "status", "sb", "-n", "switchboard-system").stdout
    finally:
        helm(cp, "uninstall", "sb", "-n", "switchboard-system")
    assert cp.kubectl("get", "deployments", "-n", "switchboard-system", "-o", "name").stdout == ""
