"""The upstream client's ways out: HTTPS_PROXY/HTTP_PROXY/NO_PROXY and a provider's own CA.

A small forward proxy written here runs on loopback: CONNECT tunnels (for https upstreams,
TLS end to end inside) and absolute-form requests (for http upstreams), recording the request
lines and Proxy-Authorization it saw. Covered: a tunnel to a TLS upstream with credentials from
the proxy URL, absolute form with keep-alive through the proxy, NO_PROXY forms (a domain, a
leading dot, host:port, an IP, a CIDR network, `*`), a proxy that refuses CONNECT (named by
host and port, its credentials never shown), the process environment read by default, and a CA
bundle per endpoint replacing the system trust store, from a CustomProvider's
`spec.tls.caSecretRef` through the compiler and the routing table.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from switchboard.gateway.dial import Proxies
from switchboard.gateway.table import Table
from switchboard.gateway.upstream import ConnectError, Endpoint, Pool
from switchboard.routing import compiler
from tests.gateway.test_upstream_client import OK, _read_request, _tls, endpoint, serve
from tests.upstreams.server import free_port


@dataclass
class ProxyLog:
    port: int
    lines: list[bytes] = field(default_factory=list)
    authorization: list[bytes] = field(default_factory=list)
    refuse: bool = False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def forward_proxy() -> AsyncIterator[ProxyLog]:
    log = ProxyLog(free_port())
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *fields = head[:-4].split(b"\r\n")
            log.lines.append(line)
            for f in fields:
                if f.lower().startswith(b"proxy-authorization:"):
                    log.authorization.append(f.split(b":", 1)[1].strip())
            method, target, _ = line.split(b" ")
            if method == b"CONNECT":
                if log.refuse:
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                    return
                host, port = target.rsplit(b":", 1)
                up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            # absolute form: forward this request and the following ones on one upstream
            authority = target.split(b"/")[2]
            host, port = authority.rsplit(b":", 1)
            up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
            up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", log.port)
    try:
        yield log
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def _ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await _read_request(reader)
        writer.write(OK)
        await writer.drain()


async def test_https_goes_through_a_connect_tunnel_with_the_proxy_credentials(
    tmp_path: Path,
) -> None:
    server_ctx, client_ctx = _tls(tmp_path)
    async with serve(_ok, tls=server_ctx) as port, forward_proxy() as proxy:
        env = {"HTTPS_PROXY": f"http://user:p%40ss@127.0.0.1:{proxy.port}"}
        pool = Pool(ssl_context=client_ctx, environ=env)
        for _ in range(2):
            response = await pool.post(endpoint(port, scheme="https", host="localhost"), b"{}")
            assert await response.read() == b'{"ok":true}'
            response.release()
        await pool.close()
    assert proxy.lines == [b"CONNECT localhost:%d HTTP/1.1" % port]  # one tunnel, kept alive
    assert proxy.authorization == [b"Basic " + base64.b64encode(b"user:p@ss")]


async def test_http_goes_through_the_proxy_in_absolute_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serve(_ok) as port, forward_proxy() as proxy:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        pool = Pool()  # the process environment
        for _ in range(2):
            response = await pool.post(endpoint(port), b"{}")
            assert await response.read() == b'{"ok":true}'
            response.release()
        await pool.close()
    assert proxy.lines == [b"POST http://127.0.0.1:%d/v1/chat/completions?x=1 HTTP/1.1" % port]
    assert proxy.authorization == []


async def test_no_proxy_goes_direct() -> None:
    async with serve(_ok) as port, forward_proxy() as proxy:
        env = {"HTTP_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": "127.0.0.0/8"}
        pool = Pool(environ=env)
        response = await pool.post(endpoint(port), b"{}")
        assert await response.read() == b'{"ok":true}'
        response.release()
        await pool.close()
    assert proxy.lines == []


def test_no_proxy_forms() -> None:
    proxies = Proxies(
        {
            "https_proxy": "http://proxy.corp:3128",
            "NO_PROXY": "svc.cluster.local, .internal,api.example.com:8443,10.0.0.0/8,::1",
        }
    )
    assert proxies.for_target("https", "vllm.ns.svc.cluster.local", 443) is None
    assert proxies.for_target("https", "svc.cluster.local", 443) is None
    assert proxies.for_target("https", "model.internal", 443) is None
    assert proxies.for_target("https", "api.example.com", 8443) is None
    assert proxies.for_target("https", "api.example.com", 443) is not None
    assert proxies.for_target("https", "10.1.2.3", 443) is None
    assert proxies.for_target("https", "::1", 443) is None
    assert proxies.for_target("https", "11.0.0.1", 443) is not None
    assert proxies.for_target("http", "anything", 80) is None  # no HTTP_PROXY set
    found = proxies.for_target("https", "api.openai.com", 443)
    assert found is not None and found.where == "proxy.corp:3128"
    assert (
        Proxies({"HTTPS_PROXY": "http://p:1", "no_proxy": "*"}).for_target("https", "a", 1) is None
    )
    with pytest.raises(ValueError, match="HTTPS_PROXY: a proxy URL must be http"):
        Proxies({"HTTPS_PROXY": "https://p:1"})


async def test_a_proxy_that_refuses_connect_is_named_without_its_credentials(
    tmp_path: Path,
) -> None:
    server_ctx, client_ctx = _tls(tmp_path)
    async with serve(_ok, tls=server_ctx) as port, forward_proxy() as proxy:
        proxy.refuse = True
        env = {"https_proxy": f"http://user:hunter2@127.0.0.1:{proxy.port}"}
        pool = Pool(ssl_context=client_ctx, environ=env)
        with pytest.raises(ConnectError) as caught:
            await pool.post(endpoint(port, scheme="https", host="localhost"), b"{}")
        await pool.close()
    message = str(caught.value)
    assert f"through the proxy 127.0.0.1:{proxy.port}" in message
    assert "407" in message
    assert "hunter2" not in message and "user" not in message


async def test_a_ca_bundle_per_endpoint_replaces_the_system_trust_store(tmp_path: Path) -> None:
    server_ctx, _ = _tls(tmp_path)
    pem = (tmp_path / "tls.crt").read_text()
    async with serve(_ok, tls=server_ctx) as port:
        url = f"https://localhost:{port}/v1/chat/completions"
        pool = Pool()  # the system trust store, which does not know this CA
        own = Endpoint.build(url, {}, connect=2, read=5, total=30, ca_pem=pem)
        response = await pool.post(own, b"{}")
        assert await response.read() == b'{"ok":true}'
        response.release()
        plain = Endpoint.build(url, {}, connect=2, read=5, total=30)
        assert plain.key != own.key  # never handed a connection verified with another CA
        with pytest.raises(ConnectError, match="TLS with localhost"):
            await pool.post(plain, b"{}")
        await pool.close()
    with pytest.raises(ValueError, match="not valid PEM"):
        Endpoint.build(url, {}, connect=2, read=5, total=30, ca_pem="-----BEGIN nonsense")


def _custom_provider(base_url: str, tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "switchboard.dev/v1alpha1",
        "kind": "CustomProvider",
        "metadata": {"name": "internal", "namespace": "team"},
        "spec": {"baseUrl": base_url, "tls": tls},
    }


async def test_a_custom_providers_ca_secret_reaches_its_endpoint(tmp_path: Path) -> None:
    """CustomProvider spec.tls.caSecretRef -> compiler (the same Secret path as the provider
    key) -> routing config -> table -> an endpoint that trusts that CA and nothing else."""
    server_ctx, _ = _tls(tmp_path)
    pem = (tmp_path / "tls.crt").read_bytes()
    async with serve(_ok, tls=server_ctx) as port:
        url = f"https://localhost:{port}/v1"
        tls = {"caSecretRef": {"name": "internal-ca", "key": "ca.crt"}}
        result = compiler.compile(
            [_custom_provider(url, tls)], {("team", "internal-ca"): {"ca.crt": pem}}
        )
        assert not result.errors, result.errors
        config = result.configs["team"]
        assert config.providers["internal"].ca_bundle == pem.decode().strip()
        target = Table(config).route("internal:any")
        assert target is not None
        pool = Pool()
        response = await pool.post(target.chain[0].endpoint, b"{}")
        assert await response.read() == b'{"ok":true}'
        response.release()
        await pool.close()

    bad = compiler.compile(
        [_custom_provider(url, tls)], {("team", "internal-ca"): {"ca.crt": b"x"}}
    )
    (problem,) = bad.errors
    assert problem.field == "spec.tls.caSecretRef"
    assert "PEM CA certificates" in problem.message
    missing = compiler.compile([_custom_provider(url, tls)], {})
    assert [p.field for p in missing.errors] == ["spec.tls.caSecretRef"]
