"""Slots: the sequences the llama.cpp model decodes together, and the loop that schedules them.

Each step, on the model's one worker thread: requests waiting are admitted into free slots
(interactive before batch, then arrival order; the slot whose KV cache shares the longest prefix
with the prompt, else the one idle longest); prompts advance by at most ``n_batch`` text tokens
and one image in all; then one ``llama_decode`` takes the next token of every generating slot,
and each slot samples its own. A slot is freed the step its request finishes or is cancelled,
and keeps what its cache holds for the next request that starts the same way.

Prompt chunks are decoded apart from the generating slots' tokens, and those together only: a
sequence's arithmetic then does not depend on the company it keeps (see ``LlamaModel``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import llama_cpp.mtmd_cpp as mtmd

from fovea.engine.llamacpp_runtime import LlamaModel
from fovea.engine.llamacpp_sampling import Sampler
from fovea.engine.mtmd_prompt import Prompt, chunk_tokens
from fovea.engine.prefix_cache import KvPrefix
from fovea.engine.text import StopFilter, TokenTextDecoder
from fovea.engine.types import (
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    Priority,
    SlotInfo,
    Usage,
)
from fovea.errors import EngineError, FoveaError

log = logging.getLogger(__name__)


@dataclass
class Job:
    """A generation request on its way through the worker; chunks go back to its loop."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    output: asyncio.Queue[GenerationChunk | FoveaError] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: GenerationChunk | FoveaError) -> None:
        self.loop.call_soon_threadsafe(self.output.put_nowait, item)


@dataclass
class Call:
    """Work on the model other than a generation (tokenizing), answered through a future."""

    work: Callable[[LlamaModel], Any]
    loop: asyncio.AbstractEventLoop
    answer: asyncio.Future[Any]
    cancelled: threading.Event = field(default_factory=threading.Event)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.loop.call_soon_threadsafe(settle, self.answer, error, result)


class SlotState(StrEnum):
    IDLE = "idle"
    PROMPT = "prompt"
    GENERATING = "generating"


@dataclass
class _Run:
    """One request in a slot: its prompt's progress, then its sampling."""

    job: Job
    prompt: Prompt
    max_tokens: int
    sampler: Sampler
    cached: int
    arrival: int
    segment: int = 0  # the next prompt segment to decode
    decoder: TokenTextDecoder = field(default_factory=TokenTextDecoder)
    stops: StopFilter = field(default_factory=lambda: StopFilter(()))
    next_token: int | None = None  # sampled, not yet decoded
    generated: int = 0


@dataclass
class Slot:
    seq: int
    kv: KvPrefix = field(default_factory=KvPrefix)
    state: SlotState = SlotState.IDLE
    run: _Run | None = None
    last_used: float = 0.0

    @property
    def position(self) -> int:
        return len(self.kv.units)


# Items of the worker's queue: (priority, arrival, work); None stops the worker.
Work = Job | Call | None


