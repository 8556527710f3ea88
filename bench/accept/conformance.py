"""The HTTP/1.1 edge cases the gateway's accept path must keep, over raw sockets, against each
server of bench/accept/ (aiohttp, the gateway's server today, is the reference):

    python bench/accept/conformance.py            # starts the upstream and the three servers

Each case prints what the server did (statuses in order, whether it closed); the expectation is
beside it. Loopback only, a few requests per case.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httptools

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import contextlib

from bench.accept.servers import running

BODY = b'{"model":"bench","messages":[{"role":"user","content":"hello"}]}'
PATH = b"/v1/chat/completions"
TIMEOUT = 5.0


def head(extra: bytes = b"", *, length: int | None = len(BODY), version: bytes = b"1.1") -> bytes:
    lines = b"POST %s HTTP/%s\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" % (
        PATH,
        version,
    )
    if length is not None:
        lines += b"content-length: %d\r\n" % length
    return lines + extra + b"\r\n"


class Reader:
    """Statuses of the responses read from a socket, in order, and whether it was closed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.statuses: list[int] = []
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())

    def read(self, count: int) -> Reader:
        """Until `count` responses (1xx included), the connection closes, or TIMEOUT."""
        deadline = time.monotonic() + TIMEOUT
        while len(self.statuses) < count and not self.closed:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.statuses.append(-1)  # unparseable response
                break
        return self

    def closes(self) -> bool:
        """Does the server close the connection now (within TIMEOUT)?"""
        if self.closed:
            return True
        self.sock.settimeout(TIMEOUT)
        try:
            self.closed = self.sock.recv(65536) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            self.closed = True
        return self.closed


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def chunked(port: int) -> str:
    with connect(port) as s:
        parts = [BODY[:10], BODY[10:30], BODY[30:]]
        body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nx-t: 1\r\n\r\n"
        s.sendall(head(b"transfer-encoding: chunked\r\n", length=None) + body)
        return f"{Reader(s).read(1).statuses}"


def expect_continue(port: int) -> str:
    with connect(port) as s:
        s.sendall(head(b"expect: 100-continue\r\n"))
        first = Reader(s).read(1)
        got = first.statuses[:1]
        if got != [100]:
            return f"{got or 'nothing'} before the body"
        s.sendall(BODY)
        first.read(2)
        return f"{first.statuses}"


def expect_too_large(port: int) -> str:
    with connect(port) as s:
        s.sendall(head(b"expect: 100-continue\r\n", length=20 * 1024 * 1024))
        r = Reader(s).read(1)
        return f"{r.statuses or 'nothing'}, closes: {r.closes()}"


def pipelined(port: int) -> str:
    with connect(port) as s:
        s.sendall((head() + BODY) * 2)
        return f"{Reader(s).read(2).statuses}"


def keep_alive(port: int) -> str:
    with connect(port) as s:
        r = Reader(s)
        for n in (1, 2, 3):
            s.sendall(head() + BODY)
            r.read(n)
        return f"{r.statuses}"


def http10(port: int) -> str:
    with connect(port) as s:
        s.sendall(head(version=b"1.0") + BODY)
        r = Reader(s).read(1)
        return f"{r.statuses}, closes: {r.closes()}"


def long_header(port: int) -> str:
    with connect(port) as s:
        s.sendall(head(b"x-long: " + b"a" * 10_000 + b"\r\n") + BODY)
        r = Reader(s).read(1)
        return f"{r.statuses or 'nothing'}, closes: {r.closes()}"


def big_head(port: int) -> str:
    fields = b"".join(b"x-h%d: %s\r\n" % (n, b"b" * 4000) for n in range(30))  # 120 KB
    with connect(port) as s:
        with contextlib.suppress(OSError):
            s.sendall(head(fields) + BODY)
        r = Reader(s).read(1)
        return f"{r.statuses or 'nothing'}, closes: {r.closes()}"


def huge_head(port: int) -> str:
    fields = b"".join(b"x-h%d: %s\r\n" % (n, b"c" * 8000) for n in range(128))  # 1 MB
    with connect(port) as s:
        with contextlib.suppress(OSError):
            s.sendall(head(fields) + BODY)
        r = Reader(s).read(1)
        return f"{r.statuses or 'nothing'}, closes: {r.closes()}"


def many_headers(port: int) -> str:
    fields = b"".join(b"x-%d: 1\r\n" % n for n in range(200))
    with connect(port) as s:
        s.sendall(head(fields) + BODY)
        r = Reader(s).read(1)
        return f"{r.statuses or 'nothing'}"


def cl_and_te(port: int) -> str:
    with connect(port) as s:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
        s.sendall(head(b"transfer-encoding: chunked\r\n", length=len(body)) + body)
        r = Reader(s).read(1)
        return f"{r.statuses or 'nothing'}, closes: {r.closes()}"


def body_too_large(port: int) -> str:
    with connect(port) as s:
        s.sendall(head(length=20 * 1024 * 1024) + b"x" * 65536)
        r = Reader(s).read(1)
        return f"{r.statuses or 'nothing'}"


def bad_request(port: int) -> str:
    with connect(port) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nbad header\r\n\r\n")
        r = Reader(s).read(1)
        return f"{r.statuses or 'nothing'}, closes: {r.closes()}"


CASES: list[tuple[str, str, Callable[[int], str]]] = [
    ("chunked request body (extensions, trailer)", "[200]", chunked),
    ("Expect: 100-continue", "[100, 200]", expect_continue),
    ("Expect: 100-continue, 20 MB declared", "[413], closes", expect_too_large),
    ("two requests pipelined in one write", "[200, 200]", pipelined),
    ("three requests on one keep-alive connection", "[200, 200, 200]", keep_alive),
    ("HTTP/1.0 without keep-alive", "[200], closes", http10),
    ("a 10 KB header field", "[431] or [400], closes", long_header),
    ("a 120 KB head (30 fields of 4 KB)", "[431] or [400], closes", big_head),
    ("a 1 MB head", "[431] or [400], closes", huge_head),
    ("200 header fields", "[200] (or 431)", many_headers),
    ("Content-Length and Transfer-Encoding", "[400], closes", cl_and_te),
    ("20 MB Content-Length", "[413]", body_too_large),
    ("a header line without a colon", "[400], closes", bad_request),
]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="accept-conf-"))
    with running(work) as (_, servers):
        names = list(servers)
        table: dict[str, dict[str, str]] = {}
        print("| case | expected | " + " | ".join(names) + " |")
        print("| --- | --- | " + " | ".join("---" for _ in names) + " |")
        for label, expected, case in CASES:
            row = {}
            for name in names:
                try:
                    row[name] = case(servers[name][0])
                except OSError as exc:
                    row[name] = f"error: {type(exc).__name__}"
            table[label] = row
            print(f"| {label} | {expected} | " + " | ".join(row[n] for n in names) + " |")
        (work / "conformance.json").write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
