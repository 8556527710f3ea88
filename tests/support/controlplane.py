"""A real Kubernetes control plane on loopback: etcd + kube-apiserver, the envtest recipe.

    with ControlPlane() as cp:
        cp.kubectl("apply", "-f", "crds/")

The binaries come from `tools/controlplane/build.sh` (built once per machine from Go modules,
or taken from $KUBEBUILDER_ASSETS). Certificates are throwaway: a CA, a serving certificate for
localhost and 127.0.0.1, a service-account key pair and an admin client certificate in group
system:masters. `python -m tests.support.controlplane` runs one until Ctrl-C and prints its
kubeconfig path. No pytest here: the demo uses it too.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools/controlplane/build.sh"


def versions() -> dict[str, str]:
    out = {}
    for line in (ROOT / "tools/controlplane/versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def build_binaries() -> Path:
    """Run the build script (seconds when cached) and return the directory of the binaries."""
    result = subprocess.run(
        ["bash", str(BUILD)], stdout=subprocess.PIPE, stderr=None, text=True, check=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not ca:
        usage = (
            x509.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.ExtendedKeyUsageOID.SERVER_AUTH
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(common: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


class ControlPlane:
    def __init__(self, bin_dir: Path | None = None, verbose: bool = False) -> None:
        self.bin_dir = bin_dir
        self.verbose = verbose
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-cp-"))
        self.kubeconfig = self.dir / "kubeconfig"
        self.url = ""
        self._procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

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
        started = time.monotonic()
        if self.bin_dir is None:
            self.bin_dir = build_binaries()
        certs = self._certificates()
        etcd_port, apiserver_port = _free_port(), _free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._say("starting etcd")
        self._spawn(
            "etcd",
            [
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{_free_port()}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._say("starting kube-apiserver")
        self.url = f"https://127.0.0.1:{apiserver_port}"
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
        self._say(f"control plane ready in {time.monotonic() - started:.1f} s ({self.url})")

    def stop(self) -> None:
        for proc, log in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
        self._procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        assert self.bin_dir is not None
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def _spawn(self, binary: str, args: list[str]) -> None:
        assert self.bin_dir is not None
        log = (self.dir / f"{binary}.log").open("wb")
        proc = subprocess.Popen(
            [str(self.bin_dir / binary), *args], stdout=log, stderr=subprocess.STDOUT
        )
        self._procs.append((proc, log))

    def log(self, binary: str) -> str:
        path = self.dir / f"{binary}.log"
        return path.read_text(errors="replace") if path.exists() else ""

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
            out[name] = certs / name
        return out

    def _write_kubeconfig(self, certs: dict[str, Path]) -> None:
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {self.url}
    certificate-authority: {certs["ca.crt"]}
users:
- name: admin
  user:
    client-certificate: {certs["admin.crt"]}
    client-key: {certs["admin.key"]}
contexts:
- name: local
  context: {{cluster: local, user: admin, namespace: default}}
current-context: local
"""
        )

    def _wait_ready(self, certs: dict[str, Path], timeout: float = 90) -> None:
        context = ssl.create_default_context(cafile=str(certs["ca.crt"]))
        context.load_cert_chain(str(certs["admin.crt"]), str(certs["admin.key"]))
        deadline = time.monotonic() + timeout
        while True:
            for proc, _ in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{proc.args[0]} exited with {proc.returncode}:\n"
                        + self.log("etcd")[-3000:]
                        + self.log("kube-apiserver")[-3000:]
                    )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=context, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "kube-apiserver not ready:\n" + self.log("kube-apiserver")[-3000:]
                )
            time.sleep(0.2)
        # The default namespace and the RBAC bootstrap roles appear shortly after /readyz.
        while time.monotonic() < deadline:
            if self.kubectl("get", "namespace", "default", check=False).returncode == 0:
                return
            time.sleep(0.2)


if __name__ == "__main__":
    with ControlPlane(verbose=True) as cp:
        print(cp.kubeconfig, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
