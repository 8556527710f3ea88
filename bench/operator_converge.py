"""Control-plane timings on the local control plane (a script, not a test).

    python bench/operator_converge.py [--objects 3000]

1. converge: N objects (providers, agents, access key configs, with their Secrets) applied at
   once in one namespace; time from the start of `kubectl apply` until the routing Secret holds
   exactly what `compile()` gives for them, until every object's status reports its current
   generation, and how many times the operator compiled and wrote the Secret;
2. apply-to-served: with the operator, config-sync and the gateway running, time from
   `kubectl apply` of a new provider until the gateway answers a call to it (median of 5).
Results are appended to docs/bench/controlplane.json.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.upstreams.server import free_port  # noqa: E402

from switchboard.routing import compiler  # noqa: E402

KEY = "sk-converge-0123456789abcdef"


def objects(n: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keys", "labels": {"switchboard.dev/secret": "true"}},
            "stringData": {f"k{i}": f"{KEY}-{i}" for i in range(max(1, n // 10))},
        },
    ]
    providers = n * 6 // 10
    agents = n * 3 // 10
    configs = n - providers - agents
    for i in range(providers):
        out.append(
            {
                "apiVersion": "switchboard.dev/v1alpha1",
                "kind": "CustomProvider",
                "metadata": {"name": f"p{i}"},
                "spec": {
                    "baseUrl": f"http://p{i}.models.svc/v1",
                    "models": [{"id": "m", "cost": {"input": 1, "output": 2}}],
                },
            }
        )
    for i in range(agents):
        out.append(
            {
                "apiVersion": "switchboard.dev/v1alpha1",
                "kind": "Agent",
                "metadata": {"name": f"a{i}"},
                "spec": {
                    "model": f"p{i % providers}:m",
                    "fallbacks": [f"p{(i + 1) % providers}:m"],
                },
            }
        )
    for i in range(configs):
        out.append(
            {
                "apiVersion": "switchboard.dev/v1alpha1",
                "kind": "AccessKeyConfig",
                "metadata": {"name": f"c{i}"},
                "spec": {
                    "keys": [
                        {
                            "name": "k",
                            "secretRef": {"name": "keys", "key": f"k{i % max(1, n // 10)}"},
                        }
                    ],
                    "allowedProviders": [f"p{i % providers}"],
                    "allowedAgents": [f"a{i % agents}"],
                },
            }
        )
    return out


def secret_hash(cp: ControlPlane, ns: str) -> str | None:
    r = cp.kubectl("get", "secret", "switchboard-routing", "-n", ns, "-o", "json", check=False)
    if r.returncode != 0:
        return None
    data = json.loads(r.stdout)["data"]["routing.json.gz"]
    return str(json.loads(gzip.decompress(base64.b64decode(data)))["hash"])


def converge(cp: ControlPlane, work: Path, n: int) -> dict[str, object]:
    ns = f"converge-{n}"
    cp.kubectl("create", "namespace", ns)
    docs = objects(n)
    parts = 8  # applied by 8 kubectl processes at once, as a GitOps controller would batch them
    for part in range(parts):
        items = docs[part::parts]
        (work / f"objects-{part}.json").write_text(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        )
    manifests = [{**d, "metadata": {**d["metadata"], "namespace": ns}} for d in docs]  # type: ignore[dict-item]
    secrets = {(ns, "keys"): {k: v.encode() for k, v in docs[0]["stringData"].items()}}  # type: ignore[attr-defined]
    expected = (
        compiler.compile([d for d in manifests if d["kind"] != "Secret"], secrets).configs[ns].hash
    )
    log = (work / "operator.log").open("wb")
    op = subprocess.Popen(
        [sys.executable, "-m", "switchboard.cli", "operator", "--standalone", "--namespace", ns],
        env=cp.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    time.sleep(3)  # operator up and watching
    started = time.monotonic()
    kubectl = str(cp.bin_dir / "kubectl")  # type: ignore[operator]
    appliers = [
        subprocess.Popen(
            [kubectl, "apply", "--server-side", "-n", ns, "-f", str(work / f"objects-{p}.json")],
            env=cp.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in range(parts)
    ]
    for applier in appliers:
        applier.wait()
    applied = time.monotonic() - started
    while secret_hash(cp, ns) != expected:
        if time.monotonic() - started > 300:
            raise SystemExit("did not converge in 300 s")
        time.sleep(0.1)
    seconds = time.monotonic() - started
    while not all_reported(cp, ns, n):
        if time.monotonic() - started > 300:
            raise SystemExit("statuses not reported in 300 s")
        time.sleep(0.5)
    reported = time.monotonic() - started
    op.terminate()
    op.wait()
    log.close()
    text = (work / "operator.log").read_text()
    return {
        "objects": n,
        "apply_seconds": round(applied, 2),
        "converge_seconds": round(seconds, 2),
        "all_status_reported_seconds": round(reported, 2),
        "compiles": text.count("objects compiled in"),
        "secret_writes": text.count("routing config"),
    }


def all_reported(cp: ControlPlane, ns: str, n: int) -> bool:
    """Every object has a status for its current generation and a Ready condition."""
    items = json.loads(cp.kubectl("get", "switchboard", "-n", ns, "-o", "json").stdout)["items"]
    done = [
        o
        for o in items
        if (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
        and any(c["type"] == "Ready" for c in o["status"].get("conditions", []))
    ]
    return len(done) == n


def apply_to_served(cp: ControlPlane, work: Path) -> dict[str, object]:
    ns = "served"
    cp.kubectl("create", "namespace", ns)
    upstream_port, gw_port = free_port(), free_port()
    procs = []
    env = {**cp.env, "PYTHONUNBUFFERED": "1"}
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.upstreams",
                "--shape",
                "vllm",
                "--port",
                str(upstream_port),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "operator",
                "--standalone",
                "--namespace",
                ns,
                "--debounce",
                "0.1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    routing = work / "served" / "routing.json"
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "config-sync",
                "--namespace",
                ns,
                "--out",
                str(routing),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    cp.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=f"""
