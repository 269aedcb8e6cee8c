"""The embedded llama.cpp embedder: one worker thread owns the model; requests queue to it.

As in ``llamacpp.py``, the event loop never touches the model (with this build's OpenMP
runtime a model called from a second thread runs ~1.6x slower): ``embed`` posts a job to the
worker's queue and awaits its answer. The worker takes one request at a time and decodes its
inputs together, as many as the context holds at once (``llamacpp_embedding_model``); a caller
that leaves stops its request before the next round.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from fovea.engine.llamacpp_embedding_model import Cancelled, EmbeddingConfig, EmbeddingModel
from fovea.engine.llamacpp_slots import settle
from fovea.engine.model_thread import ModelThread
from fovea.engine.types import Embeddings, EngineStats
from fovea.errors import EngineError, FoveaError, ModelNotReadyError

log = logging.getLogger(__name__)

__all__ = ["EmbeddingConfig", "LlamaCppEmbedder"]


@dataclass
class _Job:
    inputs: tuple[str | Sequence[int], ...]
    loop: asyncio.AbstractEventLoop
    answer: asyncio.Future[Embeddings]
    cancelled: threading.Event = field(default_factory=threading.Event)


class LlamaCppEmbedder(ModelThread):
    """An embedding GGUF served by a dedicated thread."""

    _thread_name = "embed"

    def __init__(self, config: EmbeddingConfig) -> None:
        super().__init__(config.name)
        self.config = config
        self.context_length = config.context_length
        self.stats = EngineStats()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._dimensions = 0

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, inputs: Sequence[str | Sequence[int]]) -> Embeddings:
        self._require_ready()
        loop = asyncio.get_running_loop()
        job = _Job(tuple(inputs), loop, loop.create_future())
        self._jobs.put(job)
        self.stats.queued = self._jobs.qsize()
        try:
            return await job.answer
        finally:
            job.cancelled.set()  # a caller that left: the worker drops the rest of the job

    async def aclose(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)  # after every queued job: requests already accepted are answered
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        self._state = "stopped"

    # -- the worker thread ------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            model = EmbeddingModel(self.config)
        except Exception as exc:
            log.exception("loading embedding model %s failed", self.config.name)
            self._failure = f"{type(exc).__name__}: {exc}"
            self._state = "failed"
            error = ModelNotReadyError(f"Model {self.config.name} failed to load: {self._failure}")
            loop.call_soon_threadsafe(settle, self._loaded, error)
            return
        log.info(
            "embedding model %s: %d dimensions, %s pooling, %s attention",
            self.config.name,
            model.dimensions,
            model.pooling,
            "causal" if model.is_causal else "bidirectional",
        )
        self._dimensions = model.dimensions
        self._state = "ready"
        loop.call_soon_threadsafe(settle, self._loaded, None)
        try:
            while (job := self._jobs.get()) is not None:
                self._answer(model, job)
        finally:
            model.close()

    def _answer(self, model: EmbeddingModel, job: _Job) -> None:
        self.stats.queued = self._jobs.qsize()
        result: Embeddings | None = None
        error: BaseException | None = None
        try:
            tokens = model.tokens(job.inputs)
            vectors = model.embed(tokens, job.cancelled.is_set)
            result = Embeddings(vectors, tuple(len(t) for t in tokens))
        except Cancelled:
            self.stats.cancelled += 1
            return
        except FoveaError as exc:
            error = exc
        except Exception as exc:
            log.exception("embedding with %s failed", self.config.name)
            error = EngineError(f"The embedding model failed: {type(exc).__name__}")
        if result is not None:
            self.stats.completed += 1
            self.stats.prompt_tokens += result.prompt_tokens
        job.loop.call_soon_threadsafe(settle, job.answer, error, result)