class SlotScheduler:
    def __init__(self, model: LlamaModel, stats: EngineStats) -> None:
        self._model = model
        self._stats = stats
        self._slots = [Slot(seq) for seq in range(model.parallel)]
        self._waiting: list[tuple[int, int, Job]] = []
        self._tokens_window: deque[tuple[float, int]] = deque()
        self._publish()

    # -- the loop -------------------------------------------------------------------------------

    def run(self, take: Callable[[bool], tuple[int, int, Work] | None]) -> None:
        """Serve until ``take`` hands over None. ``take(block)`` is the next queued item: it
        blocks only when ``block`` (nothing is running, nothing waits)."""
        try:
            while True:
                idle = not self._waiting and all(s.run is None for s in self._slots)
                while (item := take(idle)) is not None:
                    priority, arrival, work = item
                    if work is None:
                        self._drain()
                        return
                    if isinstance(work, Call):
                        answer(self._model, work)
                    else:
                        heapq.heappush(self._waiting, (priority, arrival, work))
                    idle = False
                self._step()
        finally:
            for slot in self._slots:
                if slot.run is not None:
                    self._release(slot, EngineError("The engine stopped"))

    def _drain(self) -> None:
        """Finish what was accepted before stopping."""
        while self._waiting or any(s.run is not None for s in self._slots):
            self._step()

    def _step(self) -> None:
        self._drop_cancelled()
        self._admit()
        budget = self._model.n_batch
        image_done = False
        # While an interactive request is in a slot, batch lines' prompts wait: their chunks
        # and images would lengthen every step of its stream. Their tokens still decode with it.
        interactive = any(
            s.run is not None and s.run.job.request.priority == Priority.INTERACTIVE
            for s in self._slots
        )
        for slot in self._by_priority(SlotState.PROMPT):
            assert slot.run is not None
            if interactive and slot.run.job.request.priority == Priority.BATCH:
                break
            budget, image_done = self._advance_prompt(slot, budget, image_done)
            if budget <= 0:
                break
        self._generate()
        self._publish()

    # -- admission ------------------------------------------------------------------------------

    def _admit(self) -> None:
        while self._waiting:
            free = [s for s in self._slots if s.run is None]
            if not free or self._batch_is_full(self._waiting[0][2]):
                return
            _, arrival, job = heapq.heappop(self._waiting)
            if job.cancelled.is_set():
                self._stats.cancelled += 1
                continue
            try:
                run = self._prepare(job, arrival)
            except FoveaError as error:
                job.emit(error)
                continue
            except Exception as error:
                log.exception("preparing %s failed", job.request.request_id)
                job.emit(EngineError(f"The engine failed on this request: {error}"))
                continue
            self._start(self._choose(free, run.prompt), run)

    def _batch_is_full(self, job: Job) -> bool:
        """Batch lines take every slot but one: an interactive request never waits for a line
        to finish (the queue hands out interactive requests first, so only lines wait here)."""
        if job.request.priority != Priority.BATCH or len(self._slots) == 1:
            return False
        lines = sum(
            1
            for s in self._slots
            if s.run is not None and s.run.job.request.priority == Priority.BATCH
        )
        return lines >= len(self._slots) - 1

    def _prepare(self, job: Job, arrival: int) -> _Run:
        prompt, max_tokens = self._model.prompt(job.request)
        try:
            sampler = self._model.sampler(job.request)
        except BaseException:
            prompt.free()
            raise
        return _Run(job, prompt, max_tokens, sampler, cached=0, arrival=arrival)

    def _choose(self, free: list[Slot], prompt: Prompt) -> Slot:
        if not self._model.config.prefix_cache:
            return min(free, key=lambda s: s.last_used)
        reuse = {s.seq: s.kv.reusable(prompt.units, prompt.segments) for s in free}
        return max(free, key=lambda s: (reuse[s.seq], -s.last_used))

    def _start(self, slot: Slot, run: _Run) -> None:
        prompt = run.prompt
        reuse = 0
        if self._model.config.prefix_cache:
            reuse = slot.kv.reusable(prompt.units, prompt.segments)
        if not self._model.keep(slot.seq, reuse):
            reuse = 0
        slot.kv.truncate(reuse)
        run.cached = reuse
        run.stops = StopFilter(run.job.request.sampling.stop)
        slot.run, slot.state = run, SlotState.PROMPT
        self._stats.prompt_tokens += prompt.n_tokens
        self._stats.cached_prompt_tokens += reuse

    def _by_priority(self, state: SlotState) -> list[Slot]:
        busy = [s for s in self._slots if s.run is not None and s.state == state]
        return sorted(busy, key=lambda s: (s.run.job.request.priority, s.run.arrival))  # type: ignore[union-attr]

    # -- prompts --------------------------------------------------------------------------------

    def _advance_prompt(self, slot: Slot, budget: int, image_done: bool) -> tuple[int, bool]:
        run = slot.run
        assert run is not None
        prompt = run.prompt
        try:
            while run.segment < len(prompt.segments) and budget > 0:
                segment = prompt.segments[run.segment]
                if segment.end <= slot.position:
                    run.segment += 1
                    continue
                if segment.is_image:
                    if image_done:
                        return budget, image_done
                    chunk = mtmd.mtmd_input_chunks_get(prompt.chunks, run.segment)
                    end = self._model.decode_image(slot.seq, chunk, slot.position)
                    slot.kv.extend(prompt.units[slot.position : end])
                    image_done = True
                    run.segment += 1
                    continue
                tokens = self._segment_tokens(prompt, run.segment)
                start = slot.position - segment.start
                piece = tokens[start : start + budget]
                last = slot.position + len(piece) >= prompt.n_tokens
                self._model.decode_text(slot.seq, piece, slot.position, last=last)
                slot.kv.extend(piece)
                budget -= len(piece)
                if last:
                    run.next_token = run.sampler.sample(len(piece) - 1)
                    prompt.free()
                    slot.state = SlotState.GENERATING
                    self._accept(slot, run.next_token)
                    break
        except FoveaError as error:
            self._release(slot, error)
        except Exception as error:
            log.exception("prompt of %s failed", run.job.request.request_id)
            self._release(slot, EngineError(f"The engine failed on this request: {error}"))
        return budget, image_done

    @staticmethod
    def _segment_tokens(prompt: Prompt, index: int) -> list[int]:
        if prompt.chunks is None:
            return prompt.tokens
        return chunk_tokens(mtmd.mtmd_input_chunks_get(prompt.chunks, index))

    # -- generation ---------------------------------------------------------------------------

    def _generate(self) -> None:
        ready = [
            s
            for s in self._slots
            if s.run is not None
            and s.state == SlotState.GENERATING
            and s.run.next_token is not None
        ]
        if not ready:
            return
        entries = []
        for slot in ready:
            assert slot.run is not None and slot.run.next_token is not None
            entries.append((slot.seq, slot.run.next_token, slot.position))
        try:
            self._model.decode_next(entries)
        except Exception as error:
            log.exception("decoding failed")
            for slot in ready:
                self._release(slot, EngineError(f"The engine failed on this request: {error}"))
            return
        for index, slot in enumerate(ready):
            run = slot.run
            assert run is not None and run.next_token is not None
            slot.kv.extend((run.next_token,))
            run.next_token = run.sampler.sample(index)
            self._accept(slot, run.next_token)
        self._count(len(ready))

    def _accept(self, slot: Slot, token: int) -> None:
        """A sampled token: the end, or text for the client (and the token to decode next)."""
        run = slot.run
        assert run is not None
        params = run.job.request.sampling
        if not params.ignore_eos and self._model.is_end(token):
            self._finish(slot, "stop")
            return
        run.generated += 1
        text = run.stops.push(run.decoder.push(self._model.token_bytes(token)))
        if text:
            run.job.emit(GenerationChunk(text))
        if run.stops.stopped:
            self._finish(slot, "stop")
        elif run.generated >= run.max_tokens or slot.position >= self._model.slot_context:
            self._finish(slot, "length")

    def _finish(self, slot: Slot, reason: str) -> None:
        run = slot.run
        assert run is not None
        stops = run.stops
        tail = "" if stops.stopped else stops.push(run.decoder.flush()) + stops.flush()
        usage = Usage(
            prompt_tokens=run.prompt.n_tokens,
            completion_tokens=run.generated,
            image_tokens=run.prompt.n_image_tokens,
            cached_tokens=run.cached,
        )
        run.job.emit(GenerationChunk(tail, finish_reason=reason, usage=usage))  # type: ignore[arg-type]
        self._stats.completed += 1
        self._free(slot)

    def _drop_cancelled(self) -> None:
        for slot in self._slots:
            if slot.run is not None and slot.run.job.cancelled.is_set():
                self._stats.cancelled += 1
                self._free(slot)

    def _release(self, slot: Slot, error: FoveaError) -> None:
        if slot.run is not None:
            slot.run.job.emit(error)
            # What the cache holds past the last complete step is unknown: start over.
            slot.kv.clear()
            self._model.keep(slot.seq, 0)
        self._free(slot)

    def _free(self, slot: Slot) -> None:
        if slot.run is not None:
            slot.run.prompt.free()
            slot.run.sampler.close()
        slot.run, slot.state = None, SlotState.IDLE
        slot.last_used = time.monotonic()

    # -- what /healthz shows ----------------------------------------------------------------

    def _count(self, tokens: int) -> None:
        now = time.monotonic()
        self._tokens_window.append((now, tokens))
        while self._tokens_window and now - self._tokens_window[0][0] > 10.0:
            self._tokens_window.popleft()

    def _publish(self) -> None:
        window = self._tokens_window
        span = window[-1][0] - window[0][0] if len(window) > 1 else 0.0
        counted = sum(n for _, n in window) - (window[0][1] if window else 0)
        self._stats.tokens_per_s = counted / span if span > 0 else 0.0
        self._stats.queued = len(self._waiting)
        self._stats.slots = tuple(
            SlotInfo(
                id=slot.seq,
                state=slot.state.value,
                priority=(
                    Priority(slot.run.job.request.priority).name.lower()
                    if slot.run is not None
                    else None
                ),
                cached_tokens=slot.position,
            )
            for slot in self._slots
        )


def answer(model: LlamaModel, call: Call) -> None:
    if call.cancelled.is_set():
        return
    try:
        call.settle(call.work(model))
    except FoveaError as exc:
        call.settle(error=exc)
    except Exception as exc:
        log.exception("a call on model %s failed", model.config.name)
        call.settle(error=EngineError(f"The engine failed on this request: {exc}"))


def settle(
    future: asyncio.Future[Any] | None, error: BaseException | None, result: Any = None
) -> None:
    if future is None or future.done():  # already done: cancelled by a caller that left
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
