"""The llama.cpp engine on the real demo model (Gemma 3 270M + its small trained vision tower)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

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
    ResponseFormat,
    SamplingParams,
    TextPart,
)
from fovea.errors import ContextLengthError, InvalidRequestError
from fovea.modelgen.demo import DemoModelFiles
from fovea.modelgen.vision.pictures import Picture

T = TypeVar("T")
GREEDY = SamplingParams(temperature=0.0, max_tokens=16)


def _image(seed: int) -> ImageInput:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    return ImageInput(width=160, height=120, rgb=pixels.tobytes(), digest=str(seed))


def _scene(colour: str, shape: str) -> ImageInput:
    """A picture inside the tower's closed world, which the demo names."""
    picture = Picture(colour, shape, "grey", (1, 1), 0.36, (0.0, 0.0), "", True).image
    return ImageInput(picture.width, picture.height, picture.tobytes(), f"{colour}-{shape}")


def _ask(
    *parts: TextPart | ImagePart, sampling: SamplingParams = GREEDY, **kw: object
) -> GenerationRequest:
    return GenerationRequest("t", (Message("user", parts),), sampling, **kw)  # type: ignore[arg-type]


async def _text(engine: LlamaCppEngine, request: GenerationRequest) -> str:
    return "".join([chunk.text async for chunk in engine.generate(request)])


@dataclass
class Harness:
    """The engine with the one event loop its tests run on."""

    engine: LlamaCppEngine
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def text(self, request: GenerationRequest) -> str:
        return self.run(_text(self.engine, request))


@pytest.fixture(scope="module")
def harness(demo_model: DemoModelFiles) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    config = LlamaCppConfig(
        name="gemma-3-demo",
        model_path=demo_model.model,
        mmproj_path=demo_model.mmproj,
        context_length=1024,
        chat_template="gemma3",
    )
    engine = LlamaCppEngine(config)
    loop.run_until_complete(engine.start())
    yield Harness(engine, loop)
    loop.run_until_complete(engine.aclose())
    loop.close()


def test_the_answer_names_what_is_in_the_image(harness: Harness) -> None:
    question = TextPart("What is in this picture?")
    first = harness.text(_ask(question, ImagePart(_scene("red", "circle"))))
    again = harness.text(_ask(question, ImagePart(_scene("red", "circle"))))
    other = harness.text(_ask(question, ImagePart(_scene("blue", "star"))))
    assert first == again == "A red circle."  # greedy decoding is deterministic
    assert other == "A blue star."


def test_usage_counts_text_and_image_tokens(harness: Harness) -> None:
    async def last_chunk() -> GenerationChunk:
        request = _ask(TextPart("two"), ImagePart(_image(1)), ImagePart(_image(2)))
        return [c async for c in harness.engine.generate(request)][-1]

    usage = harness.run(last_chunk()).usage
    assert usage is not None
    assert usage.image_tokens == 32
    assert usage.prompt_tokens > 32
    assert 1 <= usage.completion_tokens <= 16


def test_stop_sequence_cuts_the_text(harness: Harness) -> None:
    prompt = TextPart("Count: 1, 2, 3,")
    full = harness.text(_ask(prompt, sampling=SamplingParams(temperature=0.0, max_tokens=24)))
    assert len(full) > 4
    stop = full[2:4]
    stopped = SamplingParams(temperature=0.0, max_tokens=24, stop=(stop,))
    cut = harness.text(_ask(prompt, sampling=stopped))
    assert cut == full[: full.index(stop)]


def test_json_object_mode_returns_json(harness: Harness) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    text = harness.text(
        _ask(
            TextPart("Give a JSON object with a name"),
            sampling=SamplingParams(temperature=0.0, max_tokens=48),
            response_format=ResponseFormat(kind="json_schema", schema=schema),
        )
    )
    assert isinstance(json.loads(text)["name"], str)


def test_prompt_over_context_is_refused(harness: Harness) -> None:
    with pytest.raises(ContextLengthError, match="maximum context length is 1024"):
        harness.text(_ask(TextPart("word " * 2000)))
    with pytest.raises(ContextLengthError):
        harness.text(_ask(TextPart("hi"), sampling=SamplingParams(max_tokens=5000)))


