"""An OpenAI-compatible upstream that answers at once, for measuring a gateway's own overhead.

``POST /v1/chat/completions`` returns a fixed short answer: a ``chat.completion`` with usage, or,
with ``"stream": true``, Server-Sent Events (a role chunk, one content chunk, a finish chunk, a
usage chunk when ``stream_options.include_usage`` is true, then ``data: [DONE]``). Also
``GET /v1/models`` and ``GET /health``. The request body is read in full but not parsed as JSON
(byte searches find the model and the stream flags; usage is fixed), so a 500 KB image body costs
little more than a small one. Plain asyncio with HTTP/1.1 keep-alive, on uvloop when it is
installed, else standard library only: it must never be the bottleneck.

    .venv/bin/python bench/instant_upstream.py --port 8300 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

ANSWER = "Hello!"
USAGE = {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}  # fixed, even for images
MAX_HEAD_BYTES = 64 * 1024
VALUE = re.compile(rb'"[a-z_]+"\s*:\s*("[^"\\]{0,200}"|true|false|null|-?[0-9.]+)')

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found"}


@dataclass(frozen=True)
class Fields:
    """The few request fields the answer depends on, found without parsing the JSON body."""

    model: str = "unknown"
    is_stream: bool = False
    include_usage: bool = False

    @classmethod
    def scan(cls, buffer: bytearray, start: int, end: int) -> Fields:
        model = value(buffer, b"model", start, end)
        is_stream = value(buffer, b"stream", start, end) == "true"
        return cls(
            model=model.strip('"') if model and model.startswith('"') else "unknown",
            is_stream=is_stream,
            include_usage=is_stream and value(buffer, b"include_usage", start, end) == "true",
        )


def value(buffer: bytearray, key: bytes, start: int, end: int) -> str | None:
    """The scalar after the first ``"key":`` in ``buffer[start:end]``.

    A byte search (fast, no copy) rather than ``json.loads``: a 500 KB image body must cost the
    upstream little. A key inside a string value is escaped (``\\"key\\"``), so it is not found.
    """
    quoted = b'"' + key + b'"'
    at = buffer.find(quoted, start, end)
    while at >= 0:
        match = VALUE.match(buffer, at, end)
        if match:
            return match.group(1).decode()
        at = buffer.find(quoted, at + 1, end)
    return None


def completion(fields: Fields) -> bytes:
    """The non-streaming answer, as JSON."""
    return json.dumps(
        {
            "id": f"chatcmpl-instant-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": fields.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        },
        separators=(",", ":"),
    ).encode()


def stream_events(fields: Fields) -> list[bytes]:
    """The streaming answer: one SSE event per item, ending with ``[DONE]``."""
    base = {
        "id": f"chatcmpl-instant-{time.monotonic_ns()}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": fields.model,
    }

    def choice(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks: list[dict[str, object]] = [
        choice({"role": "assistant", "content": ""}),
        choice({"content": ANSWER}),
        choice({}, "stop"),
    ]
    if fields.include_usage:
        chunks.append({**base, "choices": [], "usage": USAGE})
    events = [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n" for c in chunks]
    return [*events, b"data: [DONE]\n\n"]


def head(status: int, content_type: str, extra: str, keep_alive: bool) -> bytes:
    connection = "keep-alive" if keep_alive else "close"
    return (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n{extra}"
        f"Connection: {connection}\r\n\r\n"
    ).encode()


def json_response(status: int, payload: bytes, keep_alive: bool) -> bytes:
    extra = f"Content-Length: {len(payload)}\r\n"
    return head(status, "application/json", extra, keep_alive) + payload


def sse_response(events: list[bytes], keep_alive: bool) -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events)
    extra = "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n"
    return head(200, "text/event-stream", extra, keep_alive) + framed + b"0\r\n\r\n"


def error(status: int, message: str, keep_alive: bool) -> bytes:
    payload = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return json_response(status, json.dumps(payload).encode(), keep_alive)


def respond(method: str, path: str, fields: Fields, keep_alive: bool) -> bytes:
    path = path.split("?", 1)[0]
    if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
        if fields.is_stream:
            return sse_response(stream_events(fields), keep_alive)
        return json_response(200, completion(fields), keep_alive)
    if method == "GET" and path in ("/v1/models", "/models"):
        models = {
            "object": "list",
            "data": [{"id": "gemma-3-demo", "object": "model", "created": 0, "owned_by": "bench"}],
        }
        return json_response(200, json.dumps(models).encode(), keep_alive)
    if method == "GET" and path == "/health":
        return json_response(200, b'{"status":"ok"}', keep_alive)
    return error(404, f"no route {method} {path}", keep_alive)


@dataclass(frozen=True)
class Head:
    """A parsed request line and the headers that matter here."""

    method: str
    path: str
    keep_alive: bool
    expects_continue: bool
    body_start: int
    size: int  # head and body, in bytes

    @classmethod
    def parse(cls, raw: bytes, body_start: int) -> Head:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise ValueError("bad request line")
        method, path, version = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "chunked" in headers.get("transfer-encoding", ""):
            raise ValueError("chunked request bodies are not supported")
        connection = headers.get("connection", "")
        return cls(
            method=method,
            path=path,
            keep_alive=connection != "close"
            and (version == "HTTP/1.1" or connection == "keep-alive"),
            expects_continue=headers.get("expect") == "100-continue",
            body_start=body_start,
            size=body_start + int(headers.get("content-length", "0")),
        )


class HttpProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; pipelined requests are answered in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: Head | None = None  # the head of a request whose body is still arriving

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and self.handle_one():
            pass

    def handle_one(self) -> bool:
        """Answer the request at the front of the buffer if it has fully arrived."""
        assert self.transport is not None
        if self.pending is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self.close_with(error(400, "request head too large", keep_alive=False))
                return False
            try:
                self.pending = Head.parse(bytes(self.buffer[:end]), end + 4)
            except ValueError as exc:
                self.close_with(error(400, str(exc), keep_alive=False))
                return False
            if self.pending.expects_continue and len(self.buffer) < self.pending.size:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request = self.pending
        if len(self.buffer) < request.size:
            return False
        fields = Fields.scan(self.buffer, request.body_start, request.size)
        del self.buffer[: request.size]
        self.pending = None
        self.transport.write(respond(request.method, request.path, fields, request.keep_alive))
        if not request.keep_alive:
            self.transport.close()
            self.transport = None
            return False
        return True

    def close_with(self, response: bytes) -> None:
        assert self.transport is not None
        self.transport.write(response)
        self.transport.close()
        self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HttpProtocol, host, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run(serve(args.host, args.port))


def run(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop where it is installed (faster), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    main()
