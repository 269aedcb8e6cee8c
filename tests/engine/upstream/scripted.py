"""Scripted replicas for the upstream engine's tests: real HTTP servers on loopback (aiohttp),
whose chat endpoint answers as a test says. The tests here are about Fovea's routing, retries
and parsing; real engine processes are in ``tests/contract/test_upstream.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.processes import free_port

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


def events(*items: dict[str, Any] | str) -> list[bytes]:
    return [
        f"data: {item if isinstance(item, str) else json.dumps(item)}\n\n".encode()
        for item in items
    ]


def answer_events(*pieces: str, finish: str = "stop") -> list[bytes]:
    """An OpenAI stream: a role chunk, the pieces, a finish chunk, usage, [DONE]."""
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    items: list[dict[str, Any] | str] = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    ]
    items += [{**chunk, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    items.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    usage = {"prompt_tokens": 7, "completion_tokens": len(pieces), "total_tokens": 0}
    items.append({**chunk, "choices": [], "usage": usage})
    items.append("[DONE]")
    return events(*items)


def reply(*pieces: str, fail_after: int | None = None) -> Handler:
    """Answers ``pieces``, streamed or as one JSON completion as asked. ``fail_after`` drops
    the connection after that many stream events (before any answer when not streamed)."""

    async def handle(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if body["stream"]:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for index, event in enumerate(answer_events(*pieces)):
                if index == fail_after:
                    return _drop(request, response)
                await response.write(event)
            await response.write_eof()
            return response
        if fail_after is not None:
            return _drop(request, web.StreamResponse())
        return web.json_response(
            {
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
            }
        )

    return handle


def status(code: int, payload: dict[str, Any]) -> Handler:
    async def handle(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(payload, status=code)

    return handle


def _drop(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()  # mid-answer: the client sees a broken connection
    return response


class ScriptedReplica:
    """An OpenAI-shaped server on 127.0.0.1: ``/health``, ``/v1/models`` and a chat endpoint
    that records each request and answers with ``chat``."""

    def __init__(self, chat: Handler | None = None) -> None:
        self.chat = chat or reply("ok")
        self.health: Handler | None = None
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> ScriptedReplica:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        """Like a killed process: the port refuses connections from now on."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, request: web.Request) -> web.StreamResponse:
        if self.health is not None:
            return await self.health(request, {})
        return web.Response(text="ok")

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": []})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        return await self.chat(request, body)


async def sleep_forever(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")
