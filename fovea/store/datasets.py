"""Datasets in the database. Synchronous: call off the event loop."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fovea.errors import ConflictError, NotFoundError
from fovea.store.clock import Clock, utcnow
from fovea.store.database import Database
from fovea.store.tables import BATCH_ACTIVE_STATUSES, BatchRecord, DatasetRecord
from fovea.store.transaction import transaction

ID_PREFIX = "fds"


class DatasetStatus(StrEnum):
    DRAFT = "draft"
    VALIDATING = "validating"
    READY = "ready"
    INVALID = "invalid"


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as stored (a copy of its row)."""

    id: str
    folder_id: str
    name: str
    description: str
    dataset_metadata: str
    task_type: str
    upload_format: str
    labels: dict[str, str]
    status: str
    file_id: str | None
    rows: int
    size_bytes: int
    validation_errors: list[dict[str, Any]] | None
    batch_id: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime


_FIELDS = [f.name for f in fields(DatasetInfo)]


def _info(record: DatasetRecord) -> DatasetInfo:
    return DatasetInfo(**{name: getattr(record, name) for name in _FIELDS})


def not_found(dataset_id: str) -> NotFoundError:
    return NotFoundError(f"Dataset {dataset_id} not found", param="dataset_id")


class DatasetStore:
    def __init__(self, database: Database, clock: Clock = utcnow) -> None:
        self._database = database
        self._clock = clock

    def create(self, **values: Any) -> DatasetInfo:
        now = self._clock()
        defaults: dict[str, Any] = {"rows": 0, "size_bytes": 0, "validation_errors": None}
        record = DatasetRecord(
            id=ID_PREFIX + secrets.token_hex(10),
            created_at=now,
            updated_at=now,
            **{**defaults, **values},
        )
        with transaction(self._database) as session:
            session.add(record)
        return _info(record)

    def get(self, dataset_id: str, folder_id: str | None = None) -> DatasetInfo:
        """The dataset; ``folder_id`` given, one of another folder is not found either."""
        with transaction(self._database) as session:
            record = session.get(DatasetRecord, dataset_id)
            if record is None or (folder_id is not None and record.folder_id != folder_id):
                raise not_found(dataset_id)
            return _info(record)

    def by_batch(self, batch_id: str) -> DatasetInfo | None:
        with transaction(self._database) as session:
            query = select(DatasetRecord).where(DatasetRecord.batch_id == batch_id)
            record = session.scalars(query).first()
            return None if record is None else _info(record)

    def list_datasets(
        self,
        folder_id: str,
        *,
        statuses: Sequence[str],
        name_pattern: str,
        task_types: Sequence[str],
        ids: Sequence[str],
        offset: int,
        limit: int,
    ) -> tuple[list[DatasetInfo], bool]:
        with transaction(self._database) as session:
            query = select(DatasetRecord).where(DatasetRecord.folder_id == folder_id)
            if statuses:
                query = query.where(DatasetRecord.status.in_(statuses))
            if task_types:
                query = query.where(DatasetRecord.task_type.in_(task_types))
            if ids:
                query = query.where(DatasetRecord.id.in_(ids))
            if name_pattern:
                # Case-insensitive on PostgreSQL as on SQLite, whose LIKE ignores ASCII case.
                query = query.where(DatasetRecord.name.icontains(name_pattern, autoescape=True))
            query = query.order_by(DatasetRecord.created_at.desc(), DatasetRecord.id.desc())
            records = session.scalars(query.offset(offset).limit(limit + 1)).all()
            return [_info(r) for r in records[:limit]], len(records) > limit

    def update(self, dataset_id: str, folder_id: str, **values: Any) -> DatasetInfo:
        with transaction(self._database) as session:
            record = self._record(session, dataset_id, folder_id)
            for name, value in values.items():
                setattr(record, name, value)
            record.updated_at = self._clock()
            return _info(record)

    def delete(self, dataset_id: str, folder_id: str) -> DatasetInfo:
        with transaction(self._database) as session:
            record = self._record(session, dataset_id, folder_id)
            if record.status == DatasetStatus.VALIDATING:
                raise ConflictError(
                    f"Dataset {dataset_id} is being validated; delete it once validation ends",
                    param="dataset_id",
                )
            running = session.scalar(
                select(BatchRecord.id).where(
                    BatchRecord.input_file_id == record.file_id,
                    BatchRecord.status.in_(BATCH_ACTIVE_STATUSES),
                )
            )
            if record.file_id is not None and running is not None:
                raise ConflictError(
                    f"Dataset {dataset_id} is the input of batch {running}, which is still "
                    "running: cancel it or wait for it to end before deleting the dataset",
                    param="dataset_id",
                )
            info = _info(record)
            session.delete(record)
            return info

    def attach_file(self, dataset_id: str, file_id: str, size: int) -> str | None:
        """A draft's uploaded content; returns the file it replaces, if any."""
        with transaction(self._database) as session:
            record = self._record(session, dataset_id, None)
            if record.status != DatasetStatus.DRAFT:
                raise ConflictError(
                    f"Dataset {dataset_id} is {record.status}: only a draft takes an upload",
                    param="dataset_id",
                )
            previous = record.file_id
            record.file_id, record.size_bytes = file_id, size
            record.updated_at = self._clock()
            return previous

    def start_validation(self, dataset_id: str, folder_id: str) -> DatasetInfo:
        with transaction(self._database) as session:
            record = self._record(session, dataset_id, folder_id)
            if record.file_id is None:
                raise ConflictError(
                    f"Dataset {dataset_id} has no data: upload it before validating it",
                    param="dataset_id",
                )
            if record.status in (DatasetStatus.DRAFT, DatasetStatus.INVALID):
                record.status = DatasetStatus.VALIDATING
                record.updated_at = self._clock()
            return _info(record)

    def finish_validation(
        self, dataset_id: str, rows: int, errors: list[dict[str, Any]]
    ) -> DatasetInfo | None:
        """The outcome of a validation; None when the dataset was deleted meanwhile."""
        with transaction(self._database) as session:
            record = session.get(DatasetRecord, dataset_id)
            if record is None:
                return None
            if record.status == DatasetStatus.VALIDATING:
                record.status = DatasetStatus.INVALID if errors else DatasetStatus.READY
                record.rows, record.validation_errors = rows, errors
                record.updated_at = self._clock()
            return _info(record)

    def validating(self) -> list[DatasetInfo]:
        """Datasets whose validation a stopped server left unfinished."""
        with transaction(self._database) as session:
            query = select(DatasetRecord).where(DatasetRecord.status == DatasetStatus.VALIDATING)
            return [_info(r) for r in session.scalars(query)]

    def create_result(self, **values: Any) -> DatasetInfo:
        """A batch's result dataset, once: a second call returns the first one's."""
        try:
            return self.create(**values)
        except Exception as error:
            if not isinstance(error.__cause__, IntegrityError):
                raise
        found = self.by_batch(values["batch_id"])
        assert found is not None
        return found

    def _record(self, session: Any, dataset_id: str, folder_id: str | None) -> DatasetRecord:
        record = session.get(DatasetRecord, dataset_id)
        if record is None or (folder_id is not None and record.folder_id != folder_id):
            raise not_found(dataset_id)
        assert isinstance(record, DatasetRecord)
        return record