apiVersion: v1
kind: Secret
metadata: {{name: keys, labels: {{switchboard.dev/secret: "true"}}}}
stringData: {{k: {KEY}}}
---
apiVersion: switchboard.dev/v1alpha1
kind: AccessKeyConfig
metadata: {{name: app}}
spec: {{keys: [{{name: k, secretRef: {{name: keys, key: k}}}}], allowedProviders: ["*"]}}
""",
    )
    while not routing.exists():
        time.sleep(0.1)
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "gateway",
                "--config",
                str(routing),
                "--host",
                "127.0.0.1",
                "--port",
                str(gw_port),
                "--no-access-log",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    url = f"http://127.0.0.1:{gw_port}"
    while True:
        try:
            if httpx.get(f"{url}/readyz").is_success:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    samples = []
    try:
        for i in range(5):
            started = time.monotonic()
            cp.kubectl(
                "apply",
                "-n",
                ns,
                "-f",
                "-",
                input=f"""
apiVersion: switchboard.dev/v1alpha1
kind: CustomProvider
metadata: {{name: new{i}}}
spec: {{baseUrl: "http://127.0.0.1:{upstream_port}/v1", models: [{{id: m, cost: {{}}}}]}}
""",
            )
            while True:
                r = httpx.post(
                    f"{url}/v1/chat/completions",
                    headers={"authorization": f"Bearer {KEY}"},
                    json={"model": f"new{i}:m", "messages": [{"role": "user", "content": "x"}]},
                )
                if r.status_code == 200:
                    break
                time.sleep(0.02)
            samples.append(time.monotonic() - started)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    return {
        "apply_to_served_median_s": round(statistics.median(samples), 3),
        "apply_to_served_max_s": round(max(samples), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=3000)
    args = parser.parse_args()
    with ControlPlane(verbose=True) as cp, tempfile.TemporaryDirectory() as tmp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all")
        work = Path(tmp)
        result = {**converge(cp, work, args.objects), **apply_to_served(cp, work)}
    print(json.dumps(result))
    target = ROOT / "docs/bench/controlplane.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