def test_unsupported_schema_is_a_400(harness: Harness) -> None:
    bad = ResponseFormat(
        kind="json_schema", schema={"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}}
    )
    with pytest.raises(InvalidRequestError):
        harness.text(_ask(TextPart("x"), response_format=bad))


def test_a_consumer_that_leaves_frees_the_model(harness: Harness) -> None:
    async def leave_early() -> None:
        stream = harness.engine.generate(
            _ask(
                TextPart("Tell a long story"),
                sampling=SamplingParams(temperature=0.0, max_tokens=400),
            )
        )
        await anext(stream)
        await stream.aclose()

    before = harness.engine.stats.cancelled
    harness.run(leave_early())
    answer = harness.text(_ask(TextPart("hello")))
    assert answer  # the next request is served
    assert harness.engine.stats.cancelled == before + 1


def test_text_only_model_refuses_images(demo_model: DemoModelFiles) -> None:
    async def scenario() -> None:
        engine = LlamaCppEngine(
            LlamaCppConfig(
                name="text",
                model_path=demo_model.model,
                mmproj_path=None,
                context_length=512,
                chat_template="gemma3",
            )
        )
        await engine.start()
        try:
            assert engine.capabilities.vision is False
            assert await _text(
                engine,
                _ask(TextPart("Hello"), sampling=SamplingParams(temperature=0.0, max_tokens=4)),
            )
            with pytest.raises(InvalidRequestError, match="does not accept images"):
                await _text(engine, _ask(TextPart("x"), ImagePart(_image(1))))
        finally:
            await engine.aclose()

    asyncio.run(scenario())


def _conversation(harness: Harness, system: str) -> tuple[list[Message], str]:
    turn1 = [
        Message("system", (TextPart(system),)),
        Message("user", (TextPart("What is in this picture?"), ImagePart(_image(7)))),
    ]
    return turn1, harness.text(GenerationRequest("t1", tuple(turn1), GREEDY))


def _turn2(turn1: list[Message], answer: str) -> GenerationRequest:
    messages = [
        *turn1,
        Message("assistant", (TextPart(answer),)),
        Message("user", (TextPart("And what colors does it have?"),)),
    ]
    return GenerationRequest("t2", tuple(messages), GREEDY)


def _last(harness: Harness, request: GenerationRequest) -> tuple[str, GenerationChunk]:
    async def collect() -> list[GenerationChunk]:
        return [c async for c in harness.engine.generate(request)]

    chunks = harness.run(collect())
    return "".join(c.text for c in chunks), chunks[-1]


def test_turn_two_reuses_turn_one_and_answers_the_same(
    harness: Harness, demo_model: DemoModelFiles
) -> None:
    turn1, answer = _conversation(harness, "You are brief.")
    text, last = _last(harness, _turn2(turn1, answer))
    assert last.usage is not None
    # Everything of turn 1 up to its answer (system, question, the image) came from the cache.
    assert last.usage.cached_tokens > last.usage.image_tokens
    assert last.usage.cached_tokens < last.usage.prompt_tokens

    async def without_cache() -> str:
        config = harness.engine.config
        plain = LlamaCppEngine(
            LlamaCppConfig(
                name="no-cache",
                model_path=config.model_path,
                mmproj_path=config.mmproj_path,
                context_length=config.context_length,
                chat_template="gemma3",
                image_cache_bytes=0,
                prefix_cache=False,
            )
        )
        await plain.start()
        try:
            chunks = [c async for c in plain.generate(_turn2(turn1, answer))]
            assert chunks[-1].usage is not None and chunks[-1].usage.cached_tokens == 0
            return "".join(c.text for c in chunks)
        finally:
            await plain.aclose()

    assert asyncio.run(without_cache()) == text  # greedy: the cache changes nothing


def test_a_repeated_image_skips_the_encoder(harness: Harness) -> None:
    stats = harness.engine.stats
    _conversation(harness, "First system prompt.")
    hits, misses = stats.image_cache_hits, stats.image_cache_misses
    # A different system prompt: nothing before the image matches, yet the image is known.
    _conversation(harness, "Another system prompt entirely.")
    assert stats.image_cache_hits == hits + 1
    assert stats.image_cache_misses == misses
    assert stats.image_cache_entries >= 1
    assert stats.image_cache_bytes > 0


def test_high_detail_costs_a_view_per_crop(harness: Harness) -> None:
    pixels = np.random.default_rng(5).integers(0, 256, size=(300, 900, 3), dtype=np.uint8)

    def image(detail: str) -> ImagePart:
        return ImagePart(ImageInput(900, 300, pixels.tobytes(), "wide", detail=detail))

    _, low = _last(harness, _ask(TextPart("see"), image("low")))
    _, high = _last(harness, _ask(TextPart("see"), image("high")))
    assert low.usage is not None and high.usage is not None
    assert low.usage.image_tokens == 16
    assert high.usage.image_tokens == 16 * 4  # the original and three crops
    assert harness.engine.capabilities.image_size == 224


def test_interactive_requests_overtake_queued_batch_lines(harness: Harness) -> None:
    finished: list[str] = []

    async def run(name: str, priority: Priority, tokens: int) -> None:
        sampling = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
        request = GenerationRequest(
            name, (Message("user", (TextPart("Count:"),)),), sampling, priority=priority
        )
        async for _ in harness.engine.generate(request):
            pass
        finished.append(name)

    async def scenario() -> None:
        busy = asyncio.create_task(run("busy", Priority.INTERACTIVE, 60))
        while not any(slot.state == "generating" for slot in harness.engine.stats.slots):
            await asyncio.sleep(0.01)  # the worker has picked up "busy"
        batch = asyncio.create_task(run("batch", Priority.BATCH, 4))
        await asyncio.sleep(0)  # one turn of the loop: "batch" is queued
        interactive = asyncio.create_task(run("interactive", Priority.INTERACTIVE, 4))
        await asyncio.gather(busy, batch, interactive)

    harness.run(scenario())
    assert finished == ["busy", "interactive", "batch"]
