"""``OperationService`` Get/Cancel and ``TextGenerationAsyncService.Completion``: deferred work
as the cloud's long-running operations, each kind's response packed in the message the SDK
unpacks (CompletionResponse, ValidateDatasetResponse, BatchCompletionResponse)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message
from yandex.cloud.ai.dataset.v1 import dataset_pb2, dataset_service_pb2
from yandex.cloud.ai.foundation_models.v1 import batch_inference_task_status_pb2 as task_status
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2 as generation,
)
from yandex.cloud.ai.foundation_models.v1.text_generation import (
    text_generation_service_pb2_grpc as generation_grpc,
)
from yandex.cloud.operation import operation_pb2, operation_service_pb2
from yandex.cloud.operation import operation_service_pb2_grpc as operation_grpc

from fovea.grpc.calls import caller, set_timestamps, unary
from fovea.grpc.status import code_for
from fovea.grpc.text_generation import chat_request, completion_response
from fovea.protocol.chat import ChatCompletion
from fovea.services.chat_events import data_logging_enabled
from fovea.services.container import Services
from fovea.services.operations import OperationView
from fovea.store.operations import OperationInfo, OperationKind


class Operations(operation_grpc.OperationServiceServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @unary
    async def Get(
        self, request: operation_service_pb2.GetOperationRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        principal = await caller(self._services.access, context)
        return operation(await self._services.operations.get(principal, request.operation_id))

    @unary
    async def Cancel(
        self,
        request: operation_service_pb2.CancelOperationRequest,
        context: grpc.aio.ServicerContext,
    ) -> operation_pb2.Operation:
        principal = await caller(self._services.access, context)
        return operation(await self._services.operations.cancel(principal, request.operation_id))


class TextGenerationAsync(generation_grpc.TextGenerationAsyncServiceServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @unary
    async def Completion(
        self, request: generation.CompletionRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        principal = await caller(self._services.access, context)
        body = chat_request(request).model_copy(update={"stream": False})
        metadata = dict(context.invocation_metadata() or ())
        data_logging = data_logging_enabled(metadata.get("x-data-logging-enabled"))
        started = await self._services.operations.start_completion(
            principal, body, data_logging=data_logging
        )
        return pending(started)


def pending(info: OperationInfo, metadata: Message | None = None) -> operation_pb2.Operation:
    """A just-started operation."""
    message = operation_pb2.Operation(
        id=info.id, description=info.description, created_by=info.created_by, done=False
    )
    set_timestamps(message, created_at=info.created_at, modified_at=info.modified_at)
    if metadata is not None:
        message.metadata.Pack(metadata)
    return message


def operation(view: OperationView) -> operation_pb2.Operation:
    info = view.info
    message = pending(info)
    message.done = view.done
    set_timestamps(message, modified_at=view.modified_at)
    metadata = (
        _METADATA[OperationKind(info.kind)](view.metadata) if view.metadata is not None else None
    )
    if metadata is not None:
        message.metadata.Pack(metadata)
    if view.error is not None:
        message.error.code = code_for(int(view.error.get("status", 500))).value[0]
        message.error.message = str(view.error.get("message", ""))
    elif view.response is not None:
        message.response.Pack(_RESPONSES[OperationKind(info.kind)](view.response))
    return message


def _completion(response: dict[str, Any]) -> Message:
    completion = ChatCompletion.model_validate(response)
    choice = completion.choices[0]
    reply = completion_response(
        choice.message.content or "", choice.finish_reason, completion.usage
    )
    reply.model_version = completion.model
    return reply


def _validation(response: dict[str, Any]) -> Message:
    return dataset_service_pb2.ValidateDatasetResponse(
        dataset_id=response["dataset_id"],
        is_valid=response["is_valid"],
        errors=[dataset_pb2.ValidationError(**error) for error in response["errors"]],
    )


def _validation_metadata(metadata: dict[str, Any]) -> Message:
    return dataset_service_pb2.ValidateDatasetMetadata(dataset_id=metadata["dataset_id"])


def _batch(response: dict[str, Any]) -> Message:
    return generation.BatchCompletionResponse(
        task_id=response["task_id"],
        task_status=task_status.BatchInferenceTaskStatus.Value(response["task_status"]),
        result_dataset_id=response["result_dataset_id"],
    )


def batch_metadata(metadata: dict[str, Any]) -> Message:
    return generation.BatchCompletionMetadata(
        task_id=metadata["task_id"],
        task_status=task_status.BatchInferenceTaskStatus.Value(metadata["task_status"]),
        completed_batches=metadata["completed_batches"],
        total_batches=metadata["total_batches"],
    )


def _no_metadata(metadata: dict[str, Any]) -> None:
    return None


_RESPONSES = {
    OperationKind.COMPLETION: _completion,
    OperationKind.VALIDATION: _validation,
    OperationKind.BATCH: _batch,
}
_METADATA = {
    OperationKind.COMPLETION: _no_metadata,
    OperationKind.VALIDATION: _validation_metadata,
    OperationKind.BATCH: batch_metadata,
}
