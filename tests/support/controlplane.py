"""A real Kubernetes control plane on loopback: etcd + kube-apiserver, the envtest recipe.

    with ControlPlane() as cp:
        cp.kubectl("apply", "-f", "crds/")

The binaries come from `tools/controlplane/build.sh` (built once per machine from Go modules,
cached under ~/.cache/switchboard, or taken from $KUBEBUILDER_ASSETS). Certificates are
throwaway: a CA, a serving certificate for localhost and 127.0.0.1, a service-account key pair
and an admin client certificate in group system:masters. Logs go to files in the temporary
directory and are printed when startup fails; SWITCHBOARD_CP_KEEP=1 keeps that directory.

`python -m tests.support.controlplane` runs one until Ctrl-C (or SIGTERM) and prints its
kubeconfig path. No pytest here: the demo uses this module too.
"""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools/controlplane"
BUILD = TOOLS / "build.sh"
# What the harness itself needs; build.sh's default set adds helm and llm-d-inference-sim.
REQUIRED = ("kube-apiserver", "etcd", "kubectl")


class ControlPlaneError(RuntimeError):
    """The binaries could not be built or found, or the control plane did not start."""


class KubectlError(subprocess.CalledProcessError):
    """A failed `kubectl` call; str() carries the command's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


def versions() -> dict[str, str]:
    """The pinned versions from tools/controlplane/versions.env (KEY=VALUE lines)."""
    out = {}
    for raw in (TOOLS / "versions.env").read_text().splitlines():
        line = raw.strip()
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def build_binaries(*names: str) -> Path:
    """Run the build script and return the directory of the binaries.

    Seconds when cached; a first run on a machine builds from Go modules (minutes), with the
    script's progress lines passed through to stderr. No names means build.sh's default set.
    """
    tail: list[str] = []
    with subprocess.Popen(
        ["bash", str(BUILD), *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            tail = [*tail[-39:], line]
        stdout = proc.stdout.read()
    if proc.returncode != 0 or not stdout.strip():
        raise ControlPlaneError(
            f"tools/controlplane/build.sh failed (exit {proc.returncode}):\n" + "".join(tail)
        )
    return Path(stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pdeathsig() -> Callable[[], None] | None:
    """Linux: a preexec function that makes the child get SIGTERM when its parent dies.

    So etcd and kube-apiserver do not outlive a test run killed with SIGKILL. prctl is looked
    up here, in the parent: the child only calls it between fork and exec.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None  # PR_SET_PDEATHSIG follows the starting *thread*: main thread only.
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:  # pragma: no cover - runs in the child
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _cert(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(common: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


class ControlPlane:
    """etcd + kube-apiserver on free loopback ports; a context manager.

    Attributes once started: `kubeconfig` (path of an admin kubeconfig), `bin_dir` (kubectl,
    kube-apiserver, etcd, and helm when built), `url`, `env` (os.environ + KUBECONFIG, with
    `bin_dir` first on PATH), `startup_seconds`. `kubectl(*args)` runs the pinned kubectl.
    """

    def __init__(
        self, bin_dir: Path | None = None, verbose: bool = False, ready_timeout: float = 120
    ) -> None:
        self.bin_dir = bin_dir
        self.verbose = verbose
        self.ready_timeout = ready_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-cp-"))
        self.kubeconfig = self.dir / "kubeconfig"
        self.url = ""
        self.startup_seconds = 0.0
        self._procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _say(self, text: str) -> None:
        if self.verbose:
            print(f"==> {text}", file=sys.stderr, flush=True)

    def start(self) -> None:
        """Build or find the binaries, then start etcd and kube-apiserver and wait for /readyz."""
        if self.bin_dir is None:
            self.bin_dir = build_binaries()
        missing = [b for b in REQUIRED if not os.access(self.bin_dir / b, os.X_OK)]
        if missing:
            raise ControlPlaneError(f"{self.bin_dir} lacks {', '.join(missing)}")
        started = time.monotonic()
        certs = self._certificates()
        self._write_kubeconfig_placeholder()
        # A port picked free can be taken before the server binds it; then start again.
        for attempt in range(3):
            try:
                self._start_processes(certs)
                break
            except ControlPlaneError as error:
                if attempt == 2 or "address already in use" not in str(error):
                    raise
                self._say("a port was taken meanwhile; starting again")
                self._stop_processes()
        self.startup_seconds = time.monotonic() - started
        self._say(f"control plane ready in {self.startup_seconds:.1f} s at {self.url}")

    def _start_processes(self, certs: dict[str, Path]) -> None:
        etcd_port, apiserver_port, peer_port = _free_port(), _free_port(), _free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        data_dir = self.dir / "etcd"
        shutil.rmtree(data_dir, ignore_errors=True)
        self._say(f"starting etcd on {etcd_url}")
        self._spawn(
            "etcd",
            [
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self.url = f"https://127.0.0.1:{apiserver_port}"
        self._say(f"starting kube-apiserver on {self.url}")
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={self.dir / 'certs'}",
                f"--tls-cert-file={certs['serving.crt']}",
                f"--tls-private-key-file={certs['serving.key']}",
                f"--client-ca-file={certs['ca.crt']}",
                f"--secure-port={apiserver_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.url}/",
                f"--service-account-key-file={certs['sa.pub']}",
                f"--service-account-signing-key-file={certs['sa.key']}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--v=0",
            ],
        )
        self._write_kubeconfig(certs)
        self._wait_ready(certs)

    def stop(self) -> None:
        """Stop kube-apiserver then etcd (terminate, wait, kill); remove the temporary directory."""
        self._stop_processes()
        if os.environ.get("SWITCHBOARD_CP_KEEP") == "1":
            print(f"control-plane files kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_processes(self) -> None:
        for _, proc, log in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
        self._procs.clear()

    # --- helpers -----------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """os.environ + KUBECONFIG, the binaries first on PATH, a private kubectl cache."""
        assert self.bin_dir is not None
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.dir / "kube-cache"),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this control plane; KubectlError when check fails."""
        assert self.bin_dir is not None
        command = [str(self.bin_dir / "kubectl"), *args]
        result = subprocess.run(
            command,
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    def server_version(self) -> str:
        """The apiserver's gitVersion, e.g. v1.36.3."""
        info = json.loads(self.kubectl("version", "-o", "json").stdout)
        return str(info["serverVersion"]["gitVersion"])

    def _spawn(self, binary: str, args: list[str]) -> None:
        assert self.bin_dir is not None
        log = (self.dir / f"{binary}.log").open("ab")
        try:
            proc = subprocess.Popen(
                [str(self.bin_dir / binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_pdeathsig(),  # noqa: PLW1509 - only prctl, no locks
            )
        except BaseException:
            log.close()
            raise
        self._procs.append((binary, proc, log))

    def log(self, binary: str) -> str:
        path = self.dir / f"{binary}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _logs(self) -> str:
        return "".join(
            f"\n----- {name}.log (last 4000 characters) -----\n{self.log(name)[-4000:]}"
            for name in ("etcd", "kube-apiserver")
        )

    def _certificates(self) -> dict[str, Path]:
        certs = self.dir / "certs"
        certs.mkdir(parents=True)
        ca_key = _key()
        ca_name = _name("switchboard-test-ca")
        ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
        serving_key = _key()
        serving = _cert(
            _name("kube-apiserver"),
            serving_key,
            ca_name,
            ca_key,
            sans=[
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            ],
        )
        admin_key = _key()
        admin = _cert(_name("admin", "system:masters"), admin_key, ca_name, ca_key, client=True)
        sa_key = _key()
        files = {
            "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
            "serving.crt": serving.public_bytes(serialization.Encoding.PEM),
            "serving.key": _pem_key(serving_key),
            "admin.crt": admin.public_bytes(serialization.Encoding.PEM),
            "admin.key": _pem_key(admin_key),
            "sa.key": _pem_key(sa_key),
            "sa.pub": sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }
        out = {}
        for name, data in files.items():
            (certs / name).write_bytes(data)
            (certs / name).chmod(0o600)
            out[name] = certs / name
        return out

    def _write_kubeconfig_placeholder(self) -> None:
        # `env` is usable (and points at a file) even before the server is up.
        self.kubeconfig.write_text("apiVersion: v1\nkind: Config\n")

    def _write_kubeconfig(self, certs: dict[str, Path]) -> None:
        text = f"""apiVersion: v1
kind: Config
clusters:
- name: switchboard-test
  cluster:
    server: {self.url}
    certificate-authority: {certs["ca.crt"]}
users:
- name: admin
  user:
    client-certificate: {certs["admin.crt"]}
    client-key: {certs["admin.key"]}
contexts:
- name: switchboard-test
  context: {{cluster: switchboard-test, user: admin, namespace: default}}
current-context: switchboard-test
"""
        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(self.kubeconfig)

    def _wait_ready(self, certs: dict[str, Path]) -> None:
        context = ssl.create_default_context(cafile=str(certs["ca.crt"]))
        context.load_cert_chain(str(certs["admin.crt"]), str(certs["admin.key"]))
        deadline = time.monotonic() + self.ready_timeout
        last = ""
        while True:
            for name, proc, _ in self._procs:
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with {proc.returncode} during startup" + self._logs()
                    )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=context, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError as error:
                last = str(error)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-apiserver not ready after {self.ready_timeout:.0f} s ({last})"
                    + self._logs()
                )
            time.sleep(0.1)
        # The default namespace is created by a loop that runs just after /readyz turns 200.
        while time.monotonic() < deadline:
            if self.kubectl("get", "namespace", "default", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise ControlPlaneError("namespace default did not appear" + self._logs())


def main() -> None:
    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        with ControlPlane(verbose=True) as cp:
            print(f"export KUBECONFIG={cp.kubeconfig}", file=sys.stderr)
            print(f"export PATH={cp.bin_dir}:$PATH", file=sys.stderr)
            print("Ctrl-C stops etcd and kube-apiserver", file=sys.stderr, flush=True)
            print(cp.kubeconfig, flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
