"""Datasets of the cloud's SDK: created as drafts, uploaded through signed URLs that Fovea serves
itself (one PUT, or parts with ETags), validated in the background, read back as Parquet.

A dataset's rows are a file of its folder (purpose ``batch``), so a batch can run on it and the
Files API sees it. Its lifecycle is ``DatasetStatus``; validation's outcome is kept on the row,
and an unfinished validation is run again when the server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from anyio import CancelScope, to_thread

from fovea.errors import ConflictError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.services.access import AccessControl
from fovea.services.background import BackgroundTasks
from fovea.services.datasets.signing import UrlSigner
from fovea.services.datasets.validation import TASK_TYPES, UPLOAD_FORMATS, validate_file
from fovea.services.files import FileService
from fovea.services.storage import PARTIAL_SUFFIX, full_disk_refused, sync_file
from fovea.store.datasets import DatasetInfo, DatasetStatus, DatasetStore, not_found
from fovea.store.operations import OperationInfo, OperationKind, OperationStore

MAX_PARTS = 10_000
MAX_NAME_CHARS = 255  # the datasets table's column (PostgreSQL refuses longer)
MAX_PAGE_SIZE = 1000
WRITE_BYTES = 1024 * 1024
# Validate waits this long before answering, so a small dataset's operation is done at once.
VALIDATE_INLINE_S = 2.0
PARQUET_KEY = "0.parquet"
PREVIEW_ROWS = 10
PREVIEW_CHARS = 2048


@dataclass(frozen=True)
class DatasetFields:
    name: str
    description: str
    metadata: str
    task_type: str
    upload_format: str
    labels: dict[str, str]


class DatasetService:
    def __init__(
        self,
        *,
        store: DatasetStore,
        operations: OperationStore,
        files: FileService,
        access: AccessControl,
        signer: UrlSigner,
        max_bytes: int,
    ) -> None:
        self._store = store
        self._operations = operations
        self._files = files
        self._access = access
        self._signer = signer
        self._max_bytes = max_bytes
        self._tasks = BackgroundTasks()

    # -- the objects ----------------------------------------------------------------------

    async def create(
        self, principal: Principal, folder_id: str, fields: DatasetFields
    ) -> DatasetInfo:
        folder = await self._access.named_folder(principal, folder_id, Permission.FILES_WRITE)
        _check_name(fields.name)
        if fields.task_type not in TASK_TYPES:
            raise InvalidRequestError(
                f"Unsupported task_type {fields.task_type!r}; use one of {', '.join(TASK_TYPES)}",
                param="task_type",
            )
        if fields.upload_format not in UPLOAD_FORMATS:
            raise InvalidRequestError(
                f"Unsupported upload_format {fields.upload_format!r}; use "
                f"{', '.join(UPLOAD_FORMATS)}",
                param="upload_format",
            )
        create = partial(
            self._store.create,
            folder_id=folder,
            name=fields.name or "dataset",
            description=fields.description,
            dataset_metadata=fields.metadata,
            task_type=fields.task_type,
            upload_format=fields.upload_format,
            labels=fields.labels,
            status=DatasetStatus.DRAFT,
            file_id=None,
            batch_id=None,
            created_by=principal.service_account_id,
        )
        return await to_thread.run_sync(create)

    async def describe(self, principal: Principal, dataset_id: str) -> DatasetInfo:
        folder = await self._access.named_folder(principal, "", Permission.FILES_READ)
        return await to_thread.run_sync(self._store.get, dataset_id, folder)

    async def list_datasets(
        self,
        principal: Principal,
        folder_id: str,
        *,
        statuses: Sequence[str],
        name_pattern: str,
        task_types: Sequence[str],
        ids: Sequence[str],
        page_size: int,
        page_token: str,
    ) -> tuple[list[DatasetInfo], str]:
        folder = await self._access.named_folder(principal, folder_id, Permission.FILES_READ)
        offset = _offset(page_token)
        limit = min(page_size or 100, MAX_PAGE_SIZE)
        found = partial(
            self._store.list_datasets,
            folder,
            statuses=statuses,
            name_pattern=name_pattern,
            task_types=task_types,
            ids=ids,
            offset=offset,
            limit=limit,
        )
        datasets, more = await to_thread.run_sync(found)
        return datasets, str(offset + limit) if more else ""

    async def update(
        self,
        principal: Principal,
        dataset_id: str,
        *,
        name: str | None,
        description: str | None,
        labels: dict[str, str] | None,
    ) -> DatasetInfo:
        folder = await self._access.named_folder(principal, "", Permission.FILES_WRITE)
        if name is not None:
            _check_name(name)
        values = {
            key: value
            for key, value in (("name", name), ("description", description), ("labels", labels))
            if value is not None
        }
        return await to_thread.run_sync(partial(self._store.update, dataset_id, folder, **values))

    async def delete(self, principal: Principal, dataset_id: str) -> None:
        folder = await self._access.named_folder(principal, "", Permission.FILES_WRITE)
        info = await to_thread.run_sync(self._store.delete, dataset_id, folder)
        if info.file_id is not None and info.batch_id is None:
            # A batch's result file stays with its batch (the Files API still lists it).
            await to_thread.run_sync(self._files.remove, info.file_id, folder)

    # -- uploads ---------------------------------------------------------------------------

    async def upload_url(self, principal: Principal, dataset_id: str, size_bytes: int) -> str:
        info = await self._draft(principal, dataset_id, size_bytes)
        return self._signer.url("PUT", f"/v1/datasets/{info.id}/upload")

    async def multipart_urls(
        self, principal: Principal, dataset_id: str, size_bytes: int, parts: int
    ) -> list[str]:
        info = await self._draft(principal, dataset_id, size_bytes)
        if not 1 <= parts <= MAX_PARTS:
            raise InvalidRequestError(f"parts must be 1 to {MAX_PARTS}", param="parts")
        return [
            self._signer.url("PUT", f"/v1/datasets/{info.id}/parts/{number}")
            for number in range(1, parts + 1)
        ]

    async def receive_upload(
        self, path: str, query: dict[str, str], dataset_id: str, body: AsyncIterable[bytes]
    ) -> str:
        """A signed single-PUT upload: the bytes become the draft's rows. Returns the ETag."""
        self._signer.check("PUT", path, query.get("expires"), query.get("signature"))
        info = await to_thread.run_sync(self._store.get, dataset_id, None)
        file_id, staging = await to_thread.run_sync(self._files.staging, info.folder_id)
        try:
            with full_disk_refused():
                etag = await self._write(staging, body)
            await self._adopt(info, file_id, staging)
        except BaseException:
            with CancelScope(shield=True):
                await to_thread.run_sync(partial(staging.unlink, missing_ok=True))
            raise
        return etag

    async def receive_part(
        self,
        path: str,
        query: dict[str, str],
        dataset_id: str,
        number: int,
        body: AsyncIterable[bytes],
    ) -> str:
        """One signed part of a multipart upload, kept until the upload is finished."""
        self._signer.check("PUT", path, query.get("expires"), query.get("signature"))
        info = await to_thread.run_sync(self._store.get, dataset_id, None)
        target = self._part_path(info, number)
        staging = target.with_name(f"{target.name}.{id(body)}{PARTIAL_SUFFIX}")
        try:
            with full_disk_refused():
                etag = await self._write(staging, body)
            await to_thread.run_sync(staging.replace, target)
        except BaseException:
            with CancelScope(shield=True):
                await to_thread.run_sync(partial(staging.unlink, missing_ok=True))
            raise
        return etag

    async def finish_multipart(
        self, principal: Principal, dataset_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        info = await self._draft(principal, dataset_id, 0)
        ordered = sorted(parts)
        if not ordered or [n for n, _ in ordered] != list(range(1, len(ordered) + 1)):
            raise InvalidRequestError(
                "uploaded_parts must number the parts 1, 2, ... without gaps",
                param="uploaded_parts",
            )
        file_id, staging = await to_thread.run_sync(self._files.staging, info.folder_id)
        paths = [self._part_path(info, number) for number, _ in ordered]
        try:
            with full_disk_refused():
                await to_thread.run_sync(_join, paths, [etag for _, etag in ordered], staging)
            await self._adopt(info, file_id, staging)
        except BaseException:
            with CancelScope(shield=True):
                await to_thread.run_sync(partial(staging.unlink, missing_ok=True))
            raise
        for part in paths:
            await to_thread.run_sync(partial(part.unlink, missing_ok=True))

    # -- validation ----------------------------------------------------------------------

    async def validate(self, principal: Principal, dataset_id: str) -> OperationInfo:
        folder = await self._access.named_folder(principal, "", Permission.FILES_WRITE)
        info = await to_thread.run_sync(self._store.start_validation, dataset_id, folder)
        create = partial(
            self._operations.create,
            folder_id=folder,
            kind=OperationKind.VALIDATION,
            created_by=principal.service_account_id,
            description=f"Validation of dataset {dataset_id}",
            target_id=dataset_id,
        )
        operation = await to_thread.run_sync(create)
        if info.status == DatasetStatus.VALIDATING:
            self._tasks.spawn(f"validate {dataset_id}", self._run_validation(info))
            with CancelScope() as scope:
                scope.deadline = asyncio.get_running_loop().time() + VALIDATE_INLINE_S
                await self._validated(dataset_id)
        return operation

    def resume(self) -> None:
        """Validations a stopped server left unfinished start again (call on the loop)."""
        for info in self._store.validating():
            self._tasks.spawn(f"validate {info.id}", self._run_validation(info))

    async def _run_validation(self, info: DatasetInfo) -> None:
        assert info.file_id is not None
        stored = await to_thread.run_sync(self._files.get_stored, info.file_id, info.folder_id)
        checked = await to_thread.run_sync(validate_file, stored.path, info.task_type)
        finish = partial(self._store.finish_validation, info.id, checked.rows, checked.errors)
        await to_thread.run_sync(finish)

    async def _validated(self, dataset_id: str) -> None:
        while True:
            info = await to_thread.run_sync(self._store.get, dataset_id, None)
            if info.status != DatasetStatus.VALIDATING:
                return
            await asyncio.sleep(0.05)

    async def validation_operations(
        self, principal: Principal, dataset_ids: list[str]
    ) -> dict[str, str]:
        """Each dataset's last validation operation (datasets of other folders are left out)."""
        folder = await self._access.named_folder(principal, "", Permission.FILES_READ)
        found = partial(self._operations.latest_for, OperationKind.VALIDATION, dataset_ids)
        latest = await to_thread.run_sync(found)
        owned = await to_thread.run_sync(self._owned, folder, list(latest))
        return {dataset: op for dataset, op in latest.items() if dataset in owned}

    async def preview(self, principal: Principal, dataset_id: str) -> list[str]:
        """The first rows of the dataset as uploaded, each cut at ``PREVIEW_CHARS``."""
        info = await self.describe(principal, dataset_id)
        if info.file_id is None:
            return []
        stored = await to_thread.run_sync(self._files.get_stored, info.file_id, info.folder_id)
        return await to_thread.run_sync(_first_rows, stored.path)

    def _owned(self, folder: str, dataset_ids: list[str]) -> set[str]:
        owned = set()
        for dataset_id in dataset_ids:
            with contextlib.suppress(NotFoundError):
                owned.add(self._store.get(dataset_id, folder).id)
        return owned

    # -- downloads --------------------------------------------------------------------------

    async def download_urls(self, principal: Principal, dataset_id: str) -> list[tuple[str, str]]:
        info = await self.describe(principal, dataset_id)
        if info.status != DatasetStatus.READY or info.file_id is None:
            raise ConflictError(
                f"Dataset {dataset_id} is {info.status}: only a ready dataset can be downloaded",
                param="dataset_id",
            )
        return [(PARQUET_KEY, self._signer.url("GET", f"/v1/datasets/{info.id}/{PARQUET_KEY}"))]

    async def parquet(self, path: str, query: dict[str, str], dataset_id: str, key: str) -> Path:
        """A signed download: the dataset's rows as Parquet (converted once, then kept)."""
        self._signer.check("GET", path, query.get("expires"), query.get("signature"))
        if key != PARQUET_KEY:
            raise NotFoundError(f"Dataset {dataset_id} has no part {key!r}")
        info = await to_thread.run_sync(self._store.get, dataset_id, None)
        if info.file_id is None:
            raise not_found(dataset_id)
        stored = await to_thread.run_sync(self._files.get_stored, info.file_id, info.folder_id)
        return await to_thread.run_sync(self._files.parquet_of, stored)

    async def aclose(self) -> None:
        await self._tasks.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    async def _draft(self, principal: Principal, dataset_id: str, size_bytes: int) -> DatasetInfo:
        folder = await self._access.named_folder(principal, "", Permission.FILES_WRITE)
        info = await to_thread.run_sync(self._store.get, dataset_id, folder)
        if info.status != DatasetStatus.DRAFT:
            raise ConflictError(
                f"Dataset {dataset_id} is {info.status}: only a draft takes an upload",
                param="dataset_id",
            )
        if size_bytes > self._max_bytes:
            raise PayloadTooLargeError(
                f"The dataset is {size_bytes} bytes; this server takes at most "
                f"{self._max_bytes} (FOVEA_MAX_FILE_BYTES)"
            )
        return info

    async def _write(self, staging: Path, body: AsyncIterable[bytes]) -> str:
        """The body to ``staging`` in about-a-megabyte writes; returns its MD5 ETag."""
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        sink: BinaryIO = await to_thread.run_sync(staging.open, "xb")
        try:
            pending = bytearray()
            async for chunk in body:
                size += len(chunk)
                if size > self._max_bytes:
                    raise PayloadTooLargeError(
                        f"The upload passes {self._max_bytes} bytes (FOVEA_MAX_FILE_BYTES)"
                    )
                digest.update(chunk)
                pending += chunk
                if len(pending) >= WRITE_BYTES:
                    await to_thread.run_sync(sink.write, bytes(pending))
                    pending.clear()
            await to_thread.run_sync(sink.write, bytes(pending))
            await to_thread.run_sync(sync_file, sink)
        finally:
            sink.close()
        return f'"{digest.hexdigest()}"'

    async def _adopt(self, info: DatasetInfo, file_id: str, staging: Path) -> None:
        filename = f"{info.name}.jsonl"
        stored = await to_thread.run_sync(
            self._files.publish, info.folder_id, file_id, filename, "batch", staging
        )
        try:
            previous = await to_thread.run_sync(
                self._store.attach_file, info.id, stored.id, stored.bytes
            )
        except BaseException:
            with CancelScope(shield=True):
                await to_thread.run_sync(self._files.remove, stored.id, info.folder_id)
            raise
        if previous is not None:
            await to_thread.run_sync(self._files.remove, previous, info.folder_id)

    def _part_path(self, info: DatasetInfo, number: int) -> Path:
        if not 1 <= number <= MAX_PARTS:
            raise NotFoundError(f"No part {number}: parts are numbered 1 to {MAX_PARTS}")
        return self._files.folder_path(info.folder_id, f"{info.id}-{number}{PARTIAL_SUFFIX}")


def _first_rows(path: Path) -> list[str]:
    rows: list[str] = []
    with path.open("rb") as source:
        for line in source:
            if line.strip():
                rows.append(line[: PREVIEW_CHARS * 4].decode("utf-8", "replace")[:PREVIEW_CHARS])
            if len(rows) == PREVIEW_ROWS:
                break
    return rows


def _offset(page_token: str) -> int:
    if not page_token:
        return 0
    if not page_token.isdigit():
        raise InvalidRequestError("Invalid page_token: pass the one a list returned")
    return int(page_token)


def _join(parts: list[Path], etags: list[str], target: Path) -> None:
    """The parts, in order, into ``target``, each checked against the ETag its PUT returned."""
    with target.open("wb") as sink:
        for number, (part, etag) in enumerate(zip(parts, etags, strict=True), start=1):
            digest = hashlib.md5(usedforsecurity=False)
            try:
                source = part.open("rb")
            except FileNotFoundError:
                raise InvalidRequestError(
                    f"Part {number} was not uploaded", param="uploaded_parts"
                ) from None
            with source:
                while chunk := source.read(WRITE_BYTES):
                    digest.update(chunk)
                    sink.write(chunk)
            if f'"{digest.hexdigest()}"' != etag and digest.hexdigest() != etag:
                raise InvalidRequestError(
                    f"Part {number}'s ETag {etag} does not match the part uploaded",
                    param="uploaded_parts",
                )
        sync_file(sink)


def _check_name(name: str) -> None:
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequestError(
            f"name is {len(name)} characters long; at most {MAX_NAME_CHARS}", param="name"
        )
