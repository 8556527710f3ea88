"""The Helm chart: lint, render, server-side validation and a real install on the control plane.

Uses the helm and kubectl binaries of the control-plane harness (`ControlPlane.bin_dir`).

Covers:
- `helm lint --strict` with the default values and each file in helm_values/ (ha,
  servicemonitor, watch-namespaces, operator-only, no-hooks, tenant-gateway, observability);
- every object of each `helm template` accepted by `kubectl apply --dry-run=server` (the real
  schemas and admission; minimal ServiceMonitor and PrometheusRule CRDs are installed for that);
- observability (off by default): the dashboard ConfigMap carries files/grafana-dashboard.json
  byte for byte with the sidecar's label, the PrometheusRule the groups of
  files/prometheus-rules.yaml, the gateway container the OTEL_* environment that
  switchboard.gateway.tracing reads as "on"; tracing without an endpoint fails to render;
- in every render: pods and containers run as uid 65532, non-root, read-only root file system,
  no privilege escalation, capabilities dropped, RuntimeDefault seccomp, a /tmp emptyDir,
  requests and limits;
- the container args parse with the real `switchboard` CLI (chart and CLI cannot drift);
- the gateway pod: gateway + config-sync sharing /config (read-only for the gateway), probes on
  /readyz and /healthz, the service-account token mounted in config-sync alone, prometheus
  annotations; the Service maps port 80 to the port named http;
- RBAC in the render: no wildcard and no delete; the operator may update/patch only
  switchboard-routing, create any Secret (resourceNames cannot restrict create), create
  Events, patch only the status of the three kinds; peering rules and objects only with
  several replicas (ClusterKopfPeering, or a KopfPeering per watched namespace); an
  operator-only release (gateway.enabled=false) renders no gateway object; a Role per
  watched namespace instead of the ClusterRole; config-sync reads one Secret by name;
- the PodDisruptionBudget only while more than one gateway pod is wanted, the HPA with
  autoscaling (and then no fixed replicas), the ServiceMonitor on request;
- the operator's /metrics: container port `metrics` (9091) and `--metrics-port`, scrape
  annotations, the headless `-operator-metrics` Service and, with serviceMonitor.enabled, its
  own ServiceMonitor (not selecting the gateway's Service); `operator.metricsPort: 0` removes
  them all;
- the gateway's limits args: `--limits-file` on /tmp without a Redis URL; with one,
  `--limits-redis-url` and `--limits-inflight-lapse` from gateway.limits.inflightLapseSeconds
  (default 10), read by the CLI as `LimitsSettings.inflight_lapse`;
- hooks.enabled / tests.enabled: no helm.sh/hook object when either is off;
- values.schema.json refuses unknown keys, wrong types and bad namespace names;
- `helm install` (hooks and tests off, no --wait) creating every object of the release, the
  live Deployments keeping their security context, `kubectl auth can-i` for both service
  accounts, NOTES in `helm status`; `helm upgrade` to the HA values (peering object, HPA);
  `helm uninstall` removing everything, cluster-scoped objects included.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.gateway import tracing
from tests.control_plane.conftest import ROOT
from tests.support.controlplane import ControlPlane

CHART = ROOT / "helm/switchboard"
VALUES_DIR = Path(__file__).parent / "helm_values"
VALUES = sorted(VALUES_DIR.glob("*.yaml"))
RENDER_NS = "helm-dry"
INSTALL_NS = "switchboard-system"
WATCHED = ("team-a", "team-b")  # helm_values/watch-namespaces.yaml
SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, plural: servicemonitors, listKind: ServiceMonitorList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""
PROMETHEUS_RULE_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, plural: prometheusrules, listKind: PrometheusRuleList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""
WORKLOADS = ("Deployment", "Pod")


def helm(cp: ControlPlane, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert cp.bin_dir is not None
    result = subprocess.run(
        [str(cp.bin_dir / "helm"), *args],
        env=cp.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result


def values_args(values: Path | None) -> list[str]:
    return ["-f", str(values)] if values else []


def render(cp: ControlPlane, *args: str) -> list[dict[str, Any]]:
    text = helm(cp, "template", "sb", str(CHART), "-n", RENDER_NS, *args).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]
    return spec


def rules(docs: list[dict[str, Any]], kind: str, suffix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for doc in of_kind(docs, kind):
        if doc["metadata"]["name"].endswith(suffix):
            found.extend(doc["rules"])
    return found


def allowed(rule_list: list[dict[str, Any]], resource: str, verb: str) -> list[list[str] | None]:
    """resourceNames of each rule granting verb on resource (None: any name)."""
    return [
        r.get("resourceNames")
        for r in rule_list
        if resource in r["resources"] and verb in r["verbs"]
    ]


def args_of(deployment: dict[str, Any], container: str) -> list[str]:
    spec = pod_spec(deployment)
    args: list[str] = next(c for c in spec["containers"] if c["name"] == container)["args"]
    return args


def hooks(docs: list[dict[str, Any]]) -> list[str]:
    return [
        d["metadata"]["name"]
        for d in docs
        if "helm.sh/hook" in (d["metadata"].get("annotations") or {})
    ]


@pytest.fixture(scope="module")
def cp(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """The control plane with what the chart's objects need: its CRDs (crds/ is installed by
    Helm before the templates), a minimal ServiceMonitor CRD and the namespaces it names."""
    control_plane.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    control_plane.kubectl("apply", "--server-side", "-f", "-", input=SERVICE_MONITOR_CRD)
    control_plane.kubectl("apply", "--server-side", "-f", "-", input=PROMETHEUS_RULE_CRD)
    control_plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    for namespace in (RENDER_NS, *WATCHED):
        control_plane.kubectl("create", "namespace", namespace, check=False)
    yield control_plane


# --- lint and server-side validation of every values file -------------------------------------


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda v: v.stem if v else "default")
def test_lint_and_server_dry_run(cp: ControlPlane, values: Path | None) -> None:
    lint = helm(cp, "lint", "--strict", str(CHART), *values_args(values))
    assert "0 chart(s) failed" in lint.stdout
    rendered = helm(cp, "template", "sb", str(CHART), "-n", RENDER_NS, *values_args(values))
    # Every namespaced object names its namespace, so no -n: each goes where it says.
    result = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered.stdout, check=False)
    assert result.returncode == 0, result.stderr
    kinds = {line.split("/")[0] for line in result.stdout.splitlines()}
    assert {"deployment.apps", "serviceaccount"} <= kinds, result.stdout


# --- what the render says ---------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda v: v.stem if v else "default")
def test_every_pod_is_locked_down(cp: ControlPlane, values: Path | None) -> None:
    docs = render(cp, *values_args(values))
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    assert workloads
    for workload in workloads:
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] == 65532
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            security = container["securityContext"]
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["runAsNonRoot"] is True, where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where
            if workload["kind"] == "Deployment":
                tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert tmp, where
                assert "emptyDir" in volumes[tmp[0]["name"]], where


def test_gateway_pod_and_service(cp: ControlPlane) -> None:
    docs = render(cp)
    gateway = one(docs, "Deployment", "-gateway")
    spec = pod_spec(gateway)
    containers = {c["name"]: c for c in spec["containers"]}
    assert list(containers) == ["gateway", "config-sync"]
    assert args_of(gateway, "gateway")[:3] == [
        "gateway",
        "--config=/config/routing.json",
        "--port=8080",
    ]
    assert args_of(gateway, "config-sync")[:4] == [
        "config-sync",
        f"--namespace={RENDER_NS}",
        "--secret=switchboard-routing",
        "--out=/config/routing.json",
    ]
    mounts = {
        name: {m["mountPath"]: m for m in c["volumeMounts"]} for name, c in containers.items()
    }
    assert mounts["gateway"]["/config"]["readOnly"] is True
    assert not mounts["config-sync"]["/config"].get("readOnly")
    assert mounts["gateway"]["/config"]["name"] == mounts["config-sync"]["/config"]["name"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["gateway"]["/config"]["name"]]
    # The token: not automounted; projected into config-sync alone.
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert spec["automountServiceAccountToken"] is False
    assert token_path in mounts["config-sync"]
    assert token_path not in mounts["gateway"]
    sources = volumes[mounts["config-sync"][token_path]["name"]]["projected"]["sources"]
    assert any("serviceAccountToken" in s for s in sources)
    sa = one(docs, "ServiceAccount", "-gateway")
    assert sa["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    probes = containers["gateway"]
    assert probes["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert probes["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert probes["ports"] == [
        {"name": "http", "containerPort": 8080},
        {"name": "metrics", "containerPort": 9090},
    ]
    annotations = gateway["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    service = one(docs, "Service", "-gateway")
    # The client Service carries the API port only: /metrics is not reachable through it.
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 80, "http")
    ]
    assert service["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    metrics = one(docs, "Service", "-gateway-metrics")
    assert [(p["name"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [
        ("metrics", "metrics")
    ]
    assert metrics["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    assert gateway["spec"]["replicas"] == 2
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    assert not of_kind(docs, "ServiceMonitor")


@pytest.mark.parametrize("values", [None, *VALUES], ids=lambda v: v.stem if v else "default")
def test_container_args_parse_with_the_cli(cp: ControlPlane, values: Path | None) -> None:
    from switchboard.cli import build_parser

    parser = build_parser()
    for deployment in of_kind(render(cp, *values_args(values)), "Deployment"):
        for container in pod_spec(deployment)["containers"]:
            args = parser.parse_args(container["args"])
            assert args.command == container["name"]


def test_config_sync_reads_one_secret(cp: ControlPlane) -> None:
    docs = render(cp)
    role = one(docs, "Role", "-gateway")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["switchboard-routing"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    binding = one(docs, "RoleBinding", "-gateway")
    assert (
        binding["subjects"][0]["name"]
        == one(docs, "ServiceAccount", "-gateway")["metadata"]["name"]
    )


def _assert_operator_rules(rule_list: list[dict[str, Any]]) -> None:
    for rule in rule_list:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        ), rule
    assert allowed(rule_list, "secrets", "create") == [None]  # resourceNames can't limit create
    assert allowed(rule_list, "secrets", "update") == [["switchboard-routing"]]
    assert allowed(rule_list, "secrets", "patch") == [["switchboard-routing"]]
    # list/watch with the opt-in label selector (RBAC cannot express labels); get only by name
    assert allowed(rule_list, "secrets", "watch") == [None]
    assert allowed(rule_list, "secrets", "list") == [None]
    assert allowed(rule_list, "secrets", "get") == [["switchboard-routing"]]
    for kind in ("customproviders", "accesskeyconfigs", "agents"):
        assert allowed(rule_list, kind, "watch") == [None]
        assert allowed(rule_list, kind, "patch") == []  # only the status
        assert allowed(rule_list, f"{kind}/status", "patch") == [None]
    assert allowed(rule_list, "events", "create") == [None]


def test_operator_default_cluster_scope_standalone(cp: ControlPlane) -> None:
    docs = render(cp)
    operator = one(docs, "Deployment", "-operator")
    args = args_of(operator, "operator")
    assert args[:2] == ["operator", "--standalone"]
    assert not [a for a in args if a.startswith("--namespace")]
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"]["type"] == "Recreate"
    assert pod_spec(operator)["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
    cluster_rules = rules(docs, "ClusterRole", "-operator")
    _assert_operator_rules(cluster_rules)
    assert not allowed(cluster_rules, "clusterkopfpeerings", "patch")
    assert not of_kind(docs, "ClusterKopfPeering") and not of_kind(docs, "KopfPeering")
    assert [r["metadata"]["name"] for r in of_kind(docs, "Role")] == ["sb-switchboard-gateway"]
    discovery = rules(docs, "ClusterRole", "-discovery")
    assert allowed(discovery, "customresourcedefinitions", "watch") == [None]
    assert not allowed(discovery, "namespaces", "list")
    binding = one(docs, "ClusterRoleBinding", "-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sb-switchboard-operator", "namespace": RENDER_NS}
    ]


def test_operator_watch_namespaces(cp: ControlPlane) -> None:
    docs = render(cp, "-f", str(VALUES_DIR / "watch-namespaces.yaml"))
    args = args_of(one(docs, "Deployment", "-operator"), "operator")
    assert [a for a in args if a.startswith("--namespace")] == [f"--namespace={n}" for n in WATCHED]
    assert [d["metadata"]["name"] for d in of_kind(docs, "ClusterRole")] == [
        "sb-switchboard-operator-discovery"
    ]
    roles = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-operator")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == list(WATCHED)
    for role in roles:
        _assert_operator_rules(role["rules"])
    bindings = [
        b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"].endswith("-operator")
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == list(WATCHED)
    assert all(b["subjects"][0]["namespace"] == RENDER_NS for b in bindings)
    discovery = rules(docs, "ClusterRole", "-discovery")
    assert allowed(discovery, "namespaces", "watch") == [None]


def test_operator_ha_peering_and_gateway_autoscaling(cp: ControlPlane) -> None:
    docs = render(cp, "-f", str(VALUES_DIR / "ha.yaml"))
    operator = one(docs, "Deployment", "-operator")
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--peering=sb-switchboard-operator" in args_of(operator, "operator")
    assert "--standalone" not in args_of(operator, "operator")
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "sb-switchboard-operator"
    assert allowed(rules(docs, "ClusterRole", "-operator"), "clusterkopfpeerings", "patch")
    gateway = one(docs, "Deployment", "-gateway")
    assert "replicas" not in gateway["spec"]  # the HPA owns it
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 20)
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    # Namespaced peering: one KopfPeering and the rule in each watched namespace.
    docs = render(cp, "-f", str(VALUES_DIR / "operator-only.yaml"))
    assert not [d for d in docs if "gateway" in d["metadata"]["name"]]
    assert hooks(docs) == []
    peerings = of_kind(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == list(WATCHED)
    assert not of_kind(docs, "ClusterKopfPeering")
    for role in of_kind(docs, "Role"):
        if role["metadata"]["name"].endswith("-operator"):
            assert allowed(role["rules"], "kopfpeerings", "patch") == [None]


def test_pdb_only_with_several_gateway_pods(cp: ControlPlane) -> None:
    assert not of_kind(render(cp, "--set", "gateway.replicas=1"), "PodDisruptionBudget")
    assert not of_kind(
        render(cp, "--set", "gateway.podDisruptionBudget.enabled=false"), "PodDisruptionBudget"
    )
    docs = render(
        cp,
        "--set",
        "gateway.replicas=1",
        "--set",
        "gateway.autoscaling.enabled=true",
        "--set",
        "gateway.autoscaling.minReplicas=3",
        "--set-string",
        "gateway.podDisruptionBudget.minAvailable=50%",
    )
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == "50%"


def test_service_monitor_and_tenant_gateway(cp: ControlPlane) -> None:
    docs = render(cp, "-f", str(VALUES_DIR / "servicemonitor.yaml"))
    monitor = one(docs, "ServiceMonitor", "-gateway")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    service = one(docs, "Service", "-gateway-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    client = one(docs, "Service", "-gateway")  # the monitor must not select the client Service
    assert not (
        monitor["spec"]["selector"]["matchLabels"].items() <= client["metadata"]["labels"].items()
    )
    docs = render(cp, "-f", str(VALUES_DIR / "tenant-gateway.yaml"))
    assert not [d for d in docs if "operator" in d["metadata"]["name"]]
    assert not of_kind(docs, "PodDisruptionBudget")
    assert all(d["metadata"]["labels"]["team"] == "search" for d in docs)
    gateway = one(docs, "Deployment", "-gateway")
    assert "annotations" not in gateway["spec"]["template"]["metadata"]
    assert pod_spec(gateway)["imagePullSecrets"] == [{"name": "registry"}]


def test_operator_metrics_port_service_and_monitor(cp: ControlPlane) -> None:
    docs = render(cp)
    operator = one(docs, "Deployment", "-operator")
    container = pod_spec(operator)["containers"][0]
    assert {"name": "metrics", "containerPort": 9091} in container["ports"]
    assert "--metrics-port=9091" in args_of(operator, "operator")
    annotations = operator["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9091"
    service = one(docs, "Service", "-operator-metrics")
    assert service["spec"]["clusterIP"] == "None"
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("metrics", "metrics")
    ]
    assert service["spec"]["selector"] == operator["spec"]["selector"]["matchLabels"]
    docs = render(cp, "-f", str(VALUES_DIR / "servicemonitor.yaml"))
    monitor = one(docs, "ServiceMonitor", "-operator")
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    assert selector <= one(docs, "Service", "-operator-metrics")["metadata"]["labels"].items()
    assert not selector <= one(docs, "Service", "-gateway-metrics")["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    off = render(
        cp, "-f", str(VALUES_DIR / "servicemonitor.yaml"), "--set", "operator.metricsPort=0"
    )
    operator = one(off, "Deployment", "-operator")
    assert "--metrics-port=0" in args_of(operator, "operator")
    assert [p["name"] for p in pod_spec(operator)["containers"][0]["ports"]] == ["health"]
    assert "annotations" not in operator["spec"]["template"]["metadata"]
    assert not [d for d in off if d["metadata"]["name"].endswith("-operator-metrics")]
    assert [m["metadata"]["name"] for m in of_kind(off, "ServiceMonitor")] == [
        "sb-switchboard-gateway"
    ]


def test_observability_objects(cp: ControlPlane) -> None:
    plain = render(cp)
    assert not of_kind(plain, "PrometheusRule") and not of_kind(plain, "ConfigMap")
    assert "env" not in pod_spec(one(plain, "Deployment", "-gateway"))["containers"][0]
    docs = render(cp, "-f", str(VALUES_DIR / "observability.yaml"))
    dashboard = one(docs, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["namespace"] == "team-a"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Switchboard"}
    source = (CHART / "files/grafana-dashboard.json").read_text()
    assert dashboard["data"]["switchboard-gateway.json"] == source.rstrip("\n")
    assert json.loads(dashboard["data"]["switchboard-gateway.json"])["uid"] == "switchboard-gateway"
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml.safe_load((CHART / "files/prometheus-rules.yaml").read_text())
    container = pod_spec(one(docs, "Deployment", "-gateway"))["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert "OTEL_EXPORTER_OTLP_HEADERS" in env
    assert tracing.wanted({k: v for k, v in env.items() if v is not None})
    result = helm(
        cp, "template", "sb", str(CHART), "--set", "gateway.tracing.enabled=true", check=False
    )
    assert result.returncode != 0 and "gateway.tracing.endpoint" in result.stderr


def test_gateway_limits_args(cp: ControlPlane) -> None:
    from switchboard.cli import build_parser
    from switchboard.gateway import cli as gateway_cli

    alone = args_of(one(render(cp), "Deployment", "-gateway"), "gateway")
    assert "--limits-file=/tmp/switchboard-limits.json" in alone
    assert not [a for a in alone if a.startswith(("--limits-redis-url", "--limits-inflight"))]
    url = "gateway.limits.redis.url=redis://cache:6379/0"
    default = args_of(one(render(cp, "--set", url), "Deployment", "-gateway"), "gateway")
    assert "--limits-inflight-lapse=10" in default
    lapse = "gateway.limits.inflightLapseSeconds=2.5"
    docs = render(cp, "--set", url, "--set-json", lapse)  # --set would make 2.5 a string
    args = args_of(one(docs, "Deployment", "-gateway"), "gateway")
    assert "--limits-redis-url=redis://cache:6379/0" in args
    assert "--limits-inflight-lapse=2.5" in args
    assert not [a for a in args if a.startswith("--limits-file")]
    settings = gateway_cli._limits(build_parser().parse_args(args))
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.inflight_lapse == 2.5


def test_hooks_and_tests_values(cp: ControlPlane) -> None:
    test_pod = one(render(cp), "Pod")
    assert hooks([test_pod]) == [test_pod["metadata"]["name"]]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "/readyz" in test_pod["spec"]["containers"][0]["command"][-1]
    for flag in ("hooks.enabled=false", "tests.enabled=false"):
        docs = render(cp, "--set", flag)
        assert hooks(docs) == [], flag
        assert not of_kind(docs, "Pod"), flag
        assert not of_kind(docs, "Job"), flag


@pytest.mark.parametrize(
    ("setting", "word"),
    [
        ("gateway.replicaz=2", "replicaz"),
        ("gateway.replicas=two", "replicas"),
        ("operator.watchNamespaces[0]=Team_A", "watchNamespaces"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("gateway.limits.inflightLapseSeconds=0", "inflightLapseSeconds"),
    ],
)
def test_schema_refuses_bad_values(cp: ControlPlane, setting: str, word: str) -> None:
    result = helm(cp, "template", "sb", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert word in result.stderr


# --- a real install -----------------------------------------------------------------------------


def _manifest_objects(cp: ControlPlane) -> list[tuple[str, str, str | None]]:
    manifest = helm(cp, "get", "manifest", "sb", "-n", INSTALL_NS).stdout
    out = []
    for doc in yaml.safe_load_all(manifest):
        if doc:
            meta = doc["metadata"]
            out.append((f"{doc['kind']}.{doc['apiVersion']}", meta["name"], meta.get("namespace")))
    return out


def _kubectl_resource(kind_and_version: str) -> str:
    """Deployment.apps/v1 -> deployment.v1.apps (a kubectl resource name, fully qualified)."""
    kind, _, api_version = kind_and_version.partition(".")
    group, _, version = api_version.rpartition("/")
    return f"{kind}.{version}.{group}" if group else kind


def _can(cp: ControlPlane, who: str, *args: str, namespace: str = INSTALL_NS) -> str:
    sa = f"system:serviceaccount:{INSTALL_NS}:{who}"
    result = cp.kubectl("auth", "can-i", *args, "-n", namespace, "--as", sa, check=False)
    return result.stdout.strip()


def test_install_upgrade_uninstall(cp: ControlPlane) -> None:
    no_hooks = ["-f", str(VALUES_DIR / "no-hooks.yaml")]
    helm(cp, "install", "sb", str(CHART), "-n", INSTALL_NS, "--create-namespace", *no_hooks)
    try:
        objects = _manifest_objects(cp)
        assert len(objects) >= 12
        for kind, name, namespace in objects:
            where = ["-n", namespace] if namespace else []
            cp.kubectl("get", _kubectl_resource(kind), name, *where, "-o", "name")
        deployments = json.loads(
            cp.kubectl("get", "deployments", "-n", INSTALL_NS, "-o", "json").stdout
        )["items"]
        assert sorted(d["metadata"]["name"] for d in deployments) == [
            "sb-switchboard-gateway",
            "sb-switchboard-operator",
        ]
        for deployment in deployments:  # as stored by the API server, defaults applied
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 65532
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            for container in pod["containers"]:
                security = container["securityContext"]
                assert security["readOnlyRootFilesystem"] is True
                assert security["allowPrivilegeEscalation"] is False
                assert security["capabilities"]["drop"] == ["ALL"]
        for kind in ("service", "serviceaccount", "role", "rolebinding", "poddisruptionbudget"):
            assert cp.kubectl("get", kind, "-n", INSTALL_NS, "-o", "name").stdout
        assert not cp.kubectl("get", "pods", "-n", INSTALL_NS, "-o", "name").stdout

        gateway = "sb-switchboard-gateway"
        assert _can(cp, gateway, "get", "secret/switchboard-routing") == "yes"
        assert _can(cp, gateway, "watch", "secret/switchboard-routing") == "yes"
        assert _can(cp, gateway, "get", "secret/provider-key") == "no"
        assert _can(cp, gateway, "list", "secrets") == "no"
        assert _can(cp, gateway, "update", "secret/switchboard-routing") == "no"
        assert _can(cp, gateway, "get", "secret/switchboard-routing", namespace="team-a") == "no"
        assert _can(cp, gateway, "list", "customproviders.switchboard.dev") == "no"

        operator = "sb-switchboard-operator"
        for verb in ("get", "list", "watch"):
            assert _can(cp, operator, verb, "agents.switchboard.dev", namespace="any") == "yes"
        status = ["customproviders.switchboard.dev", "--subresource=status"]
        assert _can(cp, operator, "patch", *status, namespace="any") == "yes"
        assert _can(cp, operator, "patch", "customproviders.switchboard.dev") == "no"
        assert _can(cp, operator, "delete", "customproviders.switchboard.dev") == "no"
        assert _can(cp, operator, "watch", "secrets", namespace="any") == "yes"
        assert _can(cp, operator, "get", "secret/provider-key", namespace="any") == "no"
        assert _can(cp, operator, "get", "secret/switchboard-routing", namespace="any") == "yes"
        assert _can(cp, operator, "create", "secrets", namespace="any") == "yes"
        assert _can(cp, operator, "update", "secret/switchboard-routing", namespace="x") == "yes"
        assert _can(cp, operator, "update", "secret/provider-key", namespace="x") == "no"
        assert _can(cp, operator, "delete", "secret/switchboard-routing") == "no"
        assert _can(cp, operator, "create", "events", namespace="any") == "yes"
        assert _can(cp, operator, "patch", "clusterkopfpeerings.kopf.dev") == "no"

        notes = helm(cp, "status", "sb", "-n", INSTALL_NS).stdout
        assert "kubectl get switchboard" in notes
        assert f"port-forward -n {INSTALL_NS} svc/{gateway} 8080:80" in notes

        helm(
            cp,
            "upgrade",
            "sb",
            str(CHART),
            "-n",
            INSTALL_NS,
            *no_hooks,
            "-f",
            str(VALUES_DIR / "ha.yaml"),
        )
        cp.kubectl("get", "clusterkopfpeering.kopf.dev", "sb-switchboard-operator")
        cp.kubectl("get", "hpa", gateway, "-n", INSTALL_NS)
        assert _can(cp, operator, "patch", "clusterkopfpeerings.kopf.dev") == "yes"
    finally:
        helm(cp, "uninstall", "sb", "-n", INSTALL_NS)
    for resource in ("deployments", "services", "serviceaccounts", "roles", "rolebindings"):
        names = cp.kubectl("get", resource, "-n", INSTALL_NS, "-o", "name").stdout.split()
        assert [n for n in names if "sb-switchboard" in n] == [], resource
    for resource in ("clusterroles", "clusterrolebindings", "clusterkopfpeerings.kopf.dev"):
        names = cp.kubectl("get", resource, "-o", "name").stdout.split()
        assert [n for n in names if "sb-switchboard" in n] == [], resource
