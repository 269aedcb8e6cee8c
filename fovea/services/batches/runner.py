"""The batch runner: validates inputs, runs lines through the service their endpoint names (chat,
responses or embeddings) at batch priority, and
writes output and error files. All state is in the database (``BatchStore``), each line's result
committed as it completes: after a crash the runner picks up every active batch where it stood.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from anyio import to_thread
from pydantic import BaseModel, ValidationError

from fovea.engine.types import Priority
from fovea.errors import FoveaError, InvalidRequestError, NotFoundError
from fovea.iam.apikeys import GENERATION_SCOPES
from fovea.iam.types import Principal
from fovea.protocol.chat import ChatCompletionRequest
from fovea.protocol.embeddings import EmbeddingRequest
from fovea.protocol.responses import CreateResponseRequest
from fovea.services.batches.input import check_input, raw_lines, read_line
from fovea.services.chat import ChatService
from fovea.services.chat_events import RequestContext
from fovea.services.datasets.rows import dataset_result_row, dataset_row_to_chat_body
from fovea.services.embeddings import EmbeddingsService
from fovea.services.files import FileService, derived_file_id
from fovea.services.responses import ResponsesService
from fovea.store.batches import BatchInfo, BatchStore, LineRef, LineResult
from fovea.store.clock import utcnow

log = logging.getLogger(__name__)

RESPONSES_ENDPOINT = "/v1/responses"
EMBEDDINGS_ENDPOINT = "/v1/embeddings"
# Errors worth retrying later rather than failing the line: the model is loading, or busy.
TRANSIENT = (429, 503)


@dataclass(frozen=True)
class RetryPolicy:
    """How the runner waits after failures: a failed step (the database down) and a line's
    transient error (429, 503) wait ``base_s`` doubled per consecutive failure, up to
    ``cap_s``; a line fails with its last error after ``max_line_attempts`` tries."""

    base_s: float = 1.0
    cap_s: float = 60.0
    max_line_attempts: int = 8

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (none: ``base_s``)."""
        return float(min(self.cap_s, self.base_s * 2 ** max(0, failures - 1)))


