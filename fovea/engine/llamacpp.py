"""The embedded llama.cpp backend: one worker thread owns the model; requests queue to it.

The event loop never touches the model. ``generate`` posts a job to the worker's queue and reads
chunks back through an ``asyncio.Queue``; a consumer that goes away sets the job's cancel flag,
which the worker checks between tokens, so a disconnected client frees the model at once.
``tokenize`` posts a call the same way and awaits its answer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import AsyncGenerator, Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any

from fovea.engine.base import EngineState
from fovea.engine.llamacpp_runtime import LlamaCppConfig, LlamaModel
from fovea.engine.pan_and_scan import MIN_CROP_SIZE
from fovea.engine.types import (
    Capabilities,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    Message,
    Priority,
    ReplicaInfo,
    Token,
)
from fovea.errors import EngineError, FoveaError, ModelNotReadyError

log = logging.getLogger(__name__)

__all__ = ["LlamaCppConfig", "LlamaCppEngine"]


@dataclass
class _Job:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    output: asyncio.Queue[GenerationChunk | FoveaError] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: GenerationChunk | FoveaError) -> None:
        self.loop.call_soon_threadsafe(self.output.put_nowait, item)


@dataclass
class _Call:
    """Work on the model other than a generation (tokenizing), answered through a future."""

    work: Callable[[LlamaModel], Any]
    loop: asyncio.AbstractEventLoop
    answer: asyncio.Future[Any]
    cancelled: threading.Event = field(default_factory=threading.Event)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.loop.call_soon_threadsafe(_settle, self.answer, error, result)


class LlamaCppEngine:
    """A GGUF model (with an optional mmproj) served by a dedicated thread."""

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self.capabilities = Capabilities(
            vision=config.mmproj_path is not None,
            max_images=config.max_images if config.mmproj_path is not None else 0,
            context_length=config.context_length,
        )
        # (priority, arrival, job): interactive requests overtake queued batch lines.
        self._jobs: queue.PriorityQueue[tuple[int, int, _Job | _Call | None]] = (
            queue.PriorityQueue()
        )
        self._arrivals = itertools.count()
        self._state: EngineState = "stopped"
        self._failure: str | None = None
        self._loaded: asyncio.Future[None] | None = None
        self._thread: threading.Thread | None = None
        self.stats = EngineStats()

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def failure(self) -> str | None:
        return self._failure

    @property
    def replicas(self) -> tuple[ReplicaInfo, ...]:
        return ()

    async def start(self) -> None:
        if self._loaded is None:
            loop = asyncio.get_running_loop()
            self._loaded = loop.create_future()
            self._state = "loading"
            self._thread = threading.Thread(
                target=self._run, args=(loop,), name=f"llamacpp-{self.config.name}", daemon=True
            )
            self._thread.start()
        await asyncio.shield(self._loaded)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        self._require_ready()
        job = _Job(request, asyncio.get_running_loop())
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
        call = _Call(lambda model: model.tokenize(prompt), loop, loop.create_future())
        # Queued as interactive work: it waits for the generation in progress, not for batches.
        self._jobs.put((Priority.INTERACTIVE, next(self._arrivals), call))
        try:
            tokens: list[Token] = await call.answer
        finally:
            call.cancelled.set()
        return tokens

    def _require_ready(self) -> None:
        if self._state != "ready":
            raise ModelNotReadyError(
                f"Model {self.config.name} is not ready ({self._state})",
                headers={"Retry-After": "5"},
            )

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
            loop.call_soon_threadsafe(_settle, self._loaded, error)
            return
        if model.image_size:
            self.capabilities = replace(
                self.capabilities,
                image_size=model.image_size,
                high_detail_min_side=max(model.image_size, MIN_CROP_SIZE),
            )
        self._state = "ready"
        loop.call_soon_threadsafe(_settle, self._loaded, None)
        try:
            self._serve(model)
        finally:
            model.close()

    def _serve(self, model: LlamaModel) -> None:
        while (job := self._jobs.get()[2]) is not None:
            if isinstance(job, _Call):
                self._answer(model, job)
                continue
            if job.cancelled.is_set():
                self.stats.cancelled += 1
                continue
            try:
                finished = False
                with closing(model.generate(job.request, job.cancelled)) as chunks:
                    for chunk in chunks:
                        if job.cancelled.is_set():
                            break
                        job.emit(chunk)
                        finished = chunk.finish_reason is not None
                if finished:
                    self.stats.completed += 1
                else:
                    self.stats.cancelled += 1
            except FoveaError as exc:
                job.emit(exc)
            except Exception as exc:
                log.exception("generation %s failed", job.request.request_id)
                job.emit(EngineError(f"The engine failed on this request: {exc}"))

    @staticmethod
    def _answer(model: LlamaModel, call: _Call) -> None:
        if call.cancelled.is_set():
            return
        try:
            call.settle(call.work(model))
        except FoveaError as exc:
            call.settle(error=exc)
        except Exception as exc:
            log.exception("a call on model %s failed", model.config.name)
            call.settle(error=EngineError(f"The engine failed on this request: {exc}"))


def _settle(
    future: asyncio.Future[Any] | None, error: BaseException | None, result: Any = None
) -> None:
    if future is None or future.done():  # already done: cancelled by a caller that left
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
