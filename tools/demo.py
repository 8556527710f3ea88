"""`make demo`: the main job end to end on this machine.

1. a Kubernetes control plane: the configured cluster if there is one (KUBECONFIG or
   ~/.kube/config that answers), else a local etcd + kube-apiserver built from Go modules;
2. the CRDs and examples/quickstart applied with kubectl into namespace `switchboard-demo`;
3. a model server (the project's fake vLLM) on localhost:18000, where the quickstart points;
4. the operator, the config-sync sidecar and the gateway as local processes;
5. sample requests through the official `openai` and `anthropic` SDKs, with the answers, the
   provider that served them and their cost.
Everything started here is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import anthropic  # noqa: E402
import httpx  # noqa: E402
import openai  # noqa: E402
from tests.support.controlplane import ControlPlane, build_binaries  # noqa: E402

NAMESPACE = "switchboard-demo"
KEY = "sk-sb-demo-7f3c9a1e5b2d4c6f8a0e"  # the example token in examples/quickstart/access.yaml
UPSTREAM_PORT = 18000


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


class Cluster:
    def __init__(self, bin_dir: Path, env: dict[str, str]) -> None:
        self.bin_dir = bin_dir
        self.env = env

    def kubectl(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    bin_dir = build_binaries()
    configured = os.environ.get("KUBECONFIG") or (
        str(Path.home() / ".kube/config") if (Path.home() / ".kube/config").exists() else None
    )
    if configured:
        env = {**os.environ, "KUBECONFIG": configured}
        probe = subprocess.run(
            [str(bin_dir / "kubectl"), "version", "--request-timeout=5s"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            step(f"using the configured cluster ({configured})")
            yield Cluster(bin_dir, env)
            return
        print(f"    {configured} does not answer; starting a local control plane instead")
    step("starting a local control plane (etcd + kube-apiserver)")
    with ControlPlane(bin_dir=bin_dir, verbose=True) as cp:
        yield Cluster(bin_dir, cp.env)


@contextlib.contextmanager
def process(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Iterator[Path]:
    log = log_dir / f"{name}.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(what: str, check: object, log: Path | None = None, timeout: float = 60) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        if time.monotonic() > deadline:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise SystemExit(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.2)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="switchboard-demo-") as tmp, cluster() as k:
        work = Path(tmp)
        env = {**k.env, "PYTHONUNBUFFERED": "1"}
        step("applying the CRDs and examples/quickstart")
        print(k.kubectl("apply", "--server-side", "-f", str(ROOT / "crds")), end="")
        k.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        if NAMESPACE not in k.kubectl("get", "namespaces", "-o", "name"):
            k.kubectl("create", "namespace", NAMESPACE)
        print(k.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples/quickstart")), end="")

        step(f"starting a model server (fake vLLM) on localhost:{UPSTREAM_PORT}")
        if free_port(UPSTREAM_PORT) != UPSTREAM_PORT:
            raise SystemExit(
                f"port {UPSTREAM_PORT} is busy; the quickstart's provider points there"
            )
        with contextlib.ExitStack() as stack:
            up_log = stack.enter_context(
                process(
                    "upstream",
                    [
                        "-m",
                        "tests.upstreams",
                        "--shape",
                        "vllm",
                        "--port",
                        str(UPSTREAM_PORT),
                        "--cached",
                        "3",
                    ],
                    env,
                    work,
                )
            )
            wait_until(
                "the model server",
                lambda: httpx.get(f"http://127.0.0.1:{UPSTREAM_PORT}/v1/models").is_success,
                up_log,
            )

            step("starting the operator and waiting until every object is Ready")
            op_log = stack.enter_context(
                process(
                    "operator",
                    ["-m", "switchboard.cli", "operator", "--standalone", "--namespace", NAMESPACE],
                    env,
                    work,
                )
            )
            started = time.monotonic()
            wait_until(
                "Ready",
                lambda: (
                    subprocess.run(
                        [
                            str(k.bin_dir / "kubectl"),
                            "wait",
                            "--for=condition=Ready",
                            "-n",
                            NAMESPACE,
                            "customprovider/local",
                            "agent/coder",
                            "accesskeyconfig/demo",
                            "--timeout=2s",
                        ],
                        env=k.env,
                        capture_output=True,
                        check=False,
                    ).returncode
                    == 0
                ),
                op_log,
            )
            print(f"    Ready after {time.monotonic() - started:.1f} s")
            print(k.kubectl("get", "switchboard", "-n", NAMESPACE), end="")

            step("starting config-sync (routing Secret -> file) and the gateway")
            routing = work / "config" / "routing.json"
            sync_log = stack.enter_context(
                process(
                    "config-sync",
                    [
                        "-m",
                        "switchboard.cli",
                        "config-sync",
                        "--namespace",
                        NAMESPACE,
                        "--out",
                        str(routing),
                    ],
                    env,
                    work,
                )
            )
            wait_until("the routing file", routing.exists, sync_log)
            port = free_port(8080)
            gw_log = stack.enter_context(
                process(
                    "gateway",
                    [
                        "-m",
                        "switchboard.cli",
                        "gateway",
                        "--config",
                        str(routing),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                    ],
                    env,
                    work,
                )
            )
            url = f"http://127.0.0.1:{port}"
            wait_until("the gateway", lambda: httpx.get(f"{url}/readyz").is_success, gw_log)
            print(f"    gateway on {url}, serving {httpx.get(f'{url}/readyz').text}")

            calls(url)
            step(f"done. Logs were in {work}; stopping everything")
    return 0


def calls(url: str) -> None:
    oai = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY)
    step("openai SDK, Chat Completions, agent 'coder'")
    raw = oai.chat.completions.with_raw_response.create(
        model="coder", messages=[{"role": "user", "content": "Write a haiku about routers."}]
    )
    answer = raw.parse()
    print(f"    answer:   {answer.choices[0].message.content}")
    print(
        f"    served by {raw.headers['x-switchboard-provider']}:"
        f"{raw.headers['x-switchboard-model']} in {raw.headers['x-switchboard-attempts']} "
        f"attempt(s), cost ${float(raw.headers['x-switchboard-cost-usd']):.8f}"
    )

    step("openai SDK, streaming, with usage")
    text = []
    usage = None
    for chunk in oai.chat.completions.create(
        model="local:qwen2.5-coder:7b",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count to five."}],
    ):
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
        usage = chunk.usage or usage
    print(f"    answer:   {''.join(text)}")
    print(f"    usage:    {usage}")

    step("anthropic SDK, Messages API, on the same OpenAI-compatible model server")
    claude = anthropic.Anthropic(base_url=url, api_key=KEY)
    message = claude.messages.create(
        model="local:qwen2.5-coder:7b",
        max_tokens=256,
        messages=[{"role": "user", "content": "Say hello in French."}],
    )
    block = message.content[0]
    print(f"    answer:   {block.text if block.type == 'text' else block}")
    print(
        f"    usage:    {message.usage.input_tokens} in, {message.usage.output_tokens} out, "
        f"{message.usage.cache_read_input_tokens} cached"
    )

    step("openai SDK, Responses API, agent 'coder'")
    response = oai.responses.create(model="coder", input="What is a switchboard?")
    print(f"    answer:   {response.output_text}")

    step("GET /v1/models for this key")
    print("    " + ", ".join(m.id for m in oai.models.list()))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; everything started here was stopped")
        sys.exit(130)
