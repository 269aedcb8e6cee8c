"""Files' rows in the database, one each, naming where the bytes are (``storage_path``, relative
to the files root; the bytes themselves are ``FileService``'s). Synchronous: call off the loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, CursorResult, and_, delete, or_, select
from sqlalchemy.orm import Session

from fovea.errors import InvalidRequestError, NotFoundError
from fovea.store.clock import Clock, utcnow
from fovea.store.database import Database
from fovea.store.tables import FileRecord
from fovea.store.transaction import transaction


@dataclass(frozen=True)
class FileInfo:
    """A file as stored (a copy of its row)."""

    id: str
    folder_id: str
    filename: str
    purpose: str
    bytes: int
    storage_path: str
    created_at: datetime


_FIELDS = [f.name for f in fields(FileInfo)]


def _info(record: FileRecord) -> FileInfo:
    return FileInfo(**{name: getattr(record, name) for name in _FIELDS})


def not_found(file_id: str) -> NotFoundError:
    return NotFoundError(f"No such File object: {file_id}", param="id")


class FileStore:
    """Files' rows; each method is one transaction."""

    def __init__(self, database: Database, clock: Clock = utcnow) -> None:
        self._database = database
        self._clock = clock

    def add(
        self,
        *,
        file_id: str,
        folder_id: str,
        filename: str,
        purpose: str,
        size: int,
        storage_path: str,
    ) -> FileInfo:
        """Commit the row of a file whose bytes are already in place."""
        record = FileRecord(
            id=file_id,
            folder_id=folder_id,
            filename=filename,
            purpose=purpose,
            bytes=size,
            storage_path=storage_path,
            created_at=self._clock(),
        )
        with transaction(self._database) as session:
            session.add(record)
        return _info(record)

    def find(self, file_id: str, folder_id: str) -> FileInfo | None:
        """The file ``file_id`` of ``folder_id``, or None."""
        with transaction(self._database) as session:
            record = session.get(FileRecord, file_id)
            return _info(record) if record is not None and record.folder_id == folder_id else None

    def get(self, file_id: str, folder_id: str) -> FileInfo:
        """The file ``file_id`` of ``folder_id``; ``NotFoundError`` if absent or elsewhere."""
        info = self.find(file_id, folder_id)
        if info is None:
            raise not_found(file_id)
        return info

    def list_files(
        self,
        folder_id: str,
        *,
        purpose: str | None,
        after: str | None,
        order: Literal["asc", "desc"],
        limit: int,
    ) -> tuple[list[FileInfo], bool]:
        """A page of the folder's files in ``(created_at, id)`` order, and whether more follow."""
        query = select(FileRecord).where(FileRecord.folder_id == folder_id)
        if purpose is not None:
            query = query.where(FileRecord.purpose == purpose)
        keys = (FileRecord.created_at, FileRecord.id)
        ordering = [k.desc() for k in keys] if order == "desc" else [k.asc() for k in keys]
        with transaction(self._database) as session:
            if after is not None:
                query = query.where(_after(session, folder_id, after, order))
            records = session.scalars(query.order_by(*ordering).limit(limit + 1)).all()
            return [_info(record) for record in records[:limit]], len(records) > limit

    def storage_paths(self, file_ids: Sequence[str]) -> set[str]:
        """Where the bytes of those of ``file_ids`` that have a row are."""
        if not file_ids:
            return set()
        query = select(FileRecord.storage_path).where(FileRecord.id.in_(file_ids))
        with transaction(self._database) as session:
            return set(session.scalars(query))

    def delete(self, file_id: str, folder_id: str) -> str:
        """Delete the row; returns where its bytes are. ``NotFoundError`` if absent or elsewhere."""
        owned = (FileRecord.id == file_id, FileRecord.folder_id == folder_id)
        with transaction(self._database) as session:
            storage_path = session.scalar(select(FileRecord.storage_path).where(*owned))
            result = cast(CursorResult[Any], session.execute(delete(FileRecord).where(*owned)))
            if storage_path is None or result.rowcount == 0:
                raise not_found(file_id)
        return storage_path


def _after(session: Session, folder_id: str, after: str, order: str) -> ColumnElement[bool]:
    """Rows past the cursor file ``after`` in ``(created_at, id)`` order."""
    cursor = session.execute(
        select(FileRecord.created_at, FileRecord.id).where(
            FileRecord.id == after, FileRecord.folder_id == folder_id
        )
    ).one_or_none()
    if cursor is None:
        raise InvalidRequestError(f"No such File object: {after}", param="after")
    created_at, file_id = cursor
    if order == "desc":
        return or_(
            FileRecord.created_at < created_at,
            and_(FileRecord.created_at == created_at, FileRecord.id < file_id),
        )
    return or_(
        FileRecord.created_at > created_at,
        and_(FileRecord.created_at == created_at, FileRecord.id > file_id),
    )
