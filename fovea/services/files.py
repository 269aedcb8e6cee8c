"""Files of a folder: uploaded or written by Fovea, bytes on disk, one row each (``FileStore``).

Bytes live in ``FileStorage`` (``services/storage.py``) under ``<folder_id>/<file_id>``. A file
is staged, synced, put in place, and only then committed as a row: a process killed mid-write
leaves at most a staged ``.part`` (swept at the next start), never a row without its bytes.
Deleting removes the row first, then the bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

from anyio import CancelScope, to_thread

from fovea.errors import FoveaError, InvalidRequestError, NotFoundError
from fovea.iam.roles import Permission
from fovea.iam.types import Principal
from fovea.protocol import files as wire
from fovea.services.access import AccessControl
from fovea.services.datasets.rows import jsonl_to_parquet
from fovea.services.storage import FileStorage, full_disk_refused, sync_file
from fovea.services.uploads import FILE_FIELD, MultipartUpload, receive_upload
from fovea.store.files import FileInfo, FileStore, not_found

log = logging.getLogger(__name__)

FILE_ID_PREFIX = "file-"
PARQUET_SUFFIX = ".parquet"
READ_BYTES = 256 * 1024
STALE_PARTIAL_S = 24 * 3600
# Bytes with no row this long after their last write were left by a writer killed between
# putting them in place and committing the row (milliseconds apart): any replica may sweep them.
ORPHAN_S = 3600
_FILE_KEY = re.compile(
    rf"^[^/]+/(?P<id>{FILE_ID_PREFIX}[0-9a-f]+)(?:{re.escape(PARQUET_SUFFIX)})?$"
)
_ORPHAN_PAGE = 500


@dataclass(frozen=True)
class StoredFile:
    """A file's row and where its bytes are."""

    id: str
    folder_id: str
    filename: str
    purpose: str
    bytes: int
    created_at: datetime
    path: Path


@dataclass(frozen=True)
class FileContent:
    """A file opened for reading: ``chunks`` streams its bytes and closes it when done."""

    file: StoredFile
    media_type: str
    chunks: AsyncIterator[bytes]


def new_file_id() -> str:
    return FILE_ID_PREFIX + secrets.token_hex(12)


def _file_id_of(key: str) -> str:
    match = _FILE_KEY.match(key)
    assert match is not None
    return match["id"]


def derived_file_id(name: str) -> str:
    """The id of a file written once whoever writes it (a batch's output, from its id): every
    replica that writes it names the same file."""
    return FILE_ID_PREFIX + hashlib.sha256(name.encode()).hexdigest()[:24]


def check_purpose(purpose: str) -> str:
    """``purpose`` if it is one of OpenAI's; ``InvalidRequestError`` naming them otherwise."""
    if purpose not in wire.FILE_PURPOSES:
        raise InvalidRequestError(
            f"Invalid value for 'purpose': {purpose!r}. "
            f"Valid purposes: {', '.join(wire.FILE_PURPOSES)}",
            param="purpose",
        )
    return purpose


