"""The cloud's batch inference tasks: a batch over a dataset, read as the cloud's SDK reads it.

A task IS a Fovea batch (``/v1/batches`` and ``fovea batch list`` show it): its id is the batch's,
its status the batch's mapped onto the cloud's, and once it completes its answers become a
result dataset (the output file, rows with ``response``), made once, when first asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any

from anyio import to_thread

from fovea.errors import ConflictError, InvalidRequestError
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.protocol.batches import BatchCompletionOptions, CreateBatchRequest
from fovea.services.access import AccessControl
from fovea.services.batches.runner import BatchRunner
from fovea.services.batches.service import BatchService
from fovea.services.catalog import Catalog, parse_model_uri
from fovea.services.datasets.validation import REQUEST_TASK_TYPES, RESULTS
from fovea.services.files import FileService
from fovea.store.batches import BatchInfo, BatchStore, LineResult
from fovea.store.datasets import DatasetInfo, DatasetStatus, DatasetStore
from fovea.store.operations import OperationInfo, OperationKind, OperationStore

MAX_LINE_ERRORS = 100
MAX_PAGE_SIZE = 1000


class TaskStatus(StrEnum):
    """The cloud's names for a task's lifecycle."""

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED)


_STATUS = {
    "validating": TaskStatus.PENDING,
    "in_progress": TaskStatus.IN_PROGRESS,
    "finalizing": TaskStatus.IN_PROGRESS,
    "cancelling": TaskStatus.IN_PROGRESS,
    "completed": TaskStatus.COMPLETED,
    "failed": TaskStatus.FAILED,
    "expired": TaskStatus.FAILED,
    "cancelled": TaskStatus.CANCELED,
}


@dataclass(frozen=True)
class LineError:
    line_number: int
    message: str


@dataclass(frozen=True)
class BatchTask:
    batch: BatchInfo
    status: TaskStatus
    operation_id: str
    result_dataset_id: str | None
    line_errors: list[LineError]
    batch_errors: list[str]


def operation_id(batch_id: str) -> str:
    """A batch's operation id: derived, so the task needs no lookup to name it."""
    return "fop" + batch_id.removeprefix("batch_")


