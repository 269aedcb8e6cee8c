"""UpstreamEngine against scripted replicas on loopback: routing, retries before the first
byte, errors after it, images at the edge, usage, and closing what a consumer leaves."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
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
from tests.engine.upstream.scripted import (
    ScriptedReplica,
    answer_events,
    reply,
    sleep_forever,
    status,
)

pytestmark = pytest.mark.anyio


def request(text: str = "hello", *, streamed: bool = True, images: int = 0) -> GenerationRequest:
    parts: list[TextPart | ImagePart] = [TextPart(text)]
    for index in range(images):
        rgb = bytes([40 * index, 90, 200]) * (300 * 224)
        parts.append(ImagePart(ImageInput(300, 224, rgb, digest=f"img{index}")))
    return GenerationRequest(
        request_id="r1",
        messages=(Message("user", tuple(parts)),),
        sampling=SamplingParams(temperature=0.0, max_tokens=5),
        streamed=streamed,
    )


async def run(engine: UpstreamEngine, req: GenerationRequest) -> list[GenerationChunk]:
    return [chunk async for chunk in engine.generate(req)]


def text_of(chunks: list[GenerationChunk]) -> str:
    return "".join(c.text for c in chunks)


Start = Callable[..., Any]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Starts scripted replicas (those given as ``running``) and an engine over all of them."""
    engines: list[UpstreamEngine] = []
    replicas: list[ScriptedReplica] = []

    async def make(
        *scripted: ScriptedReplica, stopped: tuple[ScriptedReplica, ...] = (), **options: Any
    ) -> UpstreamEngine:
        for replica in scripted:
            if replica not in stopped:
                replicas.append(await replica.start())
        specs = tuple(
            ReplicaSpec(url=r.url, model=f"model-{i}", api_key="key-0" if i == 0 else None)
            for i, r in enumerate(scripted)
        )
        defaults: dict[str, Any] = {
            "image_size": 224,
            "image_tokens": 16,
            "probe_interval_s": 3600,
            "cooldown_s": 30,
        }
        config = UpstreamConfig(name="gemma", replicas=specs, **{**defaults, **options})
        engine = UpstreamEngine(config)
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.aclose()
    for replica in replicas:
        await replica.stop()


async def test_streams_text_with_usage_in_foveas_shape(start: Start) -> None:
    a = ScriptedReplica(reply("Hel", "lo"))
    engine = await start(a)
    chunks = await run(engine, request(images=2))
    assert [c.text for c in chunks] == ["Hel", "lo", ""]
    assert chunks[-1].finish_reason == "stop"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.image_tokens) == (7, 2, 32)
    assert (engine.stats.completed, engine.stats.prompt_tokens) == (1, 7)  # shown in /healthz
    sent = a.bodies[0]
    assert sent["model"] == "model-0"  # the name the replica expects
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert a.headers[0]["Authorization"] == "Bearer key-0"


async def test_a_collected_request_asks_for_one_json_answer(start: Start) -> None:
    a = ScriptedReplica(reply("Hel", "lo"))
    engine = await start(a)
    chunks = await run(engine, request(streamed=False, images=1))
    assert [(c.text, c.finish_reason) for c in chunks] == [("Hello", "stop")]
    assert chunks[0].usage is not None
    assert (chunks[0].usage.prompt_tokens, chunks[0].usage.image_tokens) == (7, 16)
    assert a.bodies[0]["stream"] is False and "stream_options" not in a.bodies[0]
    # The chat service stops reading at the finish reason: it still counts as served.
    async for _ in engine.generate(request(streamed=False)):
        break
    assert (engine.stats.completed, engine.stats.cancelled) == (2, 0)
    assert [r.served for r in engine.replicas] == [2]


async def test_images_are_forwarded_as_jpeg_at_the_decoded_size(start: Start) -> None:
    a = ScriptedReplica(reply("ok"))
    engine = await start(a)
    await run(engine, request(images=1))
    content = a.bodies[0]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "hello"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert (image.format, image.size) == ("JPEG", (300, 224))