class FileService:
    """The Files API for callers, and stored files for Fovea's own workers.

    The async methods check the caller's folder and role and run blocking work in worker
    threads. ``get_stored`` and ``create_stored`` are synchronous and check nothing: they are
    for code already running in a worker thread on a folder it was given (the batch runner).
    """

    def __init__(self, store: FileStore, access: AccessControl, storage: FileStorage) -> None:
        self._store = store
        self._access = access
        self._storage = storage

    # -- the HTTP API ---------------------------------------------------------------------

    async def upload(
        self,
        principal: Principal,
        header_folder: str | None,
        content_type: str | None,
        body: AsyncIterable[bytes],
    ) -> wire.FileObject:
        """Stream a multipart body (fields ``file`` and ``purpose``) into a new file."""
        folder_id = await self._folder(principal, header_folder, Permission.FILES_WRITE)
        file_id = new_file_id()
        with full_disk_refused():
            key = f"{folder_id}/{file_id}"
            staging = await to_thread.run_sync(self._storage.staging_path, key)
            try:
                upload = await self._receive(staging, content_type, body)
                filename, purpose = _filename_and_purpose(upload)
                publish = partial(self._publish, folder_id, file_id, filename, purpose, staging)
                stored = await to_thread.run_sync(publish)
            except BaseException:
                with CancelScope(shield=True):
                    await to_thread.run_sync(partial(staging.unlink, missing_ok=True))
                raise
        return _to_wire(stored)

    async def list(
        self, principal: Principal, header_folder: str | None, params: wire.FileListParams
    ) -> wire.FileList:
        folder_id = await self._folder(principal, header_folder, Permission.FILES_READ)
        return await to_thread.run_sync(self._list, folder_id, params)

    async def retrieve(
        self, principal: Principal, header_folder: str | None, file_id: str
    ) -> wire.FileObject:
        folder_id = await self._folder(principal, header_folder, Permission.FILES_READ)
        return _to_wire(await to_thread.run_sync(self.get_stored, file_id, folder_id))

    async def content(
        self, principal: Principal, header_folder: str | None, file_id: str
    ) -> FileContent:
        """The file, already open: a concurrent delete cannot cut its stream short."""
        folder_id = await self._folder(principal, header_folder, Permission.FILES_READ)
        stored, handle = await to_thread.run_sync(self._open, file_id, folder_id)
        return FileContent(stored, _media_type(stored.filename), _chunks(handle))

    async def parquet(self, principal: Principal, header_folder: str | None, file_id: str) -> Path:
        """A JSONL file's rows as Parquet (the cloud's dataset format), converted once."""
        folder_id = await self._folder(principal, header_folder, Permission.FILES_READ)
        stored = await to_thread.run_sync(self.get_stored, file_id, folder_id)
        return await to_thread.run_sync(self.parquet_of, stored)

    async def delete(
        self, principal: Principal, header_folder: str | None, file_id: str
    ) -> wire.FileDeleted:
        folder_id = await self._folder(principal, header_folder, Permission.FILES_WRITE)
        await to_thread.run_sync(self._delete, file_id, folder_id)
        return wire.FileDeleted(id=file_id)

    # -- for Fovea's own workers (synchronous) --------------------------------------------

    def get_stored(self, file_id: str, folder_id: str) -> StoredFile:
        """The file ``file_id`` of ``folder_id``; ``NotFoundError`` if absent or elsewhere."""
        return self._stored(self._store.get(file_id, folder_id))

    def create_stored(
        self,
        folder_id: str,
        filename: str,
        purpose: str,
        write: Callable[[BinaryIO], None],
        *,
        file_id: str | None = None,
    ) -> StoredFile:
        """A new file of ``folder_id`` whose bytes ``write`` puts in the binary file it gets.

        With ``file_id`` (a ``derived_file_id``) the file is written at most once: if it
        exists already it is returned as it is, and ``write`` is not called."""
        check_purpose(purpose)
        if file_id is not None:
            existing = self._store.find(file_id, folder_id)
            if existing is not None:
                return self._stored(existing)
        derived = file_id is not None
        file_id = file_id or new_file_id()
        with full_disk_refused():
            staging = self._storage.staging_path(f"{folder_id}/{file_id}")
            try:
                with _open_staging(staging) as sink:
                    write(sink)
                    sync_file(sink)
                return self._publish(
                    folder_id, file_id, filename, purpose, staging, derived=derived
                )
            except BaseException:
                staging.unlink(missing_ok=True)
                raise

    def folder_path(self, folder_id: str, name: str) -> Path:
        """A local path for ``name`` among the folder's bytes (a dataset's upload parts), its
        directory created."""
        path = self._storage.local_path(f"{folder_id}/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def parquet_of(self, stored: StoredFile) -> Path:
        """The Parquet copy of a JSONL file, written beside it on first use (blocking)."""
        target = stored.path.with_name(f"{stored.id}{PARQUET_SUFFIX}")
        if not target.exists():
            with full_disk_refused():
                jsonl_to_parquet(stored.path, target)
        return target

    def staging(self, folder_id: str) -> tuple[str, Path]:
        """A new file id and the path to write its bytes to before ``publish``."""
        file_id = new_file_id()
        return file_id, self._storage.staging_path(f"{folder_id}/{file_id}")

    def publish(
        self, folder_id: str, file_id: str, filename: str, purpose: str, staging: Path
    ) -> StoredFile:
        """Make the staged bytes of ``file_id`` a file of the folder (synced, then committed)."""
        return self._publish(folder_id, file_id, filename, purpose, staging)

    def remove(self, file_id: str, folder_id: str) -> None:
        """Delete a file of the folder (the row, then the bytes); absent is not an error."""
        with contextlib.suppress(NotFoundError):
            self._delete(file_id, folder_id)

    def remove_stale_partials(self, older_than_s: float = STALE_PARTIAL_S) -> int:
        """Delete staged writes untouched for ``older_than_s`` (left by killed writers)."""
        return self._storage.sweep_partials(older_than_s)

    def remove_orphans(self, untouched_for_s: float = ORPHAN_S) -> int:
        """Delete files' bytes (and their Parquet copies) that no row names, untouched for
        ``untouched_for_s``: a writer was killed between putting them in place and its row."""
        removed = 0
        keys = [k for k in self._storage.keys_untouched_for(untouched_for_s) if _FILE_KEY.match(k)]
        for start in range(0, len(keys), _ORPHAN_PAGE):
            page = keys[start : start + _ORPHAN_PAGE]
            ids = sorted({_file_id_of(key) for key in page})
            named = self._store.storage_paths(ids)
            for key in page:
                if key.removesuffix(PARQUET_SUFFIX) not in named:
                    log.warning("removing %s: no file names these bytes", key)
                    self._storage.delete(key)
                    removed += 1
        return removed

    # -- plumbing -------------------------------------------------------------------------

    async def _folder(
        self, principal: Principal, header_folder: str | None, permission: Permission
    ) -> str:
        folder_id = self._access.folder_for(principal, uri_folder=None, header_folder=header_folder)
        await self._access.require(principal, folder_id, permission)
        return folder_id

    async def _receive(
        self, staging: Path, content_type: str | None, body: AsyncIterable[bytes]
    ) -> MultipartUpload:
        sink = await to_thread.run_sync(_open_staging, staging)
        try:
            upload = MultipartUpload(content_type, sink)
            await receive_upload(body, upload)
            await to_thread.run_sync(sync_file, sink)
        finally:
            sink.close()
        return upload

    def _publish(
        self,
        folder_id: str,
        file_id: str,
        filename: str,
        purpose: str,
        staging: Path,
        *,
        derived: bool = False,
    ) -> StoredFile:
        """Put the staged bytes in place, then commit the row (blocking). A ``derived`` file
        whose row another writer committed first is that writer's (the same bytes): its bytes
        stay, or its row would point at nothing."""
        key = f"{folder_id}/{file_id}"
        size = self._storage.commit(staging, key)
        try:
            info = self._store.add(
                file_id=file_id,
                folder_id=folder_id,
                filename=filename,
                purpose=purpose,
                size=size,
                storage_path=key,
            )
        except Exception:
            existing = self._existing(file_id, folder_id) if derived else None
            if existing is None:
                self._storage.delete(key)
                raise
            return self._stored(existing)
        except BaseException:
            self._storage.delete(key)
            raise
        return self._stored(info)

    def _existing(self, file_id: str, folder_id: str) -> FileInfo | None:
        with contextlib.suppress(FoveaError):
            return self._store.find(file_id, folder_id)
        return None

    def _list(self, folder_id: str, params: wire.FileListParams) -> wire.FileList:
        infos, has_more = self._store.list_files(
            folder_id,
            purpose=params.purpose,
            after=params.after,
            order=params.order,
            limit=params.limit,
        )
        data = [_to_wire(self._stored(info)) for info in infos]
        return wire.FileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=has_more,
        )

    def _open(self, file_id: str, folder_id: str) -> tuple[StoredFile, BinaryIO]:
        stored = self.get_stored(file_id, folder_id)
        try:
            return stored, stored.path.open("rb")
        except FileNotFoundError:  # deleted since the row was read
            raise not_found(file_id) from None

    def _delete(self, file_id: str, folder_id: str) -> None:
        storage_path = self._store.delete(file_id, folder_id)
        self._storage.delete(storage_path)
        self._storage.delete(f"{storage_path}{PARQUET_SUFFIX}")

    def _stored(self, info: FileInfo) -> StoredFile:
        return StoredFile(
            id=info.id,
            folder_id=info.folder_id,
            filename=info.filename,
            purpose=info.purpose,
            bytes=info.bytes,
            created_at=info.created_at,
            path=self._storage.local_path(info.storage_path),
        )


def _filename_and_purpose(upload: MultipartUpload) -> tuple[str, str]:
    if upload.filename is None:
        raise InvalidRequestError(f"Missing required parameter: '{FILE_FIELD}'.", param=FILE_FIELD)
    purpose = upload.fields.get("purpose")
    if not purpose:
        raise InvalidRequestError("Missing required parameter: 'purpose'.", param="purpose")
    return upload.filename, check_purpose(purpose)


async def _chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await to_thread.run_sync(handle.read, READ_BYTES):
            yield chunk
    finally:
        handle.close()


def _open_staging(staging: Path) -> BinaryIO:
    staging.parent.mkdir(parents=True, exist_ok=True)
    return staging.open("xb")


def _media_type(filename: str) -> str:
    if filename.endswith(".jsonl"):
        return "application/jsonl"
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _to_wire(stored: StoredFile) -> wire.FileObject:
    return wire.FileObject(
        id=stored.id,
        bytes=stored.bytes,
        created_at=int(stored.created_at.timestamp()),
        filename=stored.filename,
        purpose=stored.purpose,
    )
