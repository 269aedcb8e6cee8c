"""UpstreamEngine.tokenize against a scripted replica on loopback with vLLM's ``/tokenize``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from fovea.engine.types import ImageInput, ImagePart, Message, TextPart, Token
from fovea.engine.upstream import ReplicaSpec, UpstreamConfig, UpstreamEngine
from fovea.errors import InvalidRequestError
from tests.processes import free_port

pytestmark = pytest.mark.anyio

MESSAGES = (Message("system", (TextPart("Be brief."),)), Message("user", (TextPart("Hi"),)))
# Starts a replica (with /tokenize unless told otherwise) and an engine over it; gives the
# engine and the list of /tokenize bodies the replica received.
Start = Callable[..., Awaitable[tuple[UpstreamEngine, list[dict[str, Any]]]]]


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _replica(bodies: list[dict[str, Any]], *, has_tokenize: bool) -> web.Application:
    async def tokenize(request: web.Request) -> web.Response:
        body = await request.json()
        bodies.append(body)
        # vLLM's answer: the ids, their strings when asked, the count.
        strs = ["<bos>", "Hi"] if body.get("return_token_strs") else None
        return web.json_response({"count": 2, "tokens": [2, 9], "token_strs": strs})

    app = web.Application()
    app.router.add_get("/health", _health)
    if has_tokenize:
        app.router.add_post("/tokenize", tokenize)
    return app


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []
    engines: list[UpstreamEngine] = []

    async def make(*, has_tokenize: bool = True) -> tuple[UpstreamEngine, list[dict[str, Any]]]:
        bodies: list[dict[str, Any]] = []
        runner = web.AppRunner(_replica(bodies, has_tokenize=has_tokenize), shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        spec = ReplicaSpec(url=f"http://127.0.0.1:{port}/v1", model="served-name")
        config = UpstreamConfig(name="gemma", replicas=(spec,), probe_interval_s=3600)
        engine = UpstreamEngine(config)
        await engine.start()
        engines.append(engine)
        return engine, bodies

    yield make
    for engine in engines:
        await engine.aclose()
    for runner in runners:
        await runner.cleanup()


async def test_messages_go_to_the_replicas_tokenize_with_its_model_name(start: Start) -> None:
    engine, bodies = await start()
    tokens = await engine.tokenize(MESSAGES)
    assert tokens == [Token(2, "<bos>", False), Token(9, "Hi", False)]
    assert bodies == [
        {
            "model": "served-name",
            "return_token_strs": True,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
        }
    ]
    await engine.tokenize("Hi")
    assert bodies[1]["prompt"] == "Hi" and "messages" not in bodies[1]


async def test_a_replica_without_tokenize_makes_it_a_clear_400(start: Start) -> None:
    engine, _ = await start(has_tokenize=False)
    with pytest.raises(InvalidRequestError, match="Tokenization is not available") as refused:
        await engine.tokenize(MESSAGES)
    assert refused.value.status_code == 400
    assert [r.failures for r in engine.replicas] == [0]  # not the replica's fault


async def test_images_are_refused_before_any_request(start: Start) -> None:
    engine, bodies = await start()
    image = ImageInput(2, 2, bytes(12), digest="d")
    with pytest.raises(InvalidRequestError, match="tokenize counts text only"):
        await engine.tokenize((Message("user", (TextPart("?"), ImagePart(image))),))
    assert bodies == []