async def test_high_detail_sends_gemmas_pan_and_scan_crops(start: Start) -> None:
    a = ScriptedReplica(reply("ok"))
    engine = await start(a, image_size=256)
    wide = ImageInput(1024, 256, bytes(1024 * 256 * 3), digest="wide", detail="high")
    chunks = await run(engine, GenerationRequest("r", (Message("user", (ImagePart(wide),)),)))
    content = a.bodies[0]["messages"][0]["content"]
    images = [p for p in content if p["type"] == "image_url"]
    texts = "".join(p["text"] for p in content if p["type"] == "text")
    assert len(images) == 5  # the whole image and four crops
    assert "here are some crops" in texts
    assert chunks[-1].usage is not None and chunks[-1].usage.image_tokens == 5 * 16


async def test_a_5xx_before_the_first_byte_goes_to_another_replica(start: Start) -> None:
    a = ScriptedReplica(status(500, {"error": {"message": "CUDA out of memory"}}))
    b = ScriptedReplica(reply("from b"))
    engine = await start(a, b, affinity=False)
    first, _ = engine.replicas
    # Ties go to a random replica: keep asking until "a" was tried its max_failures (3) times
    # (fewer than 3 tries in 50 would have odds of ~1e-11). Every answer comes from "b".
    for _ in range(50):
        assert text_of(await run(engine, request())) == "from b"
        first, _ = engine.replicas
        if first.state == "down":
            break
    assert a.bodies  # it was tried...
    assert first.state == "down"  # ...and ejected after max_failures (3) in a row
    assert "CUDA out of memory" in (first.last_error or "")


async def test_a_refused_connection_ejects_the_replica_at_once(start: Start) -> None:
    a, b = ScriptedReplica(reply("a")), ScriptedReplica(reply("b"))
    engine = await start(a, b, affinity=False)
    await b.stop()  # passed its probe, then the process died
    for _ in range(40):  # until the balancer's random pick has tried "b"
        assert text_of(await run(engine, request())) == "a"
        if engine.replicas[1].state == "down":
            break
    assert [r.state for r in engine.replicas] == ["up", "down"]
    assert "unreachable" in (engine.replicas[1].last_error or "")


async def test_a_break_after_the_first_byte_ends_the_stream_with_an_error(start: Start) -> None:
    a = ScriptedReplica(reply("one", "two", "three", fail_after=2))
    b = ScriptedReplica(reply("never"))
    engine = await start(a, b)
    engine._balancer.replicas = engine._balancer.replicas[:1]  # A is picked first
    received = []
    with pytest.raises(UpstreamError, match="broke"):
        async for chunk in engine.generate(request()):
            received.append(chunk.text)
    assert received == ["one"]  # no silent end...
    assert b.bodies == []  # ...and no second answer spliced after the first


async def test_a_collected_request_is_retried_whole_after_a_break(start: Start) -> None:
    a = ScriptedReplica(reply("half", "way", fail_after=2))
    b = ScriptedReplica(reply("whole ", "answer"))
    engine = await start(a, b, affinity=False, max_failures=100)
    # Ties go to a random replica: ask until "a" was tried (none in 40 has odds of ~1e-12).
    for _ in range(40):
        chunks = await run(engine, request(streamed=False))
        assert text_of(chunks) == "whole answer"
        assert chunks[-1].finish_reason == "stop"
        if a.bodies:
            break
    assert a.bodies


async def test_an_upstream_400_keeps_its_status_and_message(start: Start) -> None:
    message = "This model's maximum context length is 4096 tokens"
    a = ScriptedReplica(status(400, {"object": "error", "message": message, "code": 400}))
    b = ScriptedReplica(status(400, {"object": "error", "message": message, "code": 400}))
    engine = await start(a, b)
    with pytest.raises(InvalidRequestError, match="maximum context length") as error:
        await run(engine, request())
    assert error.value.status_code == 400
    assert len(a.bodies) + len(b.bodies) == 1  # the request's fault: not tried elsewhere
    assert {r.state for r in engine.replicas} == {"up"}