class BatchRunner:
    """One background task per replica working through every active batch, oldest first.

    Several replicas' runners share batches through leases in the database: a line is answered
    by the replica that leased it, and work on a whole batch (validating, closing, finalizing)
    by the one replica holding the batch's lease. Leases are renewed while the work runs; a
    killed replica's leases expire after ``lease_s`` and another replica takes the work over.
    """

    def __init__(
        self,
        *,
        store: BatchStore,
        files: FileService,
        chat: ChatService,
        responses: ResponsesService | None = None,
        embeddings: EmbeddingsService | None = None,
        concurrency: int,
        owner: str,
        lease_s: float = 30.0,
        poll_s: float = 1.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._store = store
        self._files = files
        self._chat = chat
        self._responses = responses
        self._embeddings = embeddings
        self._concurrency = concurrency
        self._owner = owner
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._retry = retry or RetryPolicy(base_s=poll_s)
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Something changed (a new batch, a cancel): look now rather than at the next poll."""
        self._wakeup.set()

    async def run_forever(self) -> None:
        failures = 0
        while True:
            try:
                is_healthy = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch runner step failed; retrying")
                is_healthy = False
            # Failing steps (a database down) back off, up to the cap; success resets.
            failures = 0 if is_healthy else failures + 1
            wait_s = self._retry.delay(failures) if failures else self._poll_s
            self._wakeup.clear()
            await self._pause(wait_s)

    async def _pause(self, wait_s: float) -> None:
        """Until ``wait_s`` has passed, or sooner if ``wake`` is called."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=wait_s)

    async def step(self) -> bool:
        """Advance every active batch once; False if one of them failed (it is retried)."""
        is_healthy = True
        for batch in await to_thread.run_sync(self._store.active):
            try:
                await self._advance(batch)
            except NotFoundError as exc:  # the input file was deleted under the batch
                error = {"code": "input_file_missing", "message": exc.message}
                await to_thread.run_sync(self._store.fail, batch.id, [error])
            except Exception:  # one batch's trouble must not hold up the others
                log.exception("batch %s: step failed; it is retried after a pause", batch.id)
                is_healthy = False
        return is_healthy

    async def _advance(self, batch: BatchInfo) -> None:
        if batch.status == "validating":
            await self._exclusively(batch, self._validate(batch))
        elif batch.status == "in_progress":
            if utcnow() >= batch.expires_at:
                await self._exclusively(batch, self._close(batch, "expired"))
            else:
                await self._run_lines(batch)
        elif batch.status == "cancelling":
            await self._exclusively(batch, self._close(batch, "cancelled"))
        elif batch.status == "finalizing":
            await self._exclusively(batch, self._finalize(batch, "completed"))

    async def _exclusively(self, batch: BatchInfo, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` holding the batch's lease (renewed meanwhile), or skip it while another
        replica holds it: validating, closing and finalizing happen on one replica at a time."""
        claim = partial(self._store.claim, batch.id, batch.status, self._owner, self._lease_s)
        if not await to_thread.run_sync(claim):
            work.close()
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._lease_s / 3)
                await to_thread.run_sync(claim)

        renewal = asyncio.create_task(renew())
        try:
            await work
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            await to_thread.run_sync(self._store.release, batch.id, self._owner)

    async def _validate(self, batch: BatchInfo) -> None:
        path = await self._input_path(batch)
        checked = await to_thread.run_sync(
            lambda: check_input(
                path,
                input_format=batch.input_format,
                endpoint=batch.endpoint,
                model=batch.model,
            )
        )
        if checked.fatal:
            await to_thread.run_sync(self._store.fail, batch.id, checked.fatal)
        else:
            save = partial(self._store.save_lines, batch.id, checked.lines, self._owner)
            await to_thread.run_sync(save)
        self.wake()

    async def _run_lines(self, batch: BatchInfo) -> None:
        """Lease lines and answer them, up to ``concurrency`` at once, until the batch is done
        here: every line answered (then finalize it), none left this replica may take (other
        replicas hold them), or the batch no longer in progress (cancelled, expired)."""
        path = await self._input_path(batch)
        loop = asyncio.get_running_loop()
        running: dict[int, asyncio.Task[None]] = {}
        checked = renewed = loop.time()
        try:
            while True:
                now = loop.time()
                if now - checked >= self._poll_s:
                    # A cancel or the window's end is noticed within a poll interval.
                    current = await to_thread.run_sync(self._store.reload, batch.id)
                    if current.status != "in_progress" or utcnow() >= current.expires_at:
                        break
                    checked = now
                if running and now - renewed >= self._lease_s / 3:
                    renew = partial(
                        self._store.renew_lines, batch.id, self._owner, list(running), self._lease_s
                    )
                    await to_thread.run_sync(renew)
                    renewed = now
                if len(running) < self._concurrency:
                    for ref in await self._claim(batch, self._concurrency - len(running)):
                        running[ref.line_number] = asyncio.create_task(self._line(batch, path, ref))
                if not running:
                    if not await to_thread.run_sync(self._store.count_pending, batch.id):
                        await self._complete(batch)
                    return
                done, _ = await asyncio.wait(
                    running.values(), timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED
                )
                for number in [n for n, task in running.items() if task in done]:
                    running.pop(number).result()  # a line's unexpected failure stops the batch
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
            # Lines left unanswered here are free for any replica at once, not after the lease.
            release = partial(self._store.release_lines, batch.id, self._owner, list(running))
            await to_thread.run_sync(release)
        self.wake()

    async def _claim(self, batch: BatchInfo, count: int) -> list[LineRef]:
        claim = partial(
            self._store.claim_lines, batch.id, self._owner, limit=count, lease_s=self._lease_s
        )
        return list(await to_thread.run_sync(claim))

    async def _complete(self, batch: BatchInfo) -> None:
        """Every line is answered: the batch is finalizing (once, whichever replica gets there
        first), and its files are written by the replica holding its lease."""
        finalizing = partial(self._store.transition, batch.id, "finalizing", expected="in_progress")
        await to_thread.run_sync(finalizing)
        current = await to_thread.run_sync(self._store.reload, batch.id)
        if current.status == "finalizing":
            await self._exclusively(current, self._finalize(current, "completed"))

    async def _input_path(self, batch: BatchInfo) -> Path:
        get = partial(self._files.get_stored, batch.input_file_id, batch.folder_id)
        return (await to_thread.run_sync(get)).path

    async def _line(self, batch: BatchInfo, path: Path, ref: LineRef) -> None:
        try:
            raw = await to_thread.run_sync(read_line, path, ref.offset, ref.length)
        except OSError as exc:
            raise NotFoundError(f"The batch's input file can no longer be read: {exc}") from exc
        result = await self._answer(batch, raw, ref)
        if result.status == "retry":
            failures = ref.tries + 1  # counted in the database: any replica, any restart
            if failures < self._retry.max_line_attempts:
                # Given back, to be tried again (by any replica) after a pause that doubles
                # with each try; this replica's slot goes on to other lines meanwhile.
                delay_s = self._retry.delay(failures)
                retry = partial(
                    self._store.retry_line, batch.id, self._owner, ref.line_number, delay_s
                )
                await to_thread.run_sync(retry)
                return
            result = replace(result, status="failed")  # out of tries: its last error stands
        if not await to_thread.run_sync(self._store.record, batch.id, result):
            log.info(
                "batch %s: line %d was answered by another replica first (this replica's lease "
                "had expired); its answer stands",
                batch.id,
                ref.line_number,
            )

    async def _answer(self, batch: BatchInfo, raw: bytes, ref: LineRef) -> LineResult:
        """The line's result: completed, failed, or (a transient error) status ``retry``."""
        request_id = f"req_{secrets.token_hex(12)}"
        try:
            body = _request_body(batch, raw, ref.line_number)
            principal = Principal(
                key_id=f"batch:{batch.id}",
                service_account_id=batch.service_account_id,
                folder_id=batch.folder_id,
                scopes=GENERATION_SCOPES,
            )
            context = RequestContext(request_id=request_id[4:], batch_id=batch.id)
            completion = await self._generate(batch.endpoint, body, principal, context)
        except ValidationError as exc:
            first = exc.errors()[0]
            message = f"Line {ref.line_number}: {'.'.join(map(str, first['loc']))}: {first['msg']}"
            return _failed(ref, request_id, 400, InvalidRequestError(message).to_body())
        except FoveaError as exc:
            failed = _failed(ref, request_id, exc.status_code, exc.to_body())
            return replace(failed, status="retry") if exc.status_code in TRANSIENT else failed
        response = {"status_code": 200, "request_id": request_id, "body": completion.model_dump()}
        return LineResult(ref.line_number, ref.custom_id, "completed", response, None)

    async def _generate(
        self, endpoint: str, body: dict[str, Any], principal: Principal, context: RequestContext
    ) -> BaseModel:
        """The line's answer from the service its endpoint names."""
        if endpoint == RESPONSES_ENDPOINT and self._responses is not None:
            response = CreateResponseRequest.model_validate(body)
            return await self._responses.complete(
                principal, response, priority=Priority.BATCH, context=context
            )
        if endpoint == EMBEDDINGS_ENDPOINT and self._embeddings is not None:
            embedding = EmbeddingRequest.model_validate(body)
            return (await self._embeddings.create(principal, embedding, context=context)).body
        request = ChatCompletionRequest.model_validate(body)
        return await self._chat.complete(
            principal, request, priority=Priority.BATCH, context=context
        )

    async def _close(self, batch: BatchInfo, status: str) -> None:
        """Cancel or expire: unfinished lines are closed, finished ones kept, files written."""
        await to_thread.run_sync(self._store.close_pending, batch.id, status)
        await self._finalize(batch, status)

    async def _finalize(self, batch: BatchInfo, final_status: str) -> None:
        """Write the output and error files and move the batch from its status to
        ``final_status`` while this replica holds its lease. The files' ids follow from the
        batch's, so a replica that takes over after another died mid-way writes the same two
        files, never a second copy."""
        path = await self._input_path(batch)
        output_id, error_id = await to_thread.run_sync(self._write_files, batch, path)
        finish = partial(
            self._store.transition,
            batch.id,
            final_status,
            expected=batch.status,
            owner=self._owner,
            output_file_id=output_id,
            error_file_id=error_id,
        )
        await to_thread.run_sync(finish)

    def _write_files(self, batch: BatchInfo, input_path: Path) -> tuple[str | None, str | None]:
        results = list(self._store.results(batch.id))
        outputs = [r for r in results if r.status == "completed"]
        errors = [r for r in results if r.status in ("failed", "expired")]
        if batch.input_format == "dataset":
            rendered: Iterable[dict[str, Any]] = _dataset_rows(input_path, outputs)
        else:
            rendered = (_output_line(r) for r in outputs)
        output_id = self._write(batch, "output", rendered) if outputs else None
        error_id = self._write(batch, "error", map(_error_line, errors)) if errors else None
        return output_id, error_id

    def _write(self, batch: BatchInfo, kind: str, rows: Iterable[dict[str, Any]]) -> str:
        def write(target: BinaryIO) -> None:
            for row in rows:
                target.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")

        name = f"{batch.id}_{kind}.jsonl"
        file_id = derived_file_id(f"{batch.id}:{kind}")
        return self._files.create_stored(
            batch.folder_id, name, "batch_output", write, file_id=file_id
        ).id


def _request_body(batch: BatchInfo, raw: bytes, line_number: int) -> dict[str, Any]:
    """A line's chat request: the batch-wide options, then what the line itself says."""
    value = json.loads(raw)
    if batch.input_format == "dataset":
        row = dataset_row_to_chat_body(value, model=batch.model or "", line_number=line_number)
        return {**(batch.options or {}), **row}
    body: dict[str, Any] = {**(batch.options or {}), **value["body"]}
    if "model" not in body and batch.model:
        body["model"] = batch.model
    return body


def _failed(ref: LineRef, request_id: str, status: int, body: dict[str, Any]) -> LineResult:
    response = {"status_code": status, "request_id": request_id, "body": body}
    return LineResult(ref.line_number, ref.custom_id, "failed", response, None)


def _output_line(result: LineResult) -> dict[str, Any]:
    return {
        "id": f"batch_req_{result.line_number}",
        "custom_id": result.custom_id,
        "response": result.response,
        "error": None,
    }


def _dataset_rows(input_path: Path, outputs: list[LineResult]) -> Iterator[dict[str, Any]]:
    """The cloud's result rows: each answered request row plus its answer's text, read in one
    pass over the input alongside the results (both in line order)."""
    answers = iter(outputs)
    wanted = next(answers, None)
    for number, _, raw in raw_lines(input_path):
        if wanted is None:
            return
        if number == wanted.line_number:
            assert wanted.response is not None
            message = wanted.response["body"]["choices"][0]["message"]
            yield dataset_result_row(json.loads(raw), message["content"] or "")
            wanted = next(answers, None)


def _error_line(result: LineResult) -> dict[str, Any]:
    error = result.error
    if result.status == "expired":
        error = {
            "code": "batch_expired",
            "message": "This line was not processed before the batch expired.",
        }
    return {
        "id": f"batch_req_{result.line_number}",
        "custom_id": result.custom_id,
        "response": result.response,
        "error": error,
        "line": result.line_number,
    }
