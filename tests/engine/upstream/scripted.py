"""Scripted replicas for the upstream engine's unit tests (httpx.MockTransport, no network).

The tests here are about Fovea's routing, retries and parsing; real replica processes are in
``tests/contract/test_upstream.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


def sse(*events: dict[str, Any] | str) -> bytes:
    lines = [e if isinstance(e, str) else json.dumps(e) for e in events]
    return "".join(f"data: {line}\n\n" for line in lines).encode()


def answer(*pieces: str, usage: dict[str, Any] | None = None, finish: str = "stop") -> bytes:
    """An OpenAI stream: a role chunk, the pieces, a finish chunk, usage, [DONE]."""
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    events: list[dict[str, Any] | str] = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    ]
    events += [{**chunk, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    usage = usage or {"prompt_tokens": 7, "completion_tokens": len(pieces), "total_tokens": 0}
    events.append({**chunk, "choices": [], "usage": usage})
    events.append("[DONE]")
    return sse(*events)


def streamed(body: bytes, *, fail_after: int | None = None) -> httpx.Response:
    """A 200 event stream; with ``fail_after``, the connection breaks after that many events."""

    async def chunks() -> AsyncIterator[bytes]:
        for index, event in enumerate(body.split(b"\n\n")):
            if fail_after is not None and index == fail_after:
                raise httpx.ReadError("connection reset by peer")
            if event:
                yield event + b"\n\n"

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=chunks())


def reply(*pieces: str, fail_after: int | None = None) -> Handler:
    """A replica's chat endpoint answering ``pieces``: streamed, or as one JSON completion.

    ``fail_after`` breaks the connection after that many stream events (or at once, when the
    request is not streamed).
    """

    def handle(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["stream"]:
            return streamed(answer(*pieces), fail_after=fail_after)
        if fail_after is not None:
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(pieces)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": len(pieces)},
            },
        )

    return handle


@dataclass
class Replicas:
    """Routes requests by host to a handler per replica and records what each was sent."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    seen: dict[str, list[httpx.Request]] = field(default_factory=dict)

    def transport(self) -> httpx.MockTransport:
        def route(request: httpx.Request) -> httpx.Response:
            host = request.url.netloc.decode()
            self.seen.setdefault(host, []).append(request)
            return self.handlers[host](request)

        return httpx.MockTransport(route)

    def chat_bodies(self, host: str) -> list[dict[str, Any]]:
        return [
            json.loads(r.content)
            for r in self.seen.get(host, [])
            if r.url.path.endswith("/chat/completions")
        ]


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)
