"""The cheapest OpenAI-compatible upstream we can write: raw asyncio protocol, uvloop, fixed
answers. It must never be the bottleneck of a benchmark (run.py measures its own ceiling).

    python bench/upstream_fast.py --port 19000 [--tokens 100 --delay-ms 5]

POST /v1/chat/completions answers a fixed completion; with `"stream": true` it streams
`--tokens` chunks `--delay-ms` apart, then a usage chunk and [DONE]; a request whose Chat
`metadata` has `"bench_tokens": "N"` gets N chunks instead (the spread-arrival scenario's longer
streams; `metadata` passes through proxies untouched). POST /v1/messages (not streamed) answers
a fixed Anthropic Message, for a provider that lists anthropic-messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import uvloop

COMPLETION = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"bench",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench '
    b'upstream."},"finish_reason":"stop","logprobs":null}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18}}'
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(COMPLETION)).encode()
    + b"\r\n\r\n"
    + COMPLETION
)
MESSAGE = (
    b'{"id":"msg_bench","type":"message","role":"assistant","model":"bench","content":[{"type":'
    b'"text","text":"Hello from the bench upstream."}],"stop_reason":"end_turn",'
    b'"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":6}}'
)
MESSAGE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(MESSAGE)).encode()
    + b"\r\n\r\n"
    + MESSAGE
)
CHUNK = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench",'
    b'"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
)
TAIL = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench",'
    b'"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":100,"total_tokens":112}}\n\n'
    b"data: [DONE]\n\n"
)


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Server(asyncio.Protocol):
    tokens = 100
    delay = 0.005

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.tasks: set[asyncio.Future[None]] = set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                length = int(
                    head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]
                )
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if b'"stream":true' in body.replace(b" ", b""):
                tokens = self.tokens
                if b'"bench_tokens"' in body:
                    tokens = int(json.loads(body)["metadata"]["bench_tokens"])
                self.tasks.add(task := asyncio.ensure_future(self._stream(tokens)))
                task.add_done_callback(self.tasks.discard)
            elif head.startswith(b"post /v1/messages "):
                self.transport.write(MESSAGE_RESPONSE)
            else:
                self.transport.write(RESPONSE)

    async def _stream(self, tokens: int) -> None:
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for _ in range(tokens):
            if self.transport.is_closing():
                return
            self.transport.write(_chunked(CHUNK))
            await asyncio.sleep(self.delay)
        self.transport.write(_chunked(TAIL) + b"0\r\n\r\n")


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Server, "127.0.0.1", port, backlog=4096, reuse_port=True)
    print(f"bench upstream on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=19000)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=5)
    args = parser.parse_args()
    Server.tokens = args.tokens
    Server.delay = args.delay_ms / 1000
    uvloop.run(main(args.port))
