"""The request log in the database: entries written in batches, read back one at a time,
deleted past their retention. Synchronous: call off the event loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert

from fovea.store.database import Database
from fovea.store.tables import RequestLogRecord
from fovea.store.transaction import transaction


@dataclass(frozen=True)
class RequestLogEntry:
    """One stored request and its response; images in ``request`` are hashes and sizes."""

    request_id: str
    created_at: datetime
    folder_id: str
    key_id: str  # empty for work no key started directly (batch lines, deferred completions)
    model_uri: str
    status: str
    request: dict[str, Any]
    response: dict[str, Any] | None


class RequestLogStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, entries: Sequence[RequestLogEntry]) -> None:
        """Write ``entries``; one whose id is stored already replaces it (a deferred completion
        retried under its operation's id keeps its last attempt)."""
        latest = {entry.request_id: entry for entry in entries}
        if not latest:
            return
        with transaction(self._database) as session:
            session.execute(delete(RequestLogRecord).where(RequestLogRecord.request_id.in_(latest)))
            session.execute(insert(RequestLogRecord), [asdict(e) for e in latest.values()])

    def get(self, request_id: str) -> RequestLogEntry | None:
        with transaction(self._database) as session:
            record = session.get(RequestLogRecord, request_id)
            if record is None:
                return None
            return RequestLogEntry(
                request_id=record.request_id,
                created_at=record.created_at,
                folder_id=record.folder_id,
                key_id=record.key_id,
                model_uri=record.model_uri,
                status=record.status,
                request=record.request,
                response=record.response,
            )

    def delete_older_than(self, moment: datetime) -> int:
        """Delete the entries created before ``moment``; returns how many there were."""
        with transaction(self._database) as session:
            result = session.execute(
                delete(RequestLogRecord).where(RequestLogRecord.created_at < moment)
            )
            return int(cast(CursorResult[Any], result).rowcount)
