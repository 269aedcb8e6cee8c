"""A scripted engine for API tests that are about something other than the model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import ClassVar

from fovea.engine.base import EngineState, require_text
from fovea.engine.types import (
    Capabilities,
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
