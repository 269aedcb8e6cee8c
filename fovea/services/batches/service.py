"""The Batches API's logic: create, read, list and cancel batches of a folder."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path

from anyio import to_thread

from fovea.errors import InvalidRequestError
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.protocol import batches as wire
from fovea.services.access import AccessControl
from fovea.services.batches.input import raw_lines
from fovea.services.batches.runner import EMBEDDINGS_ENDPOINT, RESPONSES_ENDPOINT, BatchRunner
from fovea.services.catalog import parse_model_uri
from fovea.services.datasets.rows import detect_format
from fovea.services.files import FileService
from fovea.store.batches import COMPLETION_WINDOWS, BatchInfo, BatchStore

ENDPOINTS = ("/v1/chat/completions", RESPONSES_ENDPOINT, EMBEDDINGS_ENDPOINT)
MAX_METADATA_KEYS = 16


class BatchService:
    def __init__(
        self,
        *,
        store: BatchStore,
        files: FileService,
        access: AccessControl,
        runner: BatchRunner,
    ) -> None:
        self._store = store
        self._files = files
        self._access = access
        self._runner = runner

    async def create(
        self, principal: Principal, header_folder: str | None, body: wire.CreateBatchRequest
    ) -> wire.BatchObject:
        return to_wire(await self.start(principal, header_folder, body))

    async def start(
        self,
        principal: Principal,
        header_folder: str | None,
        body: wire.CreateBatchRequest,
        *,
        source_dataset_id: str | None = None,
    ) -> BatchInfo:
        folder_id = self._access.folder_for(principal, uri_folder=None, header_folder=header_folder)
        await self._access.require(principal, folder_id, Permission.BATCHES_WRITE)
        _check_request(body)
        if body.model is not None:
            self._access.folder_for(
                principal, uri_folder=parse_model_uri(body.model).folder_id, header_folder=None
            )
        stored = await to_thread.run_sync(self._files.get_stored, body.input_file_id, folder_id)
        input_format: str
        if body.input_format is not None:
            input_format = body.input_format
        else:
            input_format = await to_thread.run_sync(_sniff, stored.path)
        if input_format == "dataset" and body.endpoint != "/v1/chat/completions":
            raise InvalidRequestError(
                "The input file holds dataset rows, which are chat requests: create the batch "
                "with endpoint /v1/chat/completions",
                param="endpoint",
            )
        if input_format == "dataset" and body.model is None:
            raise InvalidRequestError(
                "The input file holds dataset rows, which name no model: pass 'model' "
                "(e.g. gpt://<folder_id>/gemma-3-demo) with the batch",
                param="model",
            )
        create = partial(
            self._store.create,
            folder_id=folder_id,
            service_account_id=principal.service_account_id,
            endpoint=body.endpoint,
            input_file_id=body.input_file_id,
            input_format=input_format,
            model=body.model,
            completion_window=body.completion_window,
            batch_metadata=body.metadata,
            options=body.completion_options.as_body() if body.completion_options else None,
            source_dataset_id=source_dataset_id,
        )
        info = await to_thread.run_sync(create)
        self._runner.wake()
        return info

    async def get(
        self, principal: Principal, header_folder: str | None, batch_id: str
    ) -> wire.BatchObject:
        folder_id = await self._readable(principal, header_folder)
        return to_wire(await to_thread.run_sync(self._store.get, batch_id, folder_id))

    async def list_batches(
        self, principal: Principal, header_folder: str | None, *, after: str | None, limit: int
    ) -> wire.BatchList:
        folder_id = await self._readable(principal, header_folder)
        found = partial(self._store.list_batches, folder_id, after=after, limit=limit)
        infos, has_more = await to_thread.run_sync(found)
        data = [to_wire(info) for info in infos]
        return wire.BatchList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=has_more,
        )

    async def cancel(
        self, principal: Principal, header_folder: str | None, batch_id: str
    ) -> wire.BatchObject:
        folder_id = self._access.folder_for(principal, uri_folder=None, header_folder=header_folder)
        await self._access.require(principal, folder_id, Permission.BATCHES_WRITE)
        info = await to_thread.run_sync(self._store.request_cancel, batch_id, folder_id)
        self._runner.wake()
        return to_wire(info)

    async def _readable(self, principal: Principal, header_folder: str | None) -> str:
        folder_id = self._access.folder_for(principal, uri_folder=None, header_folder=header_folder)
        await self._access.require(principal, folder_id, Permission.BATCHES_READ)
        return folder_id


def _check_request(body: wire.CreateBatchRequest) -> None:
    if body.endpoint not in ENDPOINTS:
        raise InvalidRequestError(
            f"Unsupported endpoint {body.endpoint!r}; batches run {', '.join(ENDPOINTS)}",
            param="endpoint",
        )
    if body.completion_options is not None and body.endpoint != "/v1/chat/completions":
        raise InvalidRequestError(
            "completion_options are chat request fields: set them in each line's body for "
            f"{body.endpoint}",
            param="completion_options",
        )
    if body.completion_window not in COMPLETION_WINDOWS:
        raise InvalidRequestError(
            f"Unsupported completion_window {body.completion_window!r}; use "
            f"{', '.join(COMPLETION_WINDOWS)}",
            param="completion_window",
        )
    metadata = body.metadata or {}
    if len(metadata) > MAX_METADATA_KEYS or any(
        len(k) > 64 or len(v) > 512 for k, v in metadata.items()
    ):
        raise InvalidRequestError(
            "metadata holds at most 16 pairs, keys up to 64 and values up to 512 characters",
            param="metadata",
        )


def _sniff(path: Path) -> str:
    for _, _, raw in raw_lines(path):
        return detect_format(raw)
    return "openai"


def _stamp(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def to_wire(info: BatchInfo) -> wire.BatchObject:
    errors = (
        wire.BatchErrors(data=[wire.BatchError.model_validate(e) for e in info.errors])
        if info.errors
        else None
    )
    return wire.BatchObject(
        id=info.id,
        endpoint=info.endpoint,
        errors=errors,
        input_file_id=info.input_file_id,
        completion_window=info.completion_window,
        status=info.status,  # type: ignore[arg-type]
        output_file_id=info.output_file_id,
        error_file_id=info.error_file_id,
        created_at=int(info.created_at.timestamp()),
        in_progress_at=_stamp(info.in_progress_at),
        expires_at=_stamp(info.expires_at),
        finalizing_at=_stamp(info.finalizing_at),
        completed_at=_stamp(info.completed_at),
        failed_at=_stamp(info.failed_at),
        expired_at=_stamp(info.expired_at),
        cancelling_at=_stamp(info.cancelling_at),
        cancelled_at=_stamp(info.cancelled_at),
        request_counts=wire.BatchRequestCounts(
            total=info.total, completed=info.completed, failed=info.failed
        ),
        metadata=info.batch_metadata,
        model=info.model,
        input_format=info.input_format,
        completion_options=info.options,
    )
