"""Opening connections for the upstream client: name resolution, proxies from the environment,
and the CONNECT tunnel.

Everything here raises what the standard library raises (OSError, ssl.SSLError, TimeoutError)
or `ProxyRefused` (an OSError); gateway/upstream.py maps them to its ConnectError in one place.

- `Resolver`: a host name is resolved at most once per `ttl` seconds (and once at a time), so a
  burst of new connections to a Service name does not queue as many getaddrinfo calls on the
  executor's few threads; successive calls rotate a list of several addresses.
- `Proxies`: `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (either case, lower case first, as curl
  reads them), read once. NO_PROXY entries: `*`, a domain (`example.com` and `.example.com`
  both match the domain and its subdomains), `host:port`, an IP address or a CIDR network.
- `tunnel()`: `CONNECT host:port` through an HTTP proxy, for https upstreams (TLS then runs
  end to end inside the tunnel). Plain-http upstreams go through a proxy in absolute form (the
  request line names the whole URL), which the caller renders.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

_TUNNEL_HEAD_LIMIT = 16 * 1024


class ProxyRefused(OSError):
    """The proxy answered CONNECT with something other than 2xx, or not HTTP at all."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    authorization: bytes
    """A `proxy-authorization` header line (CRLF-terminated) from the URL's user info, or b""."""

    @property
    def where(self) -> str:
        """Host and port only: the proxy URL's credentials never reach a message."""
        return f"{self.host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """`http://[user:password@]host[:port]`; a URL without a scheme is taken as http."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("a proxy URL must be http://host[:port] (no https:// proxies)")
    authorization = b""
    if parts.username is not None:
        raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = b"proxy-authorization: Basic %s\r\n" % base64.b64encode(raw)
    return Proxy(parts.hostname, parts.port or 80, authorization)


class Proxies:
    """Which proxy, if any, a (scheme, host, port) goes through."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return (env.get(name.lower()) or env.get(name.upper()) or "").strip()

        self._proxies: dict[str, Proxy] = {}
        for scheme in ("http", "https"):
            url = get(f"{scheme}_proxy")
            if url:
                try:
                    self._proxies[scheme] = parse_proxy(url)
                except ValueError as exc:  # the URL itself is not shown: it may hold a password
                    raise ValueError(f"{scheme.upper()}_PROXY: {exc}") from None
        self._no = [entry.strip().lower() for entry in get("no_proxy").split(",") if entry.strip()]

    def __bool__(self) -> bool:
        return bool(self._proxies)

    def for_target(self, scheme: str, host: str, port: int) -> Proxy | None:
        proxy = self._proxies.get(scheme)
        if proxy is None or self._bypass(host.lower(), port):
            return None
        return proxy

    def _bypass(self, host: str, port: int) -> bool:
        try:
            address: Any = ipaddress.ip_address(host)
        except ValueError:
            address = None
        for entry in self._no:
            if entry == "*":
                return True
            name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
            if entry_port and entry_port != str(port):
                continue
            name = name.strip("[]")
            if address is not None:
                try:
                    if address in ipaddress.ip_network(name, strict=False):
                        return True
                except ValueError:
                    pass
                continue
            name = name.lstrip(".")
            if host == name or host.endswith("." + name):
                return True
        return False


def _has_port(entry: str) -> bool:
    """`host:port` or `[v6]:port`, not a bare IPv6 address."""
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1


class Resolver:
    """Host names to addresses, cached for `ttl` seconds and resolved once at a time."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[list[Any]]] = {}

    def forget(self, host: str, port: int) -> None:
        """After a failed connection: resolve afresh next time."""
        self._cache.pop((host, port), None)

    def cached(self) -> list[tuple[str, int]]:
        return list(self._cache)

    async def addresses(self, host: str, port: int, loop: asyncio.AbstractEventLoop) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        key = (host, port)
        now = loop.time()
        cached = self._cache.get(key)
        if cached is None or cached[0] <= now:
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = asyncio.ensure_future(
                    loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                )
                pending.add_done_callback(lambda _: self._pending.pop(key, None))
            infos = await asyncio.shield(pending)
            found = list(dict.fromkeys(str(info[4][0]) for info in infos))
            if not found:
                raise OSError(f"{host} has no address")
            cached = self._cache[key] = (now + self._ttl, found)
        addresses = cached[1]
        if len(addresses) > 1:
            addresses.append(addresses.pop(0))
        return list(addresses)


class _TunnelReply(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT: one response head, nothing after it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head = bytearray()
        self.done: asyncio.Future[bytes] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end >= 0:
            if end + 4 != len(self.head):
                self.done.set_exception(
                    ProxyRefused("the proxy sent bytes after its CONNECT reply")
                )
            else:
                self.done.set_result(bytes(self.head[:end]))
        elif len(self.head) > _TUNNEL_HEAD_LIMIT:
            self.done.set_exception(ProxyRefused("the proxy's CONNECT reply is too long"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ProxyRefused("the proxy closed the connection during CONNECT"))


async def tunnel(
    loop: asyncio.AbstractEventLoop, proxy: Proxy, address: str, host: str, port: int
) -> asyncio.Transport:
    """A TCP connection to `address` (the proxy's) with a CONNECT tunnel to host:port open."""
    reply = _TunnelReply(loop)
    transport, _ = await loop.create_connection(lambda: reply, address, proxy.port)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    transport.write(
        b"CONNECT %s HTTP/1.1\r\nhost: %s\r\n%s\r\n"
        % (authority.encode(), authority.encode(), proxy.authorization)
    )
    try:
        head = await reply.done
    except BaseException:
        transport.close()
        raise
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].startswith(b"2"):
        transport.close()
        shown = status_line[:100].decode("latin-1", "replace")
        raise ProxyRefused(f"the proxy refused CONNECT to {authority}: {shown!r}")
    return transport
