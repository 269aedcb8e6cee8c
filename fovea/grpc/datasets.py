"""``DatasetService``: the cloud SDK's datasets, on Fovea's dataset service."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from yandex.cloud.ai.dataset.v1 import dataset_pb2
from yandex.cloud.ai.dataset.v1 import dataset_service_pb2 as service
from yandex.cloud.ai.dataset.v1 import dataset_service_pb2_grpc as service_grpc
from yandex.cloud.operation import operation_pb2

from fovea.grpc.calls import caller, set_timestamps, unary
from fovea.grpc.operations import operation
from fovea.services.container import Services
from fovea.services.datasets.service import DatasetFields
from fovea.services.datasets.validation import TASK_TYPES, UPLOAD_FORMATS
from fovea.store.datasets import DatasetInfo

Status = dataset_pb2.DatasetInfo.Status
_STATUS = {
    "draft": Status.DRAFT,
    "validating": Status.VALIDATING,
    "ready": Status.READY,
    "invalid": Status.INVALID,
}
_STATUS_NAMES = {value: key for key, value in _STATUS.items()}
Context: TypeAlias = grpc.aio.ServicerContext


class Datasets(service_grpc.DatasetServiceServicer):
    def __init__(self, services: Services) -> None:
        self._services = services
        self._datasets = services.datasets

    @unary
    async def Create(
        self, request: service.CreateDatasetRequest, context: Context
    ) -> service.CreateDatasetResponse:
        principal = await caller(self._services.access, context)
        fields = DatasetFields(
            name=request.name,
            description=request.description,
            metadata=request.metadata,
            task_type=request.task_type,
            upload_format=request.upload_format,
            labels=dict(request.labels),
        )
        info = await self._datasets.create(principal, request.folder_id, fields)
        return service.CreateDatasetResponse(dataset_id=info.id, dataset=dataset(info))

    @unary
    async def Describe(
        self, request: service.DescribeDatasetRequest, context: Context
    ) -> service.DescribeDatasetResponse:
        principal = await caller(self._services.access, context)
        info = await self._datasets.describe(principal, request.dataset_id)
        return service.DescribeDatasetResponse(dataset=dataset(info))

    @unary
    async def List(
        self, request: service.ListDatasetsRequest, context: Context
    ) -> service.ListDatasetsResponse:
        principal = await caller(self._services.access, context)
        found, token = await self._datasets.list_datasets(
            principal,
            request.folder_id,
            statuses=[_STATUS_NAMES[s] for s in request.status if s in _STATUS_NAMES],
            name_pattern=request.dataset_name_pattern,
            task_types=list(request.task_type_filter),
            ids=list(request.dataset_ids),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return service.ListDatasetsResponse(
            datasets=[dataset(info) for info in found], next_page_token=token
        )

    @unary
    async def Update(
        self, request: service.UpdateDatasetRequest, context: Context
    ) -> service.UpdateDatasetResponse:
        principal = await caller(self._services.access, context)
        paths = set(request.update_mask.paths)
        info = await self._datasets.update(
            principal,
            request.dataset_id,
            name=request.name if "name" in paths else None,
            description=request.description if "description" in paths else None,
            labels=dict(request.labels) if "labels" in paths else None,
        )
        return service.UpdateDatasetResponse(dataset=dataset(info))

    @unary
    async def Delete(
        self, request: service.DeleteDatasetRequest, context: Context
    ) -> service.DeleteDatasetResponse:
        principal = await caller(self._services.access, context)
        await self._datasets.delete(principal, request.dataset_id)
        return service.DeleteDatasetResponse()

    @unary
    async def GetUploadDraftUrl(
        self, request: service.GetUploadDraftUrlRequest, context: Context
    ) -> service.GetUploadDraftUrlResponse:
        principal = await caller(self._services.access, context)
        url = await self._datasets.upload_url(principal, request.dataset_id, request.size_bytes)
        return service.GetUploadDraftUrlResponse(dataset_id=request.dataset_id, upload_url=url)

    @unary
    async def StartMultipartUploadDraft(
        self, request: service.StartMultipartUploadDraftRequest, context: Context
    ) -> service.StartMultipartUploadDraftResponse:
        principal = await caller(self._services.access, context)
        urls = await self._datasets.multipart_urls(
            principal, request.dataset_id, request.size_bytes, request.parts
        )
        return service.StartMultipartUploadDraftResponse(
            dataset_id=request.dataset_id, multipart_upload_urls=urls
        )

    @unary
    async def FinishMultipartUploadDraft(
        self, request: service.FinishMultipartUploadDraftRequest, context: Context
    ) -> service.FinishMultipartUploadDraftResponse:
        principal = await caller(self._services.access, context)
        parts = [(part.part_num, part.etag) for part in request.uploaded_parts]
        await self._datasets.finish_multipart(principal, request.dataset_id, parts)
        return service.FinishMultipartUploadDraftResponse(dataset_id=request.dataset_id)

    @unary
    async def Validate(
        self, request: service.ValidateDatasetRequest, context: Context
    ) -> operation_pb2.Operation:
        principal = await caller(self._services.access, context)
        started = await self._datasets.validate(principal, request.dataset_id)
        return operation(await self._services.operations.get(principal, started.id))

    @unary
    async def GetDownloadUrls(
        self, request: service.GetDownloadUrlsRequest, context: Context
    ) -> service.GetDownloadUrlsResponse:
        principal = await caller(self._services.access, context)
        urls = await self._datasets.download_urls(principal, request.dataset_id)
        return service.GetDownloadUrlsResponse(
            dataset_id=request.dataset_id,
            download_urls=[dataset_pb2.DatasetFileDownloadUrl(key=k, url=u) for k, u in urls],
        )

    @unary
    async def GetPreview(
        self, request: service.GetDatasetPreviewRequest, context: Context
    ) -> service.GetDatasetPreviewResponse:
        principal = await caller(self._services.access, context)
        rows = await self._datasets.preview(principal, request.dataset_id)
        return service.GetDatasetPreviewResponse(dataset_id=request.dataset_id, preview_lines=rows)

    @unary
    async def ListOperationsIds(
        self, request: service.ListOperationsIdsRequest, context: Context
    ) -> service.ListOperationsIdsResponse:
        principal = await caller(self._services.access, context)
        found = await self._datasets.validation_operations(principal, list(request.dataset_id))
        return service.ListOperationsIdsResponse(dataset_id_to_operation_id=found)

    @unary
    async def ListUploadFormats(
        self, request: service.ListUploadFormatsRequest, context: Context
    ) -> service.ListUploadFormatsResponse:
        await caller(self._services.access, context)
        return service.ListUploadFormatsResponse(formats=list(UPLOAD_FORMATS))

    @unary
    async def ListUploadSchemas(
        self, request: service.ListUploadSchemasRequest, context: Context
    ) -> service.ListUploadSchemasResponse:
        await caller(self._services.access, context)
        kinds = [request.task_type] if request.task_type else list(TASK_TYPES)
        return service.ListUploadSchemasResponse(
            schemas=[
                dataset_pb2.DatasetUploadSchema(task_type=kind, upload_format=fmt, schema="")
                for kind in kinds
                if kind in TASK_TYPES
                for fmt in UPLOAD_FORMATS
            ]
        )

    @unary
    async def ListTypes(
        self, request: service.ListTypesRequest, context: Context
    ) -> service.ListTypesResponse:
        await caller(self._services.access, context)
        return service.ListTypesResponse(types=list(TASK_TYPES))


def dataset(info: DatasetInfo) -> dataset_pb2.DatasetInfo:
    message = dataset_pb2.DatasetInfo(
        dataset_id=info.id,
        folder_id=info.folder_id,
        name=info.name,
        description=info.description,
        metadata=info.dataset_metadata,
        status=_STATUS[info.status],
        task_type=info.task_type,
        rows=info.rows,
        size_bytes=info.size_bytes,
        created_by_id=info.created_by,
        created_by=info.created_by,
        updated_by=info.created_by,
        labels=info.labels,
        validation_error=[
            dataset_pb2.ValidationError(**error) for error in info.validation_errors or []
        ],
    )
    set_timestamps(message, created_at=info.created_at, updated_at=info.updated_at)
    return message
