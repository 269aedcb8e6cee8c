"""The one small interface every engine backend implements."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Literal, Protocol

from fovea.engine.types import (
    Capabilities,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    ReplicaInfo,
)

EngineState = Literal["stopped", "loading", "ready", "failed"]


class Engine(Protocol):
    """A loaded model. Streaming is the primitive; non-streaming callers collect the chunks.

    ``generate`` raises ``fovea.errors.FoveaError`` subclasses for requests the model cannot
    take (prompt over context, unsupported schema) before its first chunk; a consumer that
    stops iterating (a client that disconnected) frees the model for the next request.
    """

    capabilities: Capabilities
    stats: EngineStats

    @property
    def state(self) -> EngineState: ...

    @property
    def failure(self) -> str | None: ...

    @property
    def replicas(self) -> tuple[ReplicaInfo, ...]:
        """The remote replicas behind this engine (none for an in-process model)."""

    async def start(self) -> None:
        """Load the model; returns when it is ready, raises ModelNotReadyError if it failed."""

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]: ...

    async def aclose(self) -> None: ...
