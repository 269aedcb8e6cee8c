"""``TextGenerationBatchService.Completion`` and ``BatchInferenceService``: the cloud's batch runs
over datasets, which are Fovea's batches (``/v1/batches`` and ``fovea batch list`` show them)."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2 as service
from yandex.cloud.ai.batch_inference.v1 import batch_inference_service_pb2_grpc as service_grpc
from yandex.cloud.ai.batch_inference.v1 import batch_inference_task_pb2 as task_pb2
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as generation,
)
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as generation_grpc,
)
from yandex.cloud.operation import operation_pb2

from fovea.grpc.calls import caller, set_timestamps, unary
from fovea.grpc.operations import batch_metadata, pending
from fovea.grpc.text_generation import completion_fields, validated
from fovea.protocol.batches import BatchCompletionOptions
from fovea.services.batches.inference import BatchTask
from fovea.services.container import Services

Task = task_pb2.BatchInferenceTask
Context: TypeAlias = grpc.aio.ServicerContext


class TextGenerationBatch(generation_grpc.TextGenerationBatchServiceServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @unary
    async def Completion(
        self, request: generation.BatchCompletionRequest, context: Context
    ) -> operation_pb2.Operation:
        principal = await caller(self._services.access, context)
        started, task = await self._services.batch_tasks.start(
            principal,
            model_uri=request.model_uri,
            dataset_id=request.source_dataset_id,
            options=_options(request),
        )
        metadata = {
            "task_id": task.batch.id,
            "task_status": task.status.value,
            "completed_batches": 0,
            "total_batches": 0,
        }
        return pending(started, batch_metadata(metadata))


class BatchInference(service_grpc.BatchInferenceServiceServicer):
    def __init__(self, services: Services) -> None:
        self._services = services
        self._tasks = services.batch_tasks

    @unary
    async def Describe(
        self, request: service.DescribeBatchInferenceRequest, context: Context
    ) -> service.DescribeBatchInferenceResponse:
        principal = await caller(self._services.access, context)
        found = await self._tasks.describe(principal, request.task_id)
        return service.DescribeBatchInferenceResponse(task=task(found))

    @unary
    async def List(
        self, request: service.ListBatchInferencesRequest, context: Context
    ) -> service.ListBatchInferencesResponse:
        principal = await caller(self._services.access, context)
        found, token = await self._tasks.list_tasks(
            principal,
            request.folder_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return service.ListBatchInferencesResponse(
            tasks=[task(item) for item in found], next_page_token=token
        )

    @unary
    async def Cancel(
        self, request: service.CancelBatchInferenceRequest, context: Context
    ) -> service.CancelBatchInferenceResponse:
        principal = await caller(self._services.access, context)
        await self._tasks.cancel(principal, request.task_id)
        return service.CancelBatchInferenceResponse(task_id=request.task_id)

    @unary
    async def Delete(
        self, request: service.DeleteBatchInferenceRequest, context: Context
    ) -> service.DeleteBatchInferenceResponse:
        principal = await caller(self._services.access, context)
        await self._tasks.delete(principal, request.task_id)
        return service.DeleteBatchInferenceResponse(task_id=request.task_id)


def _options(request: generation.BatchCompletionRequest) -> BatchCompletionOptions:
    return validated(BatchCompletionOptions, completion_fields(request))


def task(found: BatchTask) -> Task:
    batch = found.batch
    message = Task(
        task_id=batch.id,
        operation_id=found.operation_id,
        folder_id=batch.folder_id,
        model_uri=batch.model or "",
        source_dataset_id=batch.source_dataset_id or "",
        status=Task.Status.Value(found.status.value),
        result_dataset_id=found.result_dataset_id or "",
        created_by=batch.service_account_id,
        errors=Task.ErrorsInfo(
            line_errors=[
                Task.ErrorsInfo.LineError(line_number=e.line_number, message=e.message)
                for e in found.line_errors
            ],
            batch_errors=[
                Task.ErrorsInfo.BatchError(batch_number=0, message=message)
                for message in found.batch_errors
            ],
        ),
    )
    finished = batch.completed_at or batch.failed_at or batch.cancelled_at or batch.expired_at
    set_timestamps(
        message,
        created_at=batch.created_at,
        started_at=batch.in_progress_at,
        finished_at=finished,
    )
    return message
