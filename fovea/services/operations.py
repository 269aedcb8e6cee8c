"""The cloud's operations: deferred completions run here, and the state of dataset validations and
batch tasks read as operations. Everything is in the database, so polling survives a restart: a
completion a stopped server left unfinished runs again when the server starts.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from anyio import to_thread
from pydantic import ValidationError

from fovea.errors import FoveaError, NotFoundError
from fovea.iam.apikeys import GENERATION_SCOPES
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.protocol.chat import ChatCompletionRequest
from fovea.services.access import AccessControl
from fovea.services.background import BackgroundTasks
from fovea.services.batches.inference import BatchInferenceService
from fovea.services.chat import ChatService
from fovea.services.chat_events import RequestContext
from fovea.store.datasets import DatasetStatus, DatasetStore
from fovea.store.operations import OperationInfo, OperationKind, OperationStore

log = logging.getLogger(__name__)

# Worth waiting out rather than failing the operation: the folder is busy, the model loading.
TRANSIENT = (429, 503)
RETRY_S = 1.0
CANCELLED = {"status": 499, "message": "The operation was cancelled"}
# Reading an operation needs what reading the object it follows needs.
_READ_PERMISSION = {
    OperationKind.COMPLETION: Permission.MODELS_USE,
    OperationKind.VALIDATION: Permission.FILES_READ,
    OperationKind.BATCH: Permission.BATCHES_READ,
}


@dataclass(frozen=True)
class OperationView:
    """An operation as a client sees it. ``response`` and ``metadata`` are plain data whose
    shape depends on ``info.kind``; ``error`` is ``{"status": <HTTP status>, "message"}``."""

    info: OperationInfo
    done: bool
    modified_at: datetime
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    metadata: dict[str, Any] | None = None


class OperationService:
    def __init__(
        self,
        *,
        store: OperationStore,
        datasets: DatasetStore,
        tasks: BatchInferenceService,
        chat: ChatService,
        access: AccessControl,
    ) -> None:
        self._store = store
        self._datasets = datasets
        self._batch_tasks = tasks
        self._chat = chat
        self._access = access
        self._running = BackgroundTasks()

    async def start_completion(
        self, principal: Principal, body: ChatCompletionRequest, *, data_logging: bool = True
    ) -> OperationInfo:
        """Check the request as a synchronous one would be checked, then run it deferred.
        ``data_logging`` is the client's ``x-data-logging-enabled``."""
        await self._chat.check(principal, body)
        create = partial(
            self._store.create,
            folder_id=principal.folder_id,
            kind=OperationKind.COMPLETION,
            created_by=principal.service_account_id,
            description="Async GPT Completion",
            request=body.model_dump(mode="json", exclude_none=True, by_alias=True),
        )
        operation = await to_thread.run_sync(create)
        self._running.spawn(operation.id, self._complete(operation, data_logging))
        return operation

    def resume(self) -> None:
        """Completions a stopped server left unfinished run again (call on the loop)."""
        for operation in self._store.unfinished(OperationKind.COMPLETION):
            # Whether the client allowed logging was not kept: assume it did not.
            self._running.spawn(operation.id, self._complete(operation, data_logging=False))

    async def get(self, principal: Principal, operation_id: str) -> OperationView:
        operation = await self._own(principal, operation_id)
        return await to_thread.run_sync(self._view, operation)

    async def cancel(self, principal: Principal, operation_id: str) -> OperationView:
        operation = await self._own(principal, operation_id)
        if operation.kind == OperationKind.COMPLETION:
            await to_thread.run_sync(partial(self._store.finish, operation.id, error=CANCELLED))
            self._running.cancel(operation.id)
        elif operation.kind == OperationKind.BATCH and operation.target_id is not None:
            await self._batch_tasks.cancel(principal, operation.target_id)
        return await self.get(principal, operation_id)

    async def aclose(self) -> None:
        await self._running.aclose()

    async def _own(self, principal: Principal, operation_id: str) -> OperationInfo:
        operation = await to_thread.run_sync(self._store.get, operation_id)
        if operation.folder_id != principal.folder_id:
            raise NotFoundError(f"Operation {operation_id} not found", param="operation_id")
        permission = _READ_PERMISSION[OperationKind(operation.kind)]
        await self._access.require(principal, operation.folder_id, permission)
        return operation

    async def _complete(self, operation: OperationInfo, data_logging: bool) -> None:
        principal = Principal(
            key_id=f"operation:{operation.id}",
            service_account_id=operation.created_by,
            folder_id=operation.folder_id,
            scopes=GENERATION_SCOPES,
        )
        # The operation's id is its request id (``fovea logs show`` finds it by that).
        context = RequestContext(request_id=operation.id, data_logging=data_logging)
        # Once answered, the request of a client that opted out of logging is not kept.
        finish = partial(self._store.finish, operation.id, forget_request=not data_logging)
        while True:
            try:
                request = ChatCompletionRequest.model_validate(operation.request)
                completion = await self._chat.complete(principal, request, context=context)
            except ValidationError as exc:
                error = {"status": 400, "message": str(exc.errors()[0]["msg"])}
                await to_thread.run_sync(partial(finish, error=error))
                return
            except FoveaError as exc:
                if exc.status_code in TRANSIENT:
                    await asyncio.sleep(RETRY_S)
                    continue
                error = {"status": exc.status_code, "message": exc.message}
                await to_thread.run_sync(partial(finish, error=error))
                return
            response = completion.model_dump(mode="json")
            await to_thread.run_sync(partial(finish, response=response))
            return

    def _view(self, operation: OperationInfo) -> OperationView:
        if operation.kind == OperationKind.VALIDATION:
            return self._validation_view(operation)
        if operation.kind == OperationKind.BATCH:
            return self._batch_view(operation)
        return OperationView(
            operation, operation.done, operation.modified_at, operation.response, operation.error
        )

    def _validation_view(self, operation: OperationInfo) -> OperationView:
        assert operation.target_id is not None
        try:
            dataset = self._datasets.get(operation.target_id)
        except NotFoundError as exc:
            error = {"status": 404, "message": exc.message}
            return OperationView(operation, True, operation.modified_at, None, error)
        if dataset.status == DatasetStatus.VALIDATING:
            metadata = {"dataset_id": dataset.id}
            return OperationView(operation, False, dataset.updated_at, None, None, metadata)
        response = {
            "dataset_id": dataset.id,
            "is_valid": dataset.status == DatasetStatus.READY,
            "errors": dataset.validation_errors or [],
        }
        return OperationView(operation, True, dataset.updated_at, response, None)

    def _batch_view(self, operation: OperationInfo) -> OperationView:
        assert operation.target_id is not None
        try:
            task = self._batch_tasks.task(operation.target_id)
        except NotFoundError as exc:
            error = {"status": 404, "message": exc.message}
            return OperationView(operation, True, operation.modified_at, None, error)
        batch = task.batch
        metadata = {
            "task_id": batch.id,
            "task_status": task.status.value,
            "completed_batches": batch.completed + batch.failed,
            "total_batches": batch.total,
        }
        response = None
        if task.status.is_final:
            response = {
                "task_id": batch.id,
                "task_status": task.status.value,
                "result_dataset_id": task.result_dataset_id or "",
            }
        stamps = [batch.created_at, batch.in_progress_at, batch.completed_at, batch.failed_at]
        modified = max(stamp for stamp in stamps if stamp is not None)
        return OperationView(operation, task.status.is_final, modified, response, None, metadata)
