"""The image users deploy, built from the Dockerfile by `make image` (tier `image`).

Covers: the chart's default image reference is the one `make image` tags; each role starts
from the image (`operator --help`, `config-sync --help`, `--version`, `validate` on every
example, `gateway` from manifests and from a rendered routing file mounted read-only); the
gateway started from the image on a loopback port answers the official `openai` SDK through the
fake vLLM upstream on the host; the image runs as uid/gid 65532 with a read-only root file
system (a write to /, /etc and the venv fails with EROFS, /tmp is writable) and holds no pip or
compiler; its size is printed in the terminal summary (conftest).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.image.conftest import ROOT, run_image, start_in_image
from tests.upstreams.server import free_port

pytestmark = pytest.mark.image

QUICKSTART = ROOT / "examples" / "quickstart"
DEMO_KEY = "sk-sb-demo-7f3c9a1e5b2d4c6f8a0e"

PROBE = """
import errno, importlib.util, json, os, shutil
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
root = next(line.split() for line in open("/proc/self/mountinfo") if line.split()[4] == "/")
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "root_options": root[5].split(","),
    "write_root": write("/probe"), "write_venv": write("/opt/switchboard/probe"),
    "write_etc": write("/etc/probe"), "write_tmp": write("/tmp/probe"),
    "pip": importlib.util.find_spec("pip") is not None,
    "compilers": [c for c in ("gcc", "cc", "make") if shutil.which(c)],
    "home": os.environ.get("HOME"),
}))
"""


def test_runs_as_65532_on_a_read_only_root(image: str) -> None:
    probe = run_image(image, "-c", PROBE, entrypoint="python3")
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert (seen["uid"], seen["gid"]) == (65532, 65532)
    assert set(seen["groups"]) <= {65532}  # no supplementary group of the host's root
    assert "ro" in seen["root_options"]
    # EROFS, not EACCES: the mount is read-only, whatever the files' permissions.
    assert seen["write_root"] == seen["write_venv"] == seen["write_etc"] == "EROFS"
    assert seen["write_tmp"] == "ok"
    assert seen["home"] == "/tmp"
    assert not seen["pip"] and seen["compilers"] == []


@pytest.mark.parametrize("role", ["operator", "config-sync"])
def test_role_help(image: str, role: str) -> None:
    shown = run_image(image, role, "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: switchboard {role}")


def test_chart_default_image_is_the_tag() -> None:
    tagged = subprocess.run(
        ["bash", str(ROOT / "tools" / "image" / "build.sh"), "--ref"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "SWITCHBOARD_IMAGE_REPO"},
    ).stdout.strip()
    chart = ROOT / "helm" / "switchboard"
    values = yaml.safe_load((chart / "values.yaml").read_text())["image"]
    app_version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    assert f"{values['repository']}:{values['tag'] or app_version}" == tagged


def test_version_matches_the_tag(image: str) -> None:
    shown = run_image(image, "--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"switchboard {image.rsplit(':', 1)[1]}"


def test_validate_examples(image: str) -> None:
    examples = sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir())
    script = "".join(
        f"switchboard validate --strict /examples/{e} || echo FAILED {e}\n" for e in examples
    )
    checked = run_image(
        image, "-c", script, mounts=[(ROOT / "examples", "/examples")], entrypoint="sh"
    )
    assert checked.returncode == 0, checked.stderr
    assert "FAILED" not in checked.stdout, checked.stdout + checked.stderr
    # A broken manifest is reported: the check above can fail.
    broken = run_image(
        image,
        "validate",
        "/examples/quickstart/agent.yaml",
        mounts=[(ROOT / "examples", "/examples")],
    )
    assert broken.returncode == 1
    assert "local" in broken.stdout + broken.stderr


def _quickstart_on(upstream: int, work: Path) -> Path:
    """examples/quickstart with its provider pointed at the fake upstream's loopback port."""
    manifests = work / "manifests"
    shutil.copytree(QUICKSTART, manifests, ignore=shutil.ignore_patterns("*.md"))
    provider = manifests / "provider.yaml"
    text = provider.read_text()
    assert "http://localhost:18000/v1" in text
    provider.write_text(
        text.replace("http://localhost:18000/v1", f"http://127.0.0.1:{upstream}/v1")
    )
    return manifests


@pytest.mark.parametrize("source", ["manifests", "rendered"])
def test_gateway_answers_the_openai_sdk(
    image: str, upstream: int, tmp_path: Path, source: str
) -> None:
    manifests = _quickstart_on(upstream, tmp_path)
    if source == "manifests":
        mounts = [(manifests, "/config")]
        config = ["--manifests", "/config"]
    else:
        # As in the chart: config-sync's routing file, read from a read-only /config.
        rendered = subprocess.run(
            [
                sys.executable,
                "-m",
                "switchboard.cli",
                "render",
                str(manifests),
                "-o",
                "json",
                "--show-secrets",
            ],
            capture_output=True,
            check=True,
            cwd=ROOT,
        )
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "routing.json").write_bytes(rendered.stdout)
        mounts = [(tmp_path / "config", "/config")]
        config = ["--config", "/config/routing.json"]
    port = free_port()
    gateway = start_in_image(
        image,
        ["gateway", *config, "--host", "127.0.0.1", "--port", str(port)],
        tmp_path / "gateway.log",
        mounts,
    )
    try:
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz")
        httpx.delete(f"http://127.0.0.1:{upstream}/_requests")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=DEMO_KEY)
        answer = client.chat.completions.create(
            model="coder", messages=[{"role": "user", "content": "Say hello"}]
        )
        assert answer.choices[0].message.content
        seen = httpx.get(f"http://127.0.0.1:{upstream}/_requests").json()
        assert [r["body"]["model"] for r in seen] == ["qwen2.5-coder:7b"]
    finally:
        gateway.stop()
    assert gateway.proc.returncode == 0, gateway.log.read_text()
