"""The llama.cpp engine on the real demo model (Gemma 3 270M + a tiny random projector)."""

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
    ResponseFormat,
    SamplingParams,
    TextPart,
)
from fovea.errors import ContextLengthError, InvalidRequestError
from fovea.modelgen.demo import DemoModelFiles

T = TypeVar("T")
GREEDY = SamplingParams(temperature=0.0, max_tokens=16)


def _image(seed: int) -> ImageInput:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    return ImageInput(width=160, height=120, rgb=pixels.tobytes(), digest=str(seed))


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


def test_output_depends_on_the_image(harness: Harness) -> None:
    question = TextPart("What is in this picture?")
    first = harness.text(_ask(question, ImagePart(_image(1))))
    again = harness.text(_ask(question, ImagePart(_image(1))))
    other = harness.text(_ask(question, ImagePart(_image(2))))
    assert first == again  # greedy decoding is deterministic
    assert first != other  # a different image changes the answer


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
