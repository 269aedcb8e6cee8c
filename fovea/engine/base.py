"""The small interfaces engine backends implement: ``Engine`` generates (chat), ``Embedder``
embeds; both are a ``LoadedModel`` to the registry, health checks and metrics."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Literal, Protocol

from fovea.engine.types import (
    Capabilities,
    Embeddings,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    ImagePart,
    Message,
    ReplicaInfo,
    Token,
)
from fovea.errors import InvalidRequestError

EngineState = Literal["stopped", "loading", "ready", "failed"]


class LoadedModel(Protocol):
    """What the registry, health checks and metrics need of any model they hold."""

    stats: EngineStats

    @property
    def state(self) -> EngineState: ...

    @property
    def failure(self) -> str | None: ...

    @property
    def replicas(self) -> tuple[ReplicaInfo, ...]: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Embedder(LoadedModel, Protocol):
    """A loaded embedding model.

    ``embed`` takes texts (or token ids, fed as given) and returns one L2-normalised vector per
    input, in order, with each input's token count. It raises ``ContextLengthError`` for an
    input over ``context_length`` tokens, and ``InvalidRequestError`` for a token id outside the
    vocabulary, before any work. ``dimensions`` is the vectors' size (0 until loaded).
    """

    context_length: int

    @property
    def dimensions(self) -> int: ...

    async def embed(self, inputs: Sequence[str | Sequence[int]]) -> Embeddings: ...


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

    async def tokenize(self, prompt: tuple[Message, ...] | str) -> list[Token]:
        """The tokens the model is fed for ``prompt``: messages rendered with the chat template
        exactly as ``generate`` renders them, a ``str`` as it is. Text only: messages with
        images raise ``InvalidRequestError`` (see ``require_text``)."""

    async def aclose(self) -> None: ...


def require_text(messages: tuple[Message, ...]) -> None:
    """Refuses images in a prompt to tokenize: an image's positions are encoder output, not
    tokens, and a completion's usage already counts them (``image_tokens``)."""
    if any(isinstance(part, ImagePart) for message in messages for part in message.parts):
        raise InvalidRequestError(
            "tokenize counts text only; send the messages without images (a completion's "
            "usage.prompt_tokens_details.image_tokens counts what images take)",
            param="messages",
        )
