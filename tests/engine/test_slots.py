"""Several sequences decoded together on the real demo model: the answers are the ones each request
gets alone, slots free at once, conversations keep their caches, long prompts are chunked and
interactive requests go first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import numpy as np
import pytest

from fovea.engine.llamacpp import LlamaCppConfig, LlamaCppEngine
from fovea.engine.types import (
    GenerationChunk,
    GenerationRequest,
    ImageInput,
    ImagePart,
    Message,
    Priority,
    SamplingParams,
    TextPart,
)
from fovea.modelgen.demo import DemoModelFiles

GREEDY = SamplingParams(temperature=0.0, max_tokens=24)


def _image(seed: int) -> ImageInput:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    return ImageInput(width=120, height=90, rgb=pixels.tobytes(), digest=f"slots-{seed}")


def _request(
    name: str, *parts: TextPart | ImagePart, sampling: SamplingParams = GREEDY, **kw: object
) -> GenerationRequest:
    return GenerationRequest(name, (Message("user", parts),), sampling, **kw)  # type: ignore[arg-type]


async def _collect(engine: LlamaCppEngine, request: GenerationRequest) -> list[GenerationChunk]:
    return [chunk async for chunk in engine.generate(request)]


def _text(chunks: list[GenerationChunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


def _started(demo_model: DemoModelFiles, **options: object) -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(
        LlamaCppConfig(
            name="gemma-3-demo",
            model_path=demo_model.model,
            mmproj_path=demo_model.mmproj,
            context_length=2048,
            chat_template="gemma3",
            parallel=4,
            n_batch=256,
            **options,  # type: ignore[arg-type]
        )
    )
    loop = asyncio.new_event_loop()
    loop.run_until_complete(engine.start())
    engine.loop = loop  # type: ignore[attr-defined]
    yield engine
    loop.run_until_complete(engine.aclose())
    loop.close()


@pytest.fixture(scope="module")
def engine(demo_model: DemoModelFiles) -> Iterator[LlamaCppEngine]:
    yield from _started(demo_model)


@pytest.fixture(scope="module")
def uncached(demo_model: DemoModelFiles) -> Iterator[LlamaCppEngine]:
    # A prompt whose prefix comes from the cache is decoded in smaller pieces, and on CPU a
    # piece's size changes the arithmetic in the last bits: compare like with like.
    yield from _started(demo_model, prefix_cache=False)


def run(engine: LlamaCppEngine, coroutine: object) -> object:
    return engine.loop.run_until_complete(coroutine)  # type: ignore[attr-defined, arg-type]


def test_concurrent_requests_answer_as_they_do_alone(uncached: LlamaCppEngine) -> None:
    engine = uncached
    requests = [
        _request("a", TextPart("Describe this picture."), ImagePart(_image(1))),
        _request("b", TextPart("What colours are here?"), ImagePart(_image(2))),
        _request("c", TextPart("Two pictures:"), ImagePart(_image(3)), ImagePart(_image(4))),
        _request("d", TextPart("Tell me a story about a lighthouse keeper.")),
    ]
    alone = [_text(run(engine, _collect(engine, r))) for r in requests]  # type: ignore[arg-type]

    async def together() -> list[list[GenerationChunk]]:
        return list(await asyncio.gather(*(_collect(engine, r) for r in requests)))

    answers = run(engine, together())
    assert [_text(a) for a in answers] == alone  # type: ignore[attr-defined]
    assert all(len(text) > 0 for text in alone)
    assert engine.stats.tokens_per_s > 0  # /healthz's rate over the last ten seconds


def test_a_cancelled_stream_frees_its_slot_at_once(engine: LlamaCppEngine) -> None:
    long = SamplingParams(temperature=0.0, max_tokens=400, ignore_eos=True)
    finished: list[str] = []

    async def stream(name: str, sampling: SamplingParams) -> AsyncIterator[GenerationChunk]:
        async with aclosing(
            engine.generate(_request(name, TextPart(name), sampling=sampling))
        ) as s:
            async for chunk in s:
                yield chunk
        finished.append(name)

    async def scenario() -> None:
        streams = [stream(f"long{i}", long) for i in range(4)]
        for each in streams:
            await anext(each)  # all four slots are generating
        while [s.state for s in engine.stats.slots] != ["generating"] * 4:
            await asyncio.sleep(0.01)  # /healthz shows every slot busy
        waiting = asyncio.create_task(_collect(engine, _request("short", TextPart("Hi"))))
        await asyncio.sleep(0)
        await streams[0].aclose()  # the client leaves
        short = await waiting
        assert short[-1].finish_reason is not None
        # The short request had the freed slot while the other three still ran.
        assert finished == []
        for each in streams[1:]:
            await each.aclose()
        while engine.stats.cancelled < before + 4:
            await asyncio.sleep(0.01)
        while any(s.state != "idle" for s in engine.stats.slots):
            await asyncio.sleep(0.01)  # every slot free again

    before = engine.stats.cancelled
    run(engine, scenario())
    assert engine.stats.cancelled == before + 4


def test_interleaved_conversations_each_keep_their_cache(engine: LlamaCppEngine) -> None:
    def first(n: int) -> list[Message]:
        return [
            Message("system", (TextPart(f"You are assistant number {n}."),)),
            Message("user", (TextPart("What is in this picture?"), ImagePart(_image(10 + n)))),
        ]

    async def turn(messages: list[Message]) -> list[GenerationChunk]:
        return await _collect(engine, GenerationRequest("t", tuple(messages), GREEDY))

    async def scenario() -> list[GenerationChunk]:
        # Four conversations take turns: each second turn finds its first turn in a slot.
        answers = await asyncio.gather(*(turn(first(n)) for n in range(4)))
        seconds = [
            [
                *first(n),
                Message("assistant", (TextPart(_text(answers[n])),)),
                Message("user", (TextPart("And the colours?"),)),
            ]
            for n in range(4)
        ]
        lasts = []
        for messages in seconds:
            lasts.append((await turn(messages))[-1])
        return lasts

    lasts = run(engine, scenario())
    for last in lasts:  # type: ignore[attr-defined]
        assert last.usage is not None
        assert last.usage.cached_tokens > last.usage.image_tokens


def test_a_long_prompt_is_chunked_between_decode_steps(engine: LlamaCppEngine) -> None:
    events: list[str] = []
    long_text = " ".join(f"word{i}" for i in range(250))  # ~950 tokens: four chunks of 256

    async def running() -> None:
        sampling = SamplingParams(temperature=0.0, max_tokens=300, ignore_eos=True)
        async for _ in engine.generate(_request("running", TextPart("Count"), sampling=sampling)):
            events.append("token")

    async def long_prompt() -> None:
        async for _ in engine.generate(_request("long", TextPart(long_text))):
            events.append("long")
            break

    async def scenario() -> None:
        runner = asyncio.create_task(running())
        while "token" not in events:
            await asyncio.sleep(0.01)
        events.append("submitted")
        await long_prompt()
        runner.cancel()

    run(engine, scenario())
    between = events[events.index("submitted") : events.index("long")]
    # One decode step per prompt chunk, and each step also gave the running stream a token.
    assert between.count("token") >= 3


def test_batch_lines_leave_a_slot_for_interactive_requests(engine: LlamaCppEngine) -> None:
    order: list[str] = []
    finished: list[str] = []

    async def go(name: str, priority: Priority, tokens: int) -> None:
        sampling = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
        request = _request(name, TextPart(name), sampling=sampling, priority=priority)
        started = False
        async for _ in engine.generate(request):
            if not started:
                order.append(name)
                started = True
        finished.append(name)

    async def scenario() -> None:
        lines = [asyncio.create_task(go(f"line{i}", Priority.BATCH, 60)) for i in range(6)]
        # Three lines run; the other three wait although a slot is free.
        while sorted(s.priority or "free" for s in engine.stats.slots) != [
            "batch",
            "batch",
            "batch",
            "free",
        ]:
            await asyncio.sleep(0.01)
        await go("interactive", Priority.INTERACTIVE, 8)
        assert finished == ["interactive"]  # it ran beside the lines, not after them
        await asyncio.gather(*lines)

    run(engine, scenario())
    assert order.index("interactive") <= 3  # ahead of the three lines that waited
