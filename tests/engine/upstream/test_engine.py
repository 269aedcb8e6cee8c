"""UpstreamEngine: routing, retries before the first byte, errors after it, images, usage."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from fovea.engine.types import (
    GenerationChunk,
    GenerationRequest,
    ImageInput,
    ImagePart,
    Message,
    SamplingParams,
    TextPart,
)
from fovea.engine.upstream import ReplicaSpec, UpstreamConfig, UpstreamEngine
from fovea.errors import InvalidRequestError, NoReplicaError, UpstreamError
from tests.engine.upstream.scripted import Replicas, answer, refuse, reply

pytestmark = pytest.mark.anyio

A, B = "a.test:8000", "b.test:8000"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config(**overrides: Any) -> UpstreamConfig:
    base: dict[str, Any] = {
        "name": "gemma",
        "replicas": (
            ReplicaSpec(url=f"http://{A}/v1", model="model-a", api_key="key-a"),
            ReplicaSpec(url=f"http://{B}/v1", model="model-b"),
        ),
        "image_size": 224,
        "image_tokens": 16,
        "probe_interval_s": 3600,
        "cooldown_s": 30,
    }
    return UpstreamConfig(**{**base, **overrides})


def healthy(chat: Callable[[httpx.Request], httpx.Response]) -> Callable[..., httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200)
        return chat(request)

    return handle


def request(text: str = "hello", *, streamed_: bool = True, images: int = 0) -> GenerationRequest:
    parts: list[TextPart | ImagePart] = [TextPart(text)]
    for index in range(images):
        rgb = bytes([40 * index, 90, 200]) * (300 * 224)
        parts.append(ImagePart(ImageInput(300, 224, rgb, digest=f"img{index}")))
    return GenerationRequest(
        request_id="r1",
        messages=(Message("user", tuple(parts)),),
        sampling=SamplingParams(temperature=0.0, max_tokens=5),
        streamed=streamed_,
    )


async def run(engine: UpstreamEngine, req: GenerationRequest) -> list[GenerationChunk]:
    return [chunk async for chunk in engine.generate(req)]


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., Any]]:
    engines: list[UpstreamEngine] = []

    async def start(scripted: Replicas, **overrides: Any) -> UpstreamEngine:
        engine = UpstreamEngine(config(**overrides), transport=scripted.transport())
        await engine.start()
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        await engine.aclose()


async def test_streams_text_with_usage_in_foveas_shape(started: Any) -> None:
    replicas = Replicas({A: healthy(reply("Hel", "lo")), B: refuse})
    engine = await started(replicas)
    chunks = await run(engine, request(images=2))
    assert [c.text for c in chunks] == ["Hel", "lo", ""]
    assert chunks[-1].finish_reason == "stop"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.image_tokens) == (7, 2, 32)
    sent = replicas.chat_bodies(A)[0]
    assert sent["model"] == "model-a"  # the name the replica expects
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert replicas.seen[A][-1].headers["Authorization"] == "Bearer key-a"


async def test_a_collected_request_asks_for_one_json_answer(started: Any) -> None:
    replicas = Replicas({A: healthy(reply("Hel", "lo")), B: refuse})
    engine = await started(replicas)
    chunks = await run(engine, request(streamed_=False, images=1))
    assert [(c.text, c.finish_reason) for c in chunks] == [("Hello", "stop")]
    assert chunks[0].usage is not None
    assert (chunks[0].usage.prompt_tokens, chunks[0].usage.image_tokens) == (7, 16)
    sent = replicas.chat_bodies(A)[0]
    assert sent["stream"] is False and "stream_options" not in sent
    # The chat service stops reading at the finish reason: it still counts as served.
    async for _ in engine.generate(request(streamed_=False)):
        break
    assert (engine.stats.completed, engine.stats.cancelled) == (2, 0)
    assert [r.served for r in engine.replicas if A in r.url] == [2]


async def test_images_are_forwarded_as_jpeg_at_the_decoded_size(started: Any) -> None:
    replicas = Replicas({A: healthy(reply("ok")), B: refuse})
    engine = await started(replicas)
    await run(engine, request(images=1))
    content = replicas.chat_bodies(A)[0]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "hello"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert (image.format, image.size) == ("JPEG", (300, 224))


async def test_high_detail_sends_gemmas_pan_and_scan_crops(started: Any) -> None:
    replicas = Replicas({A: healthy(reply("ok")), B: refuse})
    engine = await started(replicas, image_size=256)
    wide = ImageInput(1024, 256, bytes(1024 * 256 * 3), digest="wide", detail="high")
    req = GenerationRequest("r", (Message("user", (ImagePart(wide),)),))
    chunks = await run(engine, req)
    content = replicas.chat_bodies(A)[0]["messages"][0]["content"]
    images = [p for p in content if p["type"] == "image_url"]
    texts = "".join(p["text"] for p in content if p["type"] == "text")
    assert len(images) == 5  # the whole image and four crops
    assert "here are some crops" in texts
    assert chunks[-1].usage is not None and chunks[-1].usage.image_tokens == 5 * 16


async def test_a_5xx_before_the_first_byte_goes_to_another_replica(started: Any) -> None:
    replicas = Replicas(
        {
            A: healthy(lambda r: httpx.Response(500, json={"error": {"message": "CUDA OOM"}})),
            B: healthy(reply("from b")),
        }
    )
    engine = await started(replicas, affinity=False)
    for _ in range(4):  # whichever replica the balancer tries first
        chunks = await run(engine, request())
        assert "".join(c.text for c in chunks) == "from b"
    a = next(r for r in engine.replicas if A in r.url)
    assert a.state == "up" or a.failures >= 3  # ejected only after max_failures
    assert "CUDA OOM" in (a.last_error or "")


async def test_a_refused_connection_ejects_the_replica_at_once(started: Any) -> None:
    replicas = Replicas({A: healthy(reply("a")), B: healthy(refuse)})
    engine = await started(replicas, affinity=False)
    # B passed its probe; its chat endpoint now refuses connections (the process died).
    replicas.handlers[B] = refuse
    for _ in range(50):  # until the balancer's coin has picked B once
        assert "".join(c.text for c in await run(engine, request())) == "a"
        if replicas.chat_bodies(B):
            break
    assert len(replicas.seen[B]) == 2  # its probe and one chat request: never tried again
    states = {r.url: r.state for r in engine.replicas}
    assert states == {f"http://{A}/v1": "up", f"http://{B}/v1": "down"}


async def test_a_break_after_the_first_byte_ends_the_stream_with_an_error(started: Any) -> None:
    replicas = Replicas(
        {
            A: healthy(reply("one", "two", "three", fail_after=2)),
            B: healthy(reply("never")),
        }
    )
    engine = await started(replicas)
    engine._balancer.replicas = engine._balancer.replicas[:1]  # only A is picked first
    received = []
    with pytest.raises(UpstreamError, match="broke"):
        async for chunk in engine.generate(request()):
            received.append(chunk.text)
    assert received == ["one"]  # no silent end...
    assert replicas.chat_bodies(B) == []  # ...and no second answer spliced after the first


async def test_a_collected_request_is_retried_whole_after_a_break(started: Any) -> None:
    replicas = Replicas(
        {
            A: healthy(reply("half", "way", fail_after=2)),
            B: healthy(reply("whole ", "answer")),
        }
    )
    engine = await started(replicas, affinity=False)
    for _ in range(3):
        chunks = await run(engine, request(streamed_=False))
        assert "".join(c.text for c in chunks) == "whole answer"
        assert chunks[-1].finish_reason == "stop"


async def test_an_upstream_400_keeps_its_status_and_message(started: Any) -> None:
    message = "This model's maximum context length is 4096 tokens"
    calls = []

    def too_long(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, json={"object": "error", "message": message, "code": 400})

    replicas = Replicas({A: healthy(too_long), B: healthy(too_long)})
    engine = await started(replicas)
    with pytest.raises(InvalidRequestError, match="maximum context length") as error:
        await run(engine, request())
    assert error.value.status_code == 400
    assert len(calls) == 1  # the request's fault: not tried elsewhere


async def test_garbage_from_every_replica_is_a_502(started: Any) -> None:
    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/html"}, text="<html>hi</html>")

    engine = await started(Replicas({A: healthy(garbage), B: healthy(garbage)}))
    with pytest.raises(UpstreamError, match="did not answer with a stream") as error:
        await run(engine, request())
    assert error.value.status_code == 502


async def test_no_reachable_replica_is_a_503_with_retry_after(started: Any) -> None:
    engine = await started(Replicas({A: refuse, B: refuse}))
    assert {r.state for r in engine.replicas} == {"down"}
    with pytest.raises(NoReplicaError) as error:
        await run(engine, request())
    assert error.value.status_code == 503
    assert int(error.value.headers["Retry-After"]) >= 1


async def test_a_consumer_that_leaves_closes_the_upstream_response(started: Any) -> None:
    responses: list[httpx.Response] = []

    def endless(request: httpx.Request) -> httpx.Response:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield answer("tick").split(b"\n\n")[1] + b"\n\n"

        response = httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=chunks()
        )
        responses.append(response)
        return response

    engine = await started(Replicas({A: healthy(endless), B: refuse}))
    stream = engine.generate(request())
    assert (await anext(stream)).text == "tick"
    assert not responses[0].is_closed
    await stream.aclose()
    assert responses[0].is_closed  # on a real connection: closed, so the engine stops
    assert engine.stats.cancelled == 1
    assert all(r.in_flight == 0 for r in engine.replicas)


async def test_a_conversation_goes_back_to_its_replica(started: Any) -> None:
    replicas = Replicas({A: healthy(reply("a")), B: healthy(reply("b"))})
    engine = await started(replicas)
    first_turn = request("Describe the sunset", images=1)
    owner = "".join(c.text for c in await run(engine, first_turn))
    follow_up = GenerationRequest(
        "r2",
        (
            *first_turn.messages,
            Message("assistant", (TextPart(owner),)),
            Message("user", (TextPart("And?"),)),
        ),
    )
    same_image = GenerationRequest("r3", (Message("user", first_turn.messages[0].parts[1:]),))
    for _ in range(5):
        assert "".join(c.text for c in await run(engine, follow_up)) == owner
        assert "".join(c.text for c in await run(engine, same_image)) == owner
