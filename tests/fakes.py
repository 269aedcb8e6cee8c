"""A scripted engine for API tests that are about something other than the model."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncGenerator, Sequence
from typing import ClassVar

import numpy as np

from fovea.engine.base import EngineState, LoadedModel, require_text
from fovea.engine.types import (
    Capabilities,
    Embeddings,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    ImagePart,
    Message,
    ReplicaInfo,
    TextPart,
    Token,
    Usage,
)
from fovea.errors import ContextLengthError
from fovea.settings import BranchConfig, DeploymentConfig

IMAGE_TOKENS = 16


class ScriptedEngine:
    """Answers ``echo: <last user text> [images: <digest prefixes>]`` word by word.

    ``delay_s`` slows each word so tests can disconnect or overlap requests mid-generation.
    """

    instances: ClassVar[list[ScriptedEngine]] = []

    def __init__(self, deployment: DeploymentConfig, files: BranchConfig) -> None:
        self.capabilities = Capabilities(
            vision=files.mmproj is not None,
            max_images=deployment.max_images,
            context_length=deployment.context_length,
        )
        self.name = deployment.name
        self.delay_s = 0.0
        self.load_gate: asyncio.Event | None = None
        self.requests: list[GenerationRequest] = []
        self.stats = EngineStats()
        self._state: EngineState = "stopped"
        ScriptedEngine.instances.append(self)

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def failure(self) -> str | None:
        return None

    @property
    def replicas(self) -> tuple[ReplicaInfo, ...]:
        return ()

    async def start(self) -> None:
        self._state = "loading"
        if self.load_gate is not None:
            await self.load_gate.wait()
        self._state = "ready"

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        self.requests.append(request)
        words = _answer(request).split(" ")
        limit = request.sampling.max_tokens or request.default_max_tokens
        n_images = sum(isinstance(p, ImagePart) for m in request.messages for p in m.parts)
        finished = False
        try:
            for index, word in enumerate(words[:limit]):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield GenerationChunk(word if index == 0 else " " + word)
            finished = True
            self.stats.completed += 1
            yield GenerationChunk(
                "",
                finish_reason="stop" if len(words) <= limit else "length",
                usage=Usage(
                    prompt_tokens=10 + n_images * IMAGE_TOKENS,
                    completion_tokens=min(len(words), limit),
                    image_tokens=n_images * IMAGE_TOKENS,
                ),
            )
        finally:
            if not finished:
                self.stats.cancelled += 1

    async def tokenize(self, prompt: tuple[Message, ...] | str) -> list[Token]:
        """A special BOS, then one token per word of the text; images refused as engines do."""
        if not isinstance(prompt, str):
            require_text(prompt)
            prompt = " ".join(p.text for m in prompt for p in m.parts if isinstance(p, TextPart))
        words = [Token(100 + i, word, False) for i, word in enumerate(prompt.split())]
        return [Token(2, "<bos>", True), *words]

    async def aclose(self) -> None:
        self._state = "stopped"


def _answer(request: GenerationRequest) -> str:
    last_user = next(m for m in reversed(request.messages) if m.role == "user")
    text = " ".join(p.text for p in last_user.parts if isinstance(p, TextPart)).strip()
    digests = [
        p.image.digest[:8] for m in request.messages for p in m.parts if isinstance(p, ImagePart)
    ]
    answer = f"echo: {text or '(no text)'}"
    return answer + (f" images: {','.join(digests)}" if digests else "")


class ScriptedEmbedder:
    """Embeds each input as a random unit vector seeded by its text (the same text, the same
    vector), in ``DIMENSIONS`` dimensions; a text takes a BOS token and one per word."""

    DIMENSIONS = 8
    instances: ClassVar[list[ScriptedEmbedder]] = []

    def __init__(self, deployment: DeploymentConfig, files: BranchConfig) -> None:
        self.name = deployment.name
        self.context_length = deployment.context_length
        self.stats = EngineStats()
        self.requests: list[tuple[str | Sequence[int], ...]] = []
        self._state: EngineState = "stopped"
        ScriptedEmbedder.instances.append(self)

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def failure(self) -> str | None:
        return None

    @property
    def replicas(self) -> tuple[ReplicaInfo, ...]:
        return ()

    @property
    def dimensions(self) -> int:
        return self.DIMENSIONS

    async def start(self) -> None:
        self._state = "ready"

    async def embed(self, inputs: Sequence[str | Sequence[int]]) -> Embeddings:
        self.requests.append(tuple(inputs))
        counts = tuple(1 + len(i.split()) if isinstance(i, str) else len(i) for i in inputs)
        for index, count in enumerate(counts):
            if count > self.context_length:
                raise ContextLengthError(
                    f"input[{index}] has {count} tokens, over {self.context_length}",
                    param="input",
                )
        vectors = np.array([_vector(str(i), self.DIMENSIONS) for i in inputs], dtype=np.float32)
        return Embeddings(vectors, counts)

    async def aclose(self) -> None:
        self._state = "stopped"


def scripted_engine(deployment: DeploymentConfig, files: BranchConfig) -> LoadedModel:
    """The scripted model a catalog entry asks for: an embedder or a chat engine."""
    if deployment.kind == "embedding":
        return ScriptedEmbedder(deployment, files)
    return ScriptedEngine(deployment, files)


def _vector(text: str, size: int) -> np.ndarray:
    vector = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(size)
    return vector / np.linalg.norm(vector)
