"""The embedded llama.cpp backend: one worker thread owns the model; requests queue to it.

The event loop never touches the model. ``generate`` posts a job to the worker's queue and reads
chunks back through an ``asyncio.Queue``; the worker's slot scheduler (``llamacpp_slots``) decodes
up to ``parallel`` requests together. A consumer that goes away sets the job's cancel flag, which
the scheduler checks every step, so a disconnected client frees its slot at once. ``tokenize``
posts a call the same way and awaits its answer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
from collections.abc import AsyncGenerator
from dataclasses import replace

from fovea.engine.llamacpp_runtime import LlamaCppConfig, LlamaModel
from fovea.engine.llamacpp_slots import Call, Job, SlotScheduler, Work, settle
from fovea.engine.model_thread import ModelThread
from fovea.engine.pan_and_scan import MIN_CROP_SIZE
from fovea.engine.tools import generate_with_tools
from fovea.engine.types import (
    Capabilities,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    Message,
    Priority,
    Token,
)
from fovea.errors import FoveaError, ModelNotReadyError

log = logging.getLogger(__name__)

__all__ = ["LlamaCppConfig", "LlamaCppEngine"]


class LlamaCppEngine(ModelThread):
    """A GGUF model (with an optional mmproj) served by a dedicated thread."""

    _thread_name = "llamacpp"

    def __init__(self, config: LlamaCppConfig) -> None:
        super().__init__(config.name)
        self.config = config
        self.capabilities = Capabilities(
            vision=config.mmproj_path is not None,
            max_images=config.max_images if config.mmproj_path is not None else 0,
            context_length=config.context_length,
            tools=True,  # the generic tool prompt and grammar (fovea.engine.tools)
        )
        # (priority, arrival, work): interactive requests overtake queued batch lines.
        self._jobs: queue.PriorityQueue[tuple[int, int, Work]] = queue.PriorityQueue()
        self._arrivals = itertools.count()
        self.stats = EngineStats()

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        return generate_with_tools(self._generate, request)

    async def _generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        self._require_ready()
        job = Job(request, asyncio.get_running_loop())
        self._jobs.put((request.priority, next(self._arrivals), job))
        try:
            while True:
                item = await job.output.get()
                if isinstance(item, FoveaError):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            job.cancelled.set()

    async def tokenize(self, prompt: tuple[Message, ...] | str) -> list[Token]:
        self._require_ready()
        loop = asyncio.get_running_loop()
        call = Call(lambda model: model.tokenize(prompt), loop, loop.create_future())
        # Answered between two decode steps, ahead of every queued generation.
        self._jobs.put((Priority.INTERACTIVE, next(self._arrivals), call))
        try:
            tokens: list[Token] = await call.answer
        finally:
            call.cancelled.set()
        return tokens

    async def aclose(self) -> None:
        if self._thread is None:
            return
        # After every queued job: requests already accepted are still answered.
        self._jobs.put((1 << 30, next(self._arrivals), None))
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        self._state = "stopped"

    # -- the worker thread ------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            model = LlamaModel(self.config, self.stats)
        except Exception as exc:
            log.exception("loading model %s failed", self.config.name)
            self._failure = f"{type(exc).__name__}: {exc}"
            self._state = "failed"
            error = ModelNotReadyError(f"Model {self.config.name} failed to load: {self._failure}")
            loop.call_soon_threadsafe(settle, self._loaded, error)
            return
        if model.image_size:
            self.capabilities = replace(
                self.capabilities,
                image_size=model.image_size,
                high_detail_min_side=max(model.image_size, MIN_CROP_SIZE),
            )
        self._state = "ready"
        loop.call_soon_threadsafe(settle, self._loaded, None)
        try:
            SlotScheduler(model, self.stats).run(self._take)
        finally:
            model.close()

    def _take(self, block: bool) -> tuple[int, int, Work] | None:
        try:
            return self._jobs.get(block=block)
        except queue.Empty:
            return None
