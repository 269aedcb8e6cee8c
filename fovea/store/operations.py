"""Long-running operations in the database. Synchronous: call off the event loop."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from fovea.errors import NotFoundError
from fovea.store.clock import Clock, utcnow
from fovea.store.database import Database
from fovea.store.tables import OperationRecord
from fovea.store.transaction import transaction

ID_PREFIX = "fop"


class OperationKind(StrEnum):
    COMPLETION = "completion"
    VALIDATION = "validation"
    BATCH = "batch"


@dataclass(frozen=True)
class OperationInfo:
    id: str
    folder_id: str
    kind: str
    target_id: str | None
    created_by: str
    description: str
    request: dict[str, Any] | None
    done: bool
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: datetime
    modified_at: datetime


_FIELDS = [f.name for f in fields(OperationInfo)]


def _info(record: OperationRecord) -> OperationInfo:
    return OperationInfo(**{name: getattr(record, name) for name in _FIELDS})


class OperationStore:
    def __init__(self, database: Database, clock: Clock = utcnow) -> None:
        self._database = database
        self._clock = clock

    def create(
        self,
        *,
        folder_id: str,
        kind: OperationKind,
        created_by: str,
        description: str,
        target_id: str | None = None,
        request: dict[str, Any] | None = None,
        operation_id: str | None = None,
    ) -> OperationInfo:
        now = self._clock()
        record = OperationRecord(
            id=operation_id or ID_PREFIX + secrets.token_hex(10),
            folder_id=folder_id,
            kind=kind,
            target_id=target_id,
            created_by=created_by,
            description=description,
            request=request,
            done=False,
            response=None,
            error=None,
            created_at=now,
            modified_at=now,
        )
        with transaction(self._database) as session:
            session.add(record)
        return _info(record)

    def get(self, operation_id: str) -> OperationInfo:
        with transaction(self._database) as session:
            record = session.get(OperationRecord, operation_id)
            if record is None:
                raise NotFoundError(f"Operation {operation_id} not found", param="operation_id")
            return _info(record)

    def finish(
        self,
        operation_id: str,
        *,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        forget_request: bool = False,
    ) -> bool:
        """Record the outcome once; False when it already had one (a cancel came first).
        ``forget_request`` drops the stored request (a client that opted out of logging)."""
        values: dict[str, Any] = {"done": True, "response": response, "error": error}
        if forget_request:
            values["request"] = None
        with transaction(self._database) as session:
            result = session.execute(
                update(OperationRecord)
                .where(OperationRecord.id == operation_id, OperationRecord.done.is_(False))
                .values(**values, modified_at=self._clock())
            )
            return bool(cast(CursorResult[Any], result).rowcount)

    def latest_for(self, kind: OperationKind, target_ids: list[str]) -> dict[str, str]:
        """The newest operation of ``kind`` on each of ``target_ids`` that has one."""
        with transaction(self._database) as session:
            query = (
                select(OperationRecord.target_id, OperationRecord.id)
                .where(OperationRecord.kind == kind, OperationRecord.target_id.in_(target_ids))
                .order_by(OperationRecord.created_at)
            )
            return {target: op for target, op in session.execute(query) if target is not None}

    def unfinished(self, kind: OperationKind) -> list[OperationInfo]:
        """Operations of ``kind`` a stopped server left running, oldest first."""
        with transaction(self._database) as session:
            query = (
                select(OperationRecord)
                .where(OperationRecord.kind == kind, OperationRecord.done.is_(False))
                .order_by(OperationRecord.created_at)
            )
            return [_info(r) for r in session.scalars(query)]