class BatchInferenceService:
    def __init__(
        self,
        *,
        batches: BatchService,
        store: BatchStore,
        datasets: DatasetStore,
        operations: OperationStore,
        files: FileService,
        catalog: Catalog,
        access: AccessControl,
        runner: BatchRunner,
    ) -> None:
        self._batches = batches
        self._store = store
        self._datasets = datasets
        self._operations = operations
        self._files = files
        self._catalog = catalog
        self._access = access
        self._runner = runner

    async def start(
        self,
        principal: Principal,
        *,
        model_uri: str,
        dataset_id: str,
        options: BatchCompletionOptions,
    ) -> tuple[OperationInfo, BatchTask]:
        uri = parse_model_uri(model_uri)
        folder = self._access.folder_for(principal, uri_folder=uri.folder_id, header_folder=None)
        await self._access.require(principal, folder, Permission.BATCHES_WRITE)
        self._catalog.resolve(uri, folder)
        dataset = await to_thread.run_sync(self._datasets.get, dataset_id, folder)
        _check_source(dataset)
        assert dataset.file_id is not None
        body = CreateBatchRequest(
            input_file_id=dataset.file_id,
            endpoint="/v1/chat/completions",
            model=model_uri,
            input_format="dataset",
            completion_options=options,
            metadata={"source_dataset_id": dataset.id},
        )
        batch = await self._batches.start(principal, None, body, source_dataset_id=dataset.id)
        create = partial(
            self._operations.create,
            operation_id=operation_id(batch.id),
            folder_id=folder,
            kind=OperationKind.BATCH,
            created_by=principal.service_account_id,
            description=f"Batch completion of dataset {dataset.id}",
            target_id=batch.id,
        )
        operation = await to_thread.run_sync(create)
        return operation, await to_thread.run_sync(self._task, batch)

    async def describe(self, principal: Principal, task_id: str) -> BatchTask:
        folder = await self._access.named_folder(principal, "", Permission.BATCHES_READ)
        batch = await to_thread.run_sync(self._store.get, task_id, folder)
        return await to_thread.run_sync(self._task, batch)

    def task(self, batch_id: str) -> BatchTask:
        """A task as its operation sees it (synchronous: call off the loop)."""
        return self._task(self._store.reload(batch_id))

    async def list_tasks(
        self, principal: Principal, folder_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[BatchTask], str]:
        folder = await self._access.named_folder(principal, folder_id, Permission.BATCHES_READ)
        limit = min(page_size or 100, MAX_PAGE_SIZE)
        found = partial(self._store.list_batches, folder, after=page_token or None, limit=limit)
        batches, more = await to_thread.run_sync(found)
        tasks = await to_thread.run_sync(lambda: [self._task(batch) for batch in batches])
        return tasks, batches[-1].id if more and batches else ""

    async def cancel(self, principal: Principal, task_id: str) -> None:
        folder = await self._access.named_folder(principal, "", Permission.BATCHES_WRITE)
        batch = await to_thread.run_sync(self._store.get, task_id, folder)
        if _STATUS[batch.status].is_final:
            return  # the cloud answers a cancel of a finished task without an error
        await to_thread.run_sync(self._store.request_cancel, task_id, folder)
        self._runner.wake()

    async def delete(self, principal: Principal, task_id: str) -> None:
        folder = await self._access.named_folder(principal, "", Permission.BATCHES_WRITE)
        await to_thread.run_sync(self._store.delete, task_id, folder)

    def _task(self, batch: BatchInfo) -> BatchTask:
        status = _STATUS[batch.status]
        result = self._result_dataset(batch) if status is TaskStatus.COMPLETED else None
        failed = self._store.failed_lines(batch.id, MAX_LINE_ERRORS) if batch.failed else []
        return BatchTask(
            batch=batch,
            status=status,
            operation_id=operation_id(batch.id),
            result_dataset_id=result.id if result is not None else None,
            line_errors=[_line_error(line) for line in failed],
            batch_errors=[str(error.get("message", error)) for error in batch.errors or []],
        )

    def _result_dataset(self, batch: BatchInfo) -> DatasetInfo | None:
        if batch.source_dataset_id is None or batch.output_file_id is None:
            return None
        found = self._datasets.by_batch(batch.id)
        if found is not None:
            return found
        stored = self._files.get_stored(batch.output_file_id, batch.folder_id)
        return self._datasets.create_result(
            folder_id=batch.folder_id,
            name=f"{batch.id} results",
            description=f"Answers of batch {batch.id} to dataset {batch.source_dataset_id}",
            dataset_metadata="",
            task_type=RESULTS,
            upload_format="jsonlines",
            labels={},
            status=DatasetStatus.READY,
            file_id=stored.id,
            batch_id=batch.id,
            created_by=batch.service_account_id,
            rows=batch.completed,
            size_bytes=stored.bytes,
        )


def _check_source(dataset: DatasetInfo) -> None:
    if dataset.task_type not in REQUEST_TASK_TYPES:
        raise InvalidRequestError(
            f"Dataset {dataset.id} is a {dataset.task_type} dataset; a batch runs on "
            f"{' or '.join(REQUEST_TASK_TYPES)} datasets",
            param="source_dataset_id",
        )
    if dataset.status != DatasetStatus.READY or dataset.file_id is None:
        raise ConflictError(
            f"Dataset {dataset.id} is {dataset.status}: upload and validate it first",
            param="source_dataset_id",
        )


def _line_error(line: LineResult) -> LineError:
    message: Any = line.error
    if line.response is not None:
        message = line.response.get("body", {}).get("error", {}).get("message", message)
    return LineError(line.line_number, str(message or "failed"))