async def test_garbage_from_every_replica_is_a_502(start: Start) -> None:
    async def html(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(text="<html>hi</html>", content_type="text/html")

    engine = await start(ScriptedReplica(html), ScriptedReplica(html))
    with pytest.raises(UpstreamError, match="did not answer with a stream") as error:
        await run(engine, request())
    assert error.value.status_code == 502
    with pytest.raises(UpstreamError, match="not a chat completion"):
        await run(engine, request(streamed=False))


async def test_no_reachable_replica_is_a_503_with_retry_after(start: Start) -> None:
    a, b = ScriptedReplica(), ScriptedReplica()
    engine = await start(a, b, stopped=(a, b))
    assert {r.state for r in engine.replicas} == {"down"}
    with pytest.raises(NoReplicaError) as error:
        await run(engine, request())
    assert error.value.status_code == 503
    assert int(error.value.headers["Retry-After"]) >= 1


def endless_replica(closed: asyncio.Event) -> ScriptedReplica:
    async def endless(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        tick = answer_events("tick")[1]
        try:
            while True:
                await response.write(tick)
                await asyncio.sleep(0.01)
        except (ConnectionResetError, asyncio.CancelledError):
            closed.set()
            raise

    return ScriptedReplica(endless)


async def test_a_consumer_that_leaves_closes_the_upstream_connection(start: Start) -> None:
    closed = asyncio.Event()
    engine = await start(endless_replica(closed))
    stream = engine.generate(request())
    assert (await anext(stream)).text == "tick"
    await stream.aclose()
    await asyncio.wait_for(closed.wait(), 30)  # the replica saw its client go
    assert engine.stats.cancelled == 1
    assert [r.in_flight for r in engine.replicas] == [0]


async def test_a_cancelled_request_closes_the_upstream_connection(start: Start) -> None:
    # What a client disconnect does to a non-streaming request: its task is cancelled.
    closed = asyncio.Event()
    engine = await start(endless_replica(closed))
    task = asyncio.create_task(run(engine, request()))
    while not engine.replicas[0].in_flight:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait_for(closed.wait(), 30)
    assert engine.stats.cancelled == 1
    assert [r.in_flight for r in engine.replicas] == [0]


async def test_a_slow_replica_is_busy_not_down(start: Start) -> None:
    a = ScriptedReplica(reply("ok"))
    engine = await start(a, probe_timeout_s=0.2)
    a.health = sleep_forever  # alive, answering nothing in time
    prober_replica = engine._replicas[0]
    from fovea.engine.upstream.probes import Prober

    assert engine._session is not None
    await Prober(engine._session, [prober_replica], timeout_s=0.2, read_metrics=False).probe_all()
    (info,) = engine.replicas
    assert (info.state, info.busy) == ("up", True)


async def test_a_conversation_goes_back_to_its_replica(start: Start) -> None:
    engine = await start(ScriptedReplica(reply("a")), ScriptedReplica(reply("b")))
    first_turn = request("Describe the sunset", images=1)
    owner = text_of(await run(engine, first_turn))
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
        assert text_of(await run(engine, follow_up)) == owner
        assert text_of(await run(engine, same_image)) == owner


async def test_a_replica_quoting_a_request_that_must_not_be_logged_is_not_quoted(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica's error may quote the prompt; for a client that sent
    ``x-data-logging-enabled: false`` neither the log nor /healthz repeats it."""
    secret = "SECRET-PROMPT-TEXT"
    a = ScriptedReplica(status(500, {"error": {"message": f"cannot handle '{secret}'"}}))
    engine = await start(a)
    marked = dataclasses.replace(request(secret, streamed=False), data_logging=False)
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamError):
        await run(engine, marked)
    assert a.bodies
    assert secret not in caplog.text
    assert "withheld" in caplog.text
    assert secret not in (engine.replicas[0].last_error or "")
    caplog.clear()
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamError):
        await run(engine, request(secret, streamed=False))  # an ordinary request is quoted
    assert secret in caplog.text
